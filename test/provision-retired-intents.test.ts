/**
 * Intents were once stored in a work-queue stream (`<PREFIX>_INTENTS`) on their way to the
 * broker; they are core requests now. Provisioning removes that stream when it is empty (left in
 * place it would store every agent's token and answer the agent's request before the broker),
 * and refuses to start while it still holds intents a broker of the earlier release must finish.
 */
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { provision } from '../broker/index.ts';
import { names, parseConfig } from '../schemas/index.ts';
import { startNats, type NatsServerHandle } from './helpers/index.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

async function legacyStream(prefix: string, held: number) {
  const n = names(prefix);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: n.retiredIntentsStream, subjects: [n.intentAll()], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
  for (let i = 0; i < held; i++) await jetstream(nc).publish(n.intent('db'), '{}');
  const config = parseConfig({ prefix, targets: [{ name: 'db', kind: 'postgres' }], grants: { keyFile: '/dev/null' } });
  return { n, jsm, config };
}

it('removes an empty intake stream of an earlier release, after which an intent is no longer stored', async () => {
  const { n, jsm, config } = await legacyStream('ret-empty', 0);
  await provision(nc, jsm, n, config);
  await expect(jsm.streams.info(n.retiredIntentsStream)).rejects.toThrow(/stream not found/);
  // Nothing captures the subject any more: a request finds no responder rather than a stream's ack.
  await expect(nc.request(n.intent('db'), '{}', { timeout: 1_000 })).rejects.toThrow(/no responders|503/i);
});

it('refuses to start while that stream still holds intents, and leaves them', async () => {
  const { n, jsm, config } = await legacyStream('ret-held', 2);
  await expect(provision(nc, jsm, n, config)).rejects.toMatchObject({ code: 'WRIT_CONFIG_INVALID', message: expect.stringContaining('2 intents still wait') });
  expect((await jsm.streams.info(n.retiredIntentsStream)).state.messages).toBe(2);
});
