// Signed log blocks (issue 13, item 8): publish rights on writ.audit.<session> are not
// authorship. Every block must be signed by a writer key in the operator's registry, whose
// registered kind may write every event in it; checkpoints cover only such blocks.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { names, type AuditEvent, type Names } from '../schemas/index.ts';
import { ed25519Pair, startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import {
  addKeyToRegistry,
  AuditWriter,
  blockSigner,
  CHAIN_LENGTH_HEADER,
  Checkpointer,
  ensureAuditStream,
  eventHash,
  loadKeyRegistry,
  loadOrCreateAuditKey,
  parseKeyRegistry,
  runAuditCli,
  verify,
  type BlockSigner,
  type CheckpointPayload,
  type KeyRegistry,
} from './index.ts';
import { blockJson, type BlockSignature } from './chain.ts';
import { loadLastBlock } from './writer.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const dir = mkdtempSync(join(tmpdir(), 'writ-audit-keys-'));

const pair = ed25519Pair;
const cpKey = pair(); // the broker's grant key, which signs checkpoints
const brokerKey = pair();
const workerKey = pair();
const strangerKey = pair(); // a valid key nobody registered
const registryFile = join(dir, 'audit-keys.yaml');
let registry: KeyRegistry;
let brokerSigner: BlockSigner;
let workerSigner: BlockSigner;

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  addKeyToRegistry(registryFile, { publicKeyPem: brokerKey.pub, kind: 'broker' });
  addKeyToRegistry(registryFile, { publicKeyPem: workerKey.pub, kind: 'worker', id: 'pg-1' });
  registry = loadKeyRegistry(registryFile);
  brokerSigner = blockSigner(brokerKey.priv);
  workerSigner = blockSigner(workerKey.priv);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

interface Log {
  n: Names;
  broker: AuditWriter;
  worker: AuditWriter;
  cp: Checkpointer;
}

/** A clean log as a broker and a worker write it, each signing with its own registered key. */
async function cleanLog(): Promise<Log> {
  const n = names(uniqueName('t'));
  await ensureAuditStream(jsm, n, {});
  const broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1, signer: brokerSigner });
  const worker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id: 'pg-1' }, flushMs: 1, signer: workerSigner });
  const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, privateKey: cpKey.priv, writers: [broker], signer: brokerSigner, signers: registry });
  for (const sessionId of ['sess_a', 'sess_b', 'sess_c']) {
    for (let i = 0; i < 2; i++) {
      const intentId = `intent_${sessionId}_${i}`;
      await Promise.all([
        broker.append({ sessionId, intentId, type: 'intent.received', payload: { principal: { sub: 'alice' } } }),
        broker.append({ sessionId, intentId, type: 'approval.vote', payload: { by: 'bob', verdict: 'approve' } }),
        broker.append({ sessionId, intentId, type: 'intent.dispatched', payload: {} }),
      ]);
      await worker.append({ sessionId, intentId, type: 'exec.claimed', payload: {} });
      await worker.append({ sessionId, intentId, type: 'exec.finished', payload: { status: 'succeeded' } });
    }
  }
  await cp.checkpoint();
  return { n, broker, worker, cp };
}

/**
 * What an insider with publish rights on writ.audit.<session> can do: read the head and
 * append a correctly chained, correctly hashed block, signed with `key` or not at all.
 */
async function forge(n: Names, sessionId: string, fields: Pick<AuditEvent, 'type' | 'actor'> & { payload?: Record<string, unknown> }, signer?: BlockSigner): Promise<{ ev: AuditEvent; seq: number }> {
  const last = await loadLastBlock(jsm, n, sessionId);
  const ev = { v: 1, id: `forged-${uniqueName('e')}`, sessionId, intentId: `intent_${sessionId}_1`, at: Date.now(), prev: last.head.hash, hash: '', ...fields } as AuditEvent;
  ev.hash = eventHash(ev);
  const h = headers();
  h.set(CHAIN_LENGTH_HEADER, String(last.head.count + 1));
  const ack = await js.publish(n.audit(sessionId), blockJson([ev], signer?.sign(sessionId, [ev])), { headers: h, expect: { lastSubjectSequence: last.head.seq } });
  return { ev, seq: ack.seq };
}

