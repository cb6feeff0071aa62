/**
 * End-to-end benchmark: a trivial SELECT sent directly through pg (pool of 8) and sent
 * through Writ (agent → NATS → broker → worker → pg → result), in the same run, at 1,
 * 16 and 64 concurrent agents. The broker and worker run in a child process (as `writ up`
 * does), the agents in this one; nats-server runs with GOMAXPROCS=1. nats-server 2.9
 * does not fsync each message: figures are for its default (non-fsync) file store.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { loadDevIssuer, mintDevToken } from '../broker/index.ts';
import { WritClient } from '../client/index.ts';
import { createTestDatabase, freePort, startNats } from '../test/helpers/index.ts';
import { perIntent, snapshot, type PerIntentCost } from './procstat.ts';
import { fmt, load, type LoadFigures } from './stats.ts';

/** Concurrency levels; BENCH_CONCURRENCY=64 (comma-separated) narrows a run, =none measures the 1,000-row result alone. */
const LEVELS = process.env.BENCH_CONCURRENCY === 'none' ? [] : (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number);
/** BENCH_SIM=1: the worker answers without a database (a simulation of the broker's capacity). */
const SIM = process.env.BENCH_SIM === '1';

/** What each Writ step cost per intent, by concurrency level (see procstat.ts). */
const costs: Record<string, PerIntentCost> = {};

export async function benchE2E(opts: { durationMs?: number } = {}): Promise<Record<string, LoadFigures>> {
  const durationMs = opts.durationMs ?? Number(process.env.BENCH_MS ?? 5000);
  // The monitoring port gives the server's own counters: JetStream API calls, stored messages, bytes.
  const httpPort = await freePort();
  const nats = await startNats({ gomaxprocs: 1, extraConfig: `http: 127.0.0.1:${httpPort}` });
  const monitor = `http://127.0.0.1:${httpPort}`;
  const db = await createTestDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'writ-bench-'));
  const cfgFile = join(dir, 'writ.yaml');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      prefix: 'writ',
      identity: { devIssuer: { enabled: true, dir: join(dir, 'dev-issuer') } },
      grants: { keyFile: join(dir, 'grant-key.pem') },
      targets: [{ name: 'db', kind: 'postgres' }],
      policy: { rules: [{ id: 'bench', effect: 'allow', groups: ['bench'], targets: ['db'], mode: 'read', limits: { rows: 5000 } }], masking: { columns: [{ column: 'public.people.email' }] } },
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
      log: { level: 'warn' },
    }),
  );
  // BENCH_PROF=DIR writes CPU profiles of the service processes there. BENCH_SPLIT=1 runs the
  // broker and the worker as two processes (as a deployment does) instead of one (as `writ up`);
  // BENCH_SPLIT=2 runs two of each. BENCH_SIM=1 is the broker's capacity: one broker process,
  // and a simulated worker (no database) in another; its figures are labelled a simulation.
  // BENCH_HANDOVER=0 sends one process's orders through the bus (stack-process.ts).
  const prof = process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  const roles = SIM ? ['broker', 'sim-worker'] : process.env.BENCH_SPLIT === '2' ? ['broker', 'broker', 'worker', 'worker'] : process.env.BENCH_SPLIT ? ['broker', 'worker'] : ['both'];
  const children = [];
  for (const role of roles) {
    const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(import.meta.dirname, 'stack-process.ts'), cfgFile, role], {
      env: { ...process.env, NATS_URL: nats.url, WRIT_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('READY') && resolve());
      child.once('exit', (c) => reject(new Error(`${role} exited ${c}`)));
    });
    children.push(child);
  }
  const pids: Record<string, number> = { 'nats-server': nats.pid };
  children.forEach((c, i) => {
    const name = roles[i] === 'both' ? 'broker+worker' : roles[i]!;
    pids[roles.indexOf(roles[i]!) === i ? name : `${name} 2`] = c.pid!;
  });
  // Each Writ step is measured with the cost it caused, per intent served.
  const measured = async (key: string, run: () => Promise<LoadFigures>): Promise<LoadFigures> => {
    const a = await snapshot(pids, monitor);
    const f = await run();
    costs[key] = perIntent(a, await snapshot(pids, monitor), f.n + f.errors);
    return f;
  };

  // A 1,000-row table for the masked-result measurement (all detectors on, one column rule).
  const admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(`CREATE TABLE people AS SELECT g AS id, 'Person ' || g AS name, 'person' || g || '@example.com' AS email,
    '+1 415 555 ' || lpad((g % 10000)::text, 4, '0') AS phone, 'note ' || md5(g::text) AS note, now() AS created FROM generate_series(1, 1000) g`);
  await admin.end();
  const direct = new pg.Pool({ connectionString: db.connectionString('read'), max: 8 });
  const nc = await connect({ servers: nats.url });
  const dev = await loadDevIssuer(join(dir, 'dev-issuer'), false);
  const token = await mintDevToken(dev, { sub: 'bench', groups: ['bench'], audience: 'writ', ttlSec: 3000 });
  // One session per concurrent agent, as planner runs have: each session is one audit chain.
  const clients = Array.from({ length: 64 }, (_, i) => new WritClient({ nc, token, sessionId: `bench-${Date.now().toString(36)}-${i}` }));
  const out: Record<string, LoadFigures> = {};
  try {
    // What the services burn with no load (timers, heartbeats, sweeps): CPU ms per second idle.
    const idleA = await snapshot(pids, monitor);
    await new Promise((r) => setTimeout(r, 2000));
    costs['idle, per second'] = perIntent(idleA, await snapshot(pids, monitor), 2);
    // Warm both paths (JIT, pools, caches).
    await load(() => direct.query('SELECT 1'), 8, 500);
    await load((i) => clients[i]!.run({ target: 'db', sql: 'SELECT 1' }), 8, 1000);
    for (const c of LEVELS) {
      out[`direct c=${c}`] = await load(() => direct.query('SELECT 1'), c, durationMs);
      out[`writ c=${c}`] = await measured(`writ c=${c}`, () =>
        load(
          async (i) => {
            const o = await clients[i]!.run({ target: 'db', sql: 'SELECT 1' });
            if (o.status !== 'succeeded') throw new Error(o.error?.code ?? o.status);
          },
          c,
          durationMs,
        ),
      );
    }
    if (process.env.BENCH_SKIP_ROWS || SIM) return out;
    const rowsSql = 'SELECT id, name, email, phone, note, created FROM people ORDER BY id';
    out['direct 1000 rows'] = await load(() => direct.query(rowsSql), 1, durationMs);
    out['writ 1000 rows masked'] = await measured('writ 1000 rows masked', () =>
      load(
        async () => {
          const o = await clients[0]!.run({ target: 'db', sql: rowsSql });
          if (o.status !== 'succeeded' || o.result!.rowCount !== 1000 || !o.result!.columns[2]!.masked) throw new Error(o.error?.code ?? 'unexpected result');
        },
        1,
        durationMs,
      ),
    );
  } finally {
    await nc.close();
    await direct.end();
    for (const child of children.reverse()) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await db.drop();
    await nats.stop();
  }
  return out;
}

