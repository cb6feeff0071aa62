/**
 * PostgreSQL executor. One pool per access mode, each logged in as that mode's
 * least-privilege role (a read-only transaction alone is no boundary: `SET TRANSACTION
 * READ WRITE` as a first statement escapes it). Each statement of the approved text is
 * sent alone through the extended protocol, so the server itself refuses a second
 * statement smuggled inside one; a batch runs in one transaction of the worker's, which
 * the batch may not end: transaction control is refused before anything runs, and the
 * connection's transaction status is checked after every statement.
 *
 * Connections start with pinned settings (startup options, so `RESET` and `DISCARD ALL`
 * return to them): search_path, a session statement_timeout, and read-only transactions
 * on the read pool. Each goes back to the pool only after `DISCARD ALL` (session.ts).
 */
import pg from 'pg';
import { classifySqlCached as classifySql, splitSql, type SqlStatementFacts } from '../../classify/index.ts';
import { readSecret, WritError, type AccessMode, type Config, type GrantClaims } from '../../schemas/index.ts';
import { setErrorContext, type ExecContext, type ExecOutput, type Executor, type RowsOutput } from '../executor.ts';
import { fetchLimits, runCursor, runOneShot, type CursorResult, type FetchLimits } from './cursor.ts';
import { OriginResolver } from './origins.ts';
import { LARGE_OBJECT_FUNCTION, VALUE_FUNCTIONS, valueCatalog } from './catalogs.ts';
import { checkMaskedOrder, type OrderHazards } from './order.ts';
import { END_BACKEND_SQL, PARSER_SETTINGS, Session } from './session.ts';
import { timestamptzParser } from './timestamps.ts';
import {
  assertBeforeDeadline,
  batchFailure,
  maskedColumnsOf,
  maskedOrderCut,
  opaqueReason,
  refuseMaskedCopies,
  refuseMaskedFilters,
  RowLimit,
  sourcesOf,
  timeLimitMs,
  uncountable,
  writesRows as writes,
} from '../sql-common.ts';

type WorkerTarget = Config['workers']['postgres'][number];

interface TargetPools {
  cfg: WorkerTarget;
  pools: Partial<Record<AccessMode, pg.Pool>>;
  /** One connection per mode, apart from the pools, that ends the mode's dropped backends (session.ts). */
  control: Partial<Record<AccessMode, pg.Pool>>;
  origins: OriginResolver;
}

/** Command tags whose row count is rows affected. */
const WRITE_TAGS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY']);
/** The session statement_timeout every connection starts with; an intent with another limit sets its own. */
const SESSION_TIMEOUT_MS = 30_000;
/** The byte budget of a result when the grant names none. */
const DEFAULT_BYTES = 4 * 1024 * 1024;
/** Pinned: unqualified names resolve the same way for every principal, whatever `$user` is. */
const SEARCH_PATH = 'pg_catalog,public';
/**
 * Settings the batch may not change: the worker's limits, and the encoding the worker reads
 * values in (a session in SJIS sent bytes pg's JSON parser could not read).
 */
const PINNED_SETTINGS = new Set(['statement_timeout', 'all', 'search_path', 'transaction_read_only', 'default_transaction_read_only', ...Object.keys(PARSER_SETTINGS)]);
/** Statement kinds whose changes to rows the server's per-table counts show: the only ones a rowsAffected limit admits. */
const COUNTED_KINDS: ReadonlySet<string> = new Set([
  'select',
  'values',
  'insert',
  'update',
  'delete',
  'merge',
  'explain',
  'show',
  'set',
  'reset',
  'prepare',
  'execute',
  'deallocate',
  'declare',
  'fetch',
  'move',
  'close',
]);
/** Object types whose DDL changes the worker's own login or every later session: roles, the server's and the database's settings. */
const SESSION_OBJECTS = new Set(['role', 'user', 'group', 'system', 'database']);
/**
 * Functions that run SQL given to them as text, which the classifier cannot see into:
 * `query_to_xml('SELECT pg_notify(…)', …)` sent a notification under a read grant.
 */
