/**
 * A Writ deployment the fault tests can break: a real nats-server (restartable in place, same
 * port and store), a throwaway PostgreSQL database with least-privilege roles, and the broker
 * and worker as SEPARATE processes (`cmd/cli.ts broker|worker --config FILE`), so a kill -9
 * takes a service down the way it happens in production. The test process is the agent (SDK).
 *
 * Every child is tracked by pid and SIGKILLed in stop(); stop() is safe to call twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { loadDevIssuer, loadOrCreateGrantKey, mintDevToken, type DevIssuer } from '../../../broker/index.ts';
import { WritClient } from '../../../client/index.ts';
import { connectNats } from '../../../lib/index.ts';
import { names as makeNames, type ConfigInput, type Names } from '../../../schemas/index.ts';
import { createTestDatabase, startNats, type NatsServerHandle, type TestDatabase } from '../../helpers/index.ts';

export const REPO = join(import.meta.dirname, '..', '..', '..');
export const CLI = join(REPO, 'cmd', 'cli.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The target table: one row per execution, so the target itself counts how often an intent ran. */
export const RUNS_SQL = 'CREATE TABLE runs (id bigserial PRIMARY KEY, tag text NOT NULL, at timestamptz NOT NULL DEFAULT now())';

/** A broker or worker child process. */
export interface Proc {
  kind: 'broker' | 'worker';
  pid: number;
  logFile: string;
  /** Set once the process has exited: its code or signal. */
  exit: { code: number | null; signal: string | null } | undefined;
  /** True when the test ended it on purpose (kill9/term); an exit without it is a crash. */
  killedByTest: boolean;
  kill9(): void;
  /** SIGTERM, wait up to `ms`; resolves with whether it exited in time. */
  term(ms?: number): Promise<boolean>;
  /** Last characters of its output (stdout and stderr). */
  tail(chars?: number): string;
}

export interface FaultStack {
  nats: NatsServerHandle;
  db: TestDatabase;
  admin: pg.Client;
  prefix: string;
  names: Names;
  dir: string;
  configFile: string;
  /** The test's own connection (reconnects forever, like the services'). */
  nc: NatsConnection;
  dev: DevIssuer;
  procs: Proc[];
  startBroker(): Promise<Proc>;
  startWorker(): Promise<Proc>;
  /** Stops nats-server with `sig`, keeps it down `downMs`, starts it again on the same port and store. */
  restartNats(sig: 'SIGTERM' | 'SIGKILL', downMs?: number): Promise<void>;
  client(sessionId?: string): Promise<WritClient>;
  /** Child processes that exited without the test ending them: crashes. */
  crashes(): Proc[];
  stop(): Promise<void>;
}

export interface FaultStackOptions {
  /** Extra SQL run by the admin after `runs` is created (e.g. a slow-commit trigger). */
  schemaSql?: string;
  /** Rule time limit (s): also bounds the sweeper's wait for a lost run. Default 5. */
  seconds?: number;
  poolSize?: number;
}

/** Every child any stack started, so a failing beforeAll/afterEach cannot leak one. */
const allChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of allChildren) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

