/**
 * Why a worker claims a grant with a `create` in `writ_claims` and not with its ack of the
 * order (docs/ARCHITECTURE.md, "Why the claim is a bucket write"). A claim by ack would save a
 * persisted write per intent, if an ack confirmed by the server meant "only this delivery".
 * It does not: on the nats-server these machines run, an order redelivered after its ack wait
 * (a worker paused by GC or a full event loop, a pull answered through a member that then
 * failed) is acked by both holders, and both acks are confirmed. Two workers would each
 * believe they held the order, and both would run it.
 *
 * Should a server version refuse the stale ack, this test fails: then a claim by ack (a work
 * queue with the dedupe window covering the grant's life) is worth measuring again.
 */
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNats, type NatsServerHandle } from './helpers/index.ts';

describe('an order acked by two holders after a redelivery', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('is confirmed to both: an ack is no claim', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.>'], retention: RetentionPolicy.Workqueue });
    await jsm.consumers.add('ORDERS', { durable_name: 'workers', ack_policy: AckPolicy.Explicit, ack_wait: 1_000_000_000 });
    const js = jetstream(nc);
    await js.publish('orders.db', 'run once');
    const consumer = await js.consumers.get('ORDERS', 'workers');

    const first = await consumer.next({ expires: 2_000 });
    expect(first?.info.deliveryCount).toBe(1);
    // The first holder stalls past the ack wait: the server hands the order to another.
    await new Promise((r) => setTimeout(r, 1_500));
    const second = await consumer.next({ expires: 2_000 });
    expect(second?.seq).toBe(first?.seq);
    expect(second?.info.deliveryCount).toBe(2);

    // Both acks are confirmed by the server: neither holder can tell it lost.
    expect(await second!.ackAck()).toBe(true);
    expect(await first!.ackAck()).toBe(true);
    expect((await jsm.streams.info('ORDERS')).state.messages).toBe(0);
  });
});
