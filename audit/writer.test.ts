// AuditWriter against a real nats-server: blocks, chains, concurrent writers, oversized payloads.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino, type Logger } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream';
import { canonicalJson, names, sha256Hex, AuditBlockSchema, type Names } from '../schemas/index.ts';
import { startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import { AuditWriter, ensureAuditStream, auditStreamConfig, readSession, verify, ZERO_HASH } from './index.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let n: Names;

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  n = names(uniqueName('t'));
  await ensureAuditStream(jsm, n, {});
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const writer = (id: string, extra: Partial<ConstructorParameters<typeof AuditWriter>[0]> = {}) => new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id }, ...extra });

describe('audit stream', () => {
  it('is created deny_delete, deny_purge, without rollup, and ensuring it again changes nothing', async () => {
    const info = await jsm.streams.info(n.streams.audit);
    expect(info.config).toMatchObject({ subjects: [n.auditAll()], storage: 'file', retention: 'limits', deny_delete: true, deny_purge: true, allow_rollup_hdrs: false, num_replicas: 1 });
    expect(info.config.max_age).toBe(0);
    const again = await ensureAuditStream(jsm, n, {});
    expect(again.created).toEqual(info.created);
    expect(auditStreamConfig(n, { maxAgeSec: 60 }).max_age).toBe(60e9);
  });

  it('refuses purge and message delete through the API', async () => {
    const w = writer('b-purge');
    await w.append({ sessionId: 'purge_test', type: 'intent.received' });
    await expect(jsm.streams.purge(n.streams.audit)).rejects.toThrow();
    await expect(jsm.streams.deleteMessage(n.streams.audit, 1)).rejects.toThrow();
  });
});

