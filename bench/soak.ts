/**
 * Soak: 100,000 intents (BENCH_SOAK_TOTAL) through one broker+worker process at 64 agents,
 * printing the service process's RSS and heap every 10,000. The goal: RSS after 100,000 is
 * within 20 % of RSS after 20,000 (no growth without a plateau). Distinct texts (a counter in
 * each statement) so the facts cache fills and must evict, as it would in production.
 * Each sample also prints the V8 heap spaces and what the bounded caches hold (docs/operations.md,
 * "Memory", explains the figures). For investigation, without changing the samples' method:
 * WRIT_SOAK_NODE_FLAGS (flags for the service, e.g. --trace-gc), WRIT_SOAK_CHILD_LOG (its stdout
 * to a file), and in the service WRIT_SOAK_GC=1 and WRIT_SOAK_HEAPSNAP_DIR (bench/stack-process.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { loadDevIssuer, mintDevToken } from '../broker/index.ts';
import { WritClient } from '../client/index.ts';
import { createTestDatabase, startNats } from '../test/helpers/index.ts';

interface Sample {
  intents: number;
  rssMB: number;
  heapMB: number;
  perSec: number;
  mem: Mem;
}
interface Mem {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** Heap after a full GC, only when the service runs with WRIT_SOAK_GC=1 (investigation). */
  liveHeap?: number;
  spaces: Record<string, { used: number; size: number }>;
  /** What the bounded caches hold: facts cache bytes and entries, session owners, claimed grants. */
  caches: Record<string, number>;
}
const MB = (n: number) => Math.round(n / 1048576);

async function memoryOf(child: ChildProcess): Promise<Mem> {
  return new Promise((resolve) => {
    const onData = (d: Buffer) => {
      const line = d
        .toString()
        .split('\n')
        .find((l) => l.startsWith('MEM '));
      if (!line) return;
      child.stdout!.off('data', onData);
      resolve(JSON.parse(line.slice(4)) as Mem);
    };
    child.stdout!.on('data', onData);
    child.kill('SIGUSR2');
  });
}

export async function benchSoak(opts: { total?: number; every?: number; concurrency?: number } = {}): Promise<Sample[]> {
  const total = opts.total ?? Number(process.env.BENCH_SOAK_TOTAL ?? 100_000);
  const every = opts.every ?? Math.max(1000, Math.floor(total / 10));
  const concurrency = opts.concurrency ?? 64;
  const nats = await startNats({ gomaxprocs: 1 });
  const db = await createTestDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'writ-soak-'));
  const cfgFile = join(dir, 'writ.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      prefix: 'writ',
      identity: { devIssuer: { enabled: true, dir: join(dir, 'dev-issuer') } },
      grants: { keyFile: join(dir, 'grant-key.pem') },
      targets: [{ name: 'db', kind: 'postgres' }],
      policy: { rules: [{ id: 'bench', effect: 'allow', groups: ['bench'], targets: ['db'], mode: 'read' }] },
      workers: {
        postgres: [
          {
            target: 'db',
            host: db.host,
            port: db.port,
            database: db.database,
            poolSize: 8,
            credentials: { read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } } },
          },
        ],
      },
      audit: { flushMs: 2 },
      log: { level: 'warn' },
    }),
  );
  // WRIT_SOAK_NODE_FLAGS: extra flags for the service process, for investigation (--trace-gc, --expose-gc).
  const flags = (process.env.WRIT_SOAK_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...flags, '--import', 'tsx', join(import.meta.dirname, 'stack-process.ts'), cfgFile, 'both'], {
    env: { ...process.env, NATS_URL: nats.url, WRIT_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // WRIT_SOAK_CHILD_LOG: a file for the service's stdout (what --trace-gc prints), for investigation.
  if (process.env.WRIT_SOAK_CHILD_LOG) child.stdout!.pipe(createWriteStream(process.env.WRIT_SOAK_CHILD_LOG));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('READY') && resolve());
    child.once('exit', (c) => reject(new Error(`stack exited ${c}`)));
  });
  const nc = await connect({ servers: nats.url });
  const dev = await loadDevIssuer(join(dir, 'dev-issuer'), false);
  const token = await mintDevToken(dev, { sub: 'bench', groups: ['bench'], audience: 'writ', ttlSec: 3600 });
  const clients = Array.from({ length: concurrency }, (_, i) => new WritClient({ nc, token, sessionId: `soak-${Date.now().toString(36)}-${i}` }));
  const samples: Sample[] = [];
  let sent = 0;
  let done = 0;
  let errors = 0;
  let windowStart = Date.now();
  try {
    await Promise.all(
      clients.map(async (c) => {
        while (sent < total) {
          const n = sent++;
          const o = await c.run({ target: 'db', sql: `SELECT ${n} AS n` }).catch(() => undefined);
          if (o?.status !== 'succeeded') errors++;
          done++;
          if (done % every === 0) {
            const m = await memoryOf(child);
            const now = Date.now();
            samples.push({ intents: done, rssMB: MB(m.rss), heapMB: MB(m.heapUsed), perSec: Math.round(every / ((now - windowStart) / 1000)), mem: m });
            windowStart = now;
            const sp = (k: string) => `${MB(m.spaces[k]?.used ?? 0)}/${MB(m.spaces[k]?.size ?? 0)}`;
            console.log(
              `soak: ${done} intents, service RSS ${MB(m.rss)} MB, heap ${MB(m.heapUsed)}/${MB(m.heapTotal)} MB (new ${sp('new')}, old ${sp('old')}, large ${sp('large_object')}, code ${sp('code')}), external ${MB(m.external)} MB${m.liveHeap !== undefined ? `, live after GC ${MB(m.liveHeap)} MB` : ''}, caches ${JSON.stringify(m.caches)}, ${samples.at(-1)!.perSec}/s, errors ${errors}`,
            );
          }
        }
      }),
    );
  } finally {
    await nc.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await db.drop();
    await nats.stop();
  }
  return samples;
}

export function printSoak(samples: Sample[]): void {
  console.log('\n## Soak: service memory over intents (64 agents, distinct texts)');
  console.log('| intents | RSS MB | heap used / total MB | old space used / size MB | facts cache MB (entries) | claimed grants | session owners | intents/s |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const s of samples) {
    const c = s.mem.caches;
    const old = s.mem.spaces.old;
    console.log(
      `| ${s.intents} | ${s.rssMB} | ${s.heapMB} / ${MB(s.mem.heapTotal)} | ${MB(old?.used ?? 0)} / ${MB(old?.size ?? 0)} | ${MB(c.factsBytes ?? 0)} (${c.factsEntries ?? 0}) | ${c.claimedGrants ?? 0} | ${c.sessionOwners ?? 0} | ${s.perSec} |`,
    );
  }
  const at20 = samples.find((s) => s.intents >= samples[samples.length - 1]!.intents / 5);
  const last = samples[samples.length - 1];
  if (at20 && last) console.log(`RSS at ${last.intents} / RSS at ${at20.intents}: ${(last.rssMB / at20.rssMB).toFixed(2)} (goal ≤ 1.20)`);
}
