/**
 * `writ` from any directory, and `writ up` touching only what it owns.
 * - Every command finds the local stack (NATS URL, role passwords, keys, the shipped config)
 *   in WRIT_HOME, never in the working directory: a folder holding a decoy `.data/` and
 *   `deploy/local/writ.yaml` changes nothing, and nothing is written into it.
 * - `writ up` creates and seeds a database only for a config with `demo: true`; with any
 *   other config it starts the services and leaves the databases it names as they were.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createTestDatabase, uniqueName, type TestDatabase } from './helpers/index.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const CLI = join(REPO, 'cmd', 'cli.ts');
// Absolute, so the CLI runs from folders outside the repository.
const TSX = import.meta.resolve('tsx');

let dir: string;
let db: TestDatabase;
let demoDb: string;
let absentDb: string;
const stacks: ChildProcess[] = [];

function env(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, WRIT_HOME: home, WRIT_LOG_LEVEL: 'silent', PGHOST: db.host, PGPORT: String(db.port), PGUSER: 'postgres' };
  // Nothing but WRIT_HOME tells a command where the stack is.
  for (const k of Object.keys(e)) if (k === 'NATS_URL' || k === 'WRIT_DATA_DIR' || k === 'WRIT_CONFIG' || k === 'WRIT_TOKEN' || k === 'PGDATABASE' || k.startsWith('WRIT_NATS_')) delete e[k];
  return { ...e, ...extra };
}

async function writ(cwd: string, home: string, args: string[], extra: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(process.execPath, ['--import', TSX, CLI, ...args], { cwd, env: env(home, extra), timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** `writ up --config FILE` from `cwd`; resolves once it says it is up. */
async function up(cwd: string, home: string, configFile: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', TSX, CLI, 'up', '--config', configFile], { cwd, env: env(home), stdio: ['ignore', 'pipe', 'pipe'] });
  stacks.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`writ up did not come up in 60 s:\n${out}`)), 60_000);
    child.once('close', (c) => {
      clearTimeout(t);
      reject(new Error(`writ up exited ${c}:\n${out}`));
    });
    child.stdout!.on('data', () => {
      if (out.includes('Writ is up.')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** The shipped local config, with the given changes; its keys stay at `$WRIT_HOME/…`. */
function localConfig(file: string, change: (cfg: Record<string, any>) => void): string {
  const cfg = parseYaml(readFileSync(join(REPO, 'deploy/local/writ.yaml'), 'utf8')) as Record<string, any>;
  expect(cfg.grants.keyFile).toBe('$WRIT_HOME/grant-key.pem');
  cfg.policyFile = join(REPO, 'deploy/local/policy.yaml');
  change(cfg);
  writeFileSync(file, JSON.stringify(cfg));
  return file;
}

async function admin<T>(database: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: db.host, port: db.port, user: 'postgres', database });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}
const databaseExists = (name: string) => admin('postgres', async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-anywhere-'));
  db = await createTestDatabase();
  demoDb = uniqueName('writ_test_demo').toLowerCase();
  absentDb = uniqueName('writ_test_absent').toLowerCase();
  // Someone's own database, with a `customers` table of its own shape.
  await admin(db.database, (c) => c.query("CREATE TABLE customers (id int PRIMARY KEY, note text); INSERT INTO customers VALUES (1, 'mine')"));
}, 120_000);