describe('AuditWriter', () => {
  it('gathers events of one session written within flushMs into one block, chained from zeros', async () => {
    const w = writer('b1', { flushMs: 20 });
    const sessionId = uniqueName('s');
    const evs = await Promise.all([
      w.append({ sessionId, intentId: 'intent_0001', type: 'intent.received', payload: { target: 'db', command: { kind: 'sql', sql: 'SELECT 1' } } }),
      w.append({ sessionId, intentId: 'intent_0001', type: 'intent.decided', payload: { decision: { effect: 'allow', rules: ['r1'] } }, policyVersion: 'p1' }),
      w.append({ sessionId, intentId: 'intent_0001', type: 'intent.dispatched' }),
    ]);
    expect(evs[0]!.prev).toBe(ZERO_HASH);
    expect(evs[1]!.prev).toBe(evs[0]!.hash);
    expect(evs[2]!.prev).toBe(evs[1]!.hash);
    const { hash, ...rest } = evs[1]!;
    expect(hash).toBe(sha256Hex(canonicalJson(rest)));
    // One message holding all three, and it parses with the strict schema.
    const m = await jsm.streams.getMessage(n.streams.audit, { last_by_subj: n.audit(sessionId) });
    const block = AuditBlockSchema.parse(m!.json());
    expect(block.events.map((e) => e.type)).toEqual(['intent.received', 'intent.decided', 'intent.dispatched']);
    expect(m!.header.get('Writ-Chain-Length')).toBe('3');
    // A later event continues the chain from the cached head.
    const next = await w.append({ sessionId, type: 'exec.finished', payload: { status: 'succeeded' } });
    expect(next.prev).toBe(evs[2]!.hash);
    const read = await readSession({ js, names: n, sessionId });
    expect(read.map((e) => e.id)).toEqual([...evs, next].map((e) => e.id));
    await w.close();
  });

  it('continues a chain another process wrote (reads the head first)', async () => {
    const sessionId = uniqueName('s');
    const a = writer('ba');
    const first = await a.append({ sessionId, type: 'intent.received' });
    const b = writer('bb');
    const second = await b.append({ sessionId, type: 'exec.claimed' });
    expect(second.prev).toBe(first.hash);
    // a's cache is stale now: the stream refuses its append, it re-chains onto b's event.
    const third = await a.append({ sessionId, type: 'exec.finished' });
    expect(third.prev).toBe(second.hash);
    const v = await verify({ js, names: n, sessionId });
    expect(v).toMatchObject({ ok: true, events: 3, sessions: 1 });
  });

  it('keeps one linear chain with 3 writers appending 300 events to one session concurrently', async () => {
    const sessionId = uniqueName('s');
    const lines: Array<{ msg: string; sessionId: string }> = [];
    const logger = pino(
      { level: 'debug' },
      new Writable({
        write: (chunk, _enc, cb) => {
          lines.push(JSON.parse(String(chunk)));
          cb();
        },
      }),
    );
    const ws = [writer('w1', { flushMs: 1, logger }), writer('w2', { flushMs: 0, logger }), writer('w3', { flushMs: 3, logger })];
    const all = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, Math.random() * 30));
        return ws[i % 3]!.append({ sessionId, type: 'test.event', payload: { i } });
      }),
    );
    const events = await readSession({ js, names: n, sessionId });
    expect(events).toHaveLength(300);
    expect(new Set(events.map((e) => e.id)).size).toBe(300);
    let prev = ZERO_HASH;
    for (const e of events) {
      expect(e.prev).toBe(prev);
      prev = e.hash;
    }
    // What each append resolved with is what is stored.
    const byId = new Map(events.map((e) => [e.id, e]));
    for (const e of all) expect(byId.get(e.id)).toEqual(e);
    expect(new Set(events.map((e) => e.actor.id))).toEqual(new Set(['w1', 'w2', 'w3']));
    const v = await verify({ js, names: n, sessionId });
    expect(v.ok).toBe(true);
    expect(v.events).toBe(300);
    await Promise.all(ws.map((w) => w.close()));
    // The writers did collide, and resolved it by re-chaining rather than forking.
    expect(lines.filter((l) => l.msg === 'audit append conflict: re-chaining' && l.sessionId === sessionId).length).toBeGreaterThan(0);
  });

  it('writes different sessions in parallel and reports the heads it wrote', async () => {
    const w = writer('bp');
    const sessions = Array.from({ length: 20 }, () => uniqueName('s'));
    await Promise.all(sessions.flatMap((sessionId) => [1, 2, 3].map((i) => w.append({ sessionId, type: 'test.event', payload: { i } }))));
    const heads = w.takeChangedHeads();
    expect(heads.map((h) => h.sessionId).sort()).toEqual([...sessions].sort());
    for (const h of heads) {
      expect(h.count).toBe(3);
      const m = await jsm.streams.getMessage(n.streams.audit, { seq: h.seq });
      expect(m!.subject).toBe(n.audit(h.sessionId));
    }
    expect(w.takeChangedHeads()).toEqual([]);
  });

  it('replaces a payload over 8 KB by its digest', async () => {
    const w = writer('bd');
    const payload = { rows: 'x'.repeat(9000) };
    const ev = await w.append({ sessionId: uniqueName('s'), type: 'exec.finished', payload });
    expect(ev.payload).toBeUndefined();
    expect(ev.digest).toBe(sha256Hex(canonicalJson(payload)));
    const small = await w.append({ sessionId: uniqueName('s'), type: 'exec.finished', payload: { a: 1, skip: undefined } });
    expect(small.payload).toEqual({ a: 1 });
  });

  it('refuses bad session ids, checkpoint events, and appends after close', async () => {
    const w = writer('bx');
    await expect(w.append({ sessionId: 'a.b', type: 'x' })).rejects.toMatchObject({ code: 'WRIT_BAD_REQUEST' });
    await expect(w.append({ sessionId: '_checkpoints', type: 'x' })).rejects.toMatchObject({ code: 'WRIT_BAD_REQUEST' });
    await expect(w.append({ sessionId: 'sess_ok', type: 'checkpoint' })).rejects.toMatchObject({ code: 'WRIT_BAD_REQUEST' });
    const pending = w.append({ sessionId: uniqueName('s'), type: 'x' });
    await w.close();
    await expect(pending).resolves.toMatchObject({ type: 'x' });
    await expect(w.append({ sessionId: 'sess_ok', type: 'x' })).rejects.toThrow(/closed/);
  });

  it('splits a burst into blocks of at most maxBlockEvents', async () => {
    const w = writer('bm', { maxBlockEvents: 10, flushMs: 5 });
    const sessionId = uniqueName('s');
    await Promise.all(Array.from({ length: 35 }, (_, i) => w.append({ sessionId, type: 'test.event', payload: { i } })));
    const v = await verify({ js, names: n, sessionId });
    expect(v).toMatchObject({ ok: true, events: 35, blocks: 4 });
  });
});

