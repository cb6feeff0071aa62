/**
 * Per-agent isolation on a shared bus, against a real nats-server: agent B, with its own valid
 * token, listens on every inbox (`_INBOX.>`) and reads the durable outcome (in the intent's record) the way a
 * service would, while agent A runs a masked query. B sees only ciphertext of A's outcome; A
 * gets its rows.
 */
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateSealKeyPair, openOutcome } from '../client/index.ts';
import { OutcomeSchema } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

it('another agent listening on every inbox and reading the stored outcome sees only ciphertext of an outcome', async () => {
  const a = s.client(await s.token('alice', ['analysts']));
  const bToken = await s.token('bob', ['analysts']);
  const b = s.client(bToken);
  const seen: string[] = [];
  const spy = s.nc.subscribe('_INBOX.>', { callback: (_e, m) => void seen.push(m.string()) });

  const o = await a.run({ target: 'db', sql: "SELECT name, plan, email FROM customers WHERE name LIKE '%Example' ORDER BY id" });
  expect(o.status).toBe('succeeded');
  expect(o.result!.rows.map((r) => r[0])).toEqual(['Alice Example', 'Bob Example', 'Carol Example']);
  const wait = await a.wait(o.intentId, { timeoutMs: 5_000 }); // the API path is sealed too
  expect(wait.result!.rows.length).toBe(3);
  await s.nc.flush();
  spy.unsubscribe();

  // What B could read of the durable copy, the outcome in A's intent record (were it let into the bucket).
  const rec = await (await new Kvm(s.nc).open(s.names.buckets.intents)).get(o.intentId);
  expect(rec?.operation).toBe('PUT');
  const stored = (rec!.json() as { outcome?: unknown }).outcome;
  expect(stored).toBeTruthy();
  seen.push(JSON.stringify(stored));

  const everything = seen.join('\n');
  // B did see A's traffic (ids and status stay in clear for routing)...
  expect(everything).toContain(o.intentId);
  // ...but none of A's result values, masked ones included (short ones like 'pro' are skipped: the
  // spy also sees unrelated JetStream API traffic, where they could occur by chance).
  const values = o
    .result!.rows.flat()
    .map(String)
    .filter((v) => v.length >= 6);
  expect(values).toContain('Alice Example');
  for (const v of values) expect(everything, v).not.toContain(v);
  let outcomes = 0;
  for (const body of seen) {
    const j = JSON.parse(body) as { type?: string; outcome?: unknown };
    const parsed = OutcomeSchema.safeParse(j.type === 'outcome' && j.outcome ? j.outcome : j);
    if (parsed.success && parsed.data.intentId === o.intentId) {
      outcomes++;
      expect(parsed.data.result).toBeUndefined();
      expect(parsed.data.sealed).toBeDefined();
      // B's own key opens none of them.
      expect(() => openOutcome(parsed.data, generateSealKeyPair())).toThrow();
    }
  }
  expect(outcomes).toBeGreaterThanOrEqual(2); // the direct outcome, the API's, the stored copy
  const sealedStored = OutcomeSchema.parse(stored);
  expect(sealedStored.sealed).toBeDefined();

  // B asking the broker for A's intent learns nothing either.
  await expect(b.wait(o.intentId, { timeoutMs: 2_000 })).rejects.toMatchObject({ code: 'WRIT_NOT_FOUND' });
}, 60_000);

it('the SDK refuses an outcome that is not sealed to its key, and still gets the real one', async () => {
  const a = s.client(await s.token('alice', ['analysts']));
  // A forger that reads intents off the bus answers each one's replyTo first, with a made-up outcome in clear.
  const forger = s.nc.subscribe(s.names.intent('db'), {
    callback: (_e, m) => {
      const i = m.json<{ id: string; sessionId: string; replyTo?: string }>();
      if (!i.replyTo) return;
      s.nc.publish(
        i.replyTo,
        JSON.stringify({
          v: 1,
          type: 'outcome',
          intentId: i.id,
          sessionId: i.sessionId,
          status: 'succeeded',
          at: Date.now(),
          result: { columns: [{ name: 'x', masked: false }], rows: [['forged']], rowCount: 1, truncated: false },
        }),
      );
    },
  });
  try {
    const o = await a.run({ target: 'db', sql: 'SELECT 1 AS one' });
    expect(o.status).toBe('succeeded');
    expect(o.result!.rows).toEqual([[1]]);
  } finally {
    forger.unsubscribe();
  }
}, 30_000);
