/** The CLI's paths and exits; the local stack's data directory lives in lib/local.ts. */
import { resolve } from 'node:path';
import { packageFile } from '../lib/local.ts';

export * from '../lib/local.ts';
export * from './exit.ts';

/**
 * The config a command reads when it is given none: `WRIT_CONFIG` (relative to the current
 * directory, as the user typed it), else the local stack's config shipped with the package,
 * whose keys live in the data directory (`$WRIT_HOME/…`), so every directory sees the same stack.
 */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.WRIT_CONFIG ? resolve(env.WRIT_CONFIG) : packageFile('deploy/local/writ.yaml');
}