/** The writer's JetStream client, with `before`/`after` run around each publish (fault injection on a real server). */
function around(inner: JetStreamClient, hook: (attempt: number, publish: () => Promise<PubAck>) => Promise<PubAck>): JetStreamClient {
  let attempt = 0;
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'publish') return (...a: Parameters<JetStreamClient['publish']>) => hook(++attempt, () => target.publish(...a));
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const ackLost = () => Object.assign(new Error('injected: the PubAck was lost'), { name: 'TimeoutError' });

function capture(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return {
    lines,
    logger: pino(
      { level: 'debug' },
      new Writable({
        write: (chunk, _enc, cb) => {
          lines.push(JSON.parse(String(chunk)));
          cb();
        },
      }),
    ),
  };
}

async function expectLinearOnce(sessionId: string, ids: string[]): Promise<void> {
  const events = await readSession({ js, names: n, sessionId });
  expect(events.map((e) => e.id).sort()).toEqual([...ids].sort());
  const v = await verify({ js, names: n, sessionId });
  expect(v).toMatchObject({ ok: true, events: ids.length });
}

describe('AuditWriter never gives up an event while it runs', () => {
  it('stores an append that loses the race to another writer 40 times in a row', async () => {
    const sessionId = uniqueName('s');
    const rival = writer('rival', { flushMs: 0 });
    const rivalIds: string[] = [];
    // Between the head read and each publish, the rival appends: the head is always stale.
    const w = writer('loser', {
      flushMs: 0,
      maxBackoffMs: 5,
      js: around(js, async (attempt, publish) => {
        if (attempt <= 40) rivalIds.push((await rival.append({ sessionId, type: 'rival.event', payload: { attempt } })).id);
        return publish();
      }),
    });
    const mine = await w.append({ sessionId, type: 'test.event' });
    expect(rivalIds).toHaveLength(40);
    await expectLinearOnce(sessionId, [...rivalIds, mine.id]);
    await Promise.all([w.close(), rival.close()]);
  });

  it('takes events that arrive during a retry into the block being retried', async () => {
    const sessionId = uniqueName('s');
    const rival = writer('rival2', { flushMs: 0 });
    let late: Array<Promise<unknown>> = [];
    const w = writer('coalesce', {
      flushMs: 0,
      maxBackoffMs: 5,
      js: around(js, async (attempt, publish) => {
        if (attempt === 1) {
          await rival.append({ sessionId, type: 'rival.event' });
          late = Array.from({ length: 5 }, (_, i) => w.append({ sessionId, type: 'late.event', payload: { i } }));
        }
        return publish();
      }),
    });
    await w.append({ sessionId, type: 'first.event' });
    await Promise.all(late);
    // rival's block, then one block with the first event and the five that came during its retry.
    expect(await verify({ js, names: n, sessionId })).toMatchObject({ ok: true, events: 7, blocks: 2 });
    await Promise.all([w.close(), rival.close()]);
  });

  it('stores a block whose ack was lost exactly once, even after another writer appended and the duplicate window passed', async () => {
    const sessionId = uniqueName('s');
    const info = await jsm.streams.info(n.streams.audit);
    const rival = writer('rival3', { flushMs: 0 });
    let rivalId = '';
    // A short duplicate window: the server no longer recognises the re-sent block by its msg id.
    await jsm.streams.update(n.streams.audit, { ...info.config, duplicate_window: 200_000_000 });
    try {
      const w = writer('acklost', {
        flushMs: 0,
        maxBackoffMs: 5,
        js: around(js, async (attempt, publish) => {
          if (attempt > 1) return publish();
          await publish(); // stored...
          rivalId = (await rival.append({ sessionId, type: 'rival.event' })).id;
          await new Promise((r) => setTimeout(r, 400));
          throw ackLost(); // ...but the writer is told nothing
        }),
      });
      const mine = await w.append({ sessionId, type: 'test.event' });
      await expectLinearOnce(sessionId, [mine.id, rivalId]);
      // The next append continues after the rival's block, not after a re-sent copy.
      const next = await w.append({ sessionId, type: 'test.next' });
      await expectLinearOnce(sessionId, [mine.id, rivalId, next.id]);
      await Promise.all([w.close(), rival.close()]);
    } finally {
      await jsm.streams.update(n.streams.audit, { ...info.config });
    }
  });

  it('keeps retrying while NATS does not answer, and only close() gives up, logging every unstored event', async () => {
    const sessionId = uniqueName('s');
    const { logger, lines } = capture();
    const w = writer('down', { flushMs: 0, maxBackoffMs: 20, logger, js: around(js, () => Promise.reject(ackLost())) });
    let settled = false;
    const p = w.append({ sessionId, intentId: 'intent_lost_0001', type: 'exec.finished', payload: { status: 'succeeded' } });
    void p.then(
      () => (settled = true),
      () => (settled = true),
    );
    // Far beyond the 12 attempts the writer used to give up after.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(settled).toBe(false);
    expect(lines.some((l) => l.msg === 'audit block still not stored; retrying until it is')).toBe(true);
    const t = Date.now();
    await w.close(300);
    expect(Date.now() - t).toBeLessThan(2_000);
    await expect(p).rejects.toThrow(/shutdown deadline/);
    const lost = lines.find((l) => String(l.msg).startsWith('AUDIT EVENTS NOT STORED'));
    expect(lost?.level).toBe(50);
    expect(lost?.lost).toEqual([expect.objectContaining({ intentId: 'intent_lost_0001', type: 'exec.finished', payload: { status: 'succeeded' } })]);
  });

  it('fails at once on what no retry can change (payload over the server limit)', async () => {
    const w = writer('big', { maxBlockBytes: 4 * 1024 * 1024, maxInlinePayloadBytes: 4 * 1024 * 1024 });
    await expect(w.append({ sessionId: uniqueName('s'), type: 'huge', payload: { x: 'y'.repeat(2 * 1024 * 1024) } })).rejects.toThrow();
    await w.close();
  });
});

