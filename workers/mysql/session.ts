/**
 * One intent's use of a pooled MySQL/MariaDB connection: checked out with an error handler,
 * a byte watch on its socket, a client-side watchdog behind the server's statement time
 * limit, session settings for this run, and a reset (COM_RESET_CONNECTION) before it goes
 * back to the pool, or its destruction when anything about its state is unsure. User
 * variables, temporary tables, prepared statements, HANDLERs, user-level locks (GET_LOCK)
 * and session variables of one principal's intent never reach another's.
 */
import type { Socket } from 'node:net';
import type { Pool, PoolConnection } from 'mysql2';
import { withDeadline } from '../../lib/index.ts';
import { WritError } from '../../schemas/index.ts';
import type { ServerFlavor } from './version.ts';
import { timerMs } from '../sql-common.ts';

/** Grace after the server's time limit before the worker kills the query, then before it drops the connection. */
const KILL_GRACE_MS = 2_000;
/** How long a release waits for the server to end a thread the worker dropped mid-statement. */
export const END_THREAD_MS = 5_000;
const DESTROY_GRACE_MS = 3_000;
/** The server status flag of an open transaction (SERVER_STATUS_IN_TRANS). */
const IN_TRANS = 0x0001;

/** Why the byte watch destroyed its connection. */
export class WireLimitError extends Error {
  constructor(
    readonly bytes: number,
    readonly cap: number,
  ) {
    super(`the statement's answer passed ${cap} bytes`);
  }
}

/**
 * Counts the bytes a connection receives ahead of mysql2's parser (which buffers a whole
 * packet, up to the server's max_allowed_packet, before it parses it), and destroys the
 * socket once a statement's answer passes its cap.
 */
class ByteWatch {
  bytes = 0;
  cap = Number.POSITIVE_INFINITY;
  tripped: WireLimitError | null = null;
  constructor(readonly socket: Socket) {
    socket.prependListener('data', (chunk: Buffer) => {
      if (this.tripped) return;
      this.bytes += chunk.length;
      if (this.bytes > this.cap) {
        this.tripped = new WireLimitError(this.bytes, this.cap);
        socket.destroy(this.tripped);
      }
    });
  }
  arm(cap: number): void {
    this.cap = cap;
    this.bytes = 0;
  }
}

const watches = new WeakMap<PoolConnection, ByteWatch>();

/** A connection's settings for one run. */
export interface RunSettings {
  timeoutMs: number;
  /** Rows a top-level SELECT may return (sql_select_limit): the row limit + 1, so a cut is seen. */
  selectLimit: number;
  readOnly: boolean;
}

/**
 * The sql_mode of every run: each server's own default. The text must be read the way the
 * classifier read it, whatever the server's global mode: under ANSI_QUOTES (also part of ANSI,
 * ORACLE, MSSQL, DB2, POSTGRESQL…) `"email"` is a column, not a string; under
 * NO_BACKSLASH_ESCAPES `'a\\' , email FROM t -- '` is a string, a column and a comment; under
 * PIPES_AS_CONCAT `||` is not OR; ORACLE mode even parses another language. ONLY_FULL_GROUP_BY on
 * both (MySQL's default; MariaDB's default lacks it): without it MariaDB hands back a column beside
 * an aggregate from the first row it reads, and through an index on a masked column that row is
 * the one with the smallest value (`SELECT id, count(*) FROM customers` named the customer whose
 * e-mail sorts first, and excluding ids walked the whole e-mail order).
 */
const SQL_MODE: Record<ServerFlavor['kind'], string> = {
  mariadb: 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION',
  mysql: 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION',
};

