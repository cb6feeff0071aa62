/**
 * pg_terminate_backend of the worker's connections (application_name writ-worker), from a
 * second admin connection, mid-statement and mid-COMMIT. The worker must survive both (an
 * `error` event on a pg client must not end the process), keep serving, and tell the truth:
 * a statement cut before COMMIT changed nothing (failed, no row); a COMMIT whose answer never
 * came has an unknown fate, and the outcome says so (unknown, WRIT_COMMIT_UNKNOWN), never
 * "failed" as if it had had no effect. Then the common invariants (helpers/invariants.ts).
 */
import { afterEach, expect, it } from 'vitest';
import { checkInvariants, stateOf, waitForEndStates } from './helpers/invariants.ts';
import { startFaultStack, workerBackends, type Backend, type FaultStack } from './helpers/stack.ts';
import { slowCommitSql, Workload } from './helpers/workload.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let s: FaultStack | undefined;

afterEach(async () => {
  await s?.stop();
  s = undefined;
});

/** Terminates the worker backends whose current statement matches `pred`; returns their pids. */
async function terminate(st: FaultStack, pred: (b: Backend) => boolean): Promise<number[]> {
  const pids = (await workerBackends(st)).filter((b) => b.state === 'active' && pred(b)).map((b) => b.pid);
  const done: number[] = [];
  for (const pid of pids) {
    const r = await st.admin.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
    if (r.rows[0]?.ok) done.push(pid);
  }
  return done;
}

async function untilTerminated(st: FaultStack, pred: (b: Backend) => boolean, ms = 20_000): Promise<number[]> {
  const end = Date.now() + ms;
  for (;;) {
    const pids = await terminate(st, pred);
    if (pids.length > 0) return pids;
    if (Date.now() > end) throw new Error(`no worker backend matched within ${ms} ms: ${JSON.stringify(await workerBackends(st))}`);
    await sleep(50);
  }
}

it('pg_terminate_backend mid-statement: the worker survives, the cut runs failed with no row, later intents run', async () => {
  s = await startFaultStack();
  await s.startBroker();
  const worker = await s.startWorker();
  const w = new Workload(await Promise.all([0, 1, 2].map(() => s!.client())), 2);
  await w.burst(4);
  const load = w.load((i) => (i % 2 === 0 ? 'slow' : 'fast'), 4, 150);
  const killed: number[] = [];
  for (let round = 0; round < 3; round++) {
    killed.push(...(await untilTerminated(s, (b) => b.query.includes('pg_sleep') && b.runningMs > 200)));
    await sleep(700);
  }
  await sleep(1_000);
  await load.stop();
  // The worker still serves: once the backlog has ended, intents submitted after the faults run.
  await waitForEndStates(s, w.accepted());
  const after = new Workload([await s.client()]);
  await after.burst(5);
  const rep = await checkInvariants(s, w);
  const repAfter = await checkInvariants(s, after, { agent: false });
  console.log('pg terminate mid-statement:', { terminated: killed.length, ...rep.counts });
  expect.soft(s.crashes().map((p) => `${p.kind} ${p.pid} exited ${JSON.stringify(p.exit)}: ${p.tail(3000)}`)).toEqual([]);
  expect.soft(worker.exit).toBeUndefined();
  expect.soft(rep.violations).toEqual([]);
  expect.soft(repAfter.violations).toEqual([]);
  expect.soft(after.accepted().map((x) => stateOf(repAfter, x))).toEqual(Array(5).fill('succeeded'));
  // Each terminated backend cut one run: it ended failed (nothing committed), not succeeded.
  expect.soft(w.accepted().filter((x) => x.kind === 'slow' && stateOf(rep, x) === 'failed').length).toBeGreaterThanOrEqual(killed.length);
}, 150_000);