const SQL_TEXT_FUNCTIONS = new Set([
  'query_to_xml',
  'query_to_xmlschema',
  'query_to_xml_and_xmlschema',
  'cursor_to_xml',
  'cursor_to_xmlschema',
  'ts_stat',
  'ts_rewrite',
  'dblink',
  'dblink_exec',
  'dblink_send_query',
  'dblink_open',
  'dblink_fetch',
]);
/**
 * Code an intent would supply: a DO block, or a function or procedure it creates (and then
 * calls). It runs with the worker role's own powers, and the refusals here see only what the
 * classifier sees: inside one, ALTER ROLE CURRENT_USER PASSWORD changed the worker's login,
 * lo_from_bytea and pg_notify ran under a read grant, and pg_terminate_backend ended other
 * intents' connections. Functions a DBA created are called by name, and policy decides.
 */
const CODE_OBJECTS = new Set(['function', 'procedure', 'routine', 'language', 'event_trigger', 'trigger', 'rule', 'policy']);
/** Functions that signal other backends (the pooled connections of other intents share the role) or the server. */
const SIGNAL_FUNCTIONS = new Set(['pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_promote', 'pg_log_backend_memory_contexts']);
/**
 * A value past this many characters is returned as the server's text, not parsed: parsing an 8 MB
 * JSON array of empty objects took 174 MB of heap (arrays of numbers or intervals 50-60 MB), under
 * the wire's cap, so a few intents at once could run the worker out of memory.
 */
const PARSE_MAX_CHARS = 64 * 1024;
const TIMESTAMPTZ_OID = 1184;
const BOUNDED_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    const general = (pg.types.getTypeParser as (oid: number, format?: 'text' | 'binary') => (v: string) => unknown)(oid, format);
    const parse = oid === TIMESTAMPTZ_OID && format !== 'binary' ? timestamptzParser(general) : general;
    return (v: string) => (typeof v === 'string' && v.length > PARSE_MAX_CHARS ? v : parse(v));
  },
} as unknown as pg.CustomTypesConfig;
/** Kinds of statement that cannot commit or roll back from inside: the only ones run outside a transaction block of the worker's. */
const ONE_SHOT_KINDS: ReadonlySet<string> = new Set(['select', 'values', 'show', 'explain']);
const NOTICE_MAX = 20;

export class PostgresExecutor implements Executor {
  readonly kind = 'postgres' as const;
  readonly targets: readonly string[];
  readonly #t = new Map<string, TargetPools>();
  /** Connections being reset before they rejoin their pool; close() waits for them. */
  readonly #resetting = new Set<Promise<void>>();
  readonly #resolverPools: pg.Pool[] = [];
  /** Sessions of runs under way: a stopping worker ends their backends (close). */
  readonly #open = new Set<Session>();

  constructor(targets: readonly WorkerTarget[]) {
    this.targets = targets.map((t) => t.target);
    for (const cfg of targets) {
      const pools: TargetPools['pools'] = {};
      const poolFor = (mode: AccessMode, max: number): pg.Pool | undefined => {
        const cred = cfg.credentials[mode];
        if (!cred) return undefined;
        // Pinned as startup options, which outrank a role's or database's own defaults (ALTER ROLE … SET):
        // how the server reads the text must be how the classifier read it (session.ts watches them).
        const options = [`-c search_path=${SEARCH_PATH}`, `-c statement_timeout=${SESSION_TIMEOUT_MS}`, ...Object.entries(PARSER_SETTINGS).map(([k, v]) => `-c ${k}=${v}`)];
        // Read connections default to read-only transactions, so a single read statement can run
        // in its implicit transaction without a BEGIN/COMMIT round trip each (the role is the boundary).
        if (mode === 'read') options.push('-c default_transaction_read_only=on');
        // Credentials are read here, from the worker's own config sources; never from an intent.
        const pool = new pg.Pool({
          host: cfg.host,
          port: cfg.port,
          database: cfg.database,
          max,
          user: readSecret(cred.user, `workers.postgres[${cfg.target}].credentials.${mode}.user`),
          password: cred.password ? readSecret(cred.password, `workers.postgres[${cfg.target}].credentials.${mode}.password`) : undefined,
          application_name: 'writ-worker',
          options: options.join(' '),
          types: BOUNDED_TYPES,
        });
        pool.on('error', () => undefined); // idle-client errors surface on the next checkout instead of crashing the worker
        // Every client, from its first connect, has a listener: a backend terminated while the
        // client is between owners (pool.query's own checkout, a release) must not be an
        // uncaught 'error' event that ends the worker. The owner's own listener still sees it.
        pool.on('connect', (client) => client.on('error', () => undefined));
        return pool;
      };
      const control: TargetPools['control'] = {};
      for (const mode of ['read', 'write'] as const) {
        const pool = poolFor(mode, cfg.poolSize);
        if (pool) pools[mode] = pool;
        // Its own connection: with every pooled one held by runs whose backends must end first,
        // ending them through the pool would wait for itself.
        const c = poolFor(mode, 1);
        if (c) control[mode] = c;
      }
      // The catalogue lookups get connections of their own: an intent holds its connection while
      // its fields are resolved, and must never wait on the pool it holds (a pool of one deadlocks).
      const resolverPool = poolFor('read', 2)!;
      this.#resolverPools.push(resolverPool);
      this.#t.set(cfg.target, { cfg, pools, control, origins: new OriginResolver(resolverPool) });
    }
  }

