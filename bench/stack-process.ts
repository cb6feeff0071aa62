/** A broker and a PostgreSQL worker in one process from a config file, for benchmarks. Prints READY. */
import { createBroker } from '../broker/index.ts';
import { connectNats, createLogger } from '../lib/index.ts';
import { loadConfigFile } from '../schemas/index.ts';
import { createWorker } from '../workers/index.ts';

const config = loadConfigFile(process.argv[2]!);
const log = createLogger({ name: 'bench-stack', level: process.env.WRIT_LOG_LEVEL ?? 'warn' });
const nc = await connectNats(process.env.NATS_URL, 'bench-stack');
const broker = await createBroker({ nc, config, log });
await broker.start();
const worker = await createWorker({ nc, config, log });
await worker.start();
process.stdout.write('READY\n');
process.once('SIGTERM', async () => {
  await worker.stop();
  await broker.stop();
  await nc.close();
  process.exit(0);
});
