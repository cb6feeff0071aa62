/**
 * A broker and/or a PostgreSQL worker from a config file, for benchmarks. The role comes
 * from argv[3]: `both` (default, as `writ up`), `broker` or `worker`. Prints READY.
 */
import { createBroker } from '../broker/index.ts';
import { connectNats, createLogger } from '../lib/index.ts';
import { loadConfigFile } from '../schemas/index.ts';
import { createWorker } from '../workers/index.ts';

const config = loadConfigFile(process.argv[2]!);
const role = process.argv[3] ?? 'both';
const log = createLogger({ name: `bench-${role}`, level: process.env.WRIT_LOG_LEVEL ?? 'warn' });
// The config's `nats` section with the environment over it (NATS_URL, WRIT_NATS_*).
const nc = await connectNats(config.nats, `bench-${role}`);
const services: Array<{ stop(): Promise<void> }> = [];
if (role !== 'worker') {
  const broker = await createBroker({ nc, config, log });
  await broker.start();
  services.push(broker);
}
if (role !== 'broker') {
  const worker = await createWorker({ nc, config, log });
  await worker.start();
  services.unshift(worker);
}
// SIGUSR2 asks for this process's memory (the soak benchmark samples it).
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  process.stdout.write(`MEM ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external })}\n`);
});
process.stdout.write('READY\n');
process.once('SIGTERM', async () => {
  for (const s of services) await s.stop();
  await nc.close();
  process.exit(0);
});