export function printE2E(r: Record<string, LoadFigures>): void {
  printRows(r);
  console.log(
    SIM
      ? '\n## SIMULATION, not end to end: one broker process, the worker answering without a database (BENCH_SIM=1); direct pg for scale only'
      : `\n## End to end: SELECT 1, direct pg (pool 8) vs through Writ${process.env.BENCH_SPLIT ? ` (services as ${process.env.BENCH_SPLIT === '2' ? 'two brokers and two workers' : 'one broker and one worker process'}, BENCH_SPLIT)` : ''}`,
  );
  console.log('| concurrency | direct p50 ms | direct p99 ms | direct ops/s | writ p50 ms | writ p99 ms | writ ops/s | p50 +ms | p50 ratio | throughput ratio | writ errors |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const c of LEVELS) {
    const d = r[`direct c=${c}`]!;
    const w = r[`writ c=${c}`]!;
    console.log(
      `| ${c} | ${fmt(d.p50)} | ${fmt(d.p99)} | ${fmt(d.perSec, 0)} | ${fmt(w.p50)} | ${fmt(w.p99)} | ${fmt(w.perSec, 0)} | ${fmt(w.p50 - d.p50)} | ${fmt(w.p50 / d.p50, 1)}x | ${fmt(w.perSec / d.perSec, 3)} | ${w.errors} |`,
    );
  }
  printCosts();
}

/** CPU ms per intent of each process, and the server's work per intent, for each measured step. */
function printCosts(): void {
  const keys = Object.keys(costs);
  if (keys.length === 0) return;
  const procs = Object.keys(costs[keys[0]!]!.cpuMs);
  console.log('\n## Cost per intent through Writ (CPU from /proc/<pid>/stat; server counters from /varz and /jsz)');
  console.log(`| step | ${procs.map((p) => `${p} CPU ms`).join(' | ')} | JetStream API calls | stored messages | messages via server | bytes via server |`);
  console.log(`|---|${procs.map(() => '---|').join('')}---|---|---|---|`);
  for (const k of keys) {
    const c = costs[k]!;
    console.log(`| ${k} | ${procs.map((p) => fmt(c.cpuMs[p]!, 3)).join(' | ')} | ${fmt(c.jsApi, 2)} | ${fmt(c.stored, 2)} | ${fmt(c.msgs, 1)} | ${fmt(c.bytes, 0)} |`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printE2E(await benchE2E());
}

function printRows(r: Record<string, LoadFigures>): void {
  const d = r['direct 1000 rows'];
  const w = r['writ 1000 rows masked'];
  if (!d || !w) return;
  console.log('\n## End to end: a 1,000-row, 6-column result, masked (column rule + every detector), one agent');
  console.log('| path | p50 ms | p99 ms | ops/s | errors |');
  console.log('|---|---|---|---|---|');
  console.log(`| direct pg | ${fmt(d.p50)} | ${fmt(d.p99)} | ${fmt(d.perSec, 0)} | ${d.errors} |`);
  console.log(`| through Writ | ${fmt(w.p50)} | ${fmt(w.p99)} | ${fmt(w.perSec, 0)} | ${w.errors} |`);
  console.log(`| ratio | ${fmt(w.p50 / d.p50, 1)}x | | ${fmt(w.perSec / d.perSec, 3)} | |`);
}
