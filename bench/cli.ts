/**
 * `npm run bench -- cli`: what a person or a script waits for per `writ` call. Wall time of the
 * compiled bin (`dist/cmd/cli.js`, one process, as `npm install` links it) for `writ --help`,
 * `writ token` and one `writ exec` round trip against a running local stack (`writ up`, also
 * compiled, with its own nats-server and role passwords in a temporary WRIT_HOME), beside a
 * bare `node -e ''` start and the same intent sent in-process through the SDK (the intent's own
 * latency). Goals (issue 14): `--help` ≤ 150 ms; `exec` ≤ 300 ms over the intent's own latency.
 * For reference it also times the CLI run from source through tsx, as `bin/writ.mjs` used to.
 * BENCH_CLI_RUNS (default 15) sets the runs per command; BENCH_PROF=DIR writes a CPU profile of
 * every `writ exec` run there.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { WritClient } from '../client/index.ts';
import { createTestDatabase } from '../test/helpers/index.ts';
import { percentile } from './stats.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'dist', 'cmd', 'cli.js');
const GOAL_HELP_MS = 150;
const GOAL_EXEC_OVER_MS = 300;

export interface CliFigures {
  runs: number;
  /** Wall times in ms, by what was run: p50, p90, min. */
  rows: Array<{ what: string; p50: number; p90: number; min: number }>;
  helpP50: number;
  execP50: number;
  intentP50: number;
}

interface Series {
  what: string;
  times: number[];
}

function summary(s: Series) {
  const t = [...s.times].sort((a, b) => a - b);
  return { what: s.what, p50: percentile(t, 50), p90: percentile(t, 90), min: t[0]! };
}

/** Wall time of one child process, start to exit, in ms. */
async function wall(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  await run(cmd, args, { env, cwd: tmpdir(), maxBuffer: 16 * 1024 * 1024 });
  return performance.now() - t0;
}

