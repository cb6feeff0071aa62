// Throwaway MariaDB: a private mariadbd (mariadb-install-db into a temp dir, a random
// loopback port, its own socket, stopped by pid) and per-test databases with
// least-privilege users on it.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { freePort, probeTcp, uniqueName } from './net.ts';
import { makeTempDir, onProcessExit, pollUntil, removeDir, requireBinary, signal, spawnLogged, terminate, type SpawnedServer } from './process.ts';
import type { CreateTestMariadbOptions, MariadbServerHandle, StartMariadbOptions, TestMariadb } from './mariadb-types.ts';

const execFileAsync = promisify(execFile);
const HOST = '127.0.0.1';

/** Runs statements as root through the server's socket; one fresh connection per call. */
async function asRoot(socketPath: string, database: string | undefined, statements: readonly string[]): Promise<unknown[]> {
  const c = await mysql.createConnection({ socketPath, user: 'root', ...(database ? { database } : {}), connectTimeout: 5_000 });
  try {
    const out: unknown[] = [];
    for (const sql of statements) out.push((await c.query(sql))[0]);
    return out;
  } finally {
    await c.end().catch(() => c.destroy());
  }
}

/** Starts one mariadbd on a free loopback port; rejects with its log tail if it dies first. */
export async function startMariadb(opts: StartMariadbOptions = {}): Promise<MariadbServerHandle> {
  const mariadbd = requireBinary('mariadbd', 'mariadb-server');
  const installDb = requireBinary('mariadb-install-db', 'mariadb-server');
  const dir = makeTempDir('mariadb');
  const data = join(dir, 'data');
  const socketPath = join(dir, 'mysqld.sock');
  const logFile = join(dir, 'mariadbd.err');
  let server: SpawnedServer | undefined;
  const unregister = onProcessExit(() => {
    if (server) signal(server.pid, 'SIGKILL');
    removeDir(dir);
  });
  const fail = async (err: unknown): Promise<never> => {
    if (server) await terminate(server, 30_000);
    removeDir(dir);
    unregister();
    throw err;
  };
  // --no-defaults first: the machine's /etc/mysql config (its port, socket, datadir) must not apply.
  // `normal` root auth: root@localhost with no password, reachable only through our own socket.
  const user = process.getuid?.() === 0 ? ['--user=root'] : [];
  // A private temporary directory: servers bootstrapping at once in a shared /tmp removed each
  // other's temporary tables ("Error on delete of '/tmp/#sql-temptable-…'"), failing the install.
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  try {
    await execFileAsync(installDb, ['--no-defaults', `--datadir=${data}`, ...user, '--auth-root-authentication-method=normal', '--skip-test-db', `--tmpdir=${tmp}`], {
      timeout: 120_000,
      env: { ...process.env, TMPDIR: tmp },
    });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    return fail(new Error(`mariadb-install-db failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err }));
  }
  // A port from freePort() can be taken before mariadbd binds it: retry with another.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      server = await spawnLogged(mariadbd, {
        logFile: join(dir, 'mariadbd.out'),
        args: [
          '--no-defaults',
          `--datadir=${data}`,
          `--tmpdir=${tmp}`,
          ...user,
          `--port=${port}`,
          `--bind-address=${HOST}`,
          `--socket=${socketPath}`,
          `--pid-file=${join(dir, 'mariadbd.pid')}`,
          `--log-error=${logFile}`,
          '--skip-name-resolve',
          '--innodb-buffer-pool-size=32M',
          '--innodb-flush-log-at-trx-commit=0',
          '--innodb-doublewrite=0',
          '--max-connections=300',
          ...(opts.extraArgs ?? []),
        ],
      });
      const live = server;
      const timeoutMs = opts.startTimeoutMs ?? 60_000;
      // The greeting on the TCP port, then a root login through the socket.
      await pollUntil('mariadbd TCP port', async () => ((await probeTcp(port))?.length ? true : undefined), { server: live, logFile, timeoutMs });
      const version = await pollUntil(
        'mariadbd root login',
        async () => {
          try {
            const [r] = (await asRoot(socketPath, undefined, ['SELECT VERSION() AS v'])) as Array<Array<{ v: string }>>;
            return r?.[0]?.v;
          } catch {
            return undefined;
          }
        },
        { server: live, logFile, timeoutMs },
      );
      let stopping: Promise<void> | undefined;
      const stop = (): Promise<void> => {
        stopping ??= (async () => {
          await terminate(live, 30_000);
          removeDir(dir);
          unregister();
        })();
        return stopping;
      };
      return { host: HOST, port, socketPath, pid: live.pid, version, logFile, stop, kill9: () => signal(live.pid, 'SIGKILL') };
    } catch (err) {
      lastError = err;
      if (server) await terminate(server, 30_000);
      server = undefined;
    }
  }
  return fail(lastError);
}

let shared: Promise<MariadbServerHandle> | undefined;

/** The process's private server, started on first use and stopped at exit. */
function sharedServer(): Promise<MariadbServerHandle> {
  shared ??= startMariadb().catch((err: unknown) => {
    shared = undefined; // let a later call try again
    throw err;
  });
  return shared;
}

/**
 * Creates `writ_test_<random>` with a read-only and a read-write user. Tests create tables
 * through admin() and call drop() in afterAll.
 */
export async function createTestMariadb(opts: CreateTestMariadbOptions = {}): Promise<TestMariadb> {
  const server = opts.server ?? (await sharedServer());
  const database = uniqueName(opts.prefix ?? 'writ_test');
  const read = { user: uniqueName('writ_ro'), password: randomBytes(18).toString('base64url') };
  const write = { user: uniqueName('writ_rw'), password: randomBytes(18).toString('base64url') };
  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropping ??= asRoot(server.socketPath, undefined, [
      `DROP DATABASE IF EXISTS \`${database}\``,
      `DROP USER IF EXISTS '${read.user}'@'${HOST}'`,
      `DROP USER IF EXISTS '${write.user}'@'${HOST}'`,
    ]).then(() => undefined);
    return dropping;
  };
  try {
    // Names are [a-z0-9_] from uniqueName, passwords base64url: safe to interpolate.
    await asRoot(server.socketPath, undefined, [
      `CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`,
      `CREATE USER '${read.user}'@'${HOST}' IDENTIFIED BY '${read.password}'`,
      `CREATE USER '${write.user}'@'${HOST}' IDENTIFIED BY '${write.password}'`,
      // SHOW VIEW lets the worker read a view's definition to trace its columns to base columns.
      `GRANT SELECT, SHOW VIEW ON \`${database}\`.* TO '${read.user}'@'${HOST}'`,
      `GRANT SELECT, SHOW VIEW, INSERT, UPDATE, DELETE ON \`${database}\`.* TO '${write.user}'@'${HOST}'`,
    ]);
  } catch (err) {
    await drop().catch(() => undefined);
    throw err;
  }
  return {
    host: HOST,
    port: server.port,
    database,
    server,
    users: { read, write },
    admin: (statements) => asRoot(server.socketPath, database, statements),
    drop,
  };
}
