/**
 * The audit key a service signs its blocks with, from the config: loaded (or created) from
 * `audit.signingKeyDir` (default: beside the grant key), and, on a local stack that asks for
 * it, added to the registry. Used by the broker and the workers, so it lives here.
 */
import { dirname, join } from 'node:path';
import type { Config } from '../schemas/index.ts';
import { addKeyToRegistry, loadOrCreateAuditKey, watchedKeyRegistry } from './keys.ts';

export function serviceAuditKey(config: Config, kind: 'broker' | 'worker', onRegistryError?: (e: unknown) => void) {
  const dir = config.audit.signingKeyDir ?? dirname(config.grants.keyFile);
  const key = loadOrCreateAuditKey(join(dir, `audit-${kind}.pem`));
  if (config.audit.keyRegistry && config.audit.autoRegisterKeys) addKeyToRegistry(config.audit.keyRegistry, { publicKeyPem: key.publicKeyPem, kind });
  const signers = config.audit.keyRegistry ? watchedKeyRegistry(config.audit.keyRegistry, onRegistryError) : undefined;
  return { ...key, signers };
}