export async function startFaultStack(opts: FaultStackOptions = {}): Promise<FaultStack> {
  const dir = mkdtempSync(join(tmpdir(), 'writ-faults-'));
  const storeDir = join(dir, 'jetstream');
  mkdirSync(storeDir);
  const serverName = `faults_${Math.random().toString(36).slice(2, 8)}`;
  let nats = await startNats({ storeDir, serverName, gomaxprocs: 1 });
  const db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl, application_name: 'writ-fault-admin' });
  admin.on('error', () => undefined);
  await admin.connect();
  await admin.query(RUNS_SQL);
  if (opts.schemaSql) await admin.query(opts.schemaSql);

  const prefix = `f${Math.random().toString(36).slice(2, 8)}`;
  const seconds = opts.seconds ?? 5;
  // Short grants and limits, so the sweeper ends lost work within seconds.
  const config: ConfigInput = {
    prefix,
    identity: { devIssuer: { enabled: true, dir: join(dir, 'dev-issuer'), audience: 'writ' } },
    grants: { keyFile: join(dir, 'grant-key.pem'), ttlSec: 5 },
    limits: { sweepMarginSec: 1, sweepIntervalMs: 200 },
    targets: [{ name: 'db', kind: 'postgres', tags: ['faults'] }],
    policy: { rules: [{ id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { seconds, rows: 10 } }] },
    workers: {
      postgres: [{
        target: 'db', host: db.host, port: db.port, database: db.database, poolSize: opts.poolSize ?? 8,
        credentials: {
          read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } },
          write: { user: { value: db.roles.write.user }, password: { value: db.roles.write.password } },
        },
      }],
    },
    // The services sign their blocks and register their keys; verify then checks every signature.
    audit: { flushMs: 1, keyRegistry: join(dir, 'audit-keys.json'), autoRegisterKeys: true },
    log: { level: 'info' },
  };
  const configFile = join(dir, 'writ.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  // Keys exist before any service starts: the worker pins the grant key's public half.
  loadOrCreateGrantKey(join(dir, 'grant-key.pem'));
  const dev = await loadDevIssuer(join(dir, 'dev-issuer'), true);
  const nc = await connectNats(nats.url, 'writ-fault-test');

  const procs: Proc[] = [];
  let serial = 0;

  const spawnService = (kind: 'broker' | 'worker'): Promise<Proc> => {
    const logFile = join(dir, `${kind}-${++serial}.log`);
    const log: WriteStream = createWriteStream(logFile);
    log.on('error', () => undefined); // a lost log line must not fail the test process
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, kind, '--config', configFile], {
      cwd: REPO,
      env: { ...process.env, NATS_URL: nats.url, WRIT_LOG_LEVEL: 'info', WRIT_DATA_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    allChildren.add(child);
    let out = '';
    const keep = (d: Buffer) => {
      log.write(d);
      out = (out + d.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const p: Proc = {
      kind, pid: child.pid!, logFile, exit: undefined, killedByTest: false,
      kill9() {
        p.killedByTest = true;
        try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      },
      async term(ms = 15_000) {
        p.killedByTest = true;
        if (p.exit) return true;
        try { process.kill(p.pid, 'SIGTERM'); } catch { return true; }
        const end = Date.now() + ms;
        while (!p.exit && Date.now() < end) await sleep(50);
        return p.exit !== undefined;
      },
      tail: (chars = 4000) => out.slice(-chars),
    };
    procs.push(p);
    return new Promise<Proc>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${kind} not running after 60 s:\n${p.tail()}`)), 60_000);
      const ready = new RegExp(`^${kind} \\S+ running$`, 'm');
      const onData = () => {
        if (ready.test(out)) {
          clearTimeout(timer);
          child.stdout!.off('data', onData);
          resolve(p);
        }
      };
      child.stdout!.on('data', onData);
      child.once('close', () => log.end());
      child.once('exit', (code, signal) => {
        p.exit = { code, signal };
        allChildren.delete(child);
        clearTimeout(timer);
        reject(new Error(`${kind} exited (${code ?? signal}) before it was running:\n${p.tail()}`));
      });
    });
  };

  const stack: FaultStack = {
    get nats() { return nats; },
    db, admin, prefix, names: makeNames(prefix), dir, configFile, nc, dev, procs,
    startBroker: () => spawnService('broker'),
    startWorker: () => spawnService('worker'),
    async restartNats(sig, downMs = 1_500) {
      const { port } = nats;
      if (sig === 'SIGKILL') nats.kill9();
      // stop() waits for the exit (SIGTERM: a graceful shutdown) and removes the config dir, never the store.
      await nats.stop();
      await sleep(downMs);
      let lastErr: unknown;
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          nats = await startNats({ storeDir, serverName, gomaxprocs: 1, port });
          return;
        } catch (e) {
          lastErr = e; // the port may not be free again yet
          await sleep(250);
        }
      }
      throw lastErr;
    },
    async client(sessionId) {
      const token = await mintDevToken(dev, { sub: 'fault-agent', groups: ['dba'], audience: 'writ', ttlSec: 900 });
      return new WritClient({ nc, token, prefix, ...(sessionId ? { sessionId } : {}) });
    },
    crashes: () => procs.filter((p) => p.exit !== undefined && !p.killedByTest),
    async stop() {
      for (const p of procs) if (!p.exit) p.kill9();
      const end = Date.now() + 10_000;
      while (procs.some((p) => !p.exit) && Date.now() < end) await sleep(50);
      await nc.close().catch(() => undefined);
      await admin.end().catch(() => undefined);
      await db.drop().catch(() => undefined);
      await nats.stop().catch(() => undefined);
      if (process.env.WRIT_FAULTS_KEEP) return; // logs kept for a post-mortem
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return stack;
}

/** The worker backends on the target right now (pg_stat_activity, application_name writ-worker). */
export interface Backend {
  pid: number;
  state: string;
  query: string;
  /** How long its current statement has been running, ms. */
  runningMs: number;
}

export async function workerBackends(s: FaultStack): Promise<Backend[]> {
  const r = await s.admin.query<Backend>(
    `SELECT pid, state, query, (extract(epoch FROM clock_timestamp() - query_start) * 1000)::int AS "runningMs"
       FROM pg_stat_activity WHERE application_name = 'writ-worker' AND datname = $1`,
    [s.db.database],
  );
  return r.rows;
}

export function readLog(p: Proc): string {
  try {
    return readFileSync(p.logFile, 'utf8');
  } catch {
    return p.tail();
  }
}