it('pg_terminate_backend mid-COMMIT: the outcome says the fate is unknown (WRIT_COMMIT_UNKNOWN), never "failed"', async () => {
  // COMMIT of a `c-…` row runs a deferred trigger that sleeps 2 s: the window to cut it in.
  s = await startFaultStack({ schemaSql: slowCommitSql(2) });
  await s.startBroker();
  const worker = await s.startWorker();
  const w = new Workload(await Promise.all([0, 1, 2].map(() => s!.client())));
  await w.burst(4);
  const load = w.load((i) => (i % 2 === 0 ? 'commit' : 'fast'), 4, 150);
  const killed: number[] = [];
  for (let round = 0; round < 3; round++) {
    // Only a COMMIT that has been running for a while is inside the trigger's sleep: a quick
    // one may be over before the signal lands, and would not be cut.
    killed.push(...(await untilTerminated(s, (b) => /^\s*COMMIT\b/i.test(b.query) && b.runningMs > 300)));
    await sleep(700);
  }
  await sleep(1_000);
  await load.stop();
  await waitForEndStates(s, w.accepted());
  const after = new Workload([await s.client()]);
  await after.burst(5);
  const rep = await checkInvariants(s, w);
  const repAfter = await checkInvariants(s, after, { agent: false });
  const commits = w.accepted().filter((x) => x.kind === 'commit');
  const cut = commits
    .filter((x) => stateOf(rep, x) !== 'succeeded')
    .map((x) => ({
      tag: x.tag,
      state: stateOf(rep, x),
      code: rep.records.get(x.intentId)?.error?.code,
      rows: rep.rows.get(x.tag) ?? 0,
    }));
  console.log('pg terminate mid-COMMIT:', { terminated: killed.length, cut, ...rep.counts });
  expect.soft(s.crashes().map((p) => `${p.kind} ${p.pid} exited ${JSON.stringify(p.exit)}: ${p.tail(3000)}`)).toEqual([]);
  expect.soft(worker.exit).toBeUndefined();
  expect.soft(rep.violations).toEqual([]);
  expect.soft(repAfter.violations).toEqual([]);
  expect.soft(after.accepted().map((x) => stateOf(repAfter, x))).toEqual(Array(5).fill('succeeded'));
  // Only COMMITs were cut: the worker could not know their fate, and its outcome must say so
  // (unknown, WRIT_COMMIT_UNKNOWN), one per terminated backend. None may claim "failed".
  // (Others may end unknown by the sweeper's clock, WRIT_OUTCOME_UNKNOWN, on a busy machine.)
  // A run that waited for a connection past its grant never started (WRIT_GRANT_EXPIRED, no row): failed is the truth there.
  expect.soft(cut.filter((c) => c.state !== 'unknown' && !(c.code === 'WRIT_GRANT_EXPIRED' && c.rows === 0))).toEqual([]);
  expect.soft(cut.filter((c) => c.state === 'unknown' && c.code === 'WRIT_COMMIT_UNKNOWN').length).toBe(killed.length);
}, 150_000);

it('pg_terminate_backend of every worker connection while commits run: the worker survives and keeps serving', async () => {
  s = await startFaultStack();
  await s.startBroker();
  const worker = await s.startWorker();
  const w = new Workload(await Promise.all([0, 1, 2].map(() => s!.client())), 1);
  await w.burst(4);
  const load = w.load((i) => (i % 5 === 0 ? 'slow' : 'fast'), 4, 100);
  let killed = 0;
  // Every connection the worker holds, busy or idle in its pool, as a database restart or a
  // network blip would drop them: many land on a COMMIT in flight.
  for (let round = 0; round < 10; round++) {
    await sleep(400);
    for (const b of await workerBackends(s)) {
      const r = await s.admin.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [b.pid]);
      if (r.rows[0]?.ok) killed++;
    }
  }
  await sleep(1_000);
  await load.stop();
  await waitForEndStates(s, w.accepted());
  const after = new Workload([await s.client()]);
  await after.burst(5);
  const rep = await checkInvariants(s, w);
  const repAfter = await checkInvariants(s, after, { agent: false });
  console.log('pg terminate all connections:', { terminated: killed, ...rep.counts }, 'after:', repAfter.counts);
  expect.soft(s.crashes().map((p) => `${p.kind} ${p.pid} exited ${JSON.stringify(p.exit)}: ${p.tail(3000)}`)).toEqual([]);
  expect.soft(worker.exit).toBeUndefined();
  expect.soft(rep.violations).toEqual([]);
  expect.soft(repAfter.violations).toEqual([]);
  expect.soft(after.accepted().map((x) => stateOf(repAfter, x))).toEqual(Array(5).fill('succeeded'));
}, 150_000);
