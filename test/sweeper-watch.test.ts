/**
 * The sweeper's watch of the intents bucket must not stall silently. Its consumer is lost (here
 * deleted; on a 3-node 2.9 cluster, lost or stuck with the member that carried it): the client
 * notices only after two missed 30 s heartbeats, and meanwhile every intent dispatched goes
 * untracked, so a lost one would stay `dispatched` long past its run deadline. The sweeper checks
 * its watch against the bucket's last sequence and watches again when it fell behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { afterEach, expect, it } from 'vitest';
import { newId } from '../client/index.ts';
import type { IntentState } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let s: Stack | undefined;
const cleanups: Array<() => void> = [];
afterEach(async () => {
  await s?.stop();
  s = undefined;
  for (const c of cleanups.splice(0)) c();
});

it('an intent dispatched while the sweeper watch has lost its consumer is still ended once its grant expires unclaimed', async () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'writ-sweeper-'));
  cleanups.push(() => rmSync(keyDir, { recursive: true, force: true }));
  // No worker: nothing ever claims the grant, which expires after 1 s (the sweeper's check runs every 5 s at this interval).
  s = await startStack({
    worker: false,
    config: {
      grants: { keyFile: join(keyDir, 'grant-key.pem'), ttlSec: 1 },
      limits: { sweepMarginSec: 0, sweepIntervalMs: 100 },
      policy: { rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' }], defaultLimits: { rows: 10, seconds: 1, bytes: 65_536 } },
    },
  });
  const stack = s;
  const agent = stack.client(await stack.token('agent-w', ['analysts']));
  // The path works first: the watch is live.
  const first = newId();
  await agent.submit({ target: 'db', sql: 'SELECT 1', intentId: first });
  const jsm = await jetstreamManager(stack.nc);
  const bucketStream = `KV_${stack.names.buckets.intents}`;
  // The sweeper's watch: the ordered consumer that follows every key of the bucket.
  const watchers: string[] = [];
  for await (const ci of jsm.consumers.list(bucketStream)) if (ci.config.filter_subject?.endsWith('.>')) watchers.push(ci.name);
  expect(watchers.length).toBeGreaterThan(0);
  for (const name of watchers) await jsm.consumers.delete(bucketStream, name);

  const lost = newId();
  await agent.submit({ target: 'db', sql: 'SELECT 2', intentId: lost });
  // Bounded polling: the grant expires after 1 s; nats.js alone would resume the watch only after 60–90 s.
  const end = Date.now() + 30_000;
  let state: IntentState = 'received';
  // Not found until the broker has taken the intent off its stream: keep asking.
  const statusOf = (id: string) => agent.status(id).catch((e: unknown) => ((e as { code?: string }).code === 'WRIT_NOT_FOUND' ? 'received' : Promise.reject(e)));
  while (Date.now() < end && ['received', 'dispatched'].includes((state = await statusOf(lost)))) await sleep(250);
  expect(state).toBe('failed');
  const out = await agent.wait(lost, { timeoutMs: 5_000 });
  expect(out.error?.code).toBe('WRIT_GRANT_EXPIRED');
  expect(stack.logs.some((l) => l.msg === 'sweeper watch fell behind the intents bucket; watching again')).toBe(true);
}, 60_000);

it('follows the bucket with headers only, and reads whole a record change that carries no note', async () => {
  s = await startStack({
    worker: false,
    config: {
      policy: {
        rules: [{ id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } }],
      },
    },
  });
  const stack = s;
  const jsm = await jetstreamManager(stack.nc);
  const bucketStream = `KV_${stack.names.buckets.intents}`;
  // The sweeper's consumer never receives a record's body (which may hold a megabyte of sealed rows).
  const watchers = [];
  for await (const ci of jsm.consumers.list(bucketStream)) if (ci.config.filter_subject?.endsWith('.>')) watchers.push(ci.config);
  expect(watchers.length).toBeGreaterThan(0);
  expect(watchers.every((c) => c.headers_only === true)).toBe(true);

  const agent = stack.client(await stack.token('agent-note', ['agents']));
  const o = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('noted')" });
  expect(o.status).toBe('pending');
  const known = async (want: number) => {
    for (let i = 0; i < 50 && stack.broker.pendingApprovals !== want; i++) await sleep(100);
    return stack.broker.pendingApprovals;
  };
  expect(await known(1)).toBe(1);
  // Written by something other than the services' record store: no note in its headers. The
  // watch reads it whole, and learns that it is no longer pending.
  const kv = await new Kvm(stack.nc).open(stack.names.buckets.intents);
  const e = (await kv.get(o.intentId))!;
  const { pending: _p, ...rest } = e.json<Record<string, unknown>>();
  await kv.update(o.intentId, JSON.stringify({ ...rest, state: 'cancelled' }), e.revision);
  expect(await known(0)).toBe(0);
}, 60_000);
