/**
 * A Writ deployment the fault tests can break: a real nats-server (restartable in place, same
 * port and store), a throwaway PostgreSQL database with least-privilege roles, and the broker
 * and worker as SEPARATE processes (`cmd/cli.ts broker|worker --config FILE`), so a kill -9
 * takes a service down the way it happens in production. The test process is the agent (SDK).
 *
 * With `cluster`, the server is a 3-node JetStream cluster instead (streams and buckets R3),
 * optionally under deploy/nats/accounts.conf with every role on its own login; each service
 * and agent connection is seeded with one member's URL, so the test decides which node
 * carries which client (they learn the other members from the server and fail over to them).
 *
 * Every child is tracked by pid and SIGKILLed in stop(); stop() is safe to call twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { loadDevIssuer, loadOrCreateGrantKey, mintDevToken, type DevIssuer } from '../../../broker/index.ts';
import { serializesSubjectSequence } from '../../../broker/provision.ts';
import { WritClient } from '../../../client/index.ts';
import { connectNats } from '../../../lib/index.ts';
import { names as makeNames, type ConfigInput, type Names } from '../../../schemas/index.ts';
import { connect } from '@nats-io/transport-node';
import { createTestDatabase, startNats, startNatsCluster, type NatsClusterHandle, type NatsServerHandle, type TestDatabase } from '../../helpers/index.ts';

export const REPO = join(import.meta.dirname, '..', '..', '..');
export const CLI = join(REPO, 'cmd', 'cli.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The target table: one row per execution, so the target itself counts how often an intent ran. */
const RUNS_SQL = 'CREATE TABLE runs (id bigserial PRIMARY KEY, tag text NOT NULL, at timestamptz NOT NULL DEFAULT now())';

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

/** The NATS logins of deploy/nats/accounts.conf a cluster stack uses. */
type StackRole = 'broker' | 'worker' | 'agent' | 'operator';

export interface FaultStack {
  /** The server; on a cluster, member 0 (as it is now: a restart replaces the handle). */
  nats: NatsServerHandle;
  /** The cluster, when the stack runs on one. */
  cluster: NatsClusterHandle | undefined;
  /**
   * Replicas of the audit stream: 1 on one server; on a cluster 3, or 1 where the server does
   * not serialize expected-last-subject-sequence on replicated streams (broker/provision.ts).
   */
  auditReplicas: number;
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
  /** On a cluster, `node` is the member whose URL seeds the service's connection (default 0). */
  startBroker(node?: number): Promise<Proc>;
  startWorker(node?: number): Promise<Proc>;
  /**
   * The environment a process needs to reach NATS as `role`: NATS_URL (member `node`'s URL on
   * a cluster, all of them when `node` is undefined) and, under auth, the role's login.
   */
  natsEnv(role: StackRole, node?: number): Record<string, string>;
  /** Stops nats-server with `sig`, keeps it down `downMs`, starts it again on the same port and store. */
  restartNats(sig: 'SIGTERM' | 'SIGKILL', downMs?: number): Promise<void>;
  /** An agent; on a cluster, connected (as the agent role, under auth) through member `node` (default 0). */
  client(sessionId?: string, node?: number): Promise<WritClient>;
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
  /**
   * Run on a 3-node cluster with `nats.replicas: 3`. `auth`: the members load
   * deploy/nats/accounts.conf and every process logs in as its role (the prefix is then
   * `writ`, as that file spells it; the cluster is the test's own, so that isolates it too).
   */
  cluster?: { auth: boolean };
  /** Grant lifetime (s); it also bounds how long an order may wait in the queue. Default 5. */
  grantTtlSec?: number;
}

/** Every child any stack started, so a failing beforeAll/afterEach cannot leak one. */
const allChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of allChildren)
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
});

const ACCOUNTS_CONF = join(REPO, 'deploy', 'nats', 'accounts.conf');
const ROLES = ['broker', 'worker', 'agent', 'approver', 'auditor', 'operator'] as const;
/** accounts.conf gives agents this inbox prefix (their replies come back under it only). */
const AGENT_INBOX = '_INBOX.agent';

