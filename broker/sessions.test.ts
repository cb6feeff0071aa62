/**
 * The session-owner cache is bounded by limits.sessionOwnersMax, and a session that fell out
 * of it is still checked (one KV read), never waved through.
 */
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ConfigSchema } from '../schemas/index.ts';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { SessionOwners } from './sessions.ts';

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

const alice = { iss: 'https://idp.example', sub: 'alice' };
const mallory = { iss: 'https://idp.example', sub: 'mallory' };

it('holds at most sessionOwnersMax owners, and still refuses another principal a session that fell out', async () => {
  const kv = await new Kvm(nc).create('writ_sessions_test', { history: 1 });
  const owners = new SessionOwners(kv, 3);
  for (let i = 0; i < 10; i++) await owners.check(`session_alice_${i}`, alice);
  expect(owners.cachedSessions).toBe(3);
  // session 0 is no longer cached: its owner comes from the bucket.
  await expect(owners.check('session_alice_0', mallory)).rejects.toMatchObject({ code: 'WRIT_SESSION_FORBIDDEN' });
  await owners.check('session_alice_0', alice);
  expect(owners.cachedSessions).toBe(3);
});

it('defaults to 50,000 sessions (13-20 MB) in the config limits', () => {
  expect(ConfigSchema.parse({}).limits.sessionOwnersMax).toBe(50_000);
  expect(ConfigSchema.parse({ limits: { sessionOwnersMax: 1000 } }).limits.sessionOwnersMax).toBe(1000);
});