  async run(ctx: ExecContext): Promise<ExecOutput> {
    const { order, claims } = ctx;
    if (order.command.kind !== 'sql') throw new WritError('WRIT_GRANT_MISMATCH', 'a PostgreSQL target runs SQL only');
    const known = this.#t.get(claims.tgt);
    if (!known) throw new WritError('WRIT_UNKNOWN_TARGET');
    // What tables and views are is read for this intent alone (origins.ts fresh()).
    const t: TargetPools = { ...known, origins: known.origins.fresh() };
    const pool = t.pools[claims.mode];
    if (!pool) throw new WritError('WRIT_GRANT_MISMATCH', `this worker holds no ${claims.mode} credential for ${claims.tgt}`);
    const facts = classifySql(order.command.sql);
    // The statements as the classifier's one parse cut them (cached by the text's SHA-256): parsing
    // again to split was a second full parse per intent. A text it could not read gets splitSql's
    // own error (unparseable, empty) before the refusal below.
    const statements = facts.error ? splitSql(order.command.sql) : facts.statements.map((st) => st.text);
    if (statements.length === 0) throw new WritError('WRIT_SQL_EMPTY');
    if (facts.error || facts.statements.length !== statements.length) {
      throw new WritError('WRIT_SQL_UNKNOWN', 'the worker could not classify every statement of the batch; nothing ran');
    }
    refuse(facts.statements, claims);
    // What the checks below read of the catalogue, in one round trip (origins.ts prefetch).
    await t.origins.prefetch(namedRelations(facts.statements));
    await refuseHiddenCalls(t.origins, facts.statements);
    await refuseMaskedCopies(t.origins, facts.statements, claims, 'postgres');
    await refuseMaskedFilters(t.origins, facts.statements, claims, 'postgres');
    // Tables whose masked columns are in an index: each statement touching one has its plan checked before it runs (order.ts).
    const masked = maskedColumnsOf(claims);
    const orderHazards = masked ? await t.origins.maskedOrder([...new Set(facts.statements.flatMap((st) => [...st.tablesRead, ...st.tablesWritten]))], masked) : undefined;
    const lim = fetchLimits(claims.limits.rows ?? 1000, claims.limits.bytes ?? DEFAULT_BYTES);
    const timeoutMs = timeLimitMs(claims.limits.seconds ?? 30);

    const control = t.control[claims.mode];
    const s = await Session.open(pool, control ? (pid, port) => control.query(END_BACKEND_SQL, [pid, port]) : undefined);
    // Waiting for a pooled connection may outlast the grant: then nothing starts, so no run can
    // still be going past the sweeper's deadline (grant expiry + time limit + margin).
    if (Date.now() >= claims.exp * 1000) {
      await s.release(false);
      throw new WritError('WRIT_GRANT_EXPIRED', 'the grant expired while the run waited for a connection; nothing ran');
    }
    this.#open.add(s);
    // A stopping worker aborts what still runs past its drain deadline: the statement is ended on the server.
    const onAbort = () => void s.abandon();
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });
    // A backend that outlives the dropped socket (a DO block catching query_canceled never reads it
    // again, and kept its transaction and locks) is ended from another connection of the same role.
    s.startWatchdog(timeoutMs, { host: t.cfg.host, port: t.cfg.port });
    const started = Date.now();
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => {
      if (notices.length < NOTICE_MAX) notices.push(String(n.message ?? '').slice(0, 1000));
    };
    s.client.on('notice', onNotice);
    try {
      // One read statement runs in its implicit transaction, in one round trip, only when it cannot
      // hold transaction control: a DO block (or a CALL) may COMMIT inside an implicit transaction,
      // then SET TRANSACTION READ WRITE, and write as the read role (a DO block changed the role's
      // password so). Inside the batch path's BEGIN READ ONLY its COMMIT is refused (2D000).
      if (claims.mode === 'read' && statements.length === 1 && ONE_SHOT_KINDS.has(facts.statements[0]!.kind)) {
        return await this.#runSingleRead(t, s, statements[0]!, facts.statements[0]!, lim, timeoutMs, notices, orderHazards);
      }
      return await this.#runBatch(t, s, statements, facts.statements, claims, lim, timeoutMs, notices, orderHazards);
    } catch (e) {
      // The time limit was what ended it when the server says so, when the worker's watchdog sent
      // the cancel, or when the statement had run that long (the server's text may be localised).
      const timedOut = s.watchdogCancelled || Date.now() - started >= timeoutMs;
      throw await this.#failure(t, e, timeoutMs, facts.statements, timedOut);
    } finally {
      s.client.off('notice', onNotice);
      ctx.signal.removeEventListener('abort', onAbort);
      this.#open.delete(s);
      // Reset and back to the pool, or destroyed when its state is unsure (session.ts decides).
      const ends = s.endsBackend;
      const p = s.release(false);
      this.#resetting.add(p);
      void p.finally(() => this.#resetting.delete(p));
      // Dropped mid-statement: the run holds its place until the backend is ended, so no more
      // statements run on the server than the worker counts.
      if (ends) await p;
    }
  }

  /**
   * The common case, one read statement: it runs in its implicit transaction on a read-only
   * connection (default_transaction_read_only, least-privilege role).
   */
  async #runSingleRead(t: TargetPools, s: Session, sql: string, st: SqlStatementFacts, lim: FetchLimits, timeoutMs: number, notices: string[], order: OrderHazards | undefined): Promise<ExecOutput> {
    if (timeoutMs !== SESSION_TIMEOUT_MS) await s.client.query(`SET statement_timeout = ${timeoutMs}`); // DISCARD ALL undoes it
    const unordered = await checkMaskedOrder((q) => Promise.race([s.client.query(q), s.dead]), sql, st, order, undefined);
    const r = await runOneShot(s, sql, lim);
    if (s.watchdogCancelled) throw Object.assign(new Error('the statement went on past its time limit'), { code: 'WORKER_WATCHDOG' });
    if (!r.cut && s.client.getTransactionStatus() !== 'I') {
      throw new WritError('WRIT_EXEC_FAILED', 'the statement left a transaction open on the connection; the connection was closed');
    }
    if (unordered && (r.truncated || r.cut)) throw maskedOrderCut(undefined);
    const out = await this.#rows(t, r, [st], notices);
    return unordered ? { ...out, unordered: true } : out;
  }

  async #runBatch(
    t: TargetPools,
    s: Session,
    statements: string[],
    facts: SqlStatementFacts[],
    claims: GrantClaims,
    lim: FetchLimits,
    timeoutMs: number,
    notices: string[],
    order: OrderHazards | undefined,
  ): Promise<ExecOutput> {
    const { client } = s;
    let left = -1; // index of a statement after which the worker's transaction was gone
    let committing = false;
    try {
      // One round trip: our own fixed text, so the simple protocol's multi-statement form is safe here.
      // A read's transaction takes its snapshot in the same round trip (SELECT 1): after it, SET
      // TRANSACTION READ WRITE and transaction_read_only = off are refused by the server (25001).
      // Before, a batch starting with one of them wrote as the read role (it changed its password).
      await client.query(`${claims.mode === 'read' ? 'BEGIN READ ONLY' : 'BEGIN'}; SET LOCAL statement_timeout = ${timeoutMs}${claims.mode === 'read' ? '; SELECT 1' : ''}`);
      // The server's counters also hold earlier transactions' counts it has not flushed yet (up to
      // seconds): what this transaction changed is the count before COMMIT less this one.
      const countLimit = claims.mode === 'write' ? claims.limits.rowsAffected : undefined;
      const baseline = countLimit !== undefined ? await transactionRowsChanged(s) : new Map<string, number>();
      let out: RowsOutput | undefined;
      const tags: string[] = [];
      for (let i = 0; i < statements.length; i++) {
        const st = facts[i]!;
        assertBeforeDeadline(s.deadline, `statement ${i + 1}`);
        const which = statements.length > 1 ? i + 1 : undefined;
        const unordered = await checkMaskedOrder((q) => Promise.race([client.query(q), s.dead]), statements[i]!, st, order, which);
        const r = await runCursor(s, statements[i]!, lim);
        if (unordered && (r.truncated || r.cut)) throw maskedOrderCut(which);
        s.assertParser();
        if (!r.cut && i < statements.length - 1) await assertNames(s);
        if (r.cut) {
          // The connection is closed; its transaction can never commit. A read may still answer.
          if (claims.mode === 'read' && i === statements.length - 1) {
            tags.push(r.command ?? st.kind.toUpperCase());
            return { ...(await this.#rows(t, r, facts.slice(0, i + 1), notices)), command: tags.join(';') };
          }
          throw new WritError('WRIT_RESULT_TOO_LARGE', `${r.cut.message}; the connection was closed before COMMIT, so nothing was committed`, { details: { limit: lim.bytes } });
        }
        // Transaction control is refused up front; this catches whatever else could end it.
        if (client.getTransactionStatus() !== 'T') {
          left = i;
          throw new WritError('WRIT_EXEC_FAILED', `statement ${i + 1} ended the worker's transaction: what ran up to it may have been committed; nothing after it ran`, {
            details: { statement: i + 1, transaction: 'left' },
          });
        }
        const command = r.command ?? st.kind.toUpperCase();
        tags.push(command);
        const limit = claims.limits.rowsAffected;
        if (limit !== undefined) {
          // A write's whole effect is known only inside its transaction: over the limit, nothing is kept.
          if (r.complete && WRITE_TAGS.has(command) && r.rowCount > limit) throw new RowLimit(r.rowCount, limit);
          // A write whose RETURNING rows were cut has an unknown count: not kept either.
          if (!r.complete && writes(st)) throw new RowLimit(null, limit);
        }
        // The last statement that returns rows is the result; a batch's writes report their counts in `command`.
        if (r.fields.length > 0 || out === undefined) {
          out = await this.#rows(t, r, facts.slice(0, i + 1), notices);
          if (unordered) out = { ...out, unordered: true };
        }
      }
      if (countLimit !== undefined) {
        // The command tags count the rows each statement named, not what the transaction changed:
        // a cascading foreign key, a trigger or a rule changes more, and the batch's statements
        // add up. The server's own count of the transaction's inserted, updated and deleted rows
        // in every user table decides, before COMMIT, once deferred triggers and constraints ran.
        await Promise.race([client.query('SET CONSTRAINTS ALL IMMEDIATE'), s.dead]);
        // Table by table, never below zero: a table the batch dropped leaves the view with its count.
        let changed = 0;
        for (const [rel, n] of await transactionRowsChanged(s)) changed += Math.max(0, n - (baseline.get(rel) ?? 0));
        if (!Number.isFinite(changed)) throw new RowLimit(null, countLimit);
        if (changed > countLimit) throw new RowLimit(changed, countLimit);
      }
      // The watchdog cancelled a statement that went on (a DO block catching query_canceled): the
      // time limit ended this intent, whatever the statements answered afterwards.
      if (s.watchdogCancelled) throw Object.assign(new Error('the batch went on past its time limit'), { code: 'WORKER_WATCHDOG' });
      assertBeforeDeadline(s.deadline, 'COMMIT');
      committing = true;
      // COMMIT runs deferred constraints and triggers without any statement timeout (the server
      // disables it for COMMIT): the session cancels a COMMIT still running at the deadline
      // (200,000 deferred foreign-key checks committed 1.5 s past a 2 s limit and reported success).
      s.committing = true;
      await client.query('COMMIT');
      s.committing = false;
      return { ...(out as RowsOutput), command: tags.join(';') };
    } catch (e) {
      return batchFailure(e, { committing, connectionLost: !isPlainServerError(e, s), leftStatements: left, rollback: () => rollback(s) });
    }
  }

  /**
   * The last statement's result fields. `drawn` is every statement of the batch up to it: the
   * session carries values from one statement to the next (set_config / current_setting, a
   * cursor, a prepared statement), so a computed field may hold anything an earlier statement
   * read: `SELECT set_config('x.y', email, false) FROM customers; SELECT current_setting('x.y')`
   * returned the e-mail unmasked when only the last statement's sources counted.
   */
  async #rows(t: TargetPools, r: CursorResult, drawn: readonly SqlStatementFacts[], notices: string[]): Promise<RowsOutput> {
    const st = drawn[drawn.length - 1]!;
    const fields = await t.origins.resolve(r.fields);
    if (fields.some((f) => f.origin === null)) {
      const sources = await this.#sources(t, drawn);
      // A computed field over a view that calls an unknown function (or reads a value catalogue) is as opaque as the call.
      const opaque = drawn.map(opaqueReason).find((x) => x !== undefined) ?? (await t.origins.opaqueViews(readBy(drawn)))[0]?.replace(/^/, 'opaque:view ');
      for (const f of fields) {
        if (f.origin !== null) continue;
        f.sources = sources;
        if (opaque) f.opaque ??= opaque;
      }
    }
    return {
      type: 'rows',
      fields,
      rows: r.rows,
      rowCount: r.rowCount,
      truncated: r.truncated,
      ...(r.truncatedBy ? { truncatedBy: r.truncatedBy } : {}),
      command: r.command ?? st.kind.toUpperCase(),
      notices,
    };
  }

  /** The error as a WritError, with what the batch touched for the runtime's scrubbing. */
  async #failure(t: TargetPools, e: unknown, timeoutMs: number, facts: SqlStatementFacts[], timedOut: boolean): Promise<WritError> {
    const pe = e as { code?: string; message?: string; writFate?: string };
    let err: WritError;
    let serverText = false;
    if (e instanceof WritError) err = e;
    // 57014 is any cancel: only the statement timeout's (or the watchdog's) is the time limit; a
    // statement that cancels itself (pg_cancel_backend of its own backend) just failed.
    else if ((pe.code === '57014' && (timedOut || /statement timeout/.test(pe.message ?? ''))) || pe.code === 'WORKER_WATCHDOG')
      err = new WritError('WRIT_EXEC_TIMEOUT', `the statement ran past ${timeoutMs} ms and was cancelled${pe.writFate ? `; ${pe.writFate}` : ''}`, { cause: e });
    else if (typeof pe.code === 'string' && /^[0-9A-Z]{5}$/.test(pe.code)) {
      serverText = true;
      err = new WritError('WRIT_EXEC_FAILED', `${pe.message ?? 'statement failed'}${pe.writFate ? ` (${pe.writFate})` : ''}`, { cause: e, details: { sqlstate: pe.code } });
    } else {
      err = new WritError('WRIT_EXEC_FAILED', `the connection to the database was lost mid-statement${pe.writFate ? `; ${pe.writFate}` : ''}`, { cause: e });
    }
    let sources: string[] = [];
    let opaque = facts.some((st) => opaqueReason(st) !== undefined);
    try {
      sources = await this.#sources(t, facts, true);
      opaque ||= (await t.origins.opaqueViews(readBy(facts))).length > 0;
    } catch {
      opaque = true; // what the batch touched is unknown
    }
    return setErrorContext(err, { serverText, sources, opaque });
  }

  /** Every base column the statements may draw on (workers/sql-common.ts), from this target's catalogue. */
  #sources(t: TargetPools, facts: readonly SqlStatementFacts[], written = false): Promise<string[]> {
    return sourcesOf(t.origins, facts, written);
  }

  async close(): Promise<void> {
    // Whatever still runs is ended on the server before the pools close (their control
    // connections end the backends): PostgreSQL would otherwise run it on after the process exits.
    await Promise.allSettled([...this.#open].map((s) => s.abandon()));
    await Promise.allSettled([...this.#resetting]);
    for (const t of this.#t.values()) for (const p of [...Object.values(t.pools), ...Object.values(t.control)]) await p?.end();
    for (const p of this.#resolverPools) await p.end();
  }
}

/** Refusals before anything runs: what would let the batch escape the worker's transaction or limits. */
function refuse(facts: readonly SqlStatementFacts[], claims: GrantClaims): void {
  for (const st of facts) {
    const seen = [...st.tablesRead, ...st.tablesWritten].find(valueCatalog) ?? st.functions.find((f) => VALUE_FUNCTIONS.has(f.slice(f.lastIndexOf('.') + 1)));
    if (seen) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `${seen} hands back data values (column statistics) or what other sessions run (their statements and literals), past the grant's masking, so it cannot be read through Writ; nothing ran`,
      );
    }
    // COPY to or from the client is a raw stream, not rows the masking engine can see: refused
    // here as well as by policy, so an approved COPY can never carry unmasked data.
    if (st.kind === 'copy' && st.copy?.stdio) throw new WritError('WRIT_UNSUPPORTED', 'COPY to or from the client cannot run through Writ; use SELECT');
    // COMMIT/ROLLBACK/END/ABORT/PREPARE TRANSACTION/SAVEPOINT/RELEASE/BEGIN: the worker owns the
    // transaction (its limits and its rollback live in it). Refused for a single statement too.
    if (st.kind === 'transaction') {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `transaction control (${(st.transaction ?? 'transaction').toUpperCase()}) cannot run through Writ: the worker wraps the batch in its own transaction; nothing ran`,
      );
    }
    if (['create', 'alter', 'drop', 'grant', 'revoke', 'comment', 'security_label', 'reassign'].includes(st.kind) && SESSION_OBJECTS.has(st.objectType ?? '')) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `${st.kind.toUpperCase()} ${(st.objectType ?? '').toUpperCase()} changes logins or the settings of later sessions (the worker's own role's password and defaults included); nothing ran`,
      );
    }
    if (st.kind === 'do' || ((st.kind === 'create' || st.kind === 'alter') && CODE_OBJECTS.has(st.objectType ?? ''))) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `${st.kind === 'do' ? 'a DO block' : `${st.kind.toUpperCase()} ${(st.objectType ?? '').toUpperCase()}`} is code the worker cannot see into, and it would run with the worker role's own powers (its login, other intents' connections); call a function a DBA created instead; nothing ran`,
      );
    }
    const sqlText = st.functions.find((f) => SQL_TEXT_FUNCTIONS.has(f.slice(f.lastIndexOf('.') + 1)));
    if (sqlText) throw new WritError('WRIT_UNSUPPORTED', `${sqlText} runs SQL given as text, which the worker cannot see into; nothing ran`);
    const signal = st.functions.find((f) => SIGNAL_FUNCTIONS.has(f.slice(f.lastIndexOf('.') + 1)));
    if (signal) throw new WritError('WRIT_UNSUPPORTED', `${signal} signals other sessions (other intents share the worker's role) or the server; nothing ran`);
    // Large objects hold bytes outside any table: no masking sees them, a read-only transaction
    // still creates them (lo_from_bytea), and no row count covers them.
    const lo = st.functions.find((f) => LARGE_OBJECT_FUNCTION.test(f.slice(f.lastIndexOf('.') + 1)));
    if (lo) throw new WritError('WRIT_UNSUPPORTED', `${lo} reads or writes a large object, which cannot go through Writ; nothing ran`);
    if (claims.mode === 'read') {
      // What a read-only transaction still allows but is no read: notifications to other sessions,
      // and asking for a read-write transaction (the worker's snapshot refuses it too).
      if (st.kind === 'notify' || st.functions.some((f) => f.slice(f.lastIndexOf('.') + 1) === 'pg_notify')) {
        throw new WritError('WRIT_UNSUPPORTED', 'a read grant cannot send notifications (NOTIFY, pg_notify); nothing ran');
      }
      if (st.requestsReadWrite || st.set?.transactionReadWrite) throw new WritError('WRIT_UNSUPPORTED', 'a read grant cannot ask for a read-write transaction; nothing ran');
    }
    if ((st.kind === 'set' || st.kind === 'reset') && PINNED_SETTINGS.has(st.set?.variable ?? 'all')) {
      throw new WritError('WRIT_UNSUPPORTED', `${st.kind.toUpperCase()} ${st.set?.variable ?? ''} would change the worker's time limit; nothing ran`);
    }
    // The server counts rows a statement inserts, updates and deletes; a rewrite (ALTER … TYPE …
    // USING), a DROP or a REFRESH changes or removes rows it counts none of.
    if (claims.mode === 'write' && claims.limits.rowsAffected !== undefined && !COUNTED_KINDS.has(st.kind)) {
      throw new WritError('WRIT_UNSUPPORTED', `${st.kind.toUpperCase()} changes rows the server does not count, so the rowsAffected limit cannot hold it; nothing ran`);
    }
    if (claims.mode === 'write' && claims.limits.rowsAffected !== undefined && uncountable(st)) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        'the statement can change rows that its row count does not report (a data-modifying WITH, EXPLAIN ANALYZE of a write, DO/CALL, or a function the worker does not know), so the rowsAffected limit cannot be enforced; nothing ran',
      );
    }
  }
}

