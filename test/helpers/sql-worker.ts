// Driving a SQL executor directly, as the worker runtime does, for the workers' attack suites:
// one grant's claims, the run, and the error a run ended with.
import type { AccessMode, GrantClaims, Limits, Order } from '../../schemas/index.ts';
import { toWritError, type WritError } from '../../schemas/index.ts';
import type { ExecOutput, Executor } from '../../workers/executor.ts';
import type { TestDatabase } from './postgres-types.ts';

export interface SqlRunOptions {
  mode?: AccessMode;
  limits?: Limits;
  /** The grant's masking spec, when the test needs one. */
  mask?: unknown;
  /** The grant's target and kind: PostgreSQL's `db` unless given. */
  target?: string;
  kind?: 'postgres' | 'mysql';
}

/** Runs `sql` on `e` under a fresh grant of `opts` (ten minutes, read mode, no limits by default). */
export function runSql(e: Executor, sql: string, opts: SqlRunOptions = {}): Promise<ExecOutput> {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    gid: 'g',
    iid: 'i',
    sid: 's',
    tgt: opts.target ?? 'db',
    kind: opts.kind ?? 'postgres',
    mode: opts.mode ?? 'read',
    sha256: '0'.repeat(64),
    iat: now,
    exp: now + 600,
    limits: opts.limits ?? {},
    policyVersion: 'v',
    sub: 'x',
    ...(opts.mask !== undefined ? { mask: opts.mask } : {}),
  } as GrantClaims;
  return e.run({ order: { command: { kind: 'sql', sql } } as Order, claims, signal: new AbortController().signal, streamMasker: () => ({ push: () => '', end: () => '' }) });
}

/** The coded error `p` failed with; throws when it succeeded. */
export async function failureOf(p: Promise<unknown>): Promise<WritError> {
  try {
    await p;
  } catch (e) {
    return toWritError(e);
  }
  throw new Error('expected a failure');
}

/** A PostgreSQL executor's target `db` on a test database, logged in with its read and write roles. */
export function pgTarget(db: TestDatabase, poolSize: number, modes: readonly AccessMode[] = ['read', 'write']) {
  const credentials: Partial<Record<AccessMode, { user: { value: string }; password: { value: string } }>> = {};
  for (const m of modes) credentials[m] = { user: { value: db.roles[m].user }, password: { value: db.roles[m].password } };
  return [{ target: 'db', host: db.host, port: db.port, database: db.database, poolSize, credentials }];
}

// Statements already signalled, by backend and start time: a terminated backend stays in
// pg_stat_activity as active for a moment while it exits, and a second search for the same text
// must not take that dying statement for the next one (the next one would then run to its timeout).
const signalled = new Set<string>();

/**
 * Sends `fn` to the backend of `admin`'s database running a statement whose text matches
 * `pattern` (ILIKE), as someone else on the server would, and resolves once one got it. Tests sleep far longer than this search
 * may take on a loaded machine, so the signal, not the sleep's end, is what stops the statement;
 * it gives up once `done` says the run ended, or after 20 s. A statement signalled before, by this
 * or an earlier call, is never taken again.
 */
export async function signalBackend(
  admin: { query(sql: string, values: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }> },
  fn: 'pg_cancel_backend' | 'pg_terminate_backend',
  pattern: string,
  done: () => boolean = () => false,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!done() && Date.now() < deadline) {
    const found = await admin.query(
      `SELECT pid, pid || ':' || query_start::text AS key FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND query ILIKE $1`,
      [pattern],
    );
    for (const row of found.rows) {
      const key = String(row.key);
      if (signalled.has(key)) continue;
      const r = await admin.query(`SELECT ${fn}($1) AS ok`, [row.pid]);
      if (r.rows[0]?.ok === true) {
        signalled.add(key);
        return;
      }
    }
    await new Promise((res) => setTimeout(res, 10));
  }
  throw new Error(`${fn} found no running statement like ${pattern}`);
}
