/**
 * What an intent's record keeps once the intent has ended: a pending intent's pending part
 * holds the raw command (the audit log and the approvers get it redacted), so no end keeps it,
 * whoever writes the end: the sweeper ending an approved intent whose grant expired with no
 * worker to claim it, a rejection, a cancel. On a real nats-server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { readSession } from '../audit/index.ts';
import { newId } from '../client/index.ts';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { IntentRecordSchema } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
const keyDir = mkdtempSync(join(tmpdir(), 'writ-retention-'));
beforeAll(async () => {
  s = await startStack({
    worker: false,
    config: {
      grants: { keyFile: join(keyDir, 'grant-key.pem'), ttlSec: 1 },
      limits: { sweepMarginSec: 0, sweepIntervalMs: 100 },
      policy: {
        rules: [{ id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60 } }],
        defaultLimits: { rows: 10, seconds: 1, bytes: 65_536 },
      },
    },
  });
});
/** The intent's event types in its session, once `last` is among them (the broker may answer before it stores its block). */
async function typesOf(sessionId: string, intentId: string, last: string): Promise<string[]> {
  let types: string[] = [];
  for (let i = 0; i < 50 && !types.includes(last); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    types = (await readSession({ nc: s.nc, names: s.names, sessionId })).filter((e) => e.intentId === intentId).map((e) => e.type);
  }
  return types;
}
afterAll(async () => {
  await s?.stop();
  rmSync(keyDir, { recursive: true, force: true });
});

it('an approved intent ended by the sweeper keeps no pending part, and so no raw command', async () => {
  const secret = 'pw-3c41e9a7d2';
  const c = s.client(await s.token('agent-r', ['agents']));
  const first = await c.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('${secret}')` });
  expect(first.status).toBe('pending');
  const kv = await new Kvm(s.nc).open(s.names.buckets.intents);
  const raw = async () => Buffer.from((await kv.get(first.intentId))!.value).toString('utf8');
  // While pending, the record holds the command to sign later.
  expect(await raw()).toContain(secret);
  const a = s.client(await s.approverToken('carol', ['approvers']));
  expect(await a.decide(first.intentId, 'approve')).toBe('dispatched');
  // No worker: the grant expires unclaimed and the sweeper ends the intent.
  const end = Date.now() + 20_000;
  let state = '';
  while (Date.now() < end && (state = await c.status(first.intentId)) !== 'failed') await new Promise((r) => setTimeout(r, 200));
  expect(state).toBe('failed');
  const rec = IntentRecordSchema.parse(JSON.parse(await raw()));
  expect(rec.error?.code).toBe('WRIT_GRANT_EXPIRED');
  expect(rec.pending).toBeUndefined();
  expect(await raw()).not.toContain(secret);
}, 40_000);

it('an approval that ends without running (rejected, cancelled) keeps no pending part either', async () => {
  const c = s.client(await s.token('agent-r2', ['agents']));
  const kv = await new Kvm(s.nc).open(s.names.buckets.intents);
  const raw = async (id: string) => Buffer.from((await kv.get(id))!.value).toString('utf8');
  const rejected = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('pw-rejected-77f0')" });
  const cancelled = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('pw-cancelled-19c2')" });
  expect([rejected.status, cancelled.status]).toEqual(['pending', 'pending']);
  const a = s.client(await s.approverToken('carol', ['approvers']));
  expect(await a.decide(rejected.intentId, 'reject', { reason: 'no' })).toBe('rejected');
  expect(await c.cancel(cancelled.intentId)).toBe('cancelled');
  for (const [id, secret, state] of [
    [rejected.intentId, 'pw-rejected-77f0', 'rejected'],
    [cancelled.intentId, 'pw-cancelled-19c2', 'cancelled'],
  ] as const) {
    const rec = IntentRecordSchema.parse(JSON.parse(await raw(id)));
    expect(rec.state).toBe(state);
    expect(rec.pending).toBeUndefined();
    expect(await raw(id)).not.toContain(secret);
  }
}, 40_000);

it('an approval request too large for the bus is denied before any pending record exists, with its evidence', async () => {
  const c = s.client(await s.token('agent-big', ['agents']));
  // 9,000 statements: the request's facts would be about a megabyte, more than NATS carries.
  const o = await c.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('too-big-to-show'); ${'SELECT 1 FROM customers;'.repeat(9000)}` });
  expect(o.status).toBe('denied');
  expect(o.error?.code).toBe('WRIT_APPROVAL_TOO_LARGE');
  const rec = IntentRecordSchema.parse((await (await new Kvm(s.nc).open(s.names.buckets.intents)).get(o.intentId))!.json());
  expect(rec.state).toBe('denied');
  expect(rec.pending).toBeUndefined();
  const a = s.client(await s.approverToken('carol', ['approvers']));
  expect((await a.pending()).map((p) => p.intentId)).not.toContain(o.intentId);
  await expect(a.decide(o.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
  expect(await typesOf(o.sessionId, o.intentId, 'intent.denied')).toEqual(expect.arrayContaining(['intent.received', 'intent.decided', 'intent.denied']));
}, 60_000);

// Last: it takes the approvals stream away.
it('an approval request that cannot be published leaves no approvable record: the intent ends failed', async () => {
  const jsm = await jetstreamManager(s.nc);
  await jsm.streams.delete(s.names.streams.approvals);
  const c = s.client(await s.token('agent-nopub', ['agents']));
  const id = newId();
  await c.submit({ target: 'db', sql: "INSERT INTO events (note) VALUES ('never-requested')", intentId: id });
  const kv = await new Kvm(s.nc).open(s.names.buckets.intents);
  let state = '';
  for (let i = 0; i < 300; i++) {
    const e = await kv.get(id);
    state = e?.operation === 'PUT' ? IntentRecordSchema.parse(e.json()).state : '';
    if (state && state !== 'pending') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(state).toBe('failed');
  const a = s.client(await s.approverToken('carol', ['approvers']));
  await expect(a.decide(id, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
  expect(await typesOf(c.sessionId, id, 'approval.failed')).toEqual(expect.arrayContaining(['intent.received', 'intent.decided', 'approval.failed']));
}, 60_000);