/**
 * Before the batch's next statement: names still resolve as the classifier resolved them. A
 * statement may move search_path (set_config, a DO block, a function) or create a temporary
 * object, which shadows every unqualified name of the same kind: a later filter on `customers`
 * or a temp view `v` was then a filter on a masked column the checks never saw. The connection
 * started with neither (DISCARD ALL drops temporary objects).
 */
async function assertNames(s: Session): Promise<void> {
  const sql = "SELECT pg_catalog.current_setting('search_path') AS path, EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) AS temp";
  const r = await Promise.race([s.client.query<{ path: string; temp: boolean }>(sql), s.dead]);
  const row = r.rows[0];
  if (!row || row.path.replace(/\s+/g, '') !== SEARCH_PATH) {
    throw new WritError('WRIT_UNSUPPORTED', 'a statement changed search_path, which decides what the names of the next statements are; nothing after it ran');
  }
  if (row.temp) throw new WritError('WRIT_UNSUPPORTED', 'a statement created a temporary object, which hides the names the next statements use; nothing after it ran');
}

/** Rows the open transaction inserted, updated or deleted, per user table (temp tables included), as the server counts them. */
async function transactionRowsChanged(s: Session): Promise<Map<string, number>> {
  // Every name qualified: the batch may have created a public.sum or a `+` and moved search_path.
  const sql = 'SELECT relid::pg_catalog.text AS rel, (n_tup_ins OPERATOR(pg_catalog.+) n_tup_upd OPERATOR(pg_catalog.+) n_tup_del)::pg_catalog.text AS n FROM pg_catalog.pg_stat_xact_user_tables';
  const r = await Promise.race([s.client.query<{ rel: string; n: string }>(sql), s.dead]);
  return new Map(r.rows.map((row) => [row.rel, Number(row.n)]));
}

