// Throwaway PostgreSQL databases with least-privilege roles: on the running
// server at 127.0.0.1:5432 when reachable, else on a private cluster.
import { execFile, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort, uniqueName } from './net.ts';
import { findBinary, makeTempDir, onProcessExit, removeDir, tailFile } from './process.ts';
import type { CreateTestDatabaseOptions, PgAccessMode, TestDatabase } from './postgres-types.ts';

const execFileAsync = promisify(execFile);
const HOST = '127.0.0.1';
const SHARED_PORT = 5432;
const SUPERUSER = 'postgres';

interface PgServer {
  kind: 'shared' | 'private';
  port: number;
}

const url = (user: string, password: string | undefined, port: number, database: string): string => {
  const auth = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  return `postgresql://${auth}@${HOST}:${port}/${encodeURIComponent(database)}`;
};

/** Runs statements one by one on a fresh superuser connection. */
async function runAsSuperuser(port: number, database: string, statements: readonly string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url(SUPERUSER, undefined, port, database), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}

async function sharedServerReachable(): Promise<boolean> {
  try {
    await runAsSuperuser(SHARED_PORT, 'postgres', ['SELECT 1']);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Private cluster: initdb + pg_ctl, as the postgres user when we are root.

/** The versioned bin folder (pg_config --bindir, else the newest /usr/lib/postgresql/N/bin). */
function postgresBinDir(): string {
  const pgConfig = findBinary('pg_config');
  if (pgConfig !== undefined) {
    const out = spawnSync(pgConfig, ['--bindir'], { encoding: 'utf8' });
    const dir = out.stdout?.trim();
    if (out.status === 0 && dir && existsSync(join(dir, 'initdb'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) {
    throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found; install them with: apt-get install postgresql');
  }
  return join(root, versions[0], 'bin');
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** argv that runs `bin` as the postgres user when we are root (PostgreSQL refuses to run as root). */
function asPostgres(bin: string, args: readonly string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', SUPERUSER, '--', bin, ...args]] : [bin, [...args]];
}

function postgresUserIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${SUPERUSER}:`));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error(`no "${SUPERUSER}" OS user to run a private PostgreSQL as; install it with: apt-get install postgresql`);
  }
  return { uid: Number(uid), gid: Number(gid) };
}

async function run(bin: string, args: readonly string[], what: string, logFile?: string): Promise<void> {
  const [cmd, argv] = asPostgres(bin, args);
  try {
    await execFileAsync(cmd, argv, { timeout: 120_000 });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    const log = logFile === undefined ? '' : `\n--- ${logFile} ---\n${tailFile(logFile)}`;
    throw new Error(`${what} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}${log}`, { cause: err });
  }
}

async function startPrivateCluster(): Promise<PgServer> {
  const bin = postgresBinDir();
  const dir = makeTempDir('pg');
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  if (isRoot()) {
    const { uid, gid } = postgresUserIds();
    chownSync(dir, uid, gid); // initdb creates `data` inside; pg_ctl writes the log and socket here
  }
  const pgCtl = join(bin, 'pg_ctl');
  const stopSync = (): void => {
    const [cmd, argv] = asPostgres(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']);
    if (existsSync(join(data, 'postmaster.pid'))) spawnSync(cmd, argv, { stdio: 'ignore', timeout: 30_000 });
    removeDir(dir);
  };
  onProcessExit(stopSync);
  await run(join(bin, 'initdb'), ['-D', data, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'], 'initdb');
  // A port from freePort() can be taken before the postmaster binds it: retry with another.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const serverOpts = `-p ${port} -k ${dir} -c listen_addresses=${HOST} -c fsync=off -c full_page_writes=off`;
    try {
      await run(pgCtl, ['-D', data, '-l', logFile, '-o', serverOpts, '-w', '-t', '60', 'start'], 'pg_ctl start', logFile);
      return { kind: 'private', port };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

let privateCluster: Promise<PgServer> | undefined;
let sharedChecked: Promise<boolean> | undefined;

async function chooseServer(choice: CreateTestDatabaseOptions['server'] = 'auto'): Promise<PgServer> {
  if (choice !== 'private') {
    sharedChecked ??= sharedServerReachable();
    if (await sharedChecked) return { kind: 'shared', port: SHARED_PORT };
    if (choice === 'shared') throw new Error(`no PostgreSQL accepting user ${SUPERUSER} without a password at ${HOST}:${SHARED_PORT}`);
  }
  privateCluster ??= startPrivateCluster();
  try {
    return await privateCluster;
  } catch (err) {
    privateCluster = undefined; // let a later call try again
    throw err;
  }
}

// ---------------------------------------------------------------------------

/** GRANTs for the two roles, including default privileges on objects the admin creates later. */
function grantStatements(database: string, ro: string, rw: string): string[] {
  const owner = SUPERUSER; // default privileges apply to objects created by this role only
  return [
    // PG 15 already withholds CREATE on public; older servers granted it to everyone.
    'REVOKE CREATE ON SCHEMA public FROM PUBLIC',
    `GRANT USAGE ON SCHEMA public TO ${ro}, ${rw}`,
    `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${ro}`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${rw}`,
    `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${rw}`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT ON TABLES TO ${ro}`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${rw}`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${rw}`,
    // Only our roles (and superusers) may connect: other tests' roles stay out.
    `REVOKE ALL ON DATABASE ${database} FROM PUBLIC`,
    `GRANT CONNECT ON DATABASE ${database} TO ${ro}, ${rw}`,
  ];
}

/** Drops database and roles through psql, synchronously, for the exit hook. */
function dropSync(port: number, database: string, roles: readonly string[]): void {
  const psql = findBinary('psql');
  if (psql === undefined) return;
  const sql = [`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`, ...roles.map((r) => `DROP ROLE IF EXISTS ${r}`)];
  spawnSync(psql, ['-h', HOST, '-p', String(port), '-U', SUPERUSER, '-d', 'postgres', '-q', ...sql.flatMap((s) => ['-c', s])], {
    stdio: 'ignore',
    timeout: 10_000,
  });
}

/**
 * Creates `writ_test_<random>` with a read-only and a read-write role. Tests create
 * tables through adminUrl and call drop() in afterAll.
 */
export async function createTestDatabase(opts: CreateTestDatabaseOptions = {}): Promise<TestDatabase> {
  const server = await chooseServer(opts.server);
  const database = uniqueName(opts.prefix ?? 'writ_test');
  const read = { user: uniqueName('writ_ro'), password: randomBytes(18).toString('base64url') };
  const write = { user: uniqueName('writ_rw'), password: randomBytes(18).toString('base64url') };
  // A private cluster is deleted whole at exit; on the shared one, drop what we made.
  const unregister = server.kind === 'shared' ? onProcessExit(() => dropSync(server.port, database, [read.user, write.user])) : () => {};

  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropping ??= (async () => {
      await runAsSuperuser(server.port, 'postgres', [`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`, `DROP ROLE IF EXISTS ${read.user}`, `DROP ROLE IF EXISTS ${write.user}`]);
      unregister();
    })();
    return dropping;
  };

  try {
    // Names are [a-z0-9_] from uniqueName, passwords base64url: safe to interpolate.
    await runAsSuperuser(server.port, 'postgres', [
      `CREATE ROLE ${read.user} LOGIN PASSWORD '${read.password}'`,
      `CREATE ROLE ${write.user} LOGIN PASSWORD '${write.password}'`,
      `CREATE DATABASE ${database}`,
    ]);
    await runAsSuperuser(server.port, database, grantStatements(database, read.user, write.user));
  } catch (err) {
    await drop().catch(() => undefined);
    throw err;
  }

  const connectionString = (mode: PgAccessMode): string => {
    switch (mode) {
      case 'admin':
        return url(SUPERUSER, undefined, server.port, database);
      case 'read':
        return url(read.user, read.password, server.port, database);
      case 'write':
        return url(write.user, write.password, server.port, database);
    }
  };
  return {
    host: HOST,
    port: server.port,
    database,
    server: server.kind,
    adminUrl: connectionString('admin'),
    roles: { read, write },
    connectionString,
    drop,
  };
}