describe('AuditWriter head hints', () => {
  /** A jsm that counts head reads (the real one underneath; the server is real). */
  const counting = () => {
    let reads = 0;
    const streams = new Proxy(jsm.streams, {
      get(t, k, r) {
        if (k === 'getMessage')
          return (...a: Parameters<typeof jsm.streams.getMessage>) => {
            reads++;
            return t.getMessage(...a);
          };
        const v = Reflect.get(t, k, r) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
    const wrapped = new Proxy(jsm, { get: (t, k, r) => (k === 'streams' ? streams : (Reflect.get(t, k, r) as unknown)) });
    return { jsm: wrapped, reads: () => reads };
  };

  it('chains onto a hinted head without reading it, and a stale hint still ends in one verified chain', async () => {
    const sessionId = uniqueName('s');
    const broker = writer('b-hint');
    const c = counting();
    const worker = new AuditWriter({ js, jsm: c.jsm, names: n, actor: { kind: 'worker', id: 'w-hint' } });
    // The broker and the worker take turns on the session, as they do for each intent.
    for (let i = 0; i < 3; i++) {
      await broker.append({ sessionId, intentId: `intent_${i}`, type: 'intent.dispatched' });
      worker.hint(sessionId, broker.headOf(sessionId)!);
      await worker.append({ sessionId, intentId: `intent_${i}`, type: 'exec.finished' });
    }
    // Every worker block went out on the broker's head: no head read, no lost race.
    expect(c.reads()).toBe(0);
    // A stale hint (an older head) is ignored or refused by the stream, never forks the chain.
    worker.hint(sessionId, { seq: 1, hash: ZERO_HASH, count: 1 });
    await broker.append({ sessionId, type: 'intent.dispatched' });
    worker.hint(sessionId, { seq: 2, hash: ZERO_HASH, count: 2 });
    await worker.append({ sessionId, type: 'exec.finished' });
    const events = await readSession({ js, names: n, sessionId });
    expect(events.map((e) => e.type)).toEqual([...Array(3).fill(['intent.dispatched', 'exec.finished']).flat(), 'intent.dispatched', 'exec.finished']);
    events.forEach((e, i) => expect(e.prev).toBe(i === 0 ? ZERO_HASH : events[i - 1]!.hash));
  });

  it("reads a contended session's head ahead of the block (prefetch), and the block uses that read", async () => {
    const sessionId = uniqueName('s');
    const other = writer('b-other');
    const c = counting();
    const w = new AuditWriter({ js, jsm: c.jsm, names: n, actor: { kind: 'broker', id: 'b-pre' } });
    await w.append({ sessionId, type: 'intent.dispatched' });
    await other.append({ sessionId, type: 'exec.finished' });
    await w.append({ sessionId, type: 'intent.dispatched' }); // loses the race once: the session is now contended
    await other.append({ sessionId, type: 'exec.finished' });
    const before = c.reads();
    w.prefetch(sessionId);
    expect(c.reads()).toBe(before + 1);
    await w.append({ sessionId, type: 'intent.dispatched' });
    expect(c.reads()).toBe(before + 1);
    const events = await readSession({ js, names: n, sessionId });
    expect(events).toHaveLength(5);
    events.forEach((e, i) => expect(e.prev).toBe(i === 0 ? ZERO_HASH : events[i - 1]!.hash));
  });
});

describe('unattributed evidence', () => {
  it('is stored one by one up to its rate, and counted past it into audit.suppressed, nothing unaccounted', async () => {
    const own = names(uniqueName('u'));
    await ensureAuditStream(jsm, own, {});
    const w = new AuditWriter({ js, jsm, names: own, actor: { kind: 'broker', id: 'b-flood' }, unattributedPerSec: 2, unattributedSummaryMs: 300 });
    // 20 may be stored at once (ten seconds' worth), the other 80 of a burst of 100 are counted.
    await Promise.all(Array.from({ length: 100 }, (_, i) => w.appendUnattributed({ type: 'intent.rejected_input', payload: { code: i % 2 ? 'WRIT_BAD_REQUEST' : 'WRIT_TOKEN_INVALID' } })));
    await new Promise((r) => setTimeout(r, 600));
    await w.close();
    const events = await readSession({ js, names: own, sessionId: '_unattributed' });
    const single = events.filter((e) => e.type === 'intent.rejected_input');
    const summaries = events.filter((e) => e.type === 'audit.suppressed');
    expect(single.length).toBeGreaterThanOrEqual(20);
    expect(single.length).toBeLessThan(25);
    const counted = summaries.reduce((a, e) => a + (e.payload as { total: number }).total, 0);
    expect(single.length + counted).toBe(100);
    expect(summaries[0]!.payload).toMatchObject({ counts: { 'intent.rejected_input:WRIT_BAD_REQUEST': expect.any(Number), 'intent.rejected_input:WRIT_TOKEN_INVALID': expect.any(Number) } });
    // The summary is evidence like the rest: the chain verifies.
    expect((await verify({ nc, names: own, sessionId: '_unattributed' })).ok).toBe(true);
  });
});
