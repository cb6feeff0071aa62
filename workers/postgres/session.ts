/**
 * One intent's use of a pooled connection: checked out with an error handler (a checked-out
 * pg client has none of the pool's, so a dropped connection would crash the process), a
 * watch on its wire, a client-side watchdog behind statement_timeout, and a reset
 * (`DISCARD ALL`) before it goes back to the pool, or its destruction when anything about
 * its state is unsure. Prepared statements, cursors WITH HOLD, temp tables, SET values,
 * LISTENs and advisory locks of one principal's intent never reach another's.
 */
import { randomInt } from 'node:crypto';
import pg from 'pg';
import { withDeadline } from '../../lib/index.ts';
import { WritError } from '../../schemas/index.ts';
import { wireWatch, type WireWatch } from './wire.ts';
import { timerMs } from '../sql-common.ts';

/**
 * What puts a connection back as a new one would be: DISCARD ALL (settings, prepared statements,
 * cursors, temp tables, LISTENs, advisory locks, plans), then a fresh seed for random(), which
 * DISCARD ALL leaves alone (an intent's `setseed(0.42)` made the next intent's random() known).
 * Two queries: DISCARD ALL refuses to run inside the implicit block of a multi-statement text.
 */
export function resetQueries(): string[] {
  return ['DISCARD ALL', `SELECT setseed(${(randomInt(0, 2 ** 30) / 2 ** 30).toFixed(9)})`];
}

function connectionOf(client: pg.PoolClient): { on(e: string, f: (...a: never[]) => void): unknown; off(e: string, f: (...a: never[]) => void): unknown } | undefined {
  return (client as unknown as { connection?: { on(e: string, f: (...a: never[]) => void): unknown; off(e: string, f: (...a: never[]) => void): unknown } }).connection;
}

/** Grace after statement_timeout before the worker cancels from its side, then before it drops the connection. */
const CANCEL_GRACE_MS = 2_000;
const DESTROY_GRACE_MS = 3_000;
/** How long a release waits for the server to end a backend the worker dropped mid-statement. */
const END_BACKEND_MS = 5_000;

/**
 * Ends a backend from another connection of the same role: `pid`, and only while it is still
 * the backend of the worker's socket (`port`, the socket's local port, is its client_port), so a
 * pid the server has given to a new backend since is never signalled.
 */
export type EndBackend = (pid: number, port: number) => Promise<unknown>;

export const END_BACKEND_SQL = 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND client_port = $2';

/**
 * Settings that decide how the server reads a statement's text, pinned at startup. With
 * standard_conforming_strings off, `'x\'' , (SELECT password FROM secrets) --'` is one string
 * literal to the classifier and a subquery to the server; a client_encoding such as SJIS turns
 * bytes into quotes. Both are reported by the server whenever they change (ParameterStatus),
 * whatever changed them (SET, set_config, UPDATE pg_settings): the session fails the intent
 * before its next statement and the connection is not reused.
 */
export const PARSER_SETTINGS: Readonly<Record<string, string>> = Object.freeze({ standard_conforming_strings: 'on', client_encoding: 'UTF8' });

export class Session {
  readonly client: pg.PoolClient;
  readonly watch: WireWatch;
  /** A pinned parser setting the server reported changed (PARSER_SETTINGS), as `name=value`. */
  parserChanged: string | null = null;
  /** The watchdog fired (and cancelled what was running): a 57014 after it is the time limit's. */
  watchdogCancelled = false;
  /** When the intent's time limit ends (ms since the epoch), once the watchdog runs. */
  deadline = Number.POSITIVE_INFINITY;
  /** The worker's COMMIT is in flight: at the deadline it is cancelled (the server times no COMMIT). */
  committing = false;
  /** The first error the connection reported (socket closed, server terminated it, wire cap). */
  lost: Error | null = null;
  /** Rejects when the connection is lost; for racing waits that only the server can end. */
  readonly dead: Promise<never>;
  #timers: NodeJS.Timeout[] = [];
  #released = false;
  /** The backend's pid and the socket's local port (its client_port), read when checked out. */
  readonly #backend: { pid: number; port: number } | undefined;
  readonly #endBackend: EndBackend | undefined;
  /** A DISCARD ALL already sent with the statement (cursor.ts runOneShot): whether it ran. */
  #queuedReset: Promise<boolean> | null = null;
  readonly #onError: (e: Error) => void;
  readonly #onParameter: (m: { parameterName?: string; parameterValue?: string }) => void;