export async function startFaultStack(opts: FaultStackOptions = {}): Promise<FaultStack> {
  const dir = mkdtempSync(join(tmpdir(), 'writ-faults-'));
  const storeDir = join(dir, 'jetstream');
  mkdirSync(storeDir);
  const serverName = `faults_${Math.random().toString(36).slice(2, 8)}`;
  const auth = opts.cluster?.auth ?? false;
  const passwords = Object.fromEntries(ROLES.map((r) => [r, `${r}-${randomBytes(12).toString('hex')}`])) as Record<(typeof ROLES)[number], string>;
  let cluster: NatsClusterHandle | undefined;
  let nats: NatsServerHandle;
  if (opts.cluster) {
    cluster = await startNatsCluster(3, {
      gomaxprocs: 1,
      ...(auth
        ? {
            extraConfig: readFileSync(ACCOUNTS_CONF, 'utf8'),
            env: Object.fromEntries(ROLES.map((r) => [`WRIT_${r.toUpperCase()}_PASSWORD`, passwords[r]])),
            auth: { user: 'operator', pass: passwords.operator },
          }
        : {}),
    });
    nats = cluster.servers[0]!;
  } else {
    nats = await startNats({ storeDir, serverName, gomaxprocs: 1 });
  }
  const urlsOf = (node?: number): string => (cluster ? (node === undefined ? cluster.urls : [cluster.urls[node]!]) : [nats.url]).join(',');
  const natsEnv = (role: StackRole, node?: number): Record<string, string> => ({
    NATS_URL: urlsOf(node),
    ...(auth ? { WRIT_NATS_USER: role, WRIT_NATS_PASSWORD: passwords[role], ...(role === 'agent' ? { WRIT_NATS_INBOX_PREFIX: AGENT_INBOX } : {}) } : {}),
  });
  const nc = await connectNats(auth ? { servers: cluster!.urls, user: { value: 'operator' }, password: { value: passwords.operator } } : urlsOf(), 'writ-fault-test');
  const auditReplicas = cluster && serializesSubjectSequence(nc.info?.version) ? 3 : 1;
  const db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl, application_name: 'writ-fault-admin' });
  admin.on('error', () => undefined);
  await admin.connect();
  await admin.query(RUNS_SQL);
  if (opts.schemaSql) await admin.query(opts.schemaSql);

  const prefix = auth ? 'writ' : `f${Math.random().toString(36).slice(2, 8)}`;
  const seconds = opts.seconds ?? 5;
  // Short grants and limits, so the sweeper ends lost work within seconds.
  const config: ConfigInput = {
    prefix,
    identity: { devIssuer: { enabled: true, dir: join(dir, 'dev-issuer'), audience: 'writ' } },
    grants: { keyFile: join(dir, 'grant-key.pem'), ttlSec: opts.grantTtlSec ?? 5 },
    limits: { sweepMarginSec: 1, sweepIntervalMs: 200 },
    targets: [{ name: 'db', kind: 'postgres', tags: ['faults'] }],
    policy: { rules: [{ id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { seconds, rows: 10 } }] },
    workers: {
      postgres: [
        {
          target: 'db',
          host: db.host,
          port: db.port,
          database: db.database,
          poolSize: opts.poolSize ?? 8,
          credentials: {
            read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } },
            write: { user: { value: db.roles.write.user }, password: { value: db.roles.write.password } },
          },
        },
      ],
    },
    // The services sign their blocks and register their keys; verify then checks every signature.
    audit: { flushMs: 1, replicas: auditReplicas, keyRegistry: join(dir, 'audit-keys.json'), autoRegisterKeys: true },
    log: { level: 'info' },
    ...(cluster ? { nats: { replicas: 3 } } : {}),
  };
  const configFile = join(dir, 'writ.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  // Keys exist before any service starts: the worker pins the grant key's public half.
  loadOrCreateGrantKey(join(dir, 'grant-key.pem'));
  const dev = await loadDevIssuer(join(dir, 'dev-issuer'), true);
  // Agents' connections, one per seed member, opened on first use.
  const agentNcs = new Map<number, Promise<NatsConnection>>();
  const agentNc = (node: number): Promise<NatsConnection> => {
    if (!cluster) return Promise.resolve(nc);
    let p = agentNcs.get(node);
    if (!p) {
      p = connect({
        servers: [cluster.urls[node]!],
        name: `writ-fault-agent-${node}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...(auth ? { user: 'agent', pass: passwords.agent, inboxPrefix: AGENT_INBOX } : {}),
      });
      agentNcs.set(node, p);
    }
    return p;
  };

  const procs: Proc[] = [];
  let serial = 0;

  const spawnService = (kind: 'broker' | 'worker', node = 0): Promise<Proc> => {
    const logFile = join(dir, `${kind}-${++serial}.log`);
    const log: WriteStream = createWriteStream(logFile);
    log.on('error', () => undefined); // a lost log line must not fail the test process
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, kind, '--config', configFile], {
      cwd: REPO,
      env: { ...process.env, ...natsEnv(kind, node), WRIT_LOG_LEVEL: 'info', WRIT_DATA_DIR: dir },
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
      kind,
      pid: child.pid!,
      logFile,
      exit: undefined,
      killedByTest: false,
      kill9() {
        p.killedByTest = true;
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      },
      async term(ms = 15_000) {
        p.killedByTest = true;
        if (p.exit) return true;
        try {
          process.kill(p.pid, 'SIGTERM');
        } catch {
          return true;
        }
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
    get nats() {
      return cluster ? cluster.servers[0]! : nats;
    },
    cluster,
    auditReplicas,
    db,
    admin,
    prefix,
    names: makeNames(prefix),
    dir,
    configFile,
    nc,
    dev,
    procs,
    startBroker: (node) => spawnService('broker', node),
    startWorker: (node) => spawnService('worker', node),
    natsEnv,
    async restartNats(sig, downMs = 1_500) {
      if (cluster) throw new Error('restartNats is for one server; on a cluster use cluster.servers[i].kill9() and cluster.restart(i)');
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
    async client(sessionId, node = 0) {
      const token = await mintDevToken(dev, { sub: 'fault-agent', groups: ['dba'], audience: 'writ', ttlSec: 900 });
      return new WritClient({ nc: await agentNc(node), token, prefix, ...(sessionId ? { sessionId } : {}), ...(auth ? { inboxPrefix: AGENT_INBOX } : {}) });
    },
    crashes: () => procs.filter((p) => p.exit !== undefined && !p.killedByTest),
    async stop() {
      for (const p of procs) if (!p.exit) p.kill9();
      const end = Date.now() + 10_000;
      while (procs.some((p) => !p.exit) && Date.now() < end) await sleep(50);
      await nc.close().catch(() => undefined);
      for (const p of agentNcs.values()) await (await p.catch(() => undefined))?.close().catch(() => undefined);
      await admin.end().catch(() => undefined);
      await db.drop().catch(() => undefined);
      await (cluster ?? nats).stop().catch(() => undefined);
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
