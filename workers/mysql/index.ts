/**
 * MySQL / MariaDB executor (mysql2). One pool per access mode, each logged in as that mode's
 * least-privilege user; the server's grants are the boundary, the read-only session the
 * backstop. Multi-statements are off: each statement of the approved text (cut at the
 * classifier's boundaries) is sent alone, so the server refuses a second statement smuggled
 * into one. A single read runs alone in a read-only session; anything else runs in one
 * transaction of the worker's, which the batch may not end: transaction control, and
 * statements that commit implicitly (DDL, LOCK TABLES, GRANT…), are refused inside a batch,
 * and the server's in-transaction flag is checked after every statement. Any error, and a
 * write past `limits.rowsAffected`, rolls the transaction back.
 *
 * Each run sets its own limits (sql_select_limit, the server's statement time limit, the
 * read-only flag: session.ts), and the connection is reset (COM_RESET_CONNECTION) before it
 * rejoins the pool, or destroyed. The server's version is checked on the first run (version.ts).
 */
import mysql, { type Pool } from 'mysql2';
import { classifyMysqlCached as classifyMysql, splitMysql, type SqlStatementFacts } from '../../classify/index.ts';
import { readSecret, WritError, type AccessMode, type GrantClaims, type MysqlWorkerTarget } from '../../schemas/index.ts';
import { setErrorContext, type ExecContext, type ExecOutput, type Executor, type RowsOutput } from '../executor.ts';
import { forbiddenRelation } from './catalogs.ts';
import { checkMaskedOrder, type OrderHazards } from './order.ts';
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
  writesRows,
} from '../sql-common.ts';
import { carryVariables, MysqlCatalogue, qualifyFacts } from './origins.ts';
import { END_THREAD_MS, Session, settingsSql } from './session.ts';
import { fetchLimits, runStatement, type FetchLimits, type StatementResult } from './statement.ts';
import { serverFlavor, type ServerFlavor } from './version.ts';

interface TargetPools {
  cfg: MysqlWorkerTarget;
  pools: Partial<Record<AccessMode, Pool>>;
  /** Catalogue lookups: connections of their own, never the pool an intent holds. */
  control: Pool;
  /** KILL QUERY, as the same user as the statement (a user may kill only its own threads without CONNECTION ADMIN). */
  killers: Partial<Record<AccessMode, Pool>>;
  catalogue: MysqlCatalogue;
  flavor?: Promise<ServerFlavor>;
}

/** The byte budget of a result when the grant names none. */
const DEFAULT_BYTES = 4 * 1024 * 1024;
/** Statements that make the server commit the open transaction first (and so end the worker's). */
const IMPLICIT_COMMIT = new Set(['create', 'alter', 'drop', 'truncate', 'lock', 'unlock', 'grant', 'revoke', 'transaction']);
/**
 * KILL of a thread, then the wait until the server has ended it (bounded by the session's
 * END_THREAD_MS). KILL only marks the thread: it ends when it next looks at the mark, which a
 * busy server's statement may take a while to do, and until then it still runs and is listed.
 * The thread is its own user's, whose threads that user sees without the PROCESS privilege.
 */
