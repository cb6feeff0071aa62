/**
 * kill -9 of a service under load, then a fresh one in its place. After each fault: every
 * accepted intent ends, none ran twice (counted on the target), every executed intent has its
 * evidence in its chain, `writ audit verify` passes, and the agent learns every end state.
 */
import { afterEach, expect, it } from 'vitest';
import { checkInvariants, countState } from './helpers/invariants.ts';
import { startFaultStack, workerBackends, type FaultStack } from './helpers/stack.ts';
import { Workload } from './helpers/workload.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let s: FaultStack | undefined;

afterEach(async () => {
  await s?.stop();
  s = undefined;
});

async function until(what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

it('kill -9 of the broker mid-burst: nothing lost, nothing twice, all evidence', async () => {
  s = await startFaultStack();
  const broker = await s.startBroker();
  const worker = await s.startWorker();
  const w = new Workload(await Promise.all([0, 1, 2, 3].map(() => s!.client())));
  await w.burst(8); // warm: the path works before the fault
  const burst = w.burst(160, (i) => (i % 10 === 0 ? 'slow' : 'fast'), 16);
  // Mid-burst: the broker is dispatching (intents in flight between audit and order).
  await until('burst under way', async () => w.accepted().length >= 50);
  broker.kill9();
  const killedAt = Date.now();
  await sleep(1_000);
  await s.startBroker();
  const restartMs = Date.now() - killedAt;
  await burst;
  const burstMs = Date.now() - killedAt;
  const rep = await checkInvariants(s, w);
  console.log('broker kill -9:', { restartMs, burstMs, ...rep.counts });
  expect.soft(rep.violations).toEqual([]);
  expect.soft(w.accepted().length).toBeGreaterThanOrEqual(160);
  expect.soft(s.crashes().map((p) => `${p.kind} ${p.pid}: ${p.tail(2000)}`)).toEqual([]);
  expect.soft(worker.exit).toBeUndefined();
}, 150_000);

it('kill -9 of the worker mid-statement: the lost runs end unknown, none re-run', async () => {
  s = await startFaultStack();
  await s.startBroker();
  const worker = await s.startWorker();
  const w = new Workload(await Promise.all([0, 1, 2].map(() => s!.client())), 3);
  await w.burst(6);
  const load = w.load((i) => (i % 3 === 0 ? 'slow' : 'fast'), 3, 250);
  // Mid-statement: at least two of its backends are inside a pg_sleep INSERT.
  await until('worker mid-statement', async () => (await workerBackends(s!)).filter((b) => b.state === 'active' && b.query.includes('pg_sleep')).length >= 2);
  const running = (await workerBackends(s)).filter((b) => b.state === 'active' && b.query.includes('pg_sleep')).length;
  worker.kill9();
  await sleep(1_000);
  await s.startWorker();
  await sleep(2_000);
  await load.stop();
  const rep = await checkInvariants(s, w);
  console.log('worker kill -9:', { running, ...rep.counts });
  expect.soft(rep.violations).toEqual([]);
  // The runs the kill interrupted were declared lost (unknown), not re-run by the new worker.
  expect.soft(countState(rep, 'unknown')).toBeGreaterThanOrEqual(1);
  expect.soft(s.crashes().map((p) => `${p.kind} ${p.pid}: ${p.tail(2000)}`)).toEqual([]);
}, 150_000);
