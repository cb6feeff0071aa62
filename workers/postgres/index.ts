/**
 * PostgreSQL executor. One pool per access mode, each logged in as that mode's
 * least-privilege role (a read-only transaction alone is no boundary: `SET TRANSACTION
 * READ WRITE` as a first statement escapes it). Each statement of the approved text is
 * sent alone through the extended protocol, so the server itself refuses a second
 * statement smuggled inside one; the whole batch runs in one transaction that is rolled
 * back on any error or limit breach.
 */
import pg from 'pg';
import Cursor from 'pg-cursor';
import { classifySqlCached as classifySql, splitSql } from '../../classify/index.ts';
import { readSecret, WritError, type AccessMode, type Config } from '../../schemas/index.ts';
import type { ExecContext, ExecOutput, Executor, FieldInfo } from '../executor.ts';
import { OriginResolver } from './origins.ts';

type WorkerTarget = Config['workers']['postgres'][number];

interface TargetPools {
  cfg: WorkerTarget;
  pools: Partial<Record<AccessMode, pg.Pool>>;
  origins: OriginResolver;
}

/** Command tags whose row count is rows affected. */
const WRITE_TAGS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY']);

export class PostgresExecutor implements Executor {
  readonly kind = 'postgres' as const;
  readonly targets: readonly string[];
  readonly #t = new Map<string, TargetPools>();

  constructor(targets: readonly WorkerTarget[]) {
    this.targets = targets.map((t) => t.target);
    for (const cfg of targets) {
      const pools: TargetPools['pools'] = {};
      for (const mode of ['read', 'write'] as const) {
        const cred = cfg.credentials[mode];
        if (!cred) continue;
        // Credentials are read here, from the worker's own config sources; never from an intent.
        const pool = new pg.Pool({
          host: cfg.host, port: cfg.port, database: cfg.database, max: cfg.poolSize,
          user: readSecret(cred.user, `workers.postgres[${cfg.target}].credentials.${mode}.user`),
          password: cred.password ? readSecret(cred.password, `workers.postgres[${cfg.target}].credentials.${mode}.password`) : undefined,
          application_name: 'writ-worker',
          // Read connections default to read-only transactions, so a single read statement can run
          // in its implicit transaction without a BEGIN/COMMIT round trip each (the role is the boundary).
          ...(mode === 'read' ? { options: '-c default_transaction_read_only=on' } : {}),
        });
        pool.on('error', () => undefined); // idle-client errors surface on the next checkout instead of crashing the worker
        pools[mode] = pool;
      }
      const resolverPool = pools.read ?? pools.write!;
      this.#t.set(cfg.target, { cfg, pools, origins: new OriginResolver(resolverPool) });
    }
  }

