/**
 * Where the local stack (`writ up`) keeps its data, and how a process on this machine finds
 * its server and its role's credentials from any directory. Shared by the CLI, the terminal
 * approver and the examples, so it lives with the other runtime pieces.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveNatsConfig, type NatsConnectConfig } from './nats.ts';
import { writHome, type NatsConfig } from '../schemas/index.ts';

/**
 * Where the local stack keeps its keys, nats store and URL: `WRIT_HOME` (or `WRIT_DATA_DIR`),
 * else the user's data directory (schemas/home.ts), never the current directory.
 */
export const DATA_DIR = writHome();

/**
 * The installed package's root (the folder of its package.json): the shipped files the runtime
 * reads by path (deploy/) lie there, whether this module runs from source (lib/) or from dist/lib/.
 */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
/** A file shipped with the package, e.g. `deploy/local/writ.yaml`. */
export const packageFile = (relative: string) => join(PACKAGE_ROOT, relative);

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}
export const NATS_URL_FILE = join(DATA_DIR, 'nats.url');
/** The local stack's per-role NATS passwords (`<role>.password`, mode 0600), written by `writ up`. */
export const NATS_AUTH_DIR = join(DATA_DIR, 'nats', 'auth');

/** The roles of deploy/nats/accounts.conf; the local stack's nats-server runs with them. */
export const NATS_ROLES = ['broker', 'worker', 'agent', 'approver', 'auditor', 'operator'] as const;
export type NatsRole = (typeof NATS_ROLES)[number];
/** The inbox prefix each role may subscribe to under accounts.conf (broker and worker answer everyone: `_INBOX`). */
export const ROLE_INBOX: Readonly<Record<NatsRole, string | undefined>> = {
  broker: undefined,
  worker: undefined,
  agent: '_INBOX.agent',
  approver: '_INBOX.approver',
  auditor: '_INBOX.auditor',
  operator: undefined,
};
/** The URL of the server those passwords belong to (the nats-server `writ up` started), written with them. */
export const NATS_AUTH_URL_FILE = join(NATS_AUTH_DIR, 'server.url');
export const rolePasswordFile = (role: NatsRole, dir = NATS_AUTH_DIR) => join(dir, `${role}.password`);

/**
 * The connection for one role, as a CLI command or a local service needs it: the `nats`
 * section and the environment (NATS_URL, WRIT_NATS_*) first; where they name no server,
 * the local stack's URL; where they give no credentials and the server is the local stack's,
 * the role's password from the data directory and the role's inbox prefix. The local
 * password is never offered to any other server.
 */
export function natsForRole(role: NatsRole, section?: Partial<NatsConfig>, env: NodeJS.ProcessEnv = process.env): NatsConnectConfig {
  const explicit = resolveNatsConfig(section, env);
  const localUrl = existsSync(NATS_URL_FILE) ? readFileSync(NATS_URL_FILE, 'utf8').trim() : undefined;
  const namesServer = !!(section?.servers || section?.url || env.NATS_URL);
  const hasAuth = !!(explicit.creds || explicit.nkeySeed || explicit.user || explicit.token);
  if (!localUrl || hasAuth) return explicit;
  const servers = namesServer ? explicit.servers : [localUrl];
  const pw = rolePasswordFile(role);
  const authUrl = existsSync(NATS_AUTH_URL_FILE) ? readFileSync(NATS_AUTH_URL_FILE, 'utf8').trim() : undefined;
  const local = servers.length === 1 && servers[0] === authUrl && existsSync(pw);
  return resolveNatsConfig(
    {
      ...(section ?? {}),
      url: undefined,
      servers,
      ...(local ? { user: { value: role }, password: { file: pw }, ...(ROLE_INBOX[role] && !explicit.inboxPrefix ? { inboxPrefix: ROLE_INBOX[role] } : {}) } : {}),
    },
    { ...env, NATS_URL: undefined },
  );
}

/** The NATS URL a CLI command should use: flag, NATS_URL, the local stack's, else the default port. */
export function resolveNatsUrl(flag?: string): string {
  if (flag) return flag;
  if (process.env.NATS_URL) return process.env.NATS_URL;
  if (existsSync(NATS_URL_FILE)) return readFileSync(NATS_URL_FILE, 'utf8').trim();
  return 'nats://127.0.0.1:4222';
}
