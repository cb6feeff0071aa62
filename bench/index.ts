/**
 * `npm run bench`: every benchmark, each printing its figures and its ratio against a
 * direct baseline measured in the same run. `npm run bench -- e2e masking` runs a subset.
 * Speed is measured here, never asserted in tests.
 */
import { cpus } from 'node:os';

const only = new Set(process.argv.slice(2));
const want = (name: string) => only.size === 0 || only.has(name);

console.log(`# Writ benchmarks — ${new Date().toISOString()}, Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`);

if (want('e2e')) {
  const { benchE2E, printE2E } = await import('./e2e.ts');
  printE2E(await benchE2E());
}
if (want('decisions')) {
  const { benchDecisions } = await import('./decisions.ts');
  console.log('\n## Policy decisions');
  console.log(await benchDecisions());
}
if (want('masking')) {
  const { benchMasking } = await import('./masking.ts');
  console.log('\n## Masking');
  console.log(await benchMasking());
}
if (want('audit')) {
  const { benchAudit } = await import('./audit.ts');
  console.log('\n## Audit');
  // 1,000,000 events by default (100,000 sessions × 2 intents × 5 events); BENCH_AUDIT_SESSIONS scales it.
  console.log(await benchAudit({ sessions: Number(process.env.BENCH_AUDIT_SESSIONS ?? 100_000) }));
}
if (want('cli')) {
  const { benchCli, printCli } = await import('./cli.ts');
  printCli(await benchCli());
}
if (want('pg-memory')) {
  const { benchPgMemory } = await import('./pg-memory.ts');
  console.log('\n## PostgreSQL worker memory (1 MiB byte limit)');
  console.log(await benchPgMemory());
}
if (only.has('cluster')) {
  // Not in the default set: three nats-servers, two brokers, two workers and a node kill take a minute.
  const { benchCluster, printCluster } = await import('./cluster.ts');
  printCluster(await benchCluster());
}
if (only.has('tap')) {
  // Not in the default set: a diagnostic of one intent's messages.
  await import('./tap.ts');
}
if (only.has('soak')) {
  // Not in the default set: 100,000 intents take minutes.
  const { benchSoak, printSoak } = await import('./soak.ts');
  printSoak(await benchSoak());
}
process.exit(0);
