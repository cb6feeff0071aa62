/**
 * Which server a target runs, checked once at the worker's first connection: MariaDB 10.6+
 * or MySQL 8.0+. The two differ in what the worker sets per run (session.ts, settingsSql):
 * - time limit: MariaDB `max_statement_time` (seconds, every statement outside stored
 *   routines); MySQL `max_execution_time` (milliseconds, read-only SELECT only), so on MySQL a
 *   write is held by the watchdog's KILL QUERY alone;
 * - read-only session: MariaDB `tx_read_only` (10.11 has no `transaction_read_only`);
 *   MySQL `transaction_read_only` (`tx_read_only` was removed in 8.0.3).
 * Only MariaDB 10.11 is tested here; the MySQL branch follows MySQL 8.0's manual.
 */
import { WritError } from '../../schemas/index.ts';

export interface ServerFlavor {
  kind: 'mariadb' | 'mysql';
  major: number;
  minor: number;
  version: string;
}

const MIN: Record<ServerFlavor['kind'], [number, number]> = { mariadb: [10, 6], mysql: [8, 0] };

/** Parses `SELECT VERSION()` (and the version comment) into a flavor, or refuses the server. */
export function serverFlavor(version: string, comment = ''): ServerFlavor {
  // MariaDB before 11 may announce itself as `5.5.5-10.x…` (for old clients that read the first number).
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version.replace(/^5\.5\.5-(?=\d+\.\d+\.\d+-MariaDB)/i, ''));
  if (!m) throw new WritError('WRIT_UNSUPPORTED', `the target reports an unreadable server version ${JSON.stringify(version.slice(0, 80))}`);
  const kind = /mariadb/i.test(version) || /mariadb/i.test(comment) ? 'mariadb' : 'mysql';
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const [minMajor, minMinor] = MIN[kind];
  if (major < minMajor || (major === minMajor && minor < minMinor)) {
    throw new WritError('WRIT_UNSUPPORTED', `the target runs ${kind === 'mariadb' ? 'MariaDB' : 'MySQL'} ${major}.${minor}; the worker needs MariaDB 10.6+ or MySQL 8.0+`);
  }
  return { kind, major, minor, version };
}
