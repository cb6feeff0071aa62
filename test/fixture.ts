/**
 * An in-process Writ stack for integration tests, on real servers: a nats-server with
 * JetStream and a throwaway PostgreSQL database from test/helpers, a broker and a
 * PostgreSQL worker built exactly as `writ up` builds them, and a token minter.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Writable } from 'node:stream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createBroker, loadDevIssuer, mintDevToken, type Broker, type DevIssuer } from '../broker/index.ts';
import { WritClient } from '../client/index.ts';
import { createLogger, LocalHandover, type Logger, type ServiceMetrics } from '../lib/index.ts';
import { names, parseConfig, SignedGrants, type Config, type ConfigInput, type Names } from '../schemas/index.ts';
import { createWorker, type Worker } from '../workers/index.ts';
import { createTestDatabase, startNats, type NatsServerHandle, type TestDatabase } from './helpers/index.ts';
import { SharedHeads } from '../audit/index.ts';

export interface Stack {
  nats: NatsServerHandle;
  db: TestDatabase;
  admin: pg.Client;
  config: Config;
  names: Names;
  nc: NatsConnection;
  broker: Broker; // replaced by tests that restart it
  worker: Worker;
  /** The grants the broker signed, taken by the worker of the same process (schemas/grant.ts). */
  signedGrants: SignedGrants;
  /** Orders the broker hands to the worker without the bus, as in `writ up` (lib/handover.ts); none with `handover: false`. */
  handover: LocalHandover | undefined;
  dev: DevIssuer;
  dir: string;
  /** The parsed config as a file, for services started as child processes. */
  configFile: string;
  /** Every log line the services wrote, parsed. */
  logs: Record<string, unknown>[];
  token(sub: string, groups: string[], o?: { ttlSec?: number; iat?: number; audience?: string }): Promise<string>;
  /** An approver's token: the dev issuer's approver audience, which agents' tokens do not carry. */
  approverToken(sub: string, groups: string[], o?: { ttlSec?: number }): Promise<string>;
  client(token: string, sessionId?: string): WritClient;
  stop(): Promise<void>;
}

export const SCHEMA_SQL = `
  CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, ssn text, plan text NOT NULL DEFAULT 'free');
  INSERT INTO customers (name, email, ssn, plan) VALUES
    ('Alice Example', 'alice@example.com', '078-05-1120', 'pro'),
    ('Bob Example', 'bob@example.org', '219-09-9999', 'free'),
    ('Carol Example', 'carol@example.net', NULL, 'team');
  CREATE TABLE events (id serial PRIMARY KEY, note text);
`;

export async function startStack(
  opts: {
    config?: Partial<ConfigInput>;
    schemaSql?: string;
    worker?: boolean;
    /** false: every order goes through the bus, as between a broker and a worker in two processes. */
    handover?: boolean;
    workersSsh?: NonNullable<ConfigInput['workers']>['ssh'];
    /** Given the parsed config before the services start (e.g. to start an Observability), returns their metrics hooks. */
    observe?: (config: Config, names: Names, log: Logger) => Promise<ServiceMetrics | undefined>;
  } = {},
): Promise<Stack> {
  const nats = await startNats();
  const db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(opts.schemaSql ?? SCHEMA_SQL);
  const dir = mkdtempSync(join(tmpdir(), 'writ-stack-'));
  const prefix = `t${Math.random().toString(36).slice(2, 8)}`;
  const input: ConfigInput = {
    prefix,
    identity: { devIssuer: { enabled: true, dir: join(dir, 'dev-issuer'), audience: 'writ' } },
    grants: { keyFile: join(dir, 'grant-key.pem'), ttlSec: 60 },
    targets: [{ name: 'db', kind: 'postgres', tags: ['test'] }],
    policy: {
      rules: [
        { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
        { id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { rowsAffected: 100 } },
        { id: 'no-interns', effect: 'deny', groups: ['interns'], targets: ['*'] },
      ],
      masking: { columns: [{ column: 'public.customers.email' }], detectors: ['email'] },
    },
    workers: {
      postgres: [
        {
          target: 'db',
          host: db.host,
          port: db.port,
          database: db.database,
          credentials: {
            read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } },
            write: { user: { value: db.roles.write.user }, password: { value: db.roles.write.password } },
          },
        },
      ],
    },
    // Services sign their blocks and register their keys (a local-stack convenience; production registries are the operator's).
    audit: { flushMs: 1, keyRegistry: join(dir, 'audit-keys.yaml'), autoRegisterKeys: true },
    log: { level: 'info' },
    ...opts.config,
  };
  if (opts.workersSsh) input.workers = { ...input.workers, ssh: opts.workersSsh };
  const config = parseConfig(input) as Config;
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log: Logger = createLogger({ name: 'test', level: 'debug', destination: sink });
  const nc = await connect({ servers: nats.url });
  const metrics = await opts.observe?.(config, names(prefix), log);
  // As `writ up` runs them: one process, audit heads shared (cmd/stack.ts).
  const auditHeads = new SharedHeads();
  const signedGrants = new SignedGrants();
  const handover = opts.handover === false ? undefined : new LocalHandover();
  const broker = await createBroker({ nc, config, log: log.child({ svc: 'broker' }), metrics, auditHeads, signedGrants, handover });
  await broker.start();
  const worker = await createWorker({ nc, config, log: log.child({ svc: 'worker' }), metrics, auditHeads, signedGrants, handover });
  if (opts.worker !== false) await worker.start();
  const dev = await loadDevIssuer(config.identity.devIssuer.dir, false);
  const configFile = join(dir, 'writ.json');
  writeFileSync(configFile, JSON.stringify(config));
  return {
    nats,
    db,
    admin,
    config,
    names: names(prefix),
    nc,
    broker,
    worker,
    signedGrants,
    handover,
    dev,
    dir,
    logs,
    configFile,
    token: (sub, groups, o = {}) => mintDevToken(dev, { sub, groups, audience: o.audience ?? 'writ', ttlSec: o.ttlSec ?? 600, ...(o.iat !== undefined ? { iat: o.iat } : {}) }),
    approverToken: (sub, groups, o = {}) => mintDevToken(dev, { sub, groups, audience: config.identity.devIssuer.approverAudience, ttlSec: o.ttlSec ?? 600 }),
    client: (token, sessionId) => new WritClient({ nc, token, prefix, ...(sessionId ? { sessionId } : {}) }),
    async stop() {
      await worker.stop().catch(() => undefined);
      await broker.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
      await admin.end().catch(() => undefined);
      await db.drop().catch(() => undefined);
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
