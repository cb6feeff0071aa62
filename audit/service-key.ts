/**
 * The audit key a service signs its blocks with, from the config: loaded (or created) from
 * `audit.signingKeyDir` (default: beside the grant key), and, on a local stack that asks for
 * it, added to the registry. Used by the broker and the workers, so it lives here.
 */
import { dirname, join } from 'node:path';
import type { Config } from '../schemas/index.ts';
import { addKeyToRegistry, loadOrCreateAuditKey, watchedKeyRegistry } from './keys.ts';

/**
 * `targets`: a worker's, which a key it registers itself is bound to (widened by every worker
 * process that shares the key file), so its exec events count only for intents of its targets.
 */
export function serviceAuditKey(config: Config, kind: 'broker' | 'worker', onRegistryError?: (e: unknown) => void, targets?: readonly string[]) {
  const dir = config.audit.signingKeyDir ?? dirname(config.grants.keyFile);
  const key = loadOrCreateAuditKey(join(dir, `audit-${kind}.pem`));
  if (config.audit.keyRegistry && config.audit.autoRegisterKeys) {
    const bind = kind === 'worker' && targets !== undefined && targets.length > 0;
    addKeyToRegistry(config.audit.keyRegistry, { publicKeyPem: key.publicKeyPem, kind, ...(bind ? { targets, targetsMode: 'widen' as const } : {}) });
  }
  const signers = config.audit.keyRegistry ? watchedKeyRegistry(config.audit.keyRegistry, onRegistryError) : undefined;
  return { ...key, signers };
}