  private constructor(client: pg.PoolClient, watch: WireWatch, endBackend: EndBackend | undefined) {
    this.client = client;
    this.watch = watch;
    this.#endBackend = endBackend;
    const pid = (client as unknown as { processID?: unknown }).processID;
    const port = (client as unknown as { connection?: { stream?: { localPort?: unknown } } }).connection?.stream?.localPort;
    if (typeof pid === 'number' && pid > 0 && typeof port === 'number' && port > 0) this.#backend = { pid, port };
    let reject!: (e: Error) => void;
    this.dead = new Promise<never>((_, rej) => (reject = rej));
    this.dead.catch(() => undefined); // observed by whoever races it; never unhandled
    this.#onError = (e: Error) => {
      this.lost ??= e;
      reject(e);
    };
    client.on('error', this.#onError);
    this.#onParameter = (m: { parameterName?: string; parameterValue?: string }) => {
      const pinned = m.parameterName !== undefined ? PARSER_SETTINGS[m.parameterName] : undefined;
      if (pinned !== undefined && m.parameterValue !== pinned) this.parserChanged ??= `${m.parameterName}=${m.parameterValue}`;
    };
    connectionOf(client)?.on('parameterStatus', this.#onParameter);
  }

  /** Fails when a statement changed how the server reads text: nothing after it may run on this connection. */
  assertParser(): void {
    if (this.parserChanged) {
      throw new WritError(
        'WRIT_UNSUPPORTED',
        `a statement changed ${this.parserChanged.split('=')[0]}, which decides how the server reads the text; nothing after it ran and the connection was closed`,
      );
    }
  }

