// Blocks signed in a batch (audit/keys.ts signBatch): one Ed25519 signature over the root of a
// hash tree, each block with its path. Each block must still verify on its own, and nothing
// about another block, another batch or another key may stand in for its own path.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../schemas/index.ts';
import { ed25519Pair } from '../test/helpers/index.ts';
import { analyzeBlock, blockJson, CHECKPOINT_SESSION, eventHash, ZERO_HASH, type BlockSignature, type Signer } from './chain.ts';
import { blockSigner } from './keys.ts';

const enc = new TextEncoder();
const brokerKey = ed25519Pair();
const signer = blockSigner(brokerKey.priv);

function events(sessionId: string, n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prev = ZERO_HASH;
  for (let i = 0; i < n; i++) {
    const ev = {
      actor: { id: 'b1', kind: 'broker' },
      at: 1_700_000_000_000 + i,
      id: `${sessionId}-e${i}`,
      intentId: `i-${sessionId}`,
      prev,
      sessionId,
      type: 'intent.received',
      v: 1,
      hash: '',
    } as AuditEvent;
    ev.hash = eventHash(ev);
    prev = ev.hash;
    out.push(ev);
  }
  return out;
}

const registry = (key: KeyObject | string = brokerKey.pub): ReadonlyMap<string, Signer> => new Map([[signer.keyId, { key: typeof key === 'string' ? createPublicKey(key) : key, kind: 'broker' }]]);

function check(sessionId: string, evs: AuditEvent[], sig: BlockSignature, signers = registry()) {
  return analyzeBlock(enc.encode(blockJson(evs, sig)), sessionId, CHECKPOINT_SESSION, false, signers);
}

/** Five sessions' blocks signed together, as a writer signs the blocks of one turn. */
function batch(size = 5) {
  const blocks = Array.from({ length: size }, (_, i) => ({ sessionId: `sess_${i}`, events: events(`sess_${i}`, 1 + (i % 3)) }));
  return { blocks, sigs: signer.signBatch(blocks) };
}

describe('blocks signed in a batch', () => {
  it('share one signature; each carries its own path and verifies on its own', () => {
    for (const size of [2, 3, 5, 8, 13]) {
      const { blocks, sigs } = batch(size);
      expect(new Set(sigs.map((s) => s.s)).size).toBe(1);
      expect(new Set(sigs.map((s) => JSON.stringify(s.p))).size).toBe(size);
      // A tree of `size` leaves is at most ceil(log2(size)) steps deep.
      for (const s of sigs) expect(s.p!.length).toBeLessThanOrEqual(Math.ceil(Math.log2(size)));
      blocks.forEach((b, i) => {
        const r = check(b.sessionId, b.events, sigs[i]!);
        expect(r).toMatchObject({ signer: signer.keyId, events: b.events.length });
        expect(r.errors).toBeUndefined();
      });
    }
  });

  it('a lone block is signed as sign() signs it (no path)', () => {
    const evs = events('sess_one', 2);
    const [sig] = signer.signBatch([{ sessionId: 'sess_one', events: evs }]);
    expect(sig).toEqual(signer.sign('sess_one', evs));
    expect(check('sess_one', evs, sig!).errors).toBeUndefined();
  });

  const forged = /does not verify \(forged or altered\)/;

  it("another block's path, a changed step, a flipped side or no path at all does not verify", () => {
    const { blocks, sigs } = batch(5);
    const b = blocks[2]!;
    const own = sigs[2]!;
    const wrong: BlockSignature[] = [
      sigs[3]!, // a sibling's path and the shared signature
      { ...own, p: [`${own.p![0]![0] === 'l' ? 'r' : 'l'}${own.p![0]!.slice(1)}`, ...own.p!.slice(1)] },
      { ...own, p: [`${own.p![0]![0]}${'A'.repeat(43)}`, ...own.p!.slice(1)] },
      { ...own, p: own.p!.slice(1) },
      { kid: own.kid, s: own.s },
    ];
    for (const sig of wrong) {
      const r = check(b.sessionId, b.events, sig);
      expect(r.errors?.[0]?.reason).toMatch(forged);
    }
    // The block's events altered after signing, rehashed and rechained (its own path kept): refused too.
    let prev = ZERO_HASH;
    const altered = b.events.map((e) => {
      const a = { ...e, at: e.at + 1, prev };
      a.hash = eventHash(a);
      prev = a.hash;
      return a;
    });
    expect(check(b.sessionId, altered, own).errors).toEqual([
      expect.objectContaining({ reason: expect.stringMatching(forged) }),
      ...altered.slice(1).map(() => expect.objectContaining({ reason: expect.stringMatching(forged) })),
    ]);
    // Claimed for another session.
    expect(
      check(
        'sess_other',
        b.events.map((e) => ({ ...e, sessionId: 'sess_other', hash: eventHash({ ...e, sessionId: 'sess_other' }) })),
        own,
      ).errors?.some((e) => forged.test(e.reason)),
    ).toBe(true);
  });

  it('a path verified under one key is not taken on trust for another key under the same id', () => {
    const { blocks, sigs } = batch(4);
    expect(check(blocks[0]!.sessionId, blocks[0]!.events, sigs[0]!).errors).toBeUndefined();
    // The same kid mapped to a stranger's key (a misconfigured or altered registry): checked afresh, refused.
    const stranger = registry(ed25519Pair().pub);
    expect(check(blocks[1]!.sessionId, blocks[1]!.events, sigs[1]!, stranger).errors?.[0]?.reason).toMatch(forged);
  });

  it('a path too deep or malformed is refused by shape, before any hashing', () => {
    const { blocks, sigs } = batch(2);
    const b = blocks[0]!;
    const step = sigs[0]!.p![0]!;
    for (const p of [Array(17).fill(step), [], [step.slice(0, 40)], [`x${step.slice(1)}`], [1]]) {
      const r = check(b.sessionId, b.events, { ...sigs[0]!, p: p as string[] });
      expect(r.events).toBe(0);
      expect(r.errors?.[0]?.reason).toMatch(/block signature/);
    }
  });
});