async function upStack(config: string, env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'up', '--config', config], { env, cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`writ up did not come up in 60 s:\n${out}`)), 60_000);
    child.once('exit', (c) => reject(new Error(`writ up exited ${c}:\n${out}`)));
    child.stdout!.on('data', () => {
      if (out.includes('Writ is up.')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return child;
}

export async function benchCli(opts: { runs?: number } = {}): Promise<CliFigures> {
  const runs = opts.runs ?? Number(process.env.BENCH_CLI_RUNS ?? 15);
  // The compiled bin is what is measured: build it from the current sources first.
  await run(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT });
  const dir = mkdtempSync(join(tmpdir(), 'writ-bench-cli-'));
  const home = join(dir, 'home');
  const db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query("CREATE TABLE items AS SELECT g AS id, 'item ' || g AS name FROM generate_series(1, 10) g");
  await admin.end();
  const config = join(dir, 'writ.json');
  writeFileSync(
    config,
    JSON.stringify({
      prefix: 'writ',
      identity: { devIssuer: { enabled: true, dir: '$WRIT_HOME/dev-issuer', audience: 'writ' } },
      grants: { keyFile: '$WRIT_HOME/grant-key.pem' },
      targets: [{ name: 'db', kind: 'postgres' }],
      policy: { rules: [{ id: 'bench', effect: 'allow', groups: ['bench'], targets: ['db'], mode: 'read' }] },
      workers: {
        postgres: [{ target: 'db', host: db.host, port: db.port, database: db.database, credentials: { read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } } } }],
      },
      log: { level: 'warn' },
    }),
  );
  // Only WRIT_HOME tells the CLI where the stack is; --config names the bench's config.
  const env: NodeJS.ProcessEnv = { ...process.env, WRIT_HOME: home, WRIT_LOG_LEVEL: 'warn' };
  for (const k of ['NATS_URL', 'WRIT_CONFIG', 'WRIT_TOKEN', 'WRIT_DATA_DIR', 'WRIT_PREFIX']) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith('WRIT_NATS_')) delete env[k];
  const stack = await upStack(config, env);
  try {
    const token = (await run(process.execPath, [BIN, 'token', '--config', config, '--sub', 'bench', '--groups', 'bench', '--ttl', '30m'], { env })).stdout.trim();
    // The intent alone: the SDK in this process, over the agent's own connection to the same stack.
    const url = readFileSync(join(home, 'nats.url'), 'utf8').trim();
    const nc = await connect({ servers: url, user: 'agent', pass: readFileSync(join(home, 'nats', 'auth', 'agent.password'), 'utf8').trim(), inboxPrefix: '_INBOX.agent' });
    const client = new WritClient({ nc, token, prefix: 'writ', inboxPrefix: '_INBOX.agent' });
    const sql = 'SELECT id, name FROM items ORDER BY id';
    const series: Series[] = [
      { what: "node -e ''", times: [] },
      { what: 'writ --help', times: [] },
      { what: 'writ token', times: [] },
      { what: 'writ exec (10-row SELECT)', times: [] },
      { what: 'the intent alone (SDK, in-process)', times: [] },
      { what: 'writ --help from source via tsx (before)', times: [] },
    ];
    const tsx = join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
    // BENCH_PROF=DIR: a V8 CPU profile of every `writ exec` run, to see where its wall time goes.
    const prof = process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROF] : [];
    const steps: Array<() => Promise<number>> = [
      () => wall(process.execPath, ['-e', ''], env),
      () => wall(process.execPath, [BIN, '--help'], env),
      () => wall(process.execPath, [BIN, 'token', '--config', config, '--sub', 'bench', '--groups', 'bench'], env),
      () => wall(process.execPath, [...prof, BIN, 'exec', '--target', 'db', '--sql', sql, '--json'], { ...env, WRIT_TOKEN: token }),
      async () => {
        const t0 = performance.now();
        const o = await client.run({ target: 'db', sql });
        if (o.status !== 'succeeded') throw new Error(`bench intent ${o.status}: ${o.error?.code}`);
        return performance.now() - t0;
      },
      () => wall(process.execPath, ['--import', tsx, join(ROOT, 'cmd', 'cli.ts'), '--help'], env),
    ];
    // One warm-up each (disk cache, the worker's first connection), then the runs interleaved,
    // so a load change on the machine touches every series alike.
    for (const step of steps) await step();
    for (let i = 0; i < runs; i++) for (const [k, step] of steps.entries()) series[k]!.times.push(await step());
    await nc.close();
    const rows = series.map(summary);
    return { runs, rows, helpP50: rows[1]!.p50, execP50: rows[3]!.p50, intentP50: rows[4]!.p50 };
  } finally {
    const exited = new Promise((r) => stack.once('exit', r));
    stack.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (stack.exitCode === null) stack.kill('SIGKILL');
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printCli(f: CliFigures): void {
  const ms = (x: number) => `${x.toFixed(0).padStart(5)} ms`;
  console.log(`\n## CLI wall time (compiled bin, ${f.runs} runs each; p50 / p90 / min)`);
  for (const r of f.rows) console.log(`${r.what.padEnd(44)} ${ms(r.p50)} ${ms(r.p90)} ${ms(r.min)}`);
  const over = f.execP50 - f.intentP50;
  const verdict = (ok: boolean) => (ok ? 'meets the goal' : 'MISSES the goal');
  console.log(`goal: writ --help ≤ ${GOAL_HELP_MS} ms: p50 ${f.helpP50.toFixed(0)} ms, ${verdict(f.helpP50 <= GOAL_HELP_MS)}`);
  console.log(`goal: writ exec ≤ ${GOAL_EXEC_OVER_MS} ms over the intent: p50 ${f.execP50.toFixed(0)} − ${f.intentP50.toFixed(0)} = ${over.toFixed(0)} ms, ${verdict(over <= GOAL_EXEC_OVER_MS)}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printCli(await benchCli());
  process.exit(0);
}
