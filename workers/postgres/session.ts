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
  /** A DISCARD ALL already sent with the statement (cursor.ts runOneShot): whether it ran. */
  #queuedReset: Promise<boolean> | null = null;
  readonly #onError: (e: Error) => void;
  readonly #onParameter: (m: { parameterName?: string; parameterValue?: string }) => void;

  private constructor(client: pg.PoolClient, watch: WireWatch) {
    this.client = client;
    this.watch = watch;
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

  static async open(pool: pg.Pool): Promise<Session> {
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
    return new Session(client, watch);
  }

  /**
   * statement_timeout is the limit; this is the backstop for anything that lifts it from
   * inside (a function that changes it): past the limit and a grace the worker sends a
   * cancel request, and after another grace it drops the connection.
   */
  startWatchdog(timeoutMs: number, cfg: pg.ClientConfig, terminate: (pid: number) => void): void {
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
          const pid = (this.client as unknown as { processID?: unknown }).processID;
          if (typeof pid === 'number' && pid > 0) terminate(pid);
        },
        timerMs(timeoutMs + CANCEL_GRACE_MS + DESTROY_GRACE_MS),
      ).unref(),
    );
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
      return Promise.resolve();
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
