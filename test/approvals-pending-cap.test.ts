/**
 * One principal could leave any number of intents waiting for approval: each is a record kept
 * until its timeout and a request shown to every approver. Now at most
 * `approvals.maxPendingPerPrincipal` wait at once (counted in the same turn as each is opened,
 * so a burst cannot pass it on one broker); past it an intent is denied WRIT_TOO_MANY_PENDING,
 * with its evidence, and another principal is not affected.
 */
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { IntentRecordSchema } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: {
      approvals: { maxPendingPerPrincipal: 3 },
      policy: {
        rules: [{ id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } }],
      },
    },
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

it("leaves at most maxPendingPerPrincipal of one principal's intents waiting; the rest are denied with their evidence", async () => {
  const flooder = s.client(await s.token('pending-flooder', ['agents']));
  // Sent together: all decided before any record is back through the sweeper's watch.
  const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => flooder.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('cap-${i}')` })));
  const pending = burst.filter((o) => o.status === 'pending');
  const denied = burst.filter((o) => o.status === 'denied');
  expect(pending).toHaveLength(3);
  expect(denied).toHaveLength(3);
  for (const o of denied) expect(o.error?.code).toBe('WRIT_TOO_MANY_PENDING');
  // Denied for good: a record that no vote can approve, and the evidence in the session's chain.
  const kv = await new Kvm(s.nc).open(s.names.buckets.intents);
  const rec = IntentRecordSchema.parse((await kv.get(denied[0]!.intentId))!.json());
  expect(rec.state).toBe('denied');
  expect(rec.pending).toBeUndefined();
  const carol = s.client(await s.approverToken('carol', ['approvers']));
  await expect(carol.decide(denied[0]!.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
  let types: string[] = [];
  for (let i = 0; i < 50 && !types.includes('intent.denied'); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    types = (await readSession({ nc: s.nc, names: s.names, sessionId: denied[0]!.sessionId })).filter((e) => e.intentId === denied[0]!.intentId).map((e) => e.type);
  }
  expect(types).toEqual(expect.arrayContaining(['intent.received', 'intent.decided', 'intent.denied']));

  // Another principal is not held by the first one's count.
  const other = s.client(await s.token('pending-other', ['agents']));
  expect((await other.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('cap-other')" })).status).toBe('pending');

  // A resend of one that waits is answered where it stands, not denied as one more.
  expect((await flooder.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('cap-${burst.indexOf(pending[0]!)}')`, intentId: pending[0]!.intentId })).status).toBe('pending');

  // Once one of its intents is decided, the principal may leave another waiting.
  expect(await carol.decide(pending[0]!.intentId, 'reject')).toBe('rejected');
  let next = await flooder.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('cap-after')" });
  for (let i = 0; i < 50 && next.status === 'denied'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    next = await flooder.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('cap-after')" });
  }
  expect(next.status).toBe('pending');
  expect((await flooder.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('cap-full')" })).error?.code).toBe('WRIT_TOO_MANY_PENDING');
}, 60_000);
