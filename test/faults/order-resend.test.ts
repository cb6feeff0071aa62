/**
 * A re-sent order carries exactly what was decided. The first send of the execution order
 * (handed to a worker directly, then queued) is failed at the transport (a proxy over the broker's NATS connection refuses it, as a
 * server that lost its stream leader would); the intent is redelivered, the broker re-sends
 * the order from the intent's record, and the result still comes back masked by a column
 * rule that no value detector would catch.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { createBroker, type Broker } from '../../broker/index.ts';
import { startStack, type Stack } from '../fixture.ts';
import { interceptRequests } from '../helpers/index.ts';

let s: Stack;
let broker: Broker;
let refused = 0;

/**
 * The broker's connection, except that the first request to each order subject fails: the
 * order handed to a worker directly, then the same order queued in the exec stream. Both
 * failing is what makes the broker answer retryable, so the intent is sent again.
 */
function failingFirstOrder(nc: NatsConnection, orderPrefixes: string[]): NatsConnection {
  const failed = new Set<string>();
  return interceptRequests(nc, (subject) => {
    const prefix = orderPrefixes.find((p) => subject.startsWith(p));
    if (prefix && !failed.has(prefix)) {
      failed.add(prefix);
      refused++;
      throw new Error('injected: the exec stream did not answer');
    }
  });
}

beforeAll(async () => {
  s = await startStack({
    config: {
      policy: {
        rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read', limits: { rows: 2 } }],
        // `plan` values ('pro', 'free') match no detector: only the column rule masks them.
        masking: { columns: [{ column: 'public.customers.plan' }], detectors: [] },
      },
    },
  });
  await s.broker.stop();
  broker = await createBroker({
    nc: failingFirstOrder(s.nc, [`${s.config.prefix}.dispatch.`, `${s.config.prefix}.exec.`]),
    config: s.config,
    log: (await import('../../lib/index.ts')).createLogger({ name: 'broker', level: 'silent' }),
  });
  await broker.start();
}, 60_000);
afterAll(async () => {
  await broker?.stop().catch(() => undefined);
  await s?.stop();
});

it('masks and limits a result whose order was re-sent after a failed publish', async () => {
  const c = s.client(await s.token('alice', ['analysts']));
  const o = await c.run({ target: 'db', sql: 'SELECT id, plan FROM customers ORDER BY id' }, { timeoutMs: 20_000 });
  expect(refused).toBe(2);
  expect(o.error, JSON.stringify(o.error)).toBeUndefined();
  expect(o.status).toBe('succeeded');
  const text = JSON.stringify(o.result);
  for (const plan of ['"pro"', '"free"', '"team"']) expect(text).not.toContain(plan);
  // The decided row limit travelled with the re-sent grant too.
  expect(o.result!.rows).toHaveLength(2);
  expect(o.result!.truncated).toBe(true);
});