/** ROLLBACK, and whether it verifiably happened (the connection is idle after it). */
async function rollback(s: Session): Promise<boolean> {
  if (s.lost || s.watch.tripped) return false;
  try {
    await Promise.race([s.client.query('ROLLBACK'), s.dead]);
    return s.client.getTransactionStatus() === 'I';
  } catch {
    return false;
  }
}

/**
 * An ERROR the server answered COMMIT with, on a connection still alive: the server rolled
 * the transaction back (deferred constraint, serialization failure). Anything else
 * (FATAL, a closed socket, no answer) leaves the commit's fate unknown.
 */
function isPlainServerError(e: unknown, s: Session): boolean {
  const pe = e as { code?: unknown; severity?: unknown };
  return !s.lost && typeof pe.code === 'string' && /^[0-9A-Z]{5}$/.test(pe.code) && pe.severity === 'ERROR' && !/^(08|57P)/.test(pe.code);
}

/** Columns every table has that pg_attribute lists with attnum < 0. */
const SYSTEM_COLUMNS = new Set(['ctid', 'xmin', 'xmax', 'cmin', 'cmax', 'tableoid', 'oid']);

/**
 * `alias.name` where `name` is no column of the table is, to PostgreSQL, a call of `name(row)`
 * (attribute notation): a user-defined function the classifier cannot know. Checked here,
 * against the catalogue the worker can read: a reference to a column the table does not
 * have is refused before anything runs.
 */