const verifyAll = async (n: Names, extra: Partial<Parameters<typeof verify>[0]> = {}) => {
  const inline = await verify({ js, names: n, publicKeyPem: cpKey.pub, requireCheckpoint: true, signers: registry, threads: 0, ...extra });
  // Worker threads get the registry too, and must agree.
  if (extra.sessionId === undefined) expect(await verify({ js, names: n, publicKeyPem: cpKey.pub, requireCheckpoint: true, signers: registry, threads: 2, ...extra })).toEqual(inline);
  return inline;
};

describe('signed blocks', () => {
  it('a clean multi-writer log with every block signed by its registered writer passes verify', async () => {
    const { n, broker, worker, cp } = await cleanLog();
    await cp.close();
    await worker.close();
    await broker.close();
    const r = await verifyAll(n);
    expect(r.firstBreak).toBeUndefined();
    expect(r).toMatchObject({ ok: true, blockSignaturesChecked: true, unsignedBlocks: 0 });
    expect(r.coveredHeads).toBeGreaterThanOrEqual(3);
    // The CLI with the registry file says the same.
    const out: string[] = [];
    const code = await runAuditCli(['verify', '--keys', registryFile, '--require-checkpoint', '--no-against-state'], { nc, names: n, stdout: (s) => out.push(s), publicKeyPem: cpKey.pub });
    expect(out.join('')).toContain('every signature checked');
    expect(code).toBe(0);
  });

  it('a forged approval.vote, correctly chained and hashed but unsigned, fails verify naming it', async () => {
    const { n } = await cleanLog();
    const { ev, seq } = await forge(n, 'sess_b', { type: 'approval.vote', actor: { kind: 'broker', id: 'b1' }, payload: { by: 'carol', verdict: 'approve', counted: true } });
    const r = await verifyAll(n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_b', seq, eventId: ev.id, reason: 'block is not signed by any writer key' });
    // Without the registry the chain alone is intact: that was the hole.
    expect((await verify({ js, names: n, publicKeyPem: cpKey.pub, requireCheckpoint: true })).ok).toBe(true);
    // The CLI names it, and exits 1.
    const out: string[] = [];
    expect(await runAuditCli(['verify', '--keys', registryFile, '--no-against-state'], { nc, names: n, stdout: (s) => out.push(s), publicKeyPem: cpKey.pub })).toBe(1);
    expect(out.join('')).toContain(`event ${ev.id}: block is not signed`);
  });

  it('a block signed with a key nobody registered fails verify naming each of its events', async () => {
    const { n } = await cleanLog();
    const { ev, seq } = await forge(n, 'sess_a', { type: 'approval.vote', actor: { kind: 'broker', id: 'b1' }, payload: { by: 'carol' } }, blockSigner(strangerKey.priv));
    const r = await verifyAll(n);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_a', seq, eventId: ev.id });
    expect(r.firstBreak!.reason).toMatch(/approval\.vote event in a block signed with unregistered key [0-9a-f]{16}/);
  });

  it('a signature copied from another block does not verify (it covers the session and every event hash)', async () => {
    const { n } = await cleanLog();
    const stolen = brokerSigner.sign('sess_a', [{ hash: 'a'.repeat(64) } as AuditEvent]);
    const { ev } = await forge(n, 'sess_a', { type: 'approval.vote', actor: { kind: 'broker', id: 'b1' } }, { keyId: stolen.kid, sign: () => stolen, signBatch: (bs) => bs.map(() => stolen) });
    expect((await verifyAll(n)).firstBreak).toMatchObject({ eventId: ev.id, reason: expect.stringMatching(/does not verify/) });
  });

  it('a worker key cannot sign broker events: neither a broker actor nor intent/approval types', async () => {
    for (const [fields, why] of [
      [{ type: 'approval.vote', actor: { kind: 'broker', id: 'b1' } }, /names a broker actor but is signed by worker key/],
      [{ type: 'approval.vote', actor: { kind: 'worker', id: 'pg-1' } }, /a worker key \([0-9a-f]+\) may not sign approval\.vote/],
      [{ type: 'intent.dispatched', actor: { kind: 'worker', id: 'pg-1' } }, /may not sign intent\.dispatched/],
      [{ type: 'exec.lost', actor: { kind: 'worker', id: 'pg-1' } }, /may not sign exec\.lost/],
      [{ type: 'exec.finished', actor: { kind: 'worker', id: 'pg-2' } }, /names actor pg-2 but is signed by key [0-9a-f]+ of pg-1/],
    ] as const) {
      const { n } = await cleanLog();
      const { ev } = await forge(n, 'sess_c', fields, workerSigner);
      const r = await verifyAll(n);
      expect(r.firstBreak, fields.type).toMatchObject({ eventId: ev.id, reason: expect.stringMatching(why) });
    }
  });

  it("the broker's key cannot sign a worker's execution report", async () => {
    const { n } = await cleanLog();
    const { ev } = await forge(n, 'sess_c', { type: 'exec.finished', actor: { kind: 'broker', id: 'b1' }, payload: { status: 'succeeded' } }, brokerSigner);
    expect((await verifyAll(n)).firstBreak).toMatchObject({ eventId: ev.id, reason: expect.stringMatching(/a broker key \([0-9a-f]+\) may not sign exec\.finished/) });
  });

  it('a checkpoint after a forged block does not sign it, nor the events chained after it', async () => {
    const { n, broker, worker, cp } = await cleanLog();
    const before = await loadLastBlock(jsm, n, 'sess_b');
    const { ev, seq } = await forge(n, 'sess_b', { type: 'approval.vote', actor: { kind: 'broker', id: 'b1' }, payload: { by: 'carol', verdict: 'approve' } });
    // The broker writes on, chained after the forged block; its head now commits to it.
    await broker.append({ sessionId: 'sess_b', intentId: 'intent_sess_b_1', type: 'intent.dispatched', payload: {} });
    await broker.append({ sessionId: 'sess_a', intentId: 'intent_sess_a_9', type: 'intent.received', payload: {} });
    const [rec] = await cp.checkpoint();
    const stored = await jsm.streams.getMessage(n.streams.audit, { seq: rec!.seq });
    const heads = (stored!.json<{ events: AuditEvent[] }>().events[0]!.payload as unknown as CheckpointPayload).heads;
    const b = heads.find((h) => h.sessionId === 'sess_b');
    expect(b === undefined || b.seq < seq).toBe(true);
    if (b) expect(b).toMatchObject({ seq: before.head.seq, hash: before.head.hash });
    expect(heads.find((h) => h.sessionId === 'sess_a')).toBeDefined(); // other sessions are still covered
    await cp.close();
    await worker.close();
    await broker.close();
    const r = await verifyAll(n);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_b', seq, eventId: ev.id });
  });

  it('unsigned blocks are accepted only below --allow-unsigned-before (logs from before signing)', async () => {
    const n = names(uniqueName('t'));
    await ensureAuditStream(jsm, n, {});
    const old = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1 });
    await old.append({ sessionId: 'sess_old', type: 'intent.received', payload: {} });
    await old.close();
    const signed = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1, signer: brokerSigner });
    await signed.append({ sessionId: 'sess_old', type: 'intent.decided', payload: {} });
    await signed.close();
    const opts = { requireCheckpoint: false } as const;
    expect((await verifyAll(n, opts)).firstBreak).toMatchObject({ seq: 1, reason: 'block is not signed by any writer key' });
    expect(await verifyAll(n, { ...opts, allowUnsignedBefore: 2 })).toMatchObject({ ok: true, unsignedBlocks: 1 });
    // A forgery after the cut-over is still refused.
    await forge(n, 'sess_old', { type: 'approval.vote', actor: { kind: 'broker', id: 'b1' } });
    expect((await verifyAll(n, { ...opts, allowUnsignedBefore: 2 })).firstBreak).toMatchObject({ seq: 3 });
  });

  it("events outside a key's validity period are refused", async () => {
    const n = names(uniqueName('t'));
    await ensureAuditStream(jsm, n, {});
    const k = pair();
    const file = join(dir, `${uniqueName('r')}.yaml`);
    addKeyToRegistry(file, { publicKeyPem: k.pub, kind: 'broker', notAfter: Date.now() - 60_000 });
    const w = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1, signer: blockSigner(k.priv) });
    await w.append({ sessionId: 'sess_late', type: 'intent.received' });
    await w.close();
    const r = await verify({ js, names: n, signers: loadKeyRegistry(file), threads: 0 });
    expect(r.firstBreak?.reason).toMatch(/outside key [0-9a-f]+'s validity period/);
  });
});

