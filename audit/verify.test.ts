// verify() against doctored logs: every kind of tampering the signed checkpoints and the
// hash chain exist for must be named as the first broken link.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { names, type AuditEvent, type Names } from '../schemas/index.ts';
import { startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import { AuditWriter, CHAIN_LENGTH_HEADER, Checkpointer, ensureAuditStream, eventHash, verify, ZERO_HASH, type CheckpointRecord } from './index.ts';
import { blockJson } from './chain.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

const keys = generateKeyPairSync('ed25519');
const publicKeyPem = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const privateKeyPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

interface Raw {
  subject: string;
  session: string;
  events: AuditEvent[];
  length: string;
}

interface History {
  n: Names;
  messages: Raw[];
  checkpoints: CheckpointRecord[];
  sessions: string[];
}

/**
 * A log as the broker leaves it: 4 sessions written in bursts by two writers, a signed
 * checkpoint after each of the first two rounds, and a third round no checkpoint covers yet.
 */
async function history(): Promise<History> {
  const n = names(uniqueName('t'));
  await ensureAuditStream(jsm, n, {});
  const a = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1 });
  const b = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id: 'w1' }, flushMs: 1 });
  const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, privateKey: privateKeyPem, writers: [a, b] });
  const sessions = ['sess_aaaa', 'sess_bbbb', 'sess_cccc', 'sess_dddd'];
  const checkpoints: CheckpointRecord[] = [];
  for (let round = 0; round < 3; round++) {
    for (const sessionId of sessions) {
      await Promise.all([
        a.append({
          sessionId,
          intentId: `intent_${round}_x`,
          type: 'intent.received',
          payload: { round, principal: { sub: 'alice' }, target: 'db', command: { kind: 'sql', sql: `SELECT ${round}` } },
        }),
        a.append({ sessionId, intentId: `intent_${round}_x`, type: 'intent.decided', payload: { decision: { effect: 'allow', rules: ['r1'] } } }),
      ]);
      await b.append({ sessionId, intentId: `intent_${round}_x`, type: 'exec.finished', payload: { status: 'succeeded', resultSha256: 'f'.repeat(64) } });
    }
    if (round < 2) checkpoints.push(...(await cp.checkpoint()));
  }
  await a.close();
  await b.close();
  return { n, messages: await dump(n), checkpoints, sessions };
}

async function dump(n: Names): Promise<Raw[]> {
  const out: Raw[] = [];
  const c = await js.consumers.get(n.streams.audit, { filter_subjects: n.auditAll() });
  const it = await c.consume();
  for await (const m of it) {
    out.push({ subject: m.subject, session: m.subject.split('.').pop()!, events: (m.json() as { events: AuditEvent[] }).events, length: m.headers?.get('Writ-Chain-Length') ?? '' });
    if (m.info.pending === 0) break;
  }
  await it.stop();
  return out;
}

/** Restores `messages` into a fresh stream of the same name, the way a doctored backup would be. */
async function restore(n: Names, messages: Raw[]): Promise<void> {
  await jsm.streams.delete(n.streams.audit).catch(() => undefined);
  await ensureAuditStream(jsm, n, {});
  for (const m of messages) {
    const h = headers();
    h.set('Writ-Chain-Length', m.length);
    await js.publish(m.subject, blockJson(m.events), { headers: h });
  }
}

/** Re-hashes a session's chain from its first event on, as a forger without the signing key would. */
function rechain(messages: Raw[], session: string): void {
  let prev = ZERO_HASH;
  for (const m of messages) {
    if (m.session !== session) continue;
    m.events = m.events.map((e) => {
      const ev = { ...e, prev };
      ev.hash = eventHash(ev);
      prev = ev.hash;
      return ev;
    });
  }
}

const clone = (ms: Raw[]): Raw[] => structuredClone(ms);
/** verify() on the calling thread and with worker threads must agree on every log. */
async function check(n: Names, extra: Partial<Parameters<typeof verify>[0]> = {}) {
  const inline = await verify({ js, names: n, publicKeyPem, threads: 0, ...extra });
  if (extra.sessionId === undefined) {
    expect(await verify({ js, names: n, publicKeyPem, threads: 2, ...extra })).toEqual(inline);
    // Reading paused and resumed every few messages, as on a stream larger than memory.
    expect(await verify({ js, names: n, publicKeyPem, threads: 1, readAheadMessages: 4, ...extra })).toEqual(inline);
  }
  return inline;
}