afterAll(async () => {
  for (const s of stacks) await stop(s);
  if (db) {
    for (const name of [demoDb, absentDb]) if (name) await admin('postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)).catch(() => undefined);
    await db.drop();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('writ from any directory', () => {
  it('finds the stack, its credentials and the shipped config in WRIT_HOME, ignoring the working directory', async () => {
    const home = join(dir, 'home-demo');
    const cwd = join(dir, 'elsewhere');
    // Decoys where the CLI used to look: a local stack's URL file and a config in the cwd.
    mkdirSync(join(cwd, '.data'), { recursive: true });
    mkdirSync(join(cwd, 'deploy', 'local'), { recursive: true });
    writeFileSync(join(cwd, '.data', 'nats.url'), 'nats://127.0.0.1:1\n');
    writeFileSync(join(cwd, 'deploy', 'local', 'writ.yaml'), 'not: [a config\n');
    const cfg = localConfig(join(dir, 'demo.json'), (c) => (c.workers.postgres[0].database = demoDb));
    await up(join(dir), home, cfg);

    // No --config, no WRIT_CONFIG: the shipped config, whose dev issuer lives in WRIT_HOME.
    const tok = await writ(cwd, home, ['token', '--sub', 'alice', '--groups', 'analysts']);
    expect(tok.stderr).toBe('');
    expect(tok.code).toBe(0);
    const ex = await writ(cwd, home, ['exec', '--target', 'demo', '--sql', 'SELECT name FROM customers ORDER BY id', '--json', '--session', 'anywhere'], { WRIT_TOKEN: tok.stdout.trim() });
    expect(ex.stderr).toBe('');
    expect(ex.code).toBe(0);
    const o = JSON.parse(ex.stdout) as { status: string; result: { rows: unknown[][] } };
    expect(o.status).toBe('succeeded');
    // demo: true created and seeded the database the config names.
    expect(o.result.rows.map((r) => r[0])).toEqual(['Alice Example', 'Bob Example', 'Carol Example']);
    // The auditor's login comes from WRIT_HOME too.
    const replay = await writ(cwd, home, ['audit', 'replay', '--session', 'anywhere']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('exec.finished');
    // Nothing was written into the working directory, and the data directory holds the stack.
    expect(readdirSync(cwd).sort()).toEqual(['.data', 'deploy']);
    expect(readdirSync(join(cwd, '.data'))).toEqual(['nats.url']);
    expect(readdirSync(home)).toEqual(expect.arrayContaining(['nats.url', 'grant-key.pem', 'dev-issuer', 'nats']));
  });
});

describe('writ up touches only what it owns', () => {
  it('without demo: true, starts the services and neither creates nor writes into the databases its workers name', async () => {
    const home = join(dir, 'home-plain');
    // Role passwords nats-server would read as numbers, as random ones were one start in seven.
    mkdirSync(join(home, 'nats', 'auth'), { recursive: true, mode: 0o700 });
    for (const [i, role] of ['broker', 'worker', 'agent', 'approver', 'auditor', 'operator'].entries()) {
      writeFileSync(join(home, 'nats', 'auth', `${role}.password`), `${['8g', '1k', '-x', '9', '0e5', '7mb'][i]}AbCdEfGhIjKlMnOpQrStUv\n`, { mode: 0o600 });
    }
    const cfg = localConfig(join(dir, 'plain.json'), (c) => {
      delete c.demo;
      c.workers.postgres[0].database = db.database;
      c.targets.push({ name: 'absent', kind: 'postgres' });
      c.workers.postgres.push({ target: 'absent', database: absentDb, credentials: c.workers.postgres[0].credentials });
    });
    await up(dir, home, cfg);
    // The existing table keeps its shape and its one row; the other database was not created.
    const cols = await admin(db.database, async (c) =>
      (await c.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' ORDER BY ordinal_position")).rows.map((r: { column_name: string }) => r.column_name),
    );
    expect(cols).toEqual(['id', 'note']);
    expect(await admin(db.database, async (c) => (await c.query('SELECT note FROM customers')).rows)).toEqual([{ note: 'mine' }]);
    expect(await databaseExists(absentDb)).toBe(false);
    // The unreadable passwords were replaced by ones that start with a letter.
    for (const role of ['broker', 'approver', 'operator']) expect(readFileSync(join(home, 'nats', 'auth', `${role}.password`), 'utf8')).toMatch(/^[A-Za-z][A-Za-z0-9_-]{15,}\n$/);
  });

  it('refuses demo: true without a PostgreSQL worker, by name', async () => {
    const cfg = localConfig(join(dir, 'demo-no-worker.json'), (c) => {
      c.workers.postgres = [];
    });
    const r = await writ(dir, join(dir, 'home-bad'), ['up', '--config', cfg]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('WRIT_CONFIG_INVALID');
    expect(r.stderr).toContain('demo: true needs a workers.postgres entry');
  });
});