/** The SET that pins a run's limits, in the server's own variable names. */
export function settingsSql(flavor: ServerFlavor, s: RunSettings): string {
  const parts = [`SESSION sql_select_limit = ${Math.max(1, Math.floor(s.selectLimit))}`, `SESSION sql_mode = '${SQL_MODE[flavor.kind]}'`];
  if (flavor.kind === 'mariadb') {
    // Seconds, fractional; every statement but those inside stored routines.
    parts.push(`SESSION max_statement_time = ${(s.timeoutMs / 1000).toFixed(3)}`, `SESSION tx_read_only = ${s.readOnly ? 1 : 0}`);
  } else {
    // MySQL: milliseconds, and only for read-only SELECT; anything else is held by the watchdog's KILL QUERY.
    parts.push(`SESSION max_execution_time = ${Math.max(1, Math.round(s.timeoutMs))}`, `SESSION transaction_read_only = ${s.readOnly ? 1 : 0}`);
  }
  return `SET ${parts.join(', ')}`;
}

export class Session {
  readonly conn: PoolConnection;
  readonly watch: ByteWatch;
  /** The first error the connection reported (socket closed, server ended it, byte cap). */
  lost: Error | null = null;
  /** Rejects when the connection is lost; for racing waits that only the server can end. */
  readonly dead: Promise<never>;
  #timers: NodeJS.Timeout[] = [];
  #released = false;
  #killed = false;
  readonly #onError: (e: Error) => void;
  readonly #endThread: ((threadId: number) => Promise<unknown>) | undefined;

  private constructor(conn: PoolConnection, watch: ByteWatch, endThread: ((threadId: number) => Promise<unknown>) | undefined) {
    this.conn = conn;
    this.watch = watch;
    this.#endThread = endThread;
    let reject!: (e: Error) => void;
    this.dead = new Promise<never>((_, rej) => (reject = rej));
    this.dead.catch(() => undefined); // observed by whoever races it; never unhandled
    this.#onError = (e: Error) => {
      this.lost ??= e;
      reject(e);
    };
    conn.on('error', this.#onError);
  }

  /**
   * `endThread` ends the server thread of a connection this session dropped mid-statement
   * (release): the server notices a closed socket only when it next writes to it, so a statement
   * still computing would run on outside the worker's count of what runs. Thread ids are not reused.
   */
  static async open(pool: Pool, endThread?: (threadId: number) => Promise<unknown>): Promise<Session> {
    let conn: PoolConnection;
    try {
      conn = await new Promise<PoolConnection>((resolve, reject) => pool.getConnection((e, c) => (e ? reject(e) : resolve(c))));
    } catch (e) {
      throw new WritError('WRIT_TARGET_UNAVAILABLE', undefined, { cause: e });
    }
    let watch = watches.get(conn);
    if (!watch) {
      const stream = (conn as unknown as { stream?: Socket }).stream;
      if (!stream || typeof stream.prependListener !== 'function') {
        conn.destroy();
        throw new WritError('WRIT_INTERNAL', 'the connection exposes no socket to watch');
      }
      watch = new ByteWatch(stream);
      watches.set(conn, watch);
    }
    if (watch.tripped || (conn as unknown as { _fatalError?: unknown })._fatalError) {
      conn.destroy();
      throw new WritError('WRIT_TARGET_UNAVAILABLE', 'the pooled connection was closed');
    }
    return new Session(conn, watch, endThread);
  }