describe('a block whose events cannot be hashed', () => {
  it('is a break that verify reports, inline and in worker threads, and the Checkpointer covers the other sessions', async () => {
    const { n, broker, worker, cp } = await cleanLog();
    // An insider's block, chained and signed by nobody: a number JSON.parse makes infinite, and
    // nesting deep enough to exhaust the stack of any recursive walk. Neither has a canonical form.
    const poison = async (sessionId: string, payload: string) => {
      const last = await loadLastBlock(jsm, n, sessionId);
      const ev = `{"actor":{"id":"b1","kind":"broker"},"at":${Date.now()},"hash":"${'0'.repeat(64)}","id":"${uniqueName('p')}","payload":${payload},"prev":"${last.head.hash}","sessionId":"${sessionId}","type":"intent.received","v":1}`;
      const h = headers();
      h.set(CHAIN_LENGTH_HEADER, String(last.head.count + 1));
      return (await js.publish(n.audit(sessionId), `{"events":[${ev}],"type":"audit.block","v":1}`, { headers: h, expect: { lastSubjectSequence: last.head.seq } })).seq;
    };
    const huge = await poison('sess_a', '{"x":1e400}');
    await poison('sess_c', `{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    // The broker writes on in another session; the checkpoint still covers it.
    await broker.append({ sessionId: 'sess_b', intentId: 'intent_sess_b_7', type: 'intent.received', payload: {} });
    const [rec] = await cp.checkpoint();
    const heads = ((await jsm.streams.getMessage(n.streams.audit, { seq: rec!.seq }))!.json<{ events: AuditEvent[] }>().events[0]!.payload as unknown as CheckpointPayload).heads;
    expect(heads.find((h) => h.sessionId === 'sess_b')).toBeDefined();
    for (const sid of ['sess_a', 'sess_c']) expect((heads.find((h) => h.sessionId === sid)?.seq ?? 0) < huge).toBe(true);
    const r = await verifyAll(n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_a', seq: huge });
    expect(r.firstBreak!.reason).toMatch(/has no hash|does not match|not signed/);
    await cp.close();
    await worker.close();
    await broker.close();
  });
});

describe('blocks of one turn', () => {
  it('are signed together (one signature, a path each) and each verifies on its own, inline and in worker threads', async () => {
    const n = names(uniqueName('t'));
    await ensureAuditStream(jsm, n, {});
    // Group commit (flushMs 0), as the services write: the blocks of one turn are sealed together.
    const broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, signer: brokerSigner });
    const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, privateKey: cpKey.priv, writers: [broker], signer: brokerSigner, signers: registry });
    const sessions = Array.from({ length: 6 }, (_, i) => `sess_turn_${i}`);
    const round = () => Promise.all(sessions.map((sessionId) => broker.append({ sessionId, intentId: `i_${sessionId}`, type: 'intent.received', payload: { principal: { sub: 'alice' } } })));
    // The first blocks of new sessions wait for their heads to be read, each at its own time; once
    // the heads are known (as for a service's running sessions), one turn's blocks chain at once.
    await round();
    await round();
    await cp.checkpoint();
    const sigs = await Promise.all(sessions.map(async (sid) => JSON.parse(new TextDecoder().decode((await jsm.streams.getMessage(n.streams.audit, { last_by_subj: n.audit(sid) }))!.data)).sig));
    expect(new Set(sigs.map((g: { s: string }) => g.s)).size).toBe(1);
    expect(sigs.every((g: { p?: string[] }) => Array.isArray(g.p) && g.p.length > 0)).toBe(true);
    expect(await verifyAll(n)).toMatchObject({ ok: true, blockSignaturesChecked: true });
    // The batch's signature with a path of its own on a block the writer never signed: refused.
    const shared = sigs[0] as BlockSignature;
    const { ev } = await forge(n, sessions[0]!, { type: 'approval.vote', actor: { kind: 'broker', id: 'b1' } }, { keyId: shared.kid, sign: () => shared, signBatch: (bs) => bs.map(() => shared) });
    expect((await verifyAll(n)).firstBreak).toMatchObject({ eventId: ev.id, reason: expect.stringMatching(/does not verify/) });
    await broker.close();
  });
});

describe('the key registry', () => {
  it('refuses an entry listed under another key id, an unknown kind or a non-Ed25519 key', () => {
    const a = pair();
    const b = pair();
    const aId = blockSigner(a.priv).keyId;
    expect(() => parseKeyRegistry(JSON.stringify({ v: 1, keys: { [aId]: { kind: 'worker', publicKey: b.pub } } }))).toThrow(/wrong id/);
    expect(() => parseKeyRegistry(JSON.stringify({ v: 1, keys: { [aId]: { kind: 'root', publicKey: a.pub } } }))).toThrow(/needs kind/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => parseKeyRegistry(JSON.stringify({ v: 1, keys: { [aId]: { kind: 'worker', publicKey: ec } } }))).toThrow();
    expect(() => parseKeyRegistry(JSON.stringify({ v: 2, keys: {} }))).toThrow();
  });

  it('a service key is created once, 0600, with its public half beside it; `keys add` and `keys list` register it', async () => {
    const file = join(dir, uniqueName('svc'), 'audit-key.pem');
    const first = loadOrCreateAuditKey(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadOrCreateAuditKey(file).keyId).toBe(first.keyId);
    const pub = file.replace(/\.pem$/, '.pub.pem');
    expect(readFileSync(pub, 'utf8')).toBe(first.publicKeyPem);
    const reg = join(dir, `${uniqueName('r')}.yaml`);
    const out: string[] = [];
    const io = { nc, names: names('writ'), stdout: (s: string) => out.push(s), keyRegistryFile: reg };
    expect(await runAuditCli(['keys', 'add', '--public-key', pub, '--kind', 'worker', '--id', 'ssh-1'], io)).toBe(0);
    expect(await runAuditCli(['keys', 'list', '--json'], io)).toBe(0);
    expect(JSON.parse(out[1]!)).toEqual([{ keyId: first.keyId, kind: 'worker', id: 'ssh-1' }]);
    expect(await runAuditCli(['keys', 'add', '--public-key', pub, '--kind', 'nobody'], io)).toBe(2);
    writeFileSync(join(dir, 'junk.pem'), 'junk');
    expect(await runAuditCli(['keys', 'add', '--public-key', join(dir, 'junk.pem'), '--kind', 'worker'], io)).toBe(2);
  });
});
