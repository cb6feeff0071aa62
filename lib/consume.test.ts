// ensureConsumer against a real nats-server: idempotent, updates what may change, refuses what may not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { ensureConsumer } from './consume.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'S', subjects: ['s.>'] });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const base = { durable_name: 'd', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: 's.a', ack_wait: 10_000_000_000, max_ack_pending: 64 };

describe('ensureConsumer', () => {
  it('creates, finds the same again, and updates an updatable setting in place', async () => {
    await ensureConsumer(jsm, 'S', base);
    await ensureConsumer(jsm, 'S', base);
    await ensureConsumer(jsm, 'S', { ...base, ack_wait: 20_000_000_000, max_ack_pending: 128 });
    const info = await jsm.consumers.info('S', 'd');
    expect(info.config.ack_wait).toBe(20_000_000_000);
    expect(info.config.max_ack_pending).toBe(128);
  });

  it('refuses a durable of the same name with another filter, with a configuration error', async () => {
    await expect(ensureConsumer(jsm, 'S', { ...base, filter_subject: 's.b' })).rejects.toMatchObject({ code: 'WRIT_CONFIG_INVALID' });
    expect((await jsm.consumers.info('S', 'd')).config.filter_subject).toBe('s.a');
  });

  it('passes on a refusal that is not about an existing consumer', async () => {
    await expect(ensureConsumer(jsm, 'NO_SUCH_STREAM', base)).rejects.not.toMatchObject({ code: 'WRIT_CONFIG_INVALID' });
  });
});
