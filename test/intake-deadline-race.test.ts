/**
 * A send past its deadline is denied through the record, never refused beside it. The agent's
 * first send reaches broker A, which has checked the deadline and whose record write stalls
 * (a proxy over its connection holds it 2.5 s); A stops taking intents meanwhile, so the SDK's
 * resend, after its 2 s attempt, reaches broker B past the deadline. Had B answered "refused,
 * nothing stored" after finding no record, A's write would have landed a moment later, A would
 * have dispatched, and the command would have run under an agent told `denied`.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBroker, type Broker } from '../broker/index.ts';
import { newId } from '../client/index.ts';
import { createLogger } from '../lib/index.ts';
import { startStack, type Stack } from './fixture.ts';
import { interceptRequests } from './helpers/index.ts';

let s: Stack;
let a: Broker;
let b: Broker | undefined;

/** `nc`, except that its record writes wait 2.5 s first. */
const stallingRecords = (nc: NatsConnection, prefix: string) =>
  interceptRequests(nc, async (subject) => {
    if (subject.startsWith(prefix)) await new Promise((r) => setTimeout(r, 2_500));
  });

beforeAll(async () => {
  s = await startStack();
  await s.broker.stop();
  a = await createBroker({ nc: stallingRecords(s.nc, `$KV.${s.names.buckets.intents}.`), config: s.config, log: createLogger({ name: 'a', level: 'silent' }) });
  await a.start();
}, 60_000);
afterAll(async () => {
  await b?.stop().catch(() => undefined);
  await s?.stop();
});

it('denies a resend past its deadline through the record: the stalled first send then runs nothing', async () => {
  const c = s.client(await s.token('dana', ['dba']));
  // The session's first intent records its owner (through A's stalled writes too): done first.
  expect((await c.run({ target: 'db', sql: 'SELECT 1' }, { timeoutMs: 20_000 })).status).toBe('succeeded');
  const intentId = newId();
  const sent = c.submit({ target: 'db', sql: "INSERT INTO events (note) VALUES ('deadline-race')", intentId, deadline: Date.now() + 1_500 }, { timeoutMs: 10_000 });
  // A holds the first send (its record write stalls); from now on only B takes intents.
  await new Promise((r) => setTimeout(r, 300));
  b = await createBroker({ nc: s.nc, config: s.config, log: createLogger({ name: 'b', level: 'silent' }) });
  await b.start();
  const aStopped = a.stop();
  const receipt = await sent;
  expect(receipt.intentId).toBe(intentId);
  const o = await c.wait(intentId, { timeoutMs: 15_000 });
  expect([o.status, o.error?.code]).toEqual(['denied', 'WRIT_DEADLINE_PASSED']);
  await aStopped;
  // A's write came after B's denial: it found the record, and nothing was dispatched.
  await new Promise((r) => setTimeout(r, 1_000));
  expect((await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'deadline-race'")).rows[0].n).toBe(0);
  expect((await c.wait(intentId, { timeoutMs: 5_000 })).status).toBe('denied');
}, 60_000);
