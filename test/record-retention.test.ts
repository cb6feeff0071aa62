/**
 * What an intent's record keeps once the intent has ended: an approved intent's pending part
 * holds the raw command (the audit log and the approvers get it redacted), so no end keeps it,
 * whoever writes the end. Here the sweeper ends an approved intent whose grant expired with no
 * worker to claim it, on a real nats-server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
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
