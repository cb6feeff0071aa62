/**
 * The local stack `writ up` runs: a nats-server child with JetStream when NATS_URL is
 * unset, the demo database when the config says `demo: true`, a broker and the workers, in
 * one process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { createBroker, type Broker } from '../broker/index.ts';
import { connectNats, createLogger, LocalHandover, Observability, withDeadline, type Logger } from '../lib/index.ts';
import { loadConfigFile, names, SignedGrants, type Config } from '../schemas/index.ts';
import { createWorker, type Worker } from '../workers/index.ts';

import { DATA_DIR, NATS_AUTH_DIR, NATS_AUTH_URL_FILE, NATS_ROLES, NATS_URL_FILE, natsForRole, packageFile, rolePasswordFile, type NatsRole } from './paths.ts';
import { SharedHeads } from '../audit/index.ts';

/**
 * nats-server takes each password from the environment as a config value, not as a string: one
 * that starts with a digit or `-` reads as a number (`8g…`: "Expected a digit") and the server
 * refuses to start (seen in 2 of 10 runs of the writ-up test). Passwords therefore start with a letter.
 */
const SERVER_SAFE_PASSWORD = /^[A-Za-z][A-Za-z0-9_-]{15,}$/;
const newPassword = () => `w${randomBytes(24).toString('base64url')}`;

/**
 * The local nats-server runs with deploy/nats/accounts.conf: one user per role, each with a
 * random password kept in the data directory (0600), so another local process cannot publish
 * orders or delete the audit log without reading those files. Existing passwords are kept, so
 * a CLI that read them keeps working across restarts; one the server could not read (written
 * before passwords started with a letter) is replaced (commands read the file on every call).
 */
export function ensureLocalPasswords(dir = NATS_AUTH_DIR): Record<NatsRole, string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const out = {} as Record<NatsRole, string>;
  for (const role of NATS_ROLES) {
    const file = rolePasswordFile(role, dir);
    if (!existsSync(file)) writeFileSync(file, `${newPassword()}\n`, { mode: 0o600, flag: 'wx' });
    else if (!SERVER_SAFE_PASSWORD.test(readFileSync(file, 'utf8').trim())) writeFileSync(file, `${newPassword()}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    out[role] = readFileSync(file, 'utf8').trim();
  }
  return out;
}

async function startLocalNats(log: Logger): Promise<{ url: string; child: ChildProcess }> {
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  if (which.status !== 0) {
    throw new Error('nats-server is not on PATH. Install it (Debian: `sudo apt-get install nats-server`) or set NATS_URL to a running server with JetStream.');
  }
  const dir = join(DATA_DIR, 'nats');
  mkdirSync(join(dir, 'store'), { recursive: true });
  const passwords = ensureLocalPasswords();
  // The shipped roles, unchanged: the local stack runs under the same permissions as a deployment.
  copyFileSync(packageFile('deploy/nats/accounts.conf'), join(dir, 'accounts.conf'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    [
      `listen: 127.0.0.1:${process.env.WRIT_NATS_PORT ?? '-1'}`,
      `ports_file_dir: ${JSON.stringify(dir)}`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, 'store'))} }`,
      'include ./accounts.conf',
    ].join('\n'),
  );
  // accounts.conf reads each role's password from the server's environment.
  const roleEnv = Object.fromEntries(NATS_ROLES.map((r) => [`WRIT_${r.toUpperCase()}_PASSWORD`, passwords[r]]));
  // One OS thread for the server on small machines: ~35 % less CPU per message (PERFORMANCE.md).
  const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...roleEnv, GOMAXPROCS: process.env.GOMAXPROCS ?? '1' } });
  let stderr = '';
  // nats-server reports a bad configuration on stdout: keep the tail of both for the error.
  for (const s of [child.stdout!, child.stderr!]) s.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const portsFile = join(dir, `nats-server_${child.pid}.ports`);
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`nats-server exited (${child.exitCode}):\n${stderr}`);
    if (existsSync(portsFile)) {
      const ports = JSON.parse(readFileSync(portsFile, 'utf8')) as { nats: string[] };
      const url = ports.nats[0]!;
      log.info({ url, natsPid: child.pid }, 'nats-server started');
      return { url, child };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('nats-server did not report its port in 10 s');
}

/**
 * Creates the demo database, roles and table when missing (admin: the standard PG* variables,
 * default user postgres). Only for a config that says `demo: true`: any other config names a
 * database that is someone's own, and `writ up` writes nothing into it.
 */
export async function setupDemoDatabase(config: Config): Promise<void> {
  const w = config.workers.postgres[0];
  if (!config.demo || !w) return;
  const admin = { host: process.env.PGHOST ?? w.host, port: Number(process.env.PGPORT ?? w.port), user: process.env.PGUSER ?? 'postgres', password: process.env.PGPASSWORD };
  const c1 = new pg.Client({ ...admin, database: process.env.PGDATABASE ?? 'postgres' });
  await c1.connect();
  try {
    const r = await c1.query('SELECT 1 FROM pg_database WHERE datname = $1', [w.database]);
    if (r.rowCount === 0) await c1.query(`CREATE DATABASE ${pg.escapeIdentifier(w.database)}`);
  } finally {
    await c1.end();
  }
  const c2 = new pg.Client({ ...admin, database: w.database });
  await c2.connect();
  try {
    await c2.query(readFileSync(packageFile('deploy/local/setup.sql'), 'utf8'));
  } finally {
    await c2.end();
  }
}