async function refuseHiddenCalls(origins: OriginResolver, statements: readonly SqlStatementFacts[]): Promise<void> {
  const refs = statements.flatMap((st) => [...st.columns, ...st.columnsWritten]).filter((c) => c.table !== null && c.column !== '*' && !SYSTEM_COLUMNS.has(c.column));
  if (refs.length === 0) return;
  const tables = [...new Set(refs.map((c) => c.table!))];
  const known = new Set(await origins.columnsOf(tables));
  const knownTables = new Set([...known].map((k) => k.slice(0, k.lastIndexOf('.'))));
  for (const c of refs) {
    // A table the catalogue does not show (a CTE name the classifier resolved, a temp table) is left to the server.
    if (!knownTables.has(c.table!)) continue;
    if (!known.has(`${c.table}.${c.column}`)) {
      throw new WritError('WRIT_SQL_UNKNOWN', `${c.table} has no column ${JSON.stringify(c.column)}: PostgreSQL would call a function of that name on the whole row; nothing ran`);
    }
  }
}

/** Every relation the statements name: read, written, or qualifying a column. */
function namedRelations(facts: readonly SqlStatementFacts[]): string[] {
  const out = new Set<string>();
  for (const st of facts) {
    for (const t of st.tablesRead) out.add(t);
    for (const t of st.tablesWritten) out.add(t);
    for (const c of [...st.columns, ...st.columnsWritten]) if (c.table !== null) out.add(c.table);
  }
  return [...out];
}

/** Every relation the statements read. */
function readBy(facts: readonly SqlStatementFacts[]): string[] {
  return [...new Set(facts.flatMap((st) => st.tablesRead))];
}
