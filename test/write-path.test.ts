/**
 * The persisted writes of one allowed intent, counted on a real nats-server: what issue 15's
 * path redesign removed must stay removed. The durable outcome travels in the record's end
 * write (no separate result message), the intent reaches the broker as a core request (no
 * intake stream), and a free worker takes the order directly (no exec stream write).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { loadKeyRegistry, readSession, verify } from '../audit/index.ts';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateSealKeyPair, openOutcome } from '../client/index.ts';
import { glanceRecord } from '../lib/index.ts';
import { IntentRecordSchema } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});

/** Every message ever stored, summed over the streams (KV buckets included): each write bumps one last sequence. */
async function storedWrites(stream?: string): Promise<number> {
  const jsm = await jetstreamManager(s.nc);
  let n = 0;
  for await (const si of jsm.streams.list()) if (stream === undefined || si.config.name === stream) n += si.state.last_seq;
  return n;
}

it('an allowed intent costs five persisted writes, four of them before its answer, and its record carries the outcome, sealed', async () => {
  const c = s.client(await s.token('alice', ['analysts']));
  // The session's first intent also records who owns it: warm up on it.
  expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
  const before = await storedWrites();
  const execBefore = await storedWrites(s.names.streams.exec);
  const o = await c.run({ target: 'db', sql: "SELECT name, email FROM customers WHERE name = 'Alice Example'" });
  expect(o.status).toBe('succeeded');
  expect(o.result!.rows).toEqual([['Alice Example', expect.not.stringContaining('alice@example.com')]]);
  // The record's end is written after the agent's answer: wait for it, then let anything else
  // the intent would write land before counting.
  const bucket = await new Kvm(s.nc).open(s.names.buckets.intents);
  for (let i = 0; i < 50 && IntentRecordSchema.parse((await bucket.get(o.intentId))!.json()).state !== 'succeeded'; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500));
  // record create, broker's audit block, claim, worker's audit block, record end (after the
  // answer). The intent is a core request, and the order was handed to the free worker
  // directly: nothing stores either on the way.
  expect((await storedWrites()) - before).toBe(5);
  expect((await storedWrites(s.names.streams.exec)) - execBefore).toBe(0);

  const entry = await (await new Kvm(s.nc).open(s.names.buckets.intents)).get(o.intentId);
  const rec = IntentRecordSchema.parse(entry!.json());
  expect(rec.state).toBe('succeeded');
  expect(rec.outcome?.sealed).toBeDefined();
  expect(rec.outcome?.result).toBeUndefined();
  // Not readable with another key; the API opens it with the broker's and re-seals it to the asker.
  expect(() => openOutcome(rec.outcome!, generateSealKeyPair())).toThrow();
  const again = await c.wait(o.intentId, { timeoutMs: 5_000 });
  expect(again.result!.rows).toEqual(o.result!.rows);
  // A sweeper reads the end from the record's first bytes, without parsing the outcome.
  expect(glanceRecord(entry!.value)).toEqual({ state: 'succeeded', sessionId: o.sessionId, grantExp: rec.grantExp, runDeadline: rec.runDeadline });
}, 30_000);

it("in one process (as writ up runs them) the broker chains its next block onto the worker's head without reading it", async () => {
  const c = s.client(await s.token('alice', ['analysts']));
  expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
  const reads: string[] = [];
  const auditStream = s.names.streams.audit;
  const spy = s.nc.subscribe('$JS.API.>', {
    callback: (_e, m) => {
      if (m.subject.includes(auditStream) && /MSG\.GET|DIRECT\.GET/.test(m.subject)) reads.push(m.subject);
    },
  });
  await s.nc.flush();
  for (const sql of ['SELECT 2', 'SELECT 3']) expect((await c.run({ target: 'db', sql })).status).toBe('succeeded');
  await s.nc.flush();
  spy.unsubscribe();
  expect(reads).toEqual([]);
  // And the chain it built verifies whole.
  const r = await verify({ nc: s.nc, names: s.names, sessionId: c.sessionId, signers: loadKeyRegistry(s.config.audit.keyRegistry!) });
  expect(r.ok).toBe(true);
  expect(r.events).toBeGreaterThanOrEqual(15);
}, 30_000);

it("in one process the worker is handed its broker's grants unsigned: no signature is made or verified", async () => {
  const c = s.client(await s.token('alice', ['analysts']));
  const vouched = s.signedGrants.vouched;
  const taken = s.handover!.stats.taken;
  for (const sql of ['SELECT 4', 'SELECT 5']) expect((await c.run({ target: 'db', sql })).status).toBe('succeeded');
  expect(s.handover!.stats.taken - taken).toBe(2);
  // Nothing was signed (a signature made here is recorded in signedGrants until its worker takes it).
  expect([s.signedGrants.vouched - vouched, s.signedGrants.size]).toEqual([0, 0]);
}, 30_000);

it('an error larger than NATS carries is cut: the run still ends failed in its record, with the event inline', async () => {
  const c = s.client(await s.token('alice', ['analysts']));
  // The server quotes the whole 1.5 MB string in its error.
  const o = await c.run({ target: 'db', sql: "SELECT repeat('x', 1500000)::int" });
  expect(o.status).toBe('failed');
  expect(o.error!.message.length).toBeLessThan(2_200);
  expect(o.error!.message).toContain('more characters cut');
  // The end write landed at once (not the sweeper's unknown, a run deadline later).
  expect(await c.status(o.intentId)).toBe('failed');
  const rec = IntentRecordSchema.parse((await (await new Kvm(s.nc).open(s.names.buckets.intents)).get(o.intentId))!.json());
  expect(rec.state).toBe('failed');
  expect(rec.error!.message.length).toBeLessThan(2_200);
  // exec.finished keeps its status and error inline (not only a digest of an oversized payload).
  const finished = (await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId })).find((e) => e.intentId === o.intentId && e.type === 'exec.finished');
  expect(finished?.payload).toMatchObject({ status: 'failed', error: { code: o.error!.code } });
}, 30_000);

it('a secret quoted by the decision (a parse error near it) is masked wherever the reasons go', async () => {
  const secret = `ghp_${'a1B2c3D4e5'.repeat(3)}abcdef`;
  const c = s.client(await s.token('alice', ['analysts']));
  const o = await c.run({ target: 'db', sql: `SELECT 1 AS x ${secret}` });
  expect(o.status).toBe('denied');
  expect(JSON.stringify(o)).not.toContain(secret);
  const rec = (await (await new Kvm(s.nc).open(s.names.buckets.intents)).get(o.intentId))!;
  expect(Buffer.from(rec.value).toString('utf8')).not.toContain(secret);
  // The broker answers before its block is stored (it stores it before acking the intent): poll.
  let events: Awaited<ReturnType<typeof readSession>> = [];
  for (let i = 0; i < 50 && !events.some((e) => e.type === 'intent.denied'); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    events = (await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId })).filter((e) => e.intentId === o.intentId);
  }
  expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['intent.decided', 'intent.denied']));
  expect(JSON.stringify(events)).not.toContain(secret);
  // The reasons still say why, with the value masked.
  const decided = events.find((e) => e.type === 'intent.decided')!;
  expect(JSON.stringify(decided.payload)).toContain('MASKED');
}, 30_000);
