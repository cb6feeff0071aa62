/**
 * A broker's intake under a flood from senders it does not know (anyone with a login on the bus
 * can publish intents): an agent whose token the broker verified already goes first, so its
 * intents are taken on their first send while the flood is dropped (lib/consume.ts lanes).
 * Before, one backlog served both, and the agent's sends were dropped with the flood's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenIn } from '../broker/intake.ts';
import { startStack, type Stack } from './fixture.ts';

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
  it("does not crowd out a known agent: each of its intents is taken on its first send, and the flood's are dropped", async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    // Its first intent makes its token known to the broker.
    expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');

    // Every send of the agent's intents, as the bus carries them (a watcher beside the brokers).
    const sends = new Map<string, number>();
    const watch = s.nc.subscribe(s.names.intent('db'), {
      callback: (_e, m) => {
        const id = (JSON.parse(m.string()) as { id?: string }).id;
        if (id && !id.startsWith('flood')) sends.set(id, (sends.get(id) ?? 0) + 1);
      },
    });
    const droppedBefore = s.broker.intake!.dropped;
    let flooding = true;
    let flooded = 0;
    const flood = (async () => {
      const body = (i: number) => JSON.stringify({ v: 1, type: 'intent', id: `flood${i}`, sessionId: 'flood', target: 'db', token: 'not-a-token', command: { kind: 'sql', sql: 'SELECT 1' } });
      while (flooding) {
        for (let i = 0; i < 300; i++) s.nc.publish(s.names.intent('db'), body(flooded++), { reply: '_INBOX.flood.nowhere' });
        await s.nc.flush();
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    try {
      for (let i = 0; i < 10; i++) {
        const o = await c.run({ target: 'db', sql: `SELECT ${i} AS n` }, { timeoutMs: 30_000 });
        expect(o.status).toBe('succeeded');
        expect(o.result!.rows).toEqual([[i]]);
      }
    } finally {
      flooding = false;
      await flood;
      watch.unsubscribe();
    }
    expect(flooded).toBeGreaterThan(1000);
    expect(s.broker.intake!.dropped - droppedBefore).toBeGreaterThan(0);
    expect(sends.size).toBe(10);
    expect([...sends.values()]).toEqual(Array(10).fill(1));
  });
});
