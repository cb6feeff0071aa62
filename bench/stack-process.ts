/**
 * A broker and/or a PostgreSQL worker from a config file, for benchmarks. The role comes
 * from argv[3]: `both` (default, as `writ up`), `broker`, `worker`, or `sim-worker`: the
 * worker runtime (grant check, claim, masking, sealing, audit, result) with an executor that
 * answers `SELECT 1`'s row without a database. That one is a simulation, for the broker's own
 * capacity (`BENCH_SIM=1`), and never an end-to-end figure. Prints READY.
 */
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { createBroker } from '../broker/index.ts';
import { connectNats, createLogger, LocalHandover } from '../lib/index.ts';
import { loadConfigFile, SignedGrants } from '../schemas/index.ts';
import { createWorker, type Executor } from '../workers/index.ts';
import { SharedHeads } from '../audit/index.ts';

const config = loadConfigFile(process.argv[2]!);
const role = process.argv[3] ?? 'both';
const log = createLogger({ name: `bench-${role}`, level: process.env.WRIT_LOG_LEVEL ?? 'warn' });
// The config's `nats` section with the environment over it (NATS_URL, WRIT_NATS_*).
const nc = await connectNats(config.nats, `bench-${role}`);
const services: Array<{ stop(): Promise<void> }> = [];
let caches: () => Record<string, number> = () => ({});
// As `writ up` runs them: a broker and a worker in one process share their audit heads.
const auditHeads = role === 'both' ? new SharedHeads() : undefined;
const signedGrants = role === 'both' ? new SignedGrants() : undefined;
// BENCH_HANDOVER=0 sends the orders through the bus even in one process (to measure what it saves).
const handover = role === 'both' && process.env.BENCH_HANDOVER !== '0' ? new LocalHandover() : undefined;
if (role === 'both' || role === 'broker') {
  const broker = await createBroker({ nc, config, log, auditHeads, signedGrants, handover });
  await broker.start();
  services.push(broker);
  caches = () => ({ ...broker.caches });
}
/** The simulated target: every order answers one computed row, as `SELECT 1` would. */
const simulated: Executor = {
  kind: 'postgres',
  targets: config.workers.postgres.map((t) => t.target),
  run: () => Promise.resolve({ type: 'rows', fields: [{ name: '?column?', origin: null }], rows: [[1]], rowCount: 1, truncated: false, command: 'SELECT', notices: [] }),
  close: () => Promise.resolve(),
};
if (role !== 'broker') {
  const worker = await createWorker({ nc, config, log, auditHeads, signedGrants, handover, ...(role === 'sim-worker' ? { executors: [simulated] } : {}) });
  await worker.start();
  services.unshift(worker);
  const before = caches;
  caches = () => ({ ...before(), claimedGrants: worker.claimedGrants });
}
// SIGUSR2 asks for this process's memory (the soak benchmark samples it): RSS and heap as
// they are, the V8 heap spaces (what the heap's size is made of). For investigation only:
// WRIT_SOAK_GC=1 (with --expose-gc) adds the heap after a full collection (what is live),
// WRIT_SOAK_HEAPSNAP_DIR writes a heap snapshot at every WRIT_SOAK_HEAPSNAP_EVERY-th sample (default each).
let samples = 0;
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name.replace(/_space$/, ''), { used: s.space_used_size, size: s.space_size }]));
  let liveHeap: number | undefined;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (process.env.WRIT_SOAK_GC === '1' && gc) {
    gc();
    liveHeap = process.memoryUsage().heapUsed;
  }
  const dir = process.env.WRIT_SOAK_HEAPSNAP_DIR;
  if (dir && ++samples % Number(process.env.WRIT_SOAK_HEAPSNAP_EVERY ?? 1) === 0) writeHeapSnapshot(join(dir, `soak-${samples}.heapsnapshot`));
  process.stdout.write(`MEM ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, liveHeap, spaces, caches: caches() })}\n`);
});
process.stdout.write('READY\n');
process.once('SIGTERM', async () => {
  for (const s of services) await s.stop();
  await nc.close();
  process.exit(0);
});
