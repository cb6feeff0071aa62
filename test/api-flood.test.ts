/**
 * The agents' API served every request on arrival: one principal's flood of `writ.api.status`
 * requests with its own valid token, answered on its own inbox (each a bucket read), grew a
 * broker's heap to 776 MB and another agent's intents timed out (an attack helper's finding).
 * The API is now served as intake is (lib/consume.ts serveConcurrently): bounded places and
 * backlog, known principals taking turns, and a rate per principal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxIdOfToken } from '../lib/seal.ts';
import { startStack, type Stack } from './fixture.ts';
import { startFlood } from './helpers/flood.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});

describe('a flood of API requests from one principal with a valid token', () => {
  it("does not hold up another agent's intents or API requests, and is dropped past the principal's rate", async () => {
    // Denied by policy for everything, but verified: its token is known to the broker.
    const token = await s.token('api-flooder', ['interns']);
    const flooder = s.client(token);
    expect((await flooder.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('denied');
    const alice = s.client(await s.token('alice', ['analysts']));
    const first = await alice.run({ target: 'db', sql: 'SELECT 1' });
    expect(first.status).toBe('succeeded');
    // Every send of alice's intents, as the bus carries them.
    const sends = new Map<string, number>();
    const sub = s.nc.subscribe(s.names.intent('db'), {
      callback: (_e, m) => {
        const id = (JSON.parse(m.string()) as { id?: string }).id;
        if (id) sends.set(id, (sends.get(id) ?? 0) + 1);
      },
    });
    const before = s.broker.apiDropped!;
    // Answered on the flooder's own inbox: each one is verified, read and answered unless dropped.
    const reply = `_INBOX.${inboxIdOfToken(token)}.flood`;
    const bodies = Array.from({ length: 100 }, (_, i) => JSON.stringify({ v: 1, type: 'status', token, intentId: `flood-status-${i}` }));
    const flood = startFlood(s.nats.url, s.names.api('status'), bodies, { batch: 100, pauseMs: 10, reply });
    let flooded: number;
    try {
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 10; i++) {
        const o = await alice.run({ target: 'db', sql: `SELECT ${i} AS n` }, { timeoutMs: 30_000 });
        expect(o.status).toBe('succeeded');
      }
      // Alice's own API requests are answered too.
      expect(await alice.status(first.intentId)).toBe('succeeded');
    } finally {
      flooded = await flood.stop();
      sub.unsubscribe();
    }
    expect(flooded).toBeGreaterThan(1000);
    expect(sends.size).toBe(10);
    expect([...sends.values()]).toEqual(Array(10).fill(1));
    // Most of the flood never reached a handler: past the principal's rate.
    const after = s.broker.apiDropped!;
    expect(after.senderRate - before.senderRate).toBeGreaterThan(flooded / 2);
  }, 120_000);
});

describe("one principal's explains of large texts", () => {
  let t: Stack;
  beforeAll(async () => {
    // 5 ms of classification a second per principal: a burst of 50 ms, less than one large text takes.
    t = await startStack({ config: { limits: { classifyMsPerSec: 5 } } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('are answered WRIT_BUSY once its classification budget is spent, while another agent is served', async () => {
    const flooder = t.client(await t.token('explainer', ['analysts']));
    // About 240 KB of tiny statements: classifying one took 0.5-1 s of the broker's event loop.
    const big = (i: number) => `${'SELECT 1;'.repeat(26_000)} -- ${i}`;
    await flooder.explain({ target: 'db', sql: big(0) }).catch((e: unknown) => expect(e).toMatchObject({ code: 'WRIT_REPLY_TOO_LARGE' }));
    await expect(flooder.explain({ target: 'db', sql: big(1) })).rejects.toMatchObject({ code: 'WRIT_BUSY' });
    await expect(flooder.explain({ target: 'db', sql: 'SELECT 2' })).rejects.toMatchObject({ code: 'WRIT_BUSY' });
    const alice = t.client(await t.token('alice', ['analysts']));
    expect((await alice.explain({ target: 'db', sql: 'SELECT 3' })).decision.effect).toBe('allow');
    expect((await alice.run({ target: 'db', sql: 'SELECT 4 AS n' })).status).toBe('succeeded');
  }, 60_000);
});