describe('verify', () => {
  let h: History;
  beforeAll(async () => {
    h = await history();
  });

  it('accepts an untouched log and checks every checkpoint and head', async () => {
    const r = await check(h.n, { requireCheckpoint: true, anchor: { hash: h.checkpoints.at(-1)!.hash, seq: h.checkpoints.at(-1)!.seq } });
    expect(r.firstBreak).toBeUndefined();
    expect(r).toMatchObject({ ok: true, sessions: 5, checkpoints: 2, coveredHeads: 8, signaturesChecked: true, breaks: 0 });
    expect(r.events).toBe(4 * 3 * 3 + 2);
    for (const s of h.sessions) expect(await check(h.n, { sessionId: s })).toMatchObject({ ok: true, events: 9, coveredHeads: 2 });
  });

  it('detects an event published straight onto the subject with a wrong prev', async () => {
    const n = h.n;
    const forged = {
      v: 1,
      id: 'forged-1',
      sessionId: 'sess_bbbb',
      type: 'exec.finished',
      at: Date.now(),
      actor: { kind: 'worker', id: 'w9' },
      payload: { status: 'succeeded' },
      prev: 'a'.repeat(64),
      hash: '',
    } as AuditEvent;
    forged.hash = eventHash(forged);
    const hd = headers();
    hd.set('Writ-Chain-Length', '10');
    const ack = await js.publish(n.audit('sess_bbbb'), blockJson([forged]), { headers: hd });
    const r = await check(n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_bbbb', seq: ack.seq, eventId: 'forged-1' });
    expect(r.firstBreak!.reason).toMatch(/prev/);
  });

  it('detects a history rewritten with recomputed hashes: the signed head no longer matches', async () => {
    const ms = clone(h.messages);
    const target = ms.find((m) => m.session === 'sess_cccc')!;
    (target.events[0]!.payload as { command: { sql: string } }).command.sql = 'SELECT innocent';
    rechain(ms, 'sess_cccc');
    await restore(h.n, ms);
    const r = await check(h.n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.sessionId).toBe('sess_cccc');
    expect(r.firstBreak!.reason).toMatch(/checkpoint \d+ signs session sess_cccc .*history rewritten/);
    // The chain itself is consistent: only the checkpoint could tell.
    expect(r.breaks).toBeGreaterThan(0);
  });

  it('detects forged checkpoints: re-signed heads do not verify with the broker key', async () => {
    const ms = clone(h.messages);
    (ms.find((m) => m.session === 'sess_cccc')!.events[0]!.payload as { round: number }).round = 99;
    rechain(ms, 'sess_cccc');
    // The forger also rewrites the heads in the checkpoints and re-hashes their chain.
    const byOldSeq = new Map(h.messages.map((m, i) => [i + 1, ms[i]!]));
    for (const m of ms.filter((x) => x.session === '_checkpoints')) {
      for (const head of (m.events[0]!.payload as { heads: Array<{ seq: number; hash: string }> }).heads) head.hash = byOldSeq.get(head.seq)!.events.at(-1)!.hash;
    }
    let prev = ZERO_HASH;
    for (const m of ms.filter((x) => x.session === '_checkpoints')) {
      const ev = { ...m.events[0]!, prev, payload: { ...m.events[0]!.payload, prevCheckpoint: prev } };
      ev.hash = eventHash(ev);
      prev = ev.hash;
      m.events = [ev];
    }
    await restore(h.n, ms);
    const r = await check(h.n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak).toMatchObject({ sessionId: '_checkpoints', reason: 'checkpoint signature does not verify' });
  });

  it('detects a missing block (the rest copied into a fresh stream)', async () => {
    const ms = clone(h.messages);
    const i = ms.findIndex((m) => m.session === 'sess_aaaa' && m.events[0]!.type === 'exec.finished');
    ms.splice(i, 1);
    await restore(h.n, ms);
    const r = await check(h.n);
    expect(r.ok).toBe(false);
    // The checkpoint after the gap is the first place it shows: its head for sess_aaaa moved.
    expect(r.firstBreak!.sessionId).toBe('sess_aaaa');
    expect(r.firstBreak!.reason).toMatch(/checkpoint \d+ signs session sess_aaaa at seq 2 .*holds session sess_bbbb/);
    expect(r.breaks).toBeGreaterThan(1); // and the chain break at its next block
  });

  it('detects a missing event inside a block', async () => {
    const ms = clone(h.messages);
    const m = ms.find((x) => x.session === 'sess_dddd' && x.events.length > 1)!;
    const kept = m.events[1]!;
    m.events = [kept];
    await restore(h.n, ms);
    const r = await check(h.n);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_dddd', eventId: kept.id });
  });

  it('detects reordered blocks of a session', async () => {
    const ms = clone(h.messages);
    const idx = ms.flatMap((m, i) => (m.session === 'sess_bbbb' ? [i] : []));
    const [x, y] = [idx[0]!, idx[1]!];
    [ms[x], ms[y]] = [ms[y]!, ms[x]!];
    await restore(h.n, ms);
    const r = await check(h.n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak).toMatchObject({ sessionId: 'sess_bbbb', seq: x + 1 });
  });

  it('detects a restored older copy of the sessions under the current checkpoints', async () => {
    const ms = clone(h.messages);
    const half = ms.slice(0, Math.floor(ms.length / 2));
    // The older copy of the sessions, with the checkpoints the log had since.
    await restore(h.n, [...half, ...ms.slice(half.length).filter((m) => m.session === '_checkpoints')]);
    const r = await check(h.n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.reason).toMatch(/restored from an older copy/);
  });

  it('detects a log cut off after an older checkpoint by the anchor or the checkpoint age', async () => {
    const ms = clone(h.messages);
    const firstCp = ms.findIndex((m) => m.session === '_checkpoints');
    await restore(h.n, ms.slice(0, firstCp + 1));
    // Self-consistent on its own…
    expect((await check(h.n)).ok).toBe(true);
    // …but not with the latest checkpoint an auditor kept, nor with a freshness bound.
    const latest = h.checkpoints.at(-1)!;
    const r = await check(h.n, { anchor: { hash: latest.hash, seq: latest.seq } });
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.reason).toMatch(/anchored checkpoint .* is not in the stream/);
    expect((await check(h.n, { maxCheckpointAgeMs: -1 })).ok).toBe(false);
  });

  it('detects a dropped session that a checkpoint covers', async () => {
    await restore(
      h.n,
      clone(h.messages).filter((m) => m.session !== 'sess_dddd'),
    );
    const r = await check(h.n);
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.sessionId).toBe('sess_dddd');
    const one = await check(h.n, { sessionId: 'sess_dddd' });
    expect(one.ok).toBe(false);
    expect(one.firstBreak!.reason).toMatch(/no such block|after itself/);
  });

  it('detects a dropped checkpoint chain when checkpoints are required', async () => {
    await restore(
      h.n,
      clone(h.messages).filter((m) => m.session !== '_checkpoints'),
    );
    expect((await check(h.n)).ok).toBe(true);
    const r = await check(h.n, { requireCheckpoint: true });
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.reason).toMatch(/no valid signed checkpoint/);
  });

  it('detects an altered payload without re-hashing, and a block that is not JSON', async () => {
    const ms = clone(h.messages);
    (ms[3]!.events[0]!.payload as { round: number }).round = 7;
    await restore(h.n, ms);
    let r = await check(h.n);
    expect(r.firstBreak).toMatchObject({ seq: 4, eventId: ms[3]!.events[0]!.id, reason: 'hash does not match the event (altered)' });
    await js.publish(h.n.audit('sess_junk'), '{not json');
    r = await check(h.n);
    expect(r.breaks).toBeGreaterThan(1);
  });

  it('rejects checkpoints signed by another key', async () => {
    await restore(h.n, clone(h.messages));
    const other = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const r = await verify({ js, names: h.n, publicKeyPem: other });
    expect(r.firstBreak!.reason).toMatch(/unknown key/);
  });
});