  async run(ctx: ExecContext): Promise<ExecOutput> {
    const { order, claims } = ctx;
    if (order.command.kind !== 'sql') throw new WritError('WRIT_GRANT_MISMATCH', 'a PostgreSQL target runs SQL only');
    const t = this.#t.get(claims.tgt);
    if (!t) throw new WritError('WRIT_UNKNOWN_TARGET');
    const pool = t.pools[claims.mode];
    if (!pool) throw new WritError('WRIT_GRANT_MISMATCH', `this worker holds no ${claims.mode} credential for ${claims.tgt}`);
    const statements = splitSql(order.command.sql);
    if (statements.length === 0) throw new WritError('WRIT_SQL_EMPTY');
    // COPY to or from the client is a raw stream, not rows the masking engine can see: refused
    // here as well as by policy, so an approved COPY can never carry unmasked data.
    for (const st of classifySql(order.command.sql).statements) {
      if (st.kind === 'copy' && st.copy?.stdio) throw new WritError('WRIT_UNSUPPORTED', 'COPY to or from the client cannot run through Writ; use SELECT');
    }
    const maxRows = claims.limits.rows ?? 1000;
    const timeoutMs = Math.round((claims.limits.seconds ?? 30) * 1000);

    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw new WritError('WRIT_TARGET_UNAVAILABLE', undefined, { cause: e });
    }
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => notices.push(String(n.message ?? ''));
    client.on('notice', onNotice);
    let broken = false;
    if (claims.mode === 'read' && statements.length === 1) {
      try {
        return await this.#runSingleRead(t, client, statements[0]!, maxRows, timeoutMs, notices);
      } catch (e) {
        broken = !(e instanceof WritError) && (e as { code?: string }).code === undefined;
        throw this.#error(e, timeoutMs);
      } finally {
        client.off('notice', onNotice);
        client.release(broken);
      }
    }
    try {
      // One round trip: our own fixed text, so the simple protocol's multi-statement form is safe here.
      await client.query(`${claims.mode === 'read' ? 'BEGIN READ ONLY' : 'BEGIN'}; SET LOCAL statement_timeout = ${timeoutMs}`);
      let out: ExecOutput | undefined;
      const tags: string[] = [];
      for (const sql of statements) {
        const r = await this.#runCursor(client, sql, maxRows);
        tags.push(r.command);
        // A write's whole effect is known only inside its transaction: over the limit, nothing is kept.
        if (WRITE_TAGS.has(r.command) && claims.limits.rowsAffected !== undefined && r.rowCount > claims.limits.rowsAffected) {
          throw new WritError('WRIT_ROW_LIMIT', `the statement affected ${r.rowCount} rows; the limit is ${claims.limits.rowsAffected}; it was rolled back`, { details: { rowsAffected: r.rowCount, limit: claims.limits.rowsAffected } });
        }
        // The last statement that returns rows is the result; a batch's writes report their counts in `command`.
        if (r.fields.length > 0 || out === undefined) {
          const fields = await t.origins.resolve(r.fields);
          if (fields.some((f) => f.origin === null)) {
            const sources = await this.#sources(t, sql);
            for (const f of fields) if (f.origin === null) f.sources = sources;
          }
          out = { type: 'rows', fields, rows: r.rows, rowCount: r.truncated ? r.rows.length : r.rowCount, truncated: r.truncated, command: r.command, notices };
        }
      }
      await client.query('COMMIT');
      return { ...(out as Extract<ExecOutput, { type: 'rows' }>), command: tags.join(';') };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw this.#error(e, timeoutMs);
    } finally {
      client.off('notice', onNotice);
      client.release(broken);
    }
  }

  #error(e: unknown, timeoutMs: number): WritError {
    if (e instanceof WritError) return e;
    const pe = e as { code?: string; message?: string };
    if (pe.code === '57014') return new WritError('WRIT_EXEC_TIMEOUT', `the statement ran past ${timeoutMs} ms and was cancelled`, { cause: e });
    return new WritError('WRIT_EXEC_FAILED', pe.message ?? 'statement failed', { cause: e, details: pe.code ? { sqlstate: pe.code } : undefined });
  }

  /** Session statement_timeout last set on each pooled connection, so it is set only when it changes. */
  readonly #sessionTimeout = new WeakMap<pg.PoolClient, number>();

  /**
   * The common case, one read statement: it runs in its implicit transaction on a read-only
   * connection (default_transaction_read_only, least-privilege role), two round trips
   * (execute, close) instead of five.
   */
  async #runSingleRead(t: TargetPools, client: pg.PoolClient, sql: string, maxRows: number, timeoutMs: number, notices: string[]): Promise<ExecOutput> {
    if (this.#sessionTimeout.get(client) !== timeoutMs) {
      await client.query(`SET statement_timeout = ${timeoutMs}`);
      this.#sessionTimeout.set(client, timeoutMs);
    }
    const r = await this.#runCursor(client, sql, maxRows);
    const fields = await t.origins.resolve(r.fields);
    if (fields.some((f) => f.origin === null)) {
      const sources = await this.#sources(t, sql);
      for (const f of fields) if (f.origin === null) f.sources = sources;
    }
    return { type: 'rows', fields, rows: r.rows, rowCount: r.truncated ? r.rows.length : r.rowCount, truncated: r.truncated, command: r.command, notices };
  }

  /**
   * Every base column a statement's computed fields may draw on, from its SQL facts:
   * qualified column references, ambiguous ones against every table read, and all
   * columns of tables read whole (`row_to_json(c)`, `c.*`). Over-inclusive by design.
   */
  async #sources(t: TargetPools, sql: string): Promise<string[]> {
    const facts = classifySql(sql);
    const out = new Set<string>();
    const whole = new Set<string>();
    for (const st of facts.statements) {
      for (const c of st.columns) {
        if (c.column === '*') {
          if (c.table) whole.add(c.table);
          else st.tablesRead.forEach((x) => whole.add(x));
        } else if (c.table) out.add(`${c.table}.${c.column}`);
        else for (const x of st.tablesRead) out.add(`${x}.${c.column}`);
      }
      st.wholeRowTables.forEach((x) => whole.add(x));
    }
    for (const c of await t.origins.columnsOf([...whole])) out.add(c);
    // A computed field over a view draws on the view's base columns.
    for (const st of facts.statements) for (const c of await t.origins.viewBaseColumns(st.tablesRead)) out.add(c);
    return [...out];
  }

  /**
   * Parse/Bind/Describe/Execute through a portal (pg-cursor): the extended protocol, one
   * statement per message, and at most maxRows + 1 rows ever leave the server.
   */
  async #runCursor(client: pg.PoolClient, text: string, maxRows: number) {
    // pg writes each protocol message (Parse, Bind, Describe, Execute, Flush…) with its own
    // socket write; corking the socket for the tick sends them in one write (a profile showed
    // socket writes as the largest single CPU cost of the worker).
    const uncork = cork(client);
    const cursor = client.query(new Cursor(text, undefined, { rowMode: 'array' }));
    try {
      const reading = cursor.read(maxRows + 1);
      uncork();
      const rows = (await reading) as unknown[][];
      const truncated = rows.length > maxRows;
      if (truncated) rows.length = maxRows;
      // pg-cursor keeps the row description and command tag on its result object.
      const res = (cursor as unknown as { _result: { fields: pg.FieldDef[]; command: string | null; rowCount: number | null } })._result;
      // A truncated write returned more rows than the limit: at least maxRows + 1 were affected.
      return { fields: res.fields ?? [], rows, rowCount: truncated ? maxRows + 1 : (res.rowCount ?? rows.length), truncated, command: res.command ?? 'SELECT' };
    } finally {
      const uncorkClose = cork(client);
      const closing = cursor.close();
      uncorkClose();
      await closing;
    }
  }

  async close(): Promise<void> {
    for (const t of this.#t.values()) for (const p of Object.values(t.pools)) await p?.end();
  }
}

export type { FieldInfo };

/** Corks the client's socket; the returned function uncorks it on the next tick (after this tick's writes). */
function cork(client: pg.PoolClient): () => void {
  const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  if (!stream?.cork || !stream.uncork) return () => undefined;
  stream.cork();
  return () => process.nextTick(() => stream.uncork!());
}