  /**
   * `endBackend` ends a backend this session dropped while a statement may still run on it
   * (release); without it (or over a socket with no port) the server notices only when it next
   * writes to the closed socket.
   */
  static async open(pool: pg.Pool, endBackend?: EndBackend): Promise<Session> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw new WritError('WRIT_TARGET_UNAVAILABLE', undefined, { cause: e });
    }
    const watch = wireWatch(client);
    if (!watch) {
      client.release(true);
      throw new WritError('WRIT_INTERNAL', 'the connection exposes no socket to watch');
    }
    if (watch.tripped) {
      client.release(true);
      throw new WritError('WRIT_TARGET_UNAVAILABLE', 'the pooled connection was closed');
    }
    return new Session(client, watch, endBackend);
  }

  /**
   * statement_timeout is the limit; this is the backstop for anything that lifts it from
   * inside (a function that changes it): past the limit and a grace the worker sends a
   * cancel request, and after another grace it drops the connection.
   */
  startWatchdog(timeoutMs: number, cfg: pg.ClientConfig): void {
    this.deadline = Date.now() + timeoutMs;
    const cancelActive = () => {
      const active = (this.client as unknown as { _getActiveQuery?(): unknown })._getActiveQuery?.();
      if (!active) return;
      try {
        // pg's Client#cancel opens its own connection and sends the cancel request (no login needed).
        const canceller = new pg.Client(cfg) as unknown as { connection: pg.Connection; cancel(c: unknown, q: unknown): void };
        canceller.connection.on('error', () => undefined); // an unreachable server must not crash the worker
        canceller.cancel(this.client, active);
      } catch {
        // The drop below still ends it.
      }
    };
    this.#timers.push(
      setTimeout(() => {
        if (!this.committing) return;
        this.watchdogCancelled = true;
        cancelActive();
      }, timerMs(timeoutMs)).unref(),
    );
    this.#timers.push(
      setTimeout(
        () => {
          // Set even when nothing is running: the batch is past its limit whatever comes next.
          this.watchdogCancelled = true;
          cancelActive();
        },
        timerMs(timeoutMs + CANCEL_GRACE_MS),
      ).unref(),
    );
    this.#timers.push(
      setTimeout(
        () => {
          const stream = (this.client as unknown as { connection?: { stream?: { destroy(e?: Error): void } } }).connection?.stream;
          stream?.destroy(Object.assign(new Error(`the statement ran past ${timeoutMs} ms and was not cancelled`), { code: 'WORKER_WATCHDOG' }));
          // A backend that never reads its socket again (a DO block catching query_canceled) is ended from another connection.
          if (this.#backend) void this.#endBackend?.(this.#backend.pid, this.#backend.port).catch(() => undefined);
        },
        timerMs(timeoutMs + CANCEL_GRACE_MS + DESTROY_GRACE_MS),
      ).unref(),
    );
  }

  /** Whether release() ends the backend (dropped mid-statement): the run then waits for it before it frees its place. */
  get endsBackend(): boolean {
    return this.#backend !== undefined && this.#endBackend !== undefined && this.#midStatement();
  }

  /** The wire watch cut the connection, the socket failed, or a statement is still active on it. */
  #midStatement(): boolean {
    return this.watch.tripped !== null || this.lost !== null || (this.client as unknown as { _getActiveQuery?(): unknown })._getActiveQuery?.() != null;
  }

  /** Ends the dropped backend, waiting at most END_BACKEND_MS (a server that does not answer is logged by nobody: its statement_timeout still ends it). */
  async #end(): Promise<void> {
    const b = this.#backend;
    if (b && this.#endBackend) await withDeadline(this.#endBackend(b.pid, b.port), END_BACKEND_MS);
  }

  /**
   * Drops the connection and ends its backend now, whatever runs on it: the worker is stopping
   * (its run was aborted, or the executor closes), and a statement left on the server would run
   * on to its time limit after the process is gone, outside any worker's count. The run's own
   * release comes after, and finds the connection dropped.
   */
  abandon(): Promise<void> {
    if (this.#released) return Promise.resolve();
    const stream = (this.client as unknown as { connection?: { stream?: { destroy(e?: Error): void } } }).connection?.stream;
    stream?.destroy(Object.assign(new Error('the worker is stopping; the statement was ended'), { code: 'WORKER_STOPPING' }));
    return this.#end();
  }

  /** The reset went out with the statement; release() waits for its answer instead of sending one. */
  resetQueued(done: Promise<boolean>): void {
    this.#queuedReset = done;
  }

  /**
   * Back to the pool after DISCARD ALL, or destroyed. The reset is not awaited by the intent
   * (its result is already known); the connection only rejoins the pool once it is clean.
   */
  release(destroy: boolean): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#released = true;
    for (const t of this.#timers) clearTimeout(t);
    // Dropped mid-statement (the wire watch cut a result, the socket failed, a statement still
    // running): the server notices a closed socket only when it next writes to it, so a statement
    // still computing ran on past the intent, outside the worker's count of what runs (a burst of
    // cut results left 38 statements running under limits.concurrency 2).
    const midStatement = this.#midStatement();
    this.watch.disarm();
    const done = (broken: boolean) => {
      // The pool attaches its idle handler inside release(), synchronously: no unguarded window.
      // A destroyed client gets none, yet its socket may still report the server's termination:
      // a listener stays, or that late 'error' would be uncaught and end the worker.
      if (broken) this.client.on('error', () => undefined);
      this.client.off('error', this.#onError);
      connectionOf(this.client)?.off('parameterStatus', this.#onParameter);
      this.client.release(broken ? true : undefined);
    };
    // DISCARD ALL cannot run inside a transaction block: a connection not idle is not reused.
    if (destroy || this.lost || this.watch.tripped || this.parserChanged || this.client.getTransactionStatus() !== 'I') {
      done(true);
      return midStatement ? this.#end() : Promise.resolve();
    }
    if (this.#queuedReset) {
      return Promise.race([this.#queuedReset, this.dead]).then(
        (ok) => done(!ok || this.lost !== null || this.client.getTransactionStatus() !== 'I'),
        () => done(true),
      );
    }
    // One after another: pg's client takes one query at a time.
    return resetQueries()
      .reduce<Promise<unknown>>((p, q) => p.then(() => this.client.query(q)), Promise.resolve())
      .then(
        () => done(this.lost !== null || this.client.getTransactionStatus() !== 'I'),
        () => done(true),
      );
  }
}
