import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Where the local stack keeps its keys, nats store and URL. */
export const DATA_DIR = resolve(process.env.WRIT_DATA_DIR ?? '.data');
export const NATS_URL_FILE = join(DATA_DIR, 'nats.url');

/** The NATS URL a CLI command should use: flag, NATS_URL, the local stack's, else the default port. */
export function resolveNatsUrl(flag?: string): string {
  if (flag) return flag;
  if (process.env.NATS_URL) return process.env.NATS_URL;
  if (existsSync(NATS_URL_FILE)) return readFileSync(NATS_URL_FILE, 'utf8').trim();
  return 'nats://127.0.0.1:4222';
}
