/**
 * Public entry of broker/: the decision service and what it is built from. Wiring
 * happens here, explicitly, when a process starts; nothing registers itself on import.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { LocalHandover, Logger, ServiceMetrics } from '../lib/index.ts';
import { names as makeNames, type Config, type SignedGrants } from '../schemas/index.ts';
import { initClassifiers } from '../classify/index.ts';
import { loadDevIssuer } from './dev-issuer.ts';
import { IdentityVerifier } from './identity.ts';
import { loadOrCreateGrantKey } from './keys.ts';
import { SimplePolicy, type PolicyEngine } from './policy.ts';
import { readFileSync } from 'node:fs';
import type { AuditWriter, HeadBoard } from '../audit/index.ts';
import { PolicyStore, ReloadingPolicy, RulePolicy } from './rules/index.ts';
import type { Buckets } from './provision.ts';
import { Broker } from './service.ts';

export { Broker, type BrokerState } from './service.ts';
export { IdentityVerifier } from './identity.ts';
export { SimplePolicy, isReadOnly, type PolicyEngine, type PolicyDecision, type PolicyInput, type CommandFacts } from './policy.ts';
export { DEV_ISSUER, loadDevIssuer, mintDevToken, parseDuration, type DevIssuer } from './dev-issuer.ts';
export { loadOrCreateGrantKey, publicKeyFileFor } from './keys.ts';
export { provision, openBuckets, type Buckets } from './provision.ts';
export { createCommandClassifier, type ClassifyCommand } from './classify-command.ts';
export { RulePolicy, PolicyStore, ReloadingPolicy, runPolicyCli } from './rules/index.ts';

/** Builds a broker from a parsed config: keys, issuers, policy, classifiers. */
export async function createBroker(opts: {
  nc: NatsConnection;
  config: Config;
  log: Logger;
  policy?: PolicyEngine;
  id?: string;
  metrics?: ServiceMetrics | undefined;
  /** Audit heads shared with a worker in the same process (`writ up`). */
  auditHeads?: HeadBoard | undefined;
  /** Where the grants signed here are recorded for a worker in the same process (`writ up`). */
  signedGrants?: SignedGrants | undefined;
  /** Where orders go to a worker of the same process without the bus (`writ up`; lib/handover.ts). */
  handover?: LocalHandover | undefined;
}): Promise<Broker> {
  const { config } = opts;
  await initClassifiers();
  const dev = config.identity.devIssuer.enabled ? await loadDevIssuer(config.identity.devIssuer.dir, true) : undefined;
  const identity = IdentityVerifier.fromConfig(config, dev);
  // With signedGrants, what it signs is recorded for the worker of this process (schemas/grant.ts).
  const { signer } = loadOrCreateGrantKey(config.grants.keyFile, opts.signedGrants);
  return new Broker({
    nc: opts.nc,
    config,
    names: makeNames(config.prefix),
    log: opts.log,
    identity,
    signer,
    policy: opts.policy ?? (config.policyFile ? policyFromStore(config.policyFile, opts.log) : new SimplePolicy(config.policy)),
    ...(opts.id ? { id: opts.id } : {}),
    metrics: opts.metrics,
    auditHeads: opts.auditHeads,
    handover: opts.handover,
  });
}

/**
 * The rule engine's lifecycle: the file named in the config is validated and published to
 * the writ_policy bucket (a no-op when unchanged), then every broker follows the bucket and
 * hot-reloads; an invalid update is refused and the old policy stays.
 */
function policyFromStore(file: string, log: Logger) {
  return async ({ kv, audit }: { kv: Buckets; audit: AuditWriter }) => {
    const store = new PolicyStore(kv.policy);
    const text = readFileSync(file, 'utf8');
    const fallback = RulePolicy.fromText(text, file);
    const published = await store.publish(text, { source: file, author: 'broker-start' });
    const policy = await ReloadingPolicy.start(store, {
      fallback,
      log,
      onChange: (p) =>
        void audit
          .append({ sessionId: '_policy', type: 'policy.loaded', policyVersion: p.policy.version, payload: { version: p.policy.version, revision: p.revision, meta: p.meta } })
          .catch(() => undefined),
    });
    log.info({ version: published.version, changed: published.changed }, 'policy published from file');
    return policy;
  };
}