export interface LocalStack {
  url: string;
  broker: Broker;
  worker: Worker;
  /** The process's /healthz, /readyz and /metrics (`port` undefined when `observability.port` is unset). */
  observability: Observability;
  stop(): Promise<void>;
}

export async function startLocalStack(configFile: string): Promise<LocalStack> {
  const log = createLogger({ name: 'writ' });
  const loaded = loadConfigFile(configFile);
  // The local stack follows the standard PG* variables for where PostgreSQL is.
  const config: Config = structuredClone(loaded) as Config;
  for (const w of config.workers.postgres) {
    if (process.env.PGHOST) w.host = process.env.PGHOST;
    if (process.env.PGPORT) w.port = Number(process.env.PGPORT);
  }
  mkdirSync(DATA_DIR, { recursive: true, mode: 0o700 });
  let child: ChildProcess | undefined;
  let url = process.env.NATS_URL;
  if (!url) ({ url, child } = await startLocalNats(log));
  writeFileSync(NATS_URL_FILE, url);
  // The role passwords are offered to this server only (cmd/paths.ts natsForRole).
  if (child) writeFileSync(NATS_AUTH_URL_FILE, url, { mode: 0o600 });
  await setupDemoDatabase(config);
  // One endpoint for the process, up before the services: /healthz answers, /readyz says "starting".
  const obs = await Observability.start({ config, names: names(config.prefix), log, serviceName: 'writ' });
  // Each service connects as its own role: the broker cannot run orders, the worker cannot submit intents.
  const section = child ? { ...config.nats, servers: [url], url: undefined } : config.nats;
  const env = child ? { ...process.env, NATS_URL: undefined } : process.env;
  const nc = await connectNats(natsForRole('broker', section, env), 'writ-up-broker');
  const wnc = await connectNats(natsForRole('worker', section, env), 'writ-up-worker');
  // The two services' audit writers share the heads they store: the broker chains its next block
  // of a session onto the worker's last one without reading it back from the stream.
  const auditHeads = new SharedHeads();
  // The worker takes the grants this broker signed without verifying them again (schemas/grant.ts).
  const signedGrants = new SignedGrants();
  // The broker hands its orders to this worker without the bus while it has a free place (lib/handover.ts).
  const handover = new LocalHandover();
  const broker = await createBroker({ nc, config, log: log.child({ svc: 'broker' }), metrics: obs.metrics, auditHeads, signedGrants, handover });
  await broker.start();
  obs.attach({ role: 'broker', nc, state: () => broker.state, auditStats: () => broker.auditStats, pendingApprovals: () => broker.pendingApprovals, intake: () => broker.intake });
  const worker = await createWorker({ nc: wnc, config, log: log.child({ svc: 'worker' }), metrics: obs.metrics, auditHeads, signedGrants, handover });
  await worker.start();
  obs.attach({ role: 'worker', nc: wnc, state: () => worker.state, auditStats: () => worker.auditStats });
  obs.ready();
  return {
    url,
    broker,
    worker,
    observability: obs,
    async stop() {
      // Each step is bounded: with NATS gone, draining would wait forever. The nats-server
      // child is always stopped, by SIGKILL if SIGTERM does not end it in time.
      await withDeadline(worker.stop(), 10_000);
      await broker.stop();
      // After the services: /readyz reports them draining until then; spans still buffered are flushed.
      await withDeadline(obs.stop(), 5_000);
      for (const c of [wnc, nc]) if (!(await withDeadline(c.drain(), 3_000))) await c.close().catch(() => undefined);
      if (child && child.exitCode === null) {
        const exited = new Promise((r) => child!.once('exit', r));
        child.kill('SIGTERM');
        if (!(await withDeadline(exited, 5_000))) child.kill('SIGKILL');
      }
    },
  };
}

/**
 * `writ broker|worker`: one service in this process, with the process's observability endpoint
 * (when `observability.port` is set) and tracing. `stop` drains the service, then the endpoint.
 */
export async function startService(kind: 'broker' | 'worker', config: Config, log: Logger, nc: NatsConnection): Promise<{ id: string; stop(): Promise<void> }> {
  const obs = await Observability.start({ config, names: names(config.prefix), log, serviceName: `writ-${kind}` });
  let svc: Broker | Worker;
  if (kind === 'broker') {
    const b = (svc = await createBroker({ nc, config, log, metrics: obs.metrics }));
    await b.start();
    obs.attach({ role: kind, nc, state: () => b.state, auditStats: () => b.auditStats, pendingApprovals: () => b.pendingApprovals, intake: () => b.intake });
  } else {
    const w = (svc = await createWorker({ nc, config, log, metrics: obs.metrics }));
    await w.start();
    obs.attach({ role: kind, nc, state: () => w.state, auditStats: () => w.auditStats });
  }
  obs.ready();
  return {
    id: svc.id,
    async stop() {
      await svc.stop();
      await withDeadline(obs.stop(), 5_000);
    },
  };
}
