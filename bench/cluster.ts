/**
 * `npm run bench -- cluster`: Writ on a 3-node JetStream cluster (R3 streams and buckets, the
 * roles of deploy/nats/accounts.conf), two brokers and two PostgreSQL workers as processes
 * seeded on different members, agents on all three. Throughput and latency of whole runs
 * (submit, decide, execute, outcome back) at a fixed concurrency, first undisturbed, then with
 * one member SIGKILLed a third of the way in and restarted 2 s later. The stack is the fault
 * suite's (test/faults/helpers/stack.ts), so what is measured is what the cluster tests check.
 */
import { newId } from '../client/index.ts';
import { startFaultStack, type FaultStack } from '../test/faults/helpers/stack.ts';
import { fmt, load, type LoadFigures } from './stats.ts';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const DURATION_MS = Number(process.env.BENCH_MS ?? 15_000);

export interface ClusterFigures {
  steady: LoadFigures;
  kill: LoadFigures & { victim: string; downMs: number };
  auditReplicas: number;
  nodes: number;
}

async function phase(s: FaultStack, clients: Awaited<ReturnType<FaultStack['client']>>[], during?: () => Promise<void>): Promise<LoadFigures> {
  let n = 0;
  const fault = during
    ? (async () => {
        await new Promise((r) => setTimeout(r, DURATION_MS / 3));
        await during();
      })()
    : Promise.resolve();
  const figures = await load(
    async (slot) => {
      const tag = `b-${n++}-${newId('t')}`;
      const o = await clients[slot % clients.length]!.run({ target: 'db', sql: `INSERT INTO runs (tag) VALUES ('${tag}')` }, { timeoutMs: 60_000 });
      // A run that did not succeed counts as an error, not as a fast answer.
      if (o.status !== 'succeeded') throw new Error(o.status);
    },
    CONCURRENCY,
    DURATION_MS,
  );
  await fault;
  return figures;
}

export async function benchCluster(): Promise<ClusterFigures> {
  const s = await startFaultStack({ cluster: { auth: true }, grantTtlSec: 120 });
  try {
    await Promise.all([s.startBroker(0), s.startBroker(1)]);
    await Promise.all([s.startWorker(2), s.startWorker(0)]);
    const clients = await Promise.all([0, 1, 2, 0, 1, 2].map((node) => s.client(undefined, node)));
    await phase(s, clients.slice(0, 1), undefined).catch(() => undefined); // warm-up is not measured
    const steady = await phase(s, clients);
    const cluster = s.cluster!;
    // The victim: a member that does not lead the exec stream (its clients fail over).
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const leader = (await (await jetstreamManager(s.nc)).streams.info(s.names.streams.exec)).cluster?.leader ?? '';
    const victim = (Math.max(0, cluster.indexOf(leader)) + 1) % 3;
    let downMs = 0;
    const kill = await phase(s, clients, async () => {
      const t = Date.now();
      cluster.servers[victim]!.kill9();
      await cluster.restart(victim, 2_000);
      downMs = Date.now() - t;
    });
    return { steady, kill: { ...kill, victim: cluster.serverNames[victim]!, downMs }, auditReplicas: s.auditReplicas, nodes: 3 };
  } finally {
    await s.stop();
  }
}

export function printCluster(f: ClusterFigures): void {
  console.log(`\n## Cluster (3 nats-servers, R3 streams and buckets, audit stream R${f.auditReplicas}; 2 brokers, 2 workers; ${CONCURRENCY} agents, ${DURATION_MS / 1000} s per phase)`);
  console.log('| phase | intents | per s | p50 ms | p99 ms | not succeeded |');
  console.log('|---|---|---|---|---|---|');
  const row = (name: string, x: LoadFigures) => console.log(`| ${name} | ${x.n} | ${fmt(x.perSec, 1)} | ${fmt(x.p50, 1)} | ${fmt(x.p99, 1)} | ${x.errors} |`);
  row('steady', f.steady);
  row(`member ${f.kill.victim} SIGKILLed, back after ${f.kill.downMs} ms`, f.kill);
}
