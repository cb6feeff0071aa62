/**
 * No order runs without its evidence: when the broker publishes an execution order, the
 * intent's `intent.received` and `intent.dispatched` events are already stored in its
 * session's chain. A proxy over the broker's connection reads the chain at the moment each
 * order is sent (handed to a worker directly, or queued in the exec stream), before letting
 * the order through. The same holds for a re-sent order (the first send fails, and the order
 * is queued) and for an approved one.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { readSession } from '../../audit/index.ts';
import { createBroker, type Broker } from '../../broker/index.ts';
import { createLogger } from '../../lib/index.ts';
import { startStack, type Stack } from '../fixture.ts';
import { interceptRequests } from '../helpers/index.ts';

let s: Stack;
let broker: Broker;
/** Per order published: the event types already in its session when it went out. */
const seenAtPublish: Array<{ intentId: string; types: string[] }> = [];
let failNext = false;

/** Orders go out on two kinds of subject: handed to a worker directly, or queued in the exec stream. */
function watchingOrders(nc: NatsConnection, orderPrefixes: string[]): NatsConnection {
  return interceptRequests(nc, async (subject, data) => {
    if (!orderPrefixes.some((p) => subject.startsWith(p))) return;
    const order = JSON.parse(new TextDecoder().decode(data as Uint8Array)) as { intentId: string; sessionId: string };
    const events = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
    seenAtPublish.push({ intentId: order.intentId, types: events.filter((e) => e.intentId === order.intentId).map((e) => e.type) });
    if (failNext) {
      failNext = false;
      throw new Error('injected: the exec stream did not answer');
    }
  });
}

beforeAll(async () => {
  s = await startStack();
  await s.broker.stop();
  broker = await createBroker({ nc: watchingOrders(s.nc, [`${s.config.prefix}.exec.`, `${s.config.prefix}.dispatch.`]), config: s.config, log: createLogger({ name: 'broker', level: 'silent' }) });
  await broker.start();
}, 60_000);
afterAll(async () => {
  await broker?.stop().catch(() => undefined);
  await s?.stop();
});

it('stores the dispatch evidence before the order goes out', async () => {
  const o = await s.client(await s.token('alice', ['analysts'])).run({ target: 'db', sql: 'SELECT 1 AS one' });
  expect(o.status).toBe('succeeded');
  const seen = seenAtPublish.filter((x) => x.intentId === o.intentId);
  expect(seen).toHaveLength(1);
  expect(seen[0]!.types).toEqual(expect.arrayContaining(['intent.received', 'intent.dispatched']));
});

it('stores it before a re-sent order goes out too', async () => {
  failNext = true;
  const o = await s.client(await s.token('alice', ['analysts'])).run({ target: 'db', sql: 'SELECT 2 AS two' }, { timeoutMs: 20_000 });
  expect(o.status).toBe('succeeded');
  const seen = seenAtPublish.filter((x) => x.intentId === o.intentId);
  expect(seen.length).toBeGreaterThanOrEqual(2);
  for (const x of seen) expect(x.types).toEqual(expect.arrayContaining(['intent.received', 'intent.dispatched']));
});
