/**
 * A broker's intake under a flood from senders it does not know (anyone with a login on the bus
 * can publish intents): an agent whose token the broker verified already goes first, so its
 * intents are taken on their first send while the flood is dropped (lib/consume.ts lanes).
 * Before, one backlog served both, and the agent's sends were dropped with the flood's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenIn } from '../broker/intake.ts';
import { generateSealKeyPair } from '../lib/seal.ts';
import { startStack, type Stack } from './fixture.ts';
import { startFlood } from './helpers/flood.ts';

let s: Stack;

beforeAll(async () => {
  // One intent handled at a time, and 16 waiting: a flood fills that at once.
  s = await startStack({ config: { limits: { concurrency: 1 } } });
});
afterAll(async () => {
  await s?.stop();
});

describe('tokenIn', () => {
  it('finds the token field in the bytes, and nothing where there is none or it runs past the limit', () => {
    const b = (o: unknown) => Buffer.from(JSON.stringify(o));
    expect(tokenIn(b({ v: 1, id: 'x', token: 'aaa.bbb.ccc', sessionId: 's' }), 100)).toBe('aaa.bbb.ccc');
    expect(tokenIn(b({ v: 1, id: 'x' }), 100)).toBeUndefined();
    expect(tokenIn(b({ token: 'x'.repeat(101) }), 100)).toBeUndefined();
    expect(tokenIn(Buffer.from('{"token":"unterminated'), 100)).toBeUndefined();
  });
});

describe('a flood of intents from unknown senders', () => {
  /** Every send of the agent's intents, as the bus carries them (a watcher beside the brokers). */
  function watchSends(): { sends: Map<string, number>; stop(): void } {
    const sends = new Map<string, number>();
    const flooding = Buffer.from('"id":"flood');
    const sub = s.nc.subscribe(s.names.intent('db'), {
      callback: (_e, m) => {
        // Cheap for the flood's messages: this watcher shares the broker's event loop.
        if (Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).includes(flooding)) return;
        const id = (JSON.parse(m.string()) as { id?: string }).id;
        if (id) sends.set(id, (sends.get(id) ?? 0) + 1);
      },
    });
    return { sends, stop: () => sub.unsubscribe() };
  }

  const bogus = (i: number, token = 'not-a-token', extra: Record<string, unknown> = {}) =>
    JSON.stringify({ ...extra, v: 1, type: 'intent', id: `flood${i}`, sessionId: 'flood', target: 'db', token, command: { kind: 'sql', sql: 'SELECT 1' } });

  it("does not crowd out a known agent: each of its intents is taken on its first send, and the flood's are dropped", async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    // Its first intent makes its token known to the broker.
    expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    const w = watchSends();
    const before = { dropped: s.broker.intake!.dropped, rest: s.broker.intake!.restDropped };
    // From a thread of its own, as fast as it can: a sender the broker's event loop cannot pace.
    // About 10,000 a second (a flood of 8,700 a second held a broker's event loop for seconds before).
    const flood = startFlood(
      s.nats.url,
      s.names.intent('db'),
      Array.from({ length: 1000 }, (_, i) => bogus(i)),
      { batch: 100, pauseMs: 10 },
    );
    let flooded: number;
    try {
      await new Promise((r) => setTimeout(r, 1000)); // the flood under way first
      for (let i = 0; i < 10; i++) {
        const o = await c.run({ target: 'db', sql: `SELECT ${i} AS n` }, { timeoutMs: 30_000 });
        expect(o.status).toBe('succeeded');
        expect(o.result!.rows).toEqual([[i]]);
      }
    } finally {
      flooded = await flood.stop();
      w.stop();
    }
    expect(flooded).toBeGreaterThan(1000);
    expect(w.sends.size).toBe(10);
    expect([...w.sends.values()]).toEqual(Array(10).fill(1));
    // Most of the flood never reached a handler: dropped on arrival past the rest lane's rate.
    expect(s.broker.intake!.restDropped - before.rest).toBeGreaterThan(flooded / 2);
    expect(s.broker.intake!.dropped - before.dropped).toBeGreaterThan(0);
  });

  it("does not let a known principal's own flood crowd out another known agent: known principals take turns", async () => {
    // Verified, and denied by policy: each of its intents is read, decided and audited in full.
    const token = await s.token('mallory', ['interns']);
    const mallory = s.client(token);
    expect((await mallory.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('denied');
    const alice = s.client(await s.token('alice', ['analysts']));
    expect((await alice.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    const w = watchSends();
    const before = { dropped: s.broker.intake!.dropped, rest: s.broker.intake!.restDropped };
    const replyKey = generateSealKeyPair().publicKey;
    // Well-formed intents carrying the token they name: the first lane is theirs by right.
    const flood = startFlood(
      s.nats.url,
      s.names.intent('db'),
      Array.from({ length: 1000 }, (_, i) =>
        JSON.stringify({ v: 1, type: 'intent', id: `flood-own-${i}`, sessionId: 'flood-own', target: 'db', token, replyKey, submittedAt: Date.now(), command: { kind: 'sql', sql: 'SELECT 1' } }),
      ),
      { batch: 50, pauseMs: 10 },
    );
    try {
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 10; i++) expect((await alice.run({ target: 'db', sql: `SELECT ${i} AS n` }, { timeoutMs: 30_000 })).status).toBe('succeeded');
    } finally {
      await flood.stop();
      w.stop();
    }
    expect(w.sends.size).toBe(10);
    expect([...w.sends.values()]).toEqual(Array(10).fill(1));
    // The flood was in the first lane throughout (none of it dropped as the rest's), and more of it
    // arrived than one place could take: its own newest were dropped to make room.
    expect(s.broker.intake!.restDropped - before.rest).toBe(0);
    expect(s.broker.intake!.dropped - before.dropped).toBeGreaterThan(0);
  });

  it('does not keep a flood in the first lane by naming a known token the intents do not carry', async () => {
    const token = await s.token('mallory', ['interns']);
    const c = s.client(token);
    // Denied by policy, but verified: the token is known to the broker.
    expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('denied');
    const alice = s.client(await s.token('alice', ['analysts']));
    expect((await alice.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    const w = watchSends();
    // The known token first (inside another field), a bogus one as the intent's own.
    const flood = startFlood(
      s.nats.url,
      s.names.intent('db'),
      Array.from({ length: 1000 }, (_, i) => bogus(i, 'not-a-token', { x: { token } })),
      { batch: 100, pauseMs: 10 },
    );
    try {
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 10; i++) expect((await alice.run({ target: 'db', sql: `SELECT ${i} AS n` }, { timeoutMs: 30_000 })).status).toBe('succeeded');
    } finally {
      await flood.stop();
      w.stop();
    }
    expect([...w.sends.values()]).toEqual(Array(10).fill(1));
  });
});
