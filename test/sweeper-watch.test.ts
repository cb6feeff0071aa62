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
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { headers } from '@nats-io/transport-node';
import { decodeJwt } from 'jose';
import { afterEach, expect, it } from 'vitest';
import { newId } from '../client/index.ts';
import { updateRecord } from '../lib/index.ts';
import { IntentRecordSchema, type IntentState } from '../schemas/index.ts';
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

/** A stack with no worker (nothing claims a grant) whose grants expire after 1 s, and an approval rule. */
async function startUnclaimed(): Promise<Stack> {
  const keyDir = mkdtempSync(join(tmpdir(), 'writ-sweeper-'));
  cleanups.push(() => rmSync(keyDir, { recursive: true, force: true }));
  return startStack({
    worker: false,
    config: {
      grants: { keyFile: join(keyDir, 'grant-key.pem'), ttlSec: 1 },
      limits: { sweepMarginSec: 0, sweepIntervalMs: 100 },
      approvals: { maxPendingPerPrincipal: 1 },
      policy: {
        rules: [
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
          { id: 'ask', effect: 'require_approval', groups: ['askers'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } },
        ],
        defaultLimits: { rows: 10, seconds: 1, bytes: 65_536 },
      },
    },
  });
}

/** The intent's state once it left `dispatched` (or after `ms`). */
async function settled(stack: Stack, agent: ReturnType<Stack['client']>, id: string, ms = 15_000): Promise<IntentState> {
  const end = Date.now() + ms;
  let state: IntentState = 'dispatched';
  while (Date.now() < end && (state = await agent.status(id)) === 'dispatched') await sleep(200);
  return state;
}

it('sweeps what the bucket holds: a record re-published under headers that say it ended is still swept', async () => {
  s = await startUnclaimed();
  const stack = s;
  const agent = stack.client(await stack.token('agent-h', ['analysts']));
  const id = newId();
  await agent.submit({ target: 'db', sql: 'SELECT 1', intentId: id });
  // A holder of worker credentials writes the same record again, with headers that lie about it.
  const kv = await new Kvm(stack.nc).open(stack.names.buckets.intents);
  const e = (await kv.get(id))!;
  const h = headers();
  h.set('Writ-Record', JSON.stringify({ state: 'succeeded' }));
  h.set('Nats-Expected-Last-Subject-Sequence', String(e.revision));
  await jetstream(stack.nc).publish(`$KV.${stack.names.buckets.intents}.${id}`, e.value, { headers: h });
  expect(await settled(stack, agent, id)).toBe('failed');
  expect((await agent.wait(id, { timeoutMs: 5_000 })).error?.code).toBe('WRIT_GRANT_EXPIRED');
}, 60_000);

it("takes over a sweeper's mark dated in the future", async () => {
  s = await startUnclaimed();
  const stack = s;
  const agent = stack.client(await stack.token('agent-m', ['analysts']));
  const id = newId();
  await agent.submit({ target: 'db', sql: 'SELECT 1', intentId: id });
  // A mark as a sweeper leaves it, dated ten years ahead: fresh for ever, were its date believed.
  const kv = await new Kvm(stack.nc).open(stack.names.buckets.intents);
  const e = (await kv.get(id))!;
  const rec = IntentRecordSchema.parse(e.json());
  await updateRecord(kv, { ...rec, ending: { by: 'sweeper-gone', at: Date.now() + 10 * 365 * 86_400_000 } }, e.revision);
  expect(await settled(stack, agent, id)).toBe('failed');
}, 60_000);

it('counts and lists only pending records a broker sealed, and a record that does not parse fails no listing', async () => {
  s = await startUnclaimed();
  const stack = s;
  const victimToken = await stack.token('agent-v', ['askers']);
  const victim = stack.client(victimToken);
  const kv = await new Kvm(stack.nc).open(stack.names.buckets.intents);
  // Planted by a holder of worker credentials: a pending record naming the victim, not sealed by
  // a broker, and a key whose value is not a record at all.
  const now = Date.now();
  const planted = newId();
  await kv.put(
    planted,
    JSON.stringify({
      state: 'pending',
      sessionId: 's_planted_0001',
      intentId: planted,
      target: 'db',
      kind: 'postgres',
      principal: { iss: decodeJwt(victimToken).iss!, sub: 'agent-v', groups: ['askers'] },
      commandSha256: 'a'.repeat(64),
      createdAt: now,
      updatedAt: now,
      pending: {
        rule: 'ask',
        spec: { groups: ['approvers'], count: 1, timeoutSec: 120 },
        expiresAt: now + 3_600_000,
        votes: [],
        order: { command: { kind: 'sql', sql: 'SELECT 1' }, mode: 'read', limits: { rows: 1, seconds: 1, bytes: 1 } },
      },
    }),
  );
  const notARecord = newId();
  await kv.put(notARecord, '{"state":"pending","pending":{"expiresAt":99999999999999},"principal":{"iss":"x","sub":"y"}}');
  await sleep(500);
  // The victim may leave one intent pending (maxPendingPerPrincipal 1): the planted one is not it.
  const o = await victim.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('mine')" });
  expect(o.status).toBe('pending');
  const carol = stack.client(await stack.approverToken('carol', ['approvers']));
  const listed = (await carol.pendingList()).requests.map((r) => r.intentId);
  expect(listed).toContain(o.intentId);
  expect(listed).not.toContain(planted);
  // Asked for by id, neither is shown, and the answer is not an error.
  expect(await carol.pending({ intentId: planted })).toEqual([]);
  expect(await carol.pending({ intentId: notARecord })).toEqual([]);
}, 60_000);