// A checkpoint signs each session's actual tail, so a worker's block written after the
// broker's last one in a session is covered even though the broker did not write it.
describe('checkpoint coverage', () => {
  it('covers a worker block that follows the broker’s last one, so dropping it fails verify', async () => {
    const n = names(uniqueName('t'));
    await ensureAuditStream(jsm, n, {});
    const broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1 });
    const worker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id: 'w1' }, flushMs: 1 });
    // The checkpointer knows only the broker's writer, as in a deployment.
    const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, privateKey: privateKeyPem, writers: [broker] });
    await broker.append({ sessionId: 'sess_tail', intentId: 'intent_1x', type: 'intent.dispatched', payload: {} });
    await worker.append({ sessionId: 'sess_tail', intentId: 'intent_1x', type: 'exec.finished', payload: { status: 'succeeded' } });
    await worker.close();
    await broker.close();
    const [rec] = await cp.checkpoint(true);
    expect(rec!.heads).toBe(1);
    expect((await verify({ js, names: n, publicKeyPem, requireCheckpoint: true })).ok).toBe(true);

    // Restore the log without the worker's trailing block: the chain alone still looks fine,
    // the signed head does not.
    const kept: Array<{ subject: string; data: Uint8Array; len: string }> = [];
    const c = await js.consumers.get(n.streams.audit, { filter_subjects: n.auditAll() });
    const it = await c.consume();
    for await (const m of it) {
      const events = (m.json() as { events: AuditEvent[] }).events;
      if (events[0]!.type !== 'exec.finished') kept.push({ subject: m.subject, data: m.data, len: m.headers?.get(CHAIN_LENGTH_HEADER) ?? '' });
      if (m.info.pending === 0) break;
    }
    await it.stop();
    await jsm.streams.delete(n.streams.audit);
    await ensureAuditStream(jsm, n, {});
    for (const k of kept) {
      const h = headers();
      h.set(CHAIN_LENGTH_HEADER, k.len);
      await js.publish(k.subject, k.data, { headers: h });
    }
    const r = await verify({ js, names: n, publicKeyPem, requireCheckpoint: true });
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.sessionId).toBe('sess_tail');
  });
});