async function endThread(killer: Pool, id: number): Promise<void> {
  const ask = (sql: string) => new Promise<unknown[]>((resolve) => killer.query(sql, (e, rows) => resolve(e ? [] : (rows as unknown[]))));
  await ask(`KILL ${id}`);
  // Polled no longer than the session waits for it (a thread that never ends is not waited on for ever).
  for (const until = Date.now() + END_THREAD_MS; Date.now() < until;) {
    if ((await ask(`SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ${id}`)).length === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Server errors that are the statement time limit or the watchdog's KILL QUERY. */
const TIMEOUT_ERRNO = new Set([1969 /* MariaDB ER_STATEMENT_TIMEOUT */, 3024 /* MySQL ER_QUERY_TIMEOUT */, 1317 /* ER_QUERY_INTERRUPTED */, 1028 /* ER_FILSORT_ABORT */]);

interface MysqlError {
  code?: string;
  errno?: number;
  sqlState?: string;
  sqlMessage?: string;
  message?: string;
  fatal?: boolean;
  writFate?: string;
}

export class MysqlExecutor implements Executor {
  readonly kind = 'mysql' as const;
  readonly targets: readonly string[];
  readonly #t = new Map<string, TargetPools>();
  /** Connections being reset before they rejoin their pool; close() waits for them. */
  readonly #resetting = new Set<Promise<void>>();
  /** Sessions of runs under way: a stopping worker ends their threads (close). */
  readonly #open = new Set<Session>();

  constructor(targets: readonly MysqlWorkerTarget[]) {
    this.targets = targets.map((t) => t.target);
    for (const cfg of targets) {
      const poolFor = (mode: AccessMode, max: number): Pool | undefined => {
        const cred = cfg.credentials[mode];
        if (!cred) return undefined;
        // Credentials are read here, from the worker's own config sources; never from an intent.
        const pool = mysql.createPool({
          host: cfg.host,
          port: cfg.port,
          database: cfg.database,
          connectionLimit: max,
          user: readSecret(cred.user, `workers.mysql[${cfg.target}].credentials.${mode}.user`),
          password: cred.password ? readSecret(cred.password, `workers.mysql[${cfg.target}].credentials.${mode}.password`) : undefined,
          multipleStatements: false,
          // No LOAD DATA LOCAL: the server could ask the worker for any file it can read.
          flags: ['-LOCAL_FILES', '-MULTI_STATEMENTS'],
          charset: 'utf8mb4',
          supportBigNumbers: true,
          dateStrings: true,
          connectAttributes: { program_name: 'writ-worker' },
        });
        // Idle-connection errors surface on the next checkout instead of crashing the worker.
        pool.on('connection', (c) => c.on('error', () => undefined));
        return pool;
      };
      const pools: TargetPools['pools'] = {};
      for (const mode of ['read', 'write'] as const) {
        const pool = poolFor(mode, cfg.poolSize);
        if (pool) pools[mode] = pool;
      }
      const control = poolFor('read', 2)!;
      const killers: TargetPools['killers'] = {};
      for (const mode of ['read', 'write'] as const) {
        const pool = pools[mode] ? poolFor(mode, 1) : undefined;
        if (pool) killers[mode] = pool;
      }
      this.#t.set(cfg.target, { cfg, pools, control, killers, catalogue: new MysqlCatalogue(control, cfg.database) });
    }
  }

  /** The server's flavor, checked once per target; a refused server stays refused until restart. */
  #flavor(t: TargetPools): Promise<ServerFlavor> {
    t.flavor ??= new Promise<ServerFlavor>((resolve, reject) => {
      t.control.query('SELECT VERSION() AS v, @@version_comment AS c', (e, rows) => {
        if (e) return reject(new WritError('WRIT_TARGET_UNAVAILABLE', undefined, { cause: e }));
        try {
          const r = (rows as Array<{ v: string; c: string }>)[0];
          resolve(serverFlavor(String(r?.v ?? ''), String(r?.c ?? '')));
        } catch (err) {
          reject(err);
        }
      });
    });
    // A server that could not be reached is asked again next time.
    t.flavor.catch((e: unknown) => {
      if (e instanceof WritError && e.code === 'WRIT_TARGET_UNAVAILABLE') t.flavor = undefined;
    });
    return t.flavor;
  }

  /**
   * The version check at start: a server that is not MariaDB 10.6+ or MySQL 8.0+ is refused
   * (WRIT_UNSUPPORTED) before the worker takes orders. One that cannot be reached yet is
   * reported and checked again at its first run.
   */
  async checkServers(): Promise<Array<{ target: string; version?: string; unreachable?: WritError }>> {
    const out: Array<{ target: string; version?: string; unreachable?: WritError }> = [];
    for (const [target, t] of this.#t) {
      try {
        out.push({ target, version: (await this.#flavor(t)).version });
      } catch (e) {
        if (e instanceof WritError && e.code === 'WRIT_TARGET_UNAVAILABLE') out.push({ target, unreachable: e });
        else throw e;
      }
    }
    return out;
  }

  async run(ctx: ExecContext): Promise<ExecOutput> {
    const { order, claims } = ctx;
    if (order.command.kind !== 'sql') throw new WritError('WRIT_GRANT_MISMATCH', 'a MySQL target runs SQL only');
    const known = this.#t.get(claims.tgt);
    if (!known) throw new WritError('WRIT_UNKNOWN_TARGET');
    // What tables and views are is read for this intent alone (origins.ts fresh()).
    const t: TargetPools = { ...known, catalogue: known.catalogue.fresh() };
    const pool = t.pools[claims.mode];
    if (!pool) throw new WritError('WRIT_GRANT_MISMATCH', `this worker holds no ${claims.mode} credential for ${claims.tgt}`);
    const statements = splitMysql(order.command.sql);
    const facts = classifyMysql(order.command.sql);
    if (facts.error || facts.statements.length !== statements.length) {
      throw new WritError('WRIT_SQL_UNKNOWN', 'the worker could not classify every statement of the batch; nothing ran');
    }
    refuse(facts.statements, claims);
    const flavor = await this.#flavor(known);
    const lim = fetchLimits(claims.limits.rows ?? 1000, claims.limits.bytes ?? DEFAULT_BYTES);
    const timeoutMs = timeLimitMs(claims.limits.seconds ?? 30);
    const qualified = carryVariables(facts.statements.map((st) => qualifyFacts(st, t.cfg.database)));
    await refuseMaskedCopies(t.catalogue, qualified, claims, 'mysql');
    await refuseMaskedFilters(t.catalogue, qualified, claims, 'mysql');
    // Tables whose masked columns are in an index: each statement touching one has its plan checked before it runs (order.ts).
    const masked = maskedColumnsOf(claims);
    const orderHazards = masked ? await t.catalogue.maskedOrder([...new Set(qualified.flatMap((st) => [...st.tablesRead, ...st.tablesWritten]))], masked) : undefined;
    if (claims.mode === 'write') {
      const written = [...new Set(qualified.filter(writesRows).flatMap((st) => st.tablesWritten))];
      const hazards = await t.catalogue.writeHazards(written, pool);
      if (hazards.nonTransactional.length > 0) {
        throw new WritError('WRIT_UNSUPPORTED', `${hazards.nonTransactional.join(', ')} cannot roll back (not InnoDB), so no limit and no failure could undo a write to it; nothing ran`);
      }
      if (claims.limits.rowsAffected !== undefined) {
        if (hazards.uncounted.length > 0) {
          throw new WritError(
            'WRIT_UNSUPPORTED',
            `a write to ${hazards.uncounted.join(', ')} changes rows its count does not report (a cascading foreign key, a trigger, or a view over them), so the rowsAffected limit cannot be enforced; nothing ran`,
          );
        }
        // It commits before the worker could count what it did (CREATE TABLE … AS SELECT, ALTER … DROP COLUMN).
        const implicit = qualified.find((st) => IMPLICIT_COMMIT.has(st.kind));
        if (implicit) throw new WritError('WRIT_UNSUPPORTED', `${implicit.kind.toUpperCase()} commits at once, so the rowsAffected limit cannot hold it; nothing ran`);
      }
    }

    const killer = t.killers[claims.mode] ?? t.control;
    // A connection dropped mid-statement has its thread ended (KILL ends the statement with it).
    const s = await Session.open(pool, (id) => endThread(killer, Number(id)));
    // Waiting for a pooled connection may outlast the grant: then nothing starts.
    if (Date.now() >= claims.exp * 1000) {
      await s.release(true);
      throw new WritError('WRIT_GRANT_EXPIRED', 'the grant expired while the run waited for a connection; nothing ran');
    }
    this.#open.add(s);
    // A stopping worker aborts what still runs past its drain deadline: the statement is ended on the server.
    const onAbort = () => void s.abandon();
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });
    s.startWatchdog(timeoutMs, (id) => new Promise<void>((resolve) => killer.query(`KILL QUERY ${Number(id)}`, () => resolve())));
    try {
      await s.exec(settingsSql(flavor, { timeoutMs, selectLimit: lim.maxRows + 1, readOnly: claims.mode === 'read' }));
      if (statements.length === 1 && (claims.mode === 'read' || IMPLICIT_COMMIT.has(qualified[0]!.kind))) return await this.#runAlone(t, s, statements[0]!, qualified[0]!, lim, orderHazards);
      return await this.#runBatch(t, s, statements, qualified, claims, lim, orderHazards);
    } catch (e) {
      throw await this.#failure(t, s, e, timeoutMs, qualified);
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      this.#open.delete(s);
      const ends = s.endsBackend;
      const p = s.release(false);
      this.#resetting.add(p);
      void p.finally(() => this.#resetting.delete(p));
      // Dropped mid-statement: the run holds its place until the server thread is ended.
      if (ends) await p;
    }
  }

  /**
   * One statement alone, in autocommit: a read in the read-only session (no BEGIN/COMMIT round
   * trips), or a statement that commits implicitly (DDL), which no transaction could hold.
   */
  async #runAlone(t: TargetPools, s: Session, sql: string, st: SqlStatementFacts, lim: FetchLimits, order: OrderHazards | undefined): Promise<ExecOutput> {
    let r: StatementResult;
    const unordered = await checkMaskedOrder(s, sql, st, order, undefined);
    try {
      r = await runStatement(s, sql, lim, s.timeoutMs);
    } catch (e) {
      // A statement that commits on its own is not undone by its time limit: MariaDB ends a
      // BENCHMARK inside `CREATE TABLE … AS SELECT` quietly and the table is created. The error
      // says what became of the change instead of "stopped".
      if (IMPLICIT_COMMIT.has(st.kind) && e && typeof e === 'object') {
        const elapsed = (e as MysqlError).code === 'WORKER_LIMIT_ELAPSED';
        Object.assign(e, {
          writFate: elapsed
            ? 'it ran to its end and its change was kept: it commits on its own, so no limit can undo it'
            : 'it commits on its own, so what it did before it was stopped may have been kept',
        });
      }
      throw e;
    }
    if (!r.cut && s.inTransaction) throw new WritError('WRIT_EXEC_FAILED', 'the statement left a transaction open on the connection; the connection was closed');
    if (unordered && (r.truncated || r.cut)) throw maskedOrderCut(undefined);
    const out = await this.#rows(t, r, st);
    return unordered ? { ...out, unordered: true } : out;
  }

  async #runBatch(t: TargetPools, s: Session, statements: string[], facts: SqlStatementFacts[], claims: GrantClaims, lim: FetchLimits, order: OrderHazards | undefined): Promise<ExecOutput> {
    let left = -1; // index of a statement after which the worker's transaction was gone
    let committing = false;
    let changed = 0;
    try {
      await s.exec(claims.mode === 'read' ? 'START TRANSACTION READ ONLY' : 'START TRANSACTION');
      let out: RowsOutput | undefined;
      const tags: string[] = [];
      for (let i = 0; i < statements.length; i++) {
        const st = facts[i]!;
        assertBeforeDeadline(s.deadline, `statement ${i + 1}`);
        const unordered = await checkMaskedOrder(s, statements[i]!, st, order, statements.length > 1 ? i + 1 : undefined);
        const r = await runStatement(s, statements[i]!, lim, s.timeoutMs);
        if (unordered && (r.truncated || r.cut)) throw maskedOrderCut(statements.length > 1 ? i + 1 : undefined);
        const command = st.kind.toUpperCase();
        if (r.cut) {
          // The connection is closed; its transaction can never commit. A read may still answer.
          if (claims.mode === 'read' && i === statements.length - 1) {
            tags.push(command);
            return { ...(await this.#rows(t, r, st, facts.slice(0, i + 1))), command: tags.join(';') };
          }
          throw new WritError('WRIT_RESULT_TOO_LARGE', `${r.cut.message}; the connection was closed before COMMIT, so nothing was committed`, { details: { limit: lim.bytes } });
        }
        // Transaction control and implicit commits are refused up front; this catches whatever else could end it.
        if (!s.inTransaction) {
          left = i;
          throw new WritError('WRIT_EXEC_FAILED', `statement ${i + 1} ended the worker's transaction: what ran up to it may have been committed; nothing after it ran`, {
            details: { statement: i + 1, transaction: 'left' },
          });
        }
        tags.push(command);
        const limit = claims.limits.rowsAffected;
        if (limit !== undefined) {
          // A write's whole effect is known only inside its transaction: over the limit, nothing is
          // kept. The limit is the batch's: its statements' counts add up.
          if (!r.complete && writesRows(st)) throw new RowLimit(null, limit);
          if (r.complete && writesRows(st)) changed += r.rowCount;
          if (changed > limit) throw new RowLimit(changed, limit);
        }
        // The last statement that returns rows is the result; a batch's writes report their counts in rowCount.
        if (r.fields.length > 0 || out === undefined) {
          out = await this.#rows(t, r, st, facts.slice(0, i + 1));
          if (unordered) out = { ...out, unordered: true };
        }
      }
      assertBeforeDeadline(s.deadline, 'COMMIT');
      committing = true;
      await s.exec('COMMIT');
      return { ...(out as RowsOutput), command: tags.join(';') };
    } catch (e) {
      return batchFailure(e, { committing, connectionLost: Boolean(s.lost) || (e as MysqlError).fatal === true, leftStatements: left, rollback: () => rollback(s) });
    }
  }

  /**
   * The statement's result fields. `drawn` is every statement of the batch up to this one: the
   * session carries values from one statement to the next (user variables, `SELECT … INTO @x`,
   * LAST_INSERT_ID(expr), warnings), so a computed field may hold anything an earlier statement
   * read: `SELECT @x := email FROM customers; SELECT @x` returned the e-mail unmasked when only
   * the last statement's sources counted.
   */
  async #rows(t: TargetPools, r: StatementResult, st: SqlStatementFacts, drawn: readonly SqlStatementFacts[] = [st]): Promise<RowsOutput> {
    const fields = await t.catalogue.resolve(r.fields, st, async () => {
      const opaque = drawn.map(opaqueReason).find((x) => x !== undefined) ?? (await this.#opaqueViews(t, drawn));
      return { sources: await sourcesOf(t.catalogue, drawn), ...(opaque ? { opaque } : {}) };
    });
    // A cut by the byte watch is the byte limit's; otherwise only the row limit leaves rows out.
    return {
      type: 'rows',
      fields,
      rows: r.rows,
      rowCount: r.rowCount,
      truncated: r.truncated,
      ...(r.truncated ? { truncatedBy: r.cut ? ('bytes' as const) : ('rows' as const) } : {}),
      command: st.kind.toUpperCase(),
      notices: [],
    };
  }

  /** A reason when the statements read a view whose definition the worker cannot read. */
  async #opaqueViews(t: TargetPools, facts: readonly SqlStatementFacts[]): Promise<string | undefined> {
    const views = await t.catalogue.opaqueViews([...new Set(facts.flatMap((st) => [...st.tablesRead, ...st.tablesWritten]))]);
    return views.length > 0 ? `opaque:view:${views.join(',')}` : undefined;
  }

  /** The error as a WritError, with what the batch touched for the runtime's scrubbing. */
  async #failure(t: TargetPools, s: Session, e: unknown, timeoutMs: number, facts: SqlStatementFacts[]): Promise<WritError> {
    const me = e as MysqlError;
    let err: WritError;
    let serverText = false;
    if (e instanceof WritError) err = e;
    else if ((typeof me.errno === 'number' && TIMEOUT_ERRNO.has(me.errno)) || me.code === 'WORKER_WATCHDOG' || me.code === 'WORKER_LIMIT_ELAPSED' || s.killed) {
      err = new WritError('WRIT_EXEC_TIMEOUT', `the statement ran past ${timeoutMs} ms and was stopped${me.writFate ? `; ${me.writFate}` : ''}`, { cause: e });
    } else if (typeof me.sqlState === 'string' && /^[0-9A-Z]{5}$/.test(me.sqlState) && !me.fatal) {
      serverText = true;
      err = new WritError('WRIT_EXEC_FAILED', `${me.sqlMessage ?? me.message ?? 'statement failed'}${me.writFate ? ` (${me.writFate})` : ''}`, {
        cause: e,
        details: { sqlstate: me.sqlState, ...(typeof me.errno === 'number' ? { errno: me.errno } : {}) },
      });
    } else {
      err = new WritError('WRIT_EXEC_FAILED', `the connection to the database was lost mid-statement${me.writFate ? `; ${me.writFate}` : ''}`, { cause: e });
    }
    let sources: string[] = [];
    let opaque = facts.some((st) => opaqueReason(st) !== undefined);
    try {
      sources = await sourcesOf(t.catalogue, facts, true);
      if (await this.#opaqueViews(t, facts)) opaque = true;
    } catch {
      opaque = true; // what the batch touched is unknown
    }
    return setErrorContext(err, { serverText, sources, opaque });
  }

  async close(): Promise<void> {
    // Whatever still runs is ended on the server before the killer connections close.
    await Promise.allSettled([...this.#open].map((s) => s.abandon()));
    await Promise.allSettled([...this.#resetting]);
    const end = (p: Pool) => new Promise<void>((resolve) => p.end(() => resolve()));
    for (const t of this.#t.values()) {
      for (const p of [...Object.values(t.pools), ...Object.values(t.killers)]) if (p) await end(p);
      await end(t.control);
    }
  }
}

/** Refusals before anything runs: what would let the batch escape the worker's transaction, limits or masking. */
function refuse(facts: readonly SqlStatementFacts[], claims: GrantClaims): void {
  for (const st of facts) {
    const seen = [...st.tablesRead, ...st.tablesWritten].find((t) => forbiddenRelation(t) !== undefined);
    if (seen) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        forbiddenRelation(seen) === 'values'
          ? `${seen} holds values of any column (statistics: minimums, maximums, histograms), masked ones included, so it cannot be read through Writ; nothing ran`
          : `${seen} shows what other sessions of the worker's database user run (other principals' statements and their values), so it cannot be read through Writ; nothing ran`,
      );
    }
    // Code an intent would leave behind, run later in other sessions with the definer's powers: a
    // trigger `SET NEW.name = NEW.email` copied a masked column into an unmasked one for every
    // later UPDATE, and a read then returned it in clear. A DBA's triggers are theirs to create.
    if ((st.kind === 'create' || st.kind === 'alter') && ['trigger', 'event', 'procedure', 'function'].includes(st.objectType ?? '')) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `${st.kind.toUpperCase()} ${(st.objectType ?? '').toUpperCase()} leaves code that runs later in other sessions, which the worker cannot check; nothing ran`,
      );
    }
    // START TRANSACTION/COMMIT/ROLLBACK/SAVEPOINT…: the worker owns the transaction (its limits and rollback live in it).
    if (st.kind === 'transaction') {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `transaction control (${(st.transaction ?? 'transaction').toUpperCase()}) cannot run through Writ: the worker wraps the batch in its own transaction; nothing ran`,
      );
    }
    // A system variable is one of the worker's limits (max_statement_time, sql_select_limit,
    // tx_read_only, autocommit) or changes how text is read (sql_mode): only user variables (@x).
    if (st.kind === 'set' && (st.set?.variable ?? '').split(', ').some((v) => !/^@[^@]/.test(v))) {
      throw new WritError('WRIT_UNSUPPORTED', `SET ${st.set?.variable ?? ''}: system variables hold the worker's limits and cannot be changed through Writ; nothing ran`);
    }
    // USE would move unqualified names, and with them the masking's view of what a statement reads.
    if (st.kind === 'use') throw new WritError('WRIT_UNSUPPORTED', 'USE cannot run through Writ: the target names its database; qualify names instead; nothing ran');
    // Files on the database server: LOAD DATA, SELECT … INTO OUTFILE/DUMPFILE. Not rows the masking engine sees.
    if (st.kind === 'copy' || st.copy)
      throw new WritError('WRIT_UNSUPPORTED', 'reading or writing files on the database server (LOAD DATA, INTO OUTFILE/DUMPFILE) cannot run through Writ; nothing ran');
    if (IMPLICIT_COMMIT.has(st.kind) && facts.length > 1) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `${st.kind.toUpperCase()} commits the open transaction implicitly, so it cannot run inside a batch the worker wraps in its own; send it alone; nothing ran`,
      );
    }
    if (claims.mode === 'write' && claims.limits.rowsAffected !== undefined && (uncountable(st) || st.kind === 'truncate' || st.kind === 'drop')) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        'the statement can change rows that its row count does not report (CALL, TRUNCATE, DROP, or a function the worker does not know), so the rowsAffected limit cannot be enforced; nothing ran',
      );
    }
  }
}

/** ROLLBACK, and whether it verifiably happened (no transaction open after it). */
async function rollback(s: Session): Promise<boolean> {
  if (s.lost || s.watch.tripped) return false;
  try {
    await s.exec('ROLLBACK');
    return !s.inTransaction;
  } catch {
    return false;
  }
}
