/**
 * nats-server restarted under load, in place (same port, same JetStream store), first with a
 * graceful SIGTERM, then with SIGKILL. The broker and worker processes and the agent reconnect.
 * After each restart: every accepted intent ends, none ran twice, every executed intent has
 * its evidence (worker events included: they are retried until stored, never only logged),
 * `writ audit verify` passes, the agent learns every end state, and no service crashed.
 */
import { afterEach, expect, it } from 'vitest';
import { checkInvariants } from './helpers/invariants.ts';
import { startFaultStack, type FaultStack } from './helpers/stack.ts';
import { Workload } from './helpers/workload.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let s: FaultStack | undefined;

afterEach(async () => {
  await s?.stop();
  s = undefined;
});

for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
  it(`restart of nats-server with ${sig} under load: nothing lost, nothing twice, all evidence`, async () => {
    s = await startFaultStack();
    const broker = await s.startBroker();
    const worker = await s.startWorker();
    const w = new Workload(await Promise.all([0, 1, 2].map(() => s!.client())), 1);
    await w.burst(6);
    const load = w.load((i) => (i % 4 === 0 ? 'slow' : 'fast'), 4, 100);
    await sleep(2_500);
    const before = w.accepted().length;
    await s.restartNats(sig, 1_500);
    await sleep(4_000);
    await load.stop();
    const after = w.accepted().length;
    const rep = await checkInvariants(s, w);
    console.log(`nats ${sig}:`, { acceptedBeforeRestart: before, acceptedAfter: after, ...rep.counts });
    expect.soft(rep.violations).toEqual([]);
    // Load went on across the restart: intents were accepted after the server came back.
    expect.soft(after).toBeGreaterThan(before);
    expect.soft(s.crashes().map((p) => `${p.kind} ${p.pid}: ${p.tail(2000)}`)).toEqual([]);
    expect.soft([broker.exit, worker.exit]).toEqual([undefined, undefined]);
  }, 150_000);
}