  /**
   * Drops the connection and ends its server thread now, whatever runs on it: the worker is
   * stopping, and a statement left on the server would run on after the process is gone.
   */
  abandon(): Promise<void> {
    const id = this.threadId;
    if (this.#released || id === null || !this.#endThread) return Promise.resolve();
    this.#killed = true;
    this.watch.socket.destroy(Object.assign(new Error('the worker is stopping; the statement was ended'), { code: 'WORKER_STOPPING' }));
    return this.#end(id);
  }

  /** Ends the server thread `id`, waiting at most END_THREAD_MS. */
  async #end(id: number): Promise<void> {
    if (this.#endThread) await withDeadline(this.#endThread(id), END_THREAD_MS);
  }

  /** Whether release() ends the server thread (dropped mid-statement): the run waits for it before it frees its place. */
  get endsBackend(): boolean {
    return this.#endThread !== undefined && this.threadId !== null && (this.watch.tripped !== null || this.lost !== null || this.#killed);
  }

  /** The server's thread id of this connection (for KILL QUERY). */
  get threadId(): number | null {
    return this.conn.threadId ?? null;
  }

  /** Whether the server reports an open transaction on the connection (after its last answer). */
  get inTransaction(): boolean {
    return (((this.conn as unknown as { serverStatus?: number }).serverStatus ?? 0) & IN_TRANS) !== 0;
  }

  /** Runs a statement of the worker's own, raced with the connection's loss. */
  async exec(sql: string): Promise<void> {
    await Promise.race([new Promise<void>((resolve, reject) => this.conn.query(sql, (e) => (e ? reject(e) : resolve()))), this.dead]);
  }

  /** Runs a query of the worker's own and returns its rows, raced with the connection's loss. */
  async rows<T>(sql: string): Promise<T[]> {
    return Promise.race([new Promise<T[]>((resolve, reject) => this.conn.query(sql, (e, rows) => (e ? reject(e) : resolve(rows as T[])))), this.dead]);
  }

  /**
   * The server's limit is the first line; this is the backstop (MySQL's max_execution_time
   * covers SELECT only): past the limit and a grace the worker kills the query through
   * `kill`, and after another grace it drops the connection.
   */
  startWatchdog(timeoutMs: number, kill: (threadId: number) => Promise<void>): void {
    this.timeoutMs = timeoutMs;
    this.deadline = Date.now() + timeoutMs;
    this.#timers.push(
      setTimeout(
        () => {
          const id = this.threadId;
          if (id === null) return;
          this.#killed = true;
          void kill(id).catch(() => undefined); // the drop below still ends it
        },
        timerMs(timeoutMs + KILL_GRACE_MS),
      ).unref(),
    );
    this.#timers.push(
      setTimeout(
        () => {
          this.#killed = true;
          this.watch.socket.destroy(Object.assign(new Error(`the statement ran past ${timeoutMs} ms and was not stopped`), { code: 'WORKER_WATCHDOG' }));
        },
        timerMs(timeoutMs + KILL_GRACE_MS + DESTROY_GRACE_MS),
      ).unref(),
    );
  }

  /** The intent's time limit (ms), once the watchdog runs: a statement that used all of it is the limit's. */
  timeoutMs = Number.POSITIVE_INFINITY;

  /** When the intent's time limit ends (ms since the epoch), once the watchdog runs. */
  deadline = Number.POSITIVE_INFINITY;

  /** The watchdog killed or dropped the running statement. */
  get killed(): boolean {
    return this.#killed;
  }

  /**
   * Back to the pool after COM_RESET_CONNECTION (which also rolls back an open transaction and
   * returns session variables to the server's defaults), or destroyed. Not awaited by the
   * intent: the connection only rejoins the pool once it is clean.
   */
  release(destroy: boolean): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#released = true;
    for (const t of this.#timers) clearTimeout(t);
    this.watch.arm(Number.POSITIVE_INFINITY);
    const done = (broken: boolean) => {
      if (broken) {
        // A destroyed connection's socket may still report the server's close: keep a listener.
        this.conn.on('error', () => undefined);
        this.conn.off('error', this.#onError);
        this.conn.destroy();
      } else {
        this.conn.off('error', this.#onError);
        this.conn.release();
      }
    };
    if (destroy || this.lost || this.watch.tripped || this.#killed) {
      const ends = this.endsBackend;
      const id = this.threadId;
      done(true);
      return ends && id !== null ? this.#end(id) : Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.conn.reset((e: unknown) => {
        if (e !== null && e !== undefined) {
          done(true);
          resolve();
          return;
        }
        // COM_RESET_CONNECTION leaves FOUND_ROWS() alone: an intent's SQL_CALC_FOUND_ROWS total (a
        // count over rows it may not show) was the next intent's FOUND_ROWS(). An empty SELECT sets it to 0.
        this.conn.query('SELECT 1 FROM DUAL LIMIT 0', (e2: unknown) => {
          done(e2 !== null && e2 !== undefined ? true : this.lost !== null || this.inTransaction);
          resolve();
        });
      });
    });
  }
}
