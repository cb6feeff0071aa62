/**
 * Public entry of workers/: the runtime, the executor interface, and the executors.
 * A worker process is wired here from its config; nothing registers itself on import.
 */
import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import type { LocalHandover, Logger, ServiceMetrics } from '../lib/index.ts';
import type { HeadBoard } from '../audit/index.ts';
import { keyId, names as makeNames, publicKeyFromPem, WritError, type Config, type SignedGrants } from '../schemas/index.ts';
import { initClassifiers } from '../classify/index.ts';
import type { Executor } from './executor.ts';
import { MysqlExecutor } from './mysql/index.ts';
import { PostgresExecutor } from './postgres/index.ts';
import { SshExecutor } from './ssh/index.ts';
import { Worker } from './runtime.ts';

export { Worker } from './runtime.ts';
export type { Executor } from './executor.ts';

/** The grant public keys this worker trusts: the configured files, else the broker key's `.pub.pem` twin. */
function loadTrustedKeys(config: Config): Map<string, KeyObject> {
  const files = config.grants.publicKeyFiles ? Object.values(config.grants.publicKeyFiles) : [config.grants.keyFile.replace(/\.pem$/, '') + '.pub.pem'];
  const out = new Map<string, KeyObject>();
  for (const f of files) {
    let pem: string;
    try {
      pem = readFileSync(f, 'utf8');
    } catch (e) {
      throw new WritError('WRIT_CONFIG_INVALID', `grants: cannot read public key ${f} (start the broker first, or set grants.publicKeyFiles)`, { cause: e });
    }
    const k = publicKeyFromPem(pem);
    out.set(keyId(k), k);
  }
  return out;
}

export async function createWorker(opts: {
  nc: NatsConnection;
  config: Config;
  log: Logger;
  executors?: Executor[];
  id?: string;
  hmacKey?: Buffer;
  metrics?: ServiceMetrics | undefined;
  /** Audit heads shared with a broker in the same process (`writ up`). */
  auditHeads?: HeadBoard | undefined;
  /** The grants a broker in the same process signed (`writ up`): those need no second verify. */
  signedGrants?: SignedGrants | undefined;
  /** Where a broker of the same process hands orders over without the bus (`writ up`; lib/handover.ts). */
  handover?: LocalHandover | undefined;
}): Promise<Worker> {
  const { config } = opts;
  await initClassifiers({ mysql: config.workers.mysql.length > 0 });
  const executors: Executor[] = opts.executors ?? [
    ...(config.workers.postgres.length > 0 ? [new PostgresExecutor(config.workers.postgres)] : []),
    ...(config.workers.ssh.length > 0 ? [new SshExecutor(config.workers.ssh)] : []),
    ...(config.workers.mysql.length > 0 ? [new MysqlExecutor(config.workers.mysql)] : []),
  ];
  for (const ex of executors) {
    if (!(ex instanceof MysqlExecutor)) continue;
    // An unsupported server stops the worker here; one not reachable yet is checked again at its first run.
    let checked: Awaited<ReturnType<MysqlExecutor['checkServers']>>;
    try {
      checked = await ex.checkServers();
    } catch (e) {
      await Promise.all(executors.map((x) => x.close().catch(() => undefined)));
      throw e;
    }
    for (const r of checked) {
      if (r.unreachable) opts.log.warn({ target: r.target, err: r.unreachable }, 'MySQL target not reachable at start; its version is checked at the first run');
      else opts.log.info({ target: r.target, version: r.version }, 'MySQL target version checked');
    }
  }
  return new Worker({
    nc: opts.nc,
    config,
    names: makeNames(config.prefix),
    log: opts.log,
    executors,
    trustedKeys: loadTrustedKeys(config),
    ...(opts.hmacKey ? { hmacKey: opts.hmacKey } : {}),
    auditHeads: opts.auditHeads,
    signedGrants: opts.signedGrants,
    handover: opts.handover,
    ...(opts.id ? { id: opts.id } : {}),
    metrics: opts.metrics,
  });
}
