/**
 * One agent left many large commands waiting for approval, and `writ.api.pending` answered every
 * request in one reply: past the server's max_payload it was refused (WRIT_REPLY_TOO_LARGE), and
 * no approver could list or decide anything. The list is now fair across requesters and fits one
 * reply (what is left out is counted), and a request can be asked for by id.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fitPending } from '../broker/api.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: {
      limits: { sweepIntervalMs: 200 },
      policy: {
        rules: [{ id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } }],
      },
    },
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);

it("lists an honest agent's request beside a flood of another's, and it can be approved and run", async () => {
  const flooder = s.client(await s.token('flooder', ['agents']));
  const pad = 'x'.repeat(60_000);
  const flood = await Promise.all(Array.from({ length: 20 }, (_, i) => flooder.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('flood-${i}-${pad}')` })));
  expect(flood.every((o) => o.status === 'pending')).toBe(true);
  const honest = s.client(await s.token('honest', ['agents']));
  const mine = await honest.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('honest-1')" });
  expect(mine.status).toBe('pending');
  const carol = s.client(await s.approverToken('carol', ['approvers']));
  // The sweeper learns of pending records from its watch: wait until it knows all 21.
  let list = await carol.pendingList();
  for (let i = 0; i < 100 && list.requests.length + list.omitted < 21; i++) {
    await new Promise((r) => setTimeout(r, 100));
    list = await carol.pendingList();
  }
  expect(list.requests.length + list.omitted).toBe(21);
  expect(list.omitted).toBeGreaterThan(0);
  expect(list.requests.map((p) => p.requester)).toContain('honest');
  // One left out of the list is still there when asked for by id.
  const listed = new Set(list.requests.map((p) => p.intentId));
  const left = flood.find((o) => !listed.has(o.intentId))!;
  expect((await carol.pending({ intentId: left.intentId })).map((p) => p.intentId)).toEqual([left.intentId]);
  expect(await carol.decide(mine.intentId, 'approve')).toBe('dispatched');
  expect((await honest.wait(mine.intentId)).status).toBe('succeeded');
  expect(await rows('honest-1')).toBe(1);
});

it('fits a list round by round across requesters, soonest expiry first, and counts what it leaves out', () => {
  const e = (requester: string, expiresAt: number, bytes: number) => ({ requester, expiresAt, pad: 'p'.repeat(bytes) });
  const list = [e('a', 3, 400), e('a', 1, 400), e('a', 2, 400), e('b', 5, 10), e('c', 9, 10)];
  const { requests, omitted } = fitPending(list, 1_200);
  // Round one: a's soonest, b, c; round two: a's next fits; a's third does not.
  expect(requests.map((r) => `${r.requester}${r.expiresAt}`)).toEqual(['a1', 'b5', 'c9', 'a2']);
  expect(omitted).toBe(1);
});

it('builds what a pending request shows once per record revision: a listing after the first reads no record', async () => {
  const asker = s.client(await s.token('lister', ['agents']));
  const mine = await Promise.all(Array.from({ length: 5 }, (_, i) => asker.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('listed-${i}')` })));
  expect(mine.every((o) => o.status === 'pending')).toBe(true);
  // Reads of the intents bucket, as the bus carries them (direct gets, or the stream's message gets).
  const bucket = `KV_${s.names.buckets.intents}`;
  let reads = 0;
  const subs = [s.nc.subscribe(`$JS.API.DIRECT.GET.${bucket}.>`), s.nc.subscribe(`$JS.API.DIRECT.GET.${bucket}`), s.nc.subscribe(`$JS.API.STREAM.MSG.GET.${bucket}`)];
  for (const sub of subs)
    void (async () => {
      for await (const _m of sub) reads++;
    })();
  const carol = s.client(await s.approverToken('carol', ['approvers']));
  const ids = new Set(mine.map((o) => o.intentId));
  const listed = async () => (await carol.pendingList()).requests.filter((r) => ids.has(r.intentId as string));
  // Until the sweeper's watch has seen every one (and its revision).
  for (let i = 0; i < 100 && (await listed()).length < 5; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 300));
  await listed();
  await s.nc.flush();
  // The first listings read each record (the watch's revision known or not).
  expect(reads).toBeGreaterThanOrEqual(5);
  reads = 0;
  expect(await listed()).toHaveLength(5);
  await s.nc.flush();
  expect(reads).toBe(0);
  // A decided one leaves the list (its new revision is not pending), and the rest are still read from what was built.
  const dave = s.client(await s.approverToken('dave', ['approvers']));
  const first = mine[0]!.intentId;
  expect(await dave.decide(first, 'reject')).toBe('rejected');
  let left: Record<string, unknown>[] = [];
  for (let i = 0; i < 50; i++) {
    left = await listed();
    if (left.length === 4) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(left.map((r) => r.intentId)).not.toContain(first);
  await s.nc.flush();
  reads = 0;
  await listed();
  await s.nc.flush();
  expect(reads).toBe(0);
  for (const sub of subs) sub.unsubscribe();
});
