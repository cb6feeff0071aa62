/**
 * One statement through a portal (pg-cursor): Parse/Bind/Describe/Execute, the extended
 * protocol, one statement per message. Rows are fetched in batches sized to the byte
 * budget: the first batch is small, later ones are sized from the bytes per row seen so
 * far, and fetching stops at the row limit or once the rows received pass the budget. The
 * wire watch bounds what a batch can still bring past that (see wire.ts): one message past
 * its cap, or rows past budget + cap, close the connection and end the statement as cut.
 */
import pg from 'pg';
import Cursor from 'pg-cursor';
import { WritError } from '../../schemas/index.ts';
import { resetQueries, type Session } from './session.ts';
import type { WireLimitError } from './wire.ts';

const FIRST_BATCH = 100;

export interface CursorResult {
  fields: pg.FieldDef[];
  rows: unknown[][];
  /** Every row of the statement was received (its command tag and row count are known). */
  complete: boolean;
  /** Rows were left out (row limit, byte budget, or the wire cap). */
  truncated: boolean;
  /** Which limit left them out: the row limit, or the bytes (the budget or the wire's cap). */
  truncatedBy?: 'rows' | 'bytes';
  /** The wire watch closed the connection: nothing more can run on it. */
  cut: WireLimitError | null;
  rowCount: number;
  command: string | null;
}

/** Limits of one statement's result: rows, the byte budget, and the hard cap of one message. */
export interface FetchLimits {
  maxRows: number;
  bytes: number;
  maxMessage: number;
}

export function fetchLimits(maxRows: number, bytes: number): FetchLimits {
  // One message (a row) may be up to twice the budget: masking can shrink a value, and the
  // runtime cuts the masked rows to the budget. Past that the connection is closed.
  return { maxRows, bytes, maxMessage: 2 * bytes + 65_536 };
}

/** The protocol's row counts are signed 32-bit: a larger limit is bounded by the wire watch alone. */
const MAX_EXECUTE_ROWS = 0x7fffffff;

/**
 * A value pg's type parsers could not read (a session that changed client_encoding sends bytes
 * JSON.parse refuses): the intent fails. Thrown out of pg's socket handler it ended the worker.
 * The parser's own message is not kept: it quotes the value.
 */
function unreadableRow(): WritError {
  return new WritError('WRIT_EXEC_FAILED', "a value in the server's answer could not be read as its type; nothing of the result is returned");
}

/**
 * A cut on anything but a row (an error, a notice, a row description past the cap) leaves the
 * statement's outcome unknown: it is never reported as a truncated success.
 */
function refuseCutOutsideRows(cut: WireLimitError): void {
  if (cut.messageType !== 'D') {
    throw new WritError(
      'WRIT_EXEC_FAILED',
      `the server sent a message (${JSON.stringify(cut.messageType)}) past the ${cut.cap}-byte cap; the connection was closed and the statement's outcome is not known`,
    );
  }
}

export async function runCursor(s: Session, text: string, lim: FetchLimits): Promise<CursorResult> {
  const { client, watch } = s;
  watch.arm(lim.maxMessage, lim.bytes + lim.maxMessage);
  const cursor = new Cursor(text, undefined, { rowMode: 'array' });
  let rowError: WritError | null = null;
  const rowHandler = cursor as unknown as { handleDataRow(msg: unknown): void };
  const handleDataRow = rowHandler.handleDataRow.bind(cursor);
  rowHandler.handleDataRow = (msg: unknown) => {
    if (rowError) return;
    try {
      handleDataRow(msg);
    } catch {
      rowError = unreadableRow();
    }
  };
  // 'end' comes with ReadyForQuery, after which the client's transaction status is current.
  const ended = new Promise<void>((resolve) => cursor.once('end', () => resolve()));
  const rows: unknown[][] = [];
  let complete = false;
  let cut: WireLimitError | null = null;
  // pg writes each protocol message with its own socket write; corking sends them in one.
  let uncork = cork(client);
  client.query(cursor);
  let batch = Math.min(FIRST_BATCH, lim.maxRows + 1, MAX_EXECUTE_ROWS);
  for (;;) {
    const reading = cursor.read(batch);
    uncork();
    let got: unknown[][];
    try {
      got = (await reading) as unknown[][];
    } catch (e) {
      if (watch.tripped) {
        // The rows of this batch that arrived whole before the cut are parsed already: keep them.
        for (const r of (cursor as unknown as { _rows?: unknown[][] | null })._rows ?? []) rows.push(r);
        cut = watch.tripped;
        break;
      }
      throw e;
    }
    for (const r of got) rows.push(r);
    if (got.length < batch) {
      complete = true;
      break;
    }
    if (rows.length > lim.maxRows || watch.rowBytes >= lim.bytes) break;
    const perRow = Math.max(1, watch.rowBytes / rows.length);
    batch = Math.max(1, Math.min(lim.maxRows + 1 - rows.length, Math.floor((lim.bytes - watch.rowBytes) / perRow), MAX_EXECUTE_ROWS));
    uncork = () => undefined;
  }
  // pg-cursor keeps the row description and command tag on its result object.
  const res = (cursor as unknown as { _result: { fields: pg.FieldDef[]; command: string | null; rowCount: number | null } })._result;
  if (!cut) {
    if ((cursor as unknown as { state: string }).state !== 'done') {
      const uncorkClose = cork(client);
      void cursor.close().catch(() => undefined); // its end is awaited below, with the connection's loss
      uncorkClose();
    }
    await Promise.race([ended, s.dead]);
  }
  if (rowError) throw rowError;
  if (cut) refuseCutOutsideRows(cut);
  const overRows = rows.length > lim.maxRows;
  if (overRows) rows.length = lim.maxRows;
  const truncated = cut !== null || overRows || !complete;
  return {
    fields: res.fields ?? [],
    rows,
    complete: complete && !overRows,
    truncated,
    ...(truncated ? { truncatedBy: cut === null && overRows ? ('rows' as const) : ('bytes' as const) } : {}),
    cut,
    // A SELECT fetched in several Executes reports only the last Execute's rows in its tag: the
    // count is what arrived. A write's tag counts every row it affected (it ran at the first Execute).
    rowCount: complete && !overRows ? (res.command === 'SELECT' || res.command === null ? rows.length : (res.rowCount ?? rows.length)) : rows.length,
    command: complete ? res.command : null,
  };
}

/**
 * A single read statement in one round trip, the common case: Parse/Bind/Describe/Execute
 * (at most the row limit + 1 rows)/Sync and the connection's reset (`DISCARD ALL`, see
 * session.ts) go out in one write, and the server's answers to both in one read. Three round
 * trips and four socket writes before (the portal's rows, its Close and Sync, the reset).
 *
 * What it gives up against `runCursor`: no second Execute, so there are no later batches
 * sized to the byte budget. Rows stream until the row limit; the wire watch still ends the
 * statement (as cut) once its rows pass budget + one message's cap, the same bound as the
 * cursor's, so it is reached more often, never passed. The portal is the unnamed one, and
 * Sync ends the implicit transaction, so nothing of it outlives the statement.
 */
export async function runOneShot(s: Session, text: string, lim: FetchLimits): Promise<CursorResult> {
  const { client, watch } = s;
  watch.arm(lim.maxMessage, lim.bytes + lim.maxMessage);
  const resetSql = resetQueries();
  const q = new OneShot(client, text, Math.min(lim.maxRows + 1, MAX_EXECUTE_ROWS), resetSql);
  const answered = new Promise<void>((resolve) => (q.onReady = resolve));
  let reset: Promise<boolean> = Promise.resolve(false);
  const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  stream?.cork?.();
  try {
    client.query(q as unknown as pg.Submittable);
    // Behind the statement in pg's queue: they send nothing of their own, they take the answers
    // to the reset's queries that the statement's write carried.
    reset = queueResets(client, resetSql.length);
  } finally {
    stream?.uncork?.();
  }
  s.resetQueued(reset);
  try {
    await Promise.race([answered, s.dead]);
  } catch (e) {
    if (!watch.tripped) throw e;
  }
  if (watch.tripped) {
    if (q.error instanceof WritError) throw q.error;
    refuseCutOutsideRows(watch.tripped);
    // The rows parsed before the cut (a chunk can hold the limit's + 1st): never past the limit.
    if (q.rows.length > lim.maxRows) q.rows.length = lim.maxRows;
    return { fields: q._result.fields, rows: q.rows, complete: false, truncated: true, truncatedBy: 'bytes', cut: watch.tripped, rowCount: q.rows.length, command: null };
  }
  if (q.error) throw q.error;
  if (q.txStatus !== 'I') throw new WritError('WRIT_EXEC_FAILED', 'the statement left a transaction open on the connection; the connection was closed');
  const overRows = q.rows.length > lim.maxRows;
  if (overRows) q.rows.length = lim.maxRows;
  const complete = q.complete && !overRows;
  const res = q._result;
  return {
    fields: res.fields,
    rows: q.rows,
    complete,
    truncated: !complete,
    // Without a cut, only the row limit stops a single Execute.
    ...(!complete ? { truncatedBy: 'rows' as const } : {}),
    cut: null,
    rowCount: complete ? (res.command === 'SELECT' || res.command === null ? q.rows.length : (res.rowCount ?? q.rows.length)) : q.rows.length,
    command: complete ? res.command : null,
  };
}

/** The statement's side of the one-shot: pg's client hands it every answer up to ReadyForQuery. */
class OneShot {
  /** Named as pg-cursor names it, so pg's client gives it the client's type parsers. */
  readonly _result = new pg.Result('array' as never, undefined as never) as unknown as PgResult;
  readonly rows: unknown[][] = [];
  /** CommandComplete arrived: every row of the statement was received. */
  complete = false;
  error: Error | null = null;
  onReady: () => void = () => undefined;
  /** The connection's transaction status at the statement's ReadyForQuery (the reset's comes right after). */
  txStatus: string | null = null;
  readonly #client: pg.PoolClient;
  readonly #reset: readonly string[];
  readonly #text: string;
  readonly #maxRows: number;

  constructor(client: pg.PoolClient, text: string, maxRows: number, reset: readonly string[]) {
    this.#client = client;
    this.#reset = reset;
    this.#text = text;
    this.#maxRows = maxRows;
  }

  submit(con: PgConnection): void {
    try {
      // The unnamed statement and portal: each statement alone, so the server refuses a second
      // one smuggled inside the text.
      con.parse({ text: this.#text });
      con.bind({ values: [] });
      con.describe({ type: 'P', name: '' });
      con.execute({ portal: '', rows: this.#maxRows });
      con.sync();
      for (const q of this.#reset) con.query(q);
    } catch (e) {
      // Part of it may be on the wire with no Sync behind it: the connection's state is unknown, so
      // it is closed (its queries, the reset's included, then fail and it is not reused).
      this.error ??= new WritError('WRIT_EXEC_FAILED', 'the statement could not be sent; the connection was closed', { cause: e });
      con.stream.destroy(e as Error);
    }
  }

  handleRowDescription(msg: { fields: pg.FieldDef[] }): void {
    this._result.addFields(msg.fields);
  }

  handleDataRow(msg: { fields: unknown[] }): void {
    if (this.error) return;
    try {
      this.rows.push(this._result.parseRow(msg.fields));
    } catch {
      this.error = unreadableRow();
    }
  }

  handleCommandComplete(msg: unknown): void {
    this._result.addCommandComplete(msg);
    this.complete = true;
  }

  handlePortalSuspended(): void {
    // More rows than the limit: the rest is dropped with the portal at Sync.
  }

  handleEmptyQuery(): void {
    this.complete = true;
  }

  /** Terminal: pg's client drops the query on an error, and the ReadyForQuery after it goes to the next one. */
  handleError(e: Error): void {
    this.error ??= e;
    this.onReady();
  }

  handleCopyInResponse(con: PgConnection): void {
    // COPY FROM STDIN is refused before anything runs; should one get here, it is failed, not fed.
    con.sendCopyFail('COPY from the client is not supported');
  }

  handleCopyData(): void {
    // COPY TO STDOUT is refused before anything runs; its data, should any come, is dropped.
  }

  handleReadyForQuery(): void {
    this.txStatus = this.#client.getTransactionStatus();
    this.onReady();
  }
}

/** Takes the answers to a DISCARD ALL another query's write carried; `done` says whether it ran. */
class QueuedReset {
  readonly done: Promise<boolean>;
  /** Queues the placeholder of the reset's next query: one at a time, as pg's client wants them. */
  then: (() => void) | undefined;
  #resolve!: (ok: boolean) => void;
  #failed = false;

  constructor() {
    this.done = new Promise<boolean>((resolve) => (this.#resolve = resolve));
  }

  submit(): void {
    // Already on the wire.
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handlePortalSuspended(): void {}
  handleEmptyQuery(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}

  handleError(): void {
    // A server error (a transaction left open refuses DISCARD ALL) or the connection's loss:
    // either way the connection is not reused. pg's client drops this placeholder here; the
    // next one still takes the next query's answers (or the same loss).
    this.#failed = true;
    this.#resolve(false);
    this.#queueNext();
  }

  handleReadyForQuery(): void {
    this.#resolve(!this.#failed);
    // pg's client calls this before it looks at its queue again: the next placeholder is taken at once.
    this.#queueNext();
  }

  #queueNext(): void {
    const next = this.then;
    this.then = undefined;
    next?.();
  }
}

/** Placeholders for the reset's queries, queued one after another behind the statement; resolves with whether all ran. */
function queueResets(client: pg.PoolClient, count: number): Promise<boolean> {
  const ghosts = Array.from({ length: count }, () => new QueuedReset());
  ghosts.forEach((g, i) => {
    const next = ghosts[i + 1];
    if (next) g.then = () => void client.query(next as unknown as pg.Submittable);
  });
  if (ghosts[0]) client.query(ghosts[0] as unknown as pg.Submittable);
  return Promise.all(ghosts.map((g) => g.done)).then((oks) => oks.every(Boolean));
}

interface PgResult {
  fields: pg.FieldDef[];
  command: string | null;
  rowCount: number | null;
  addFields(fields: pg.FieldDef[]): void;
  parseRow(values: unknown[]): unknown[];
  addCommandComplete(msg: unknown): void;
}

interface PgConnection {
  parse(q: { text: string }): void;
  bind(c: { values: unknown[] }): void;
  describe(m: { type: 'P'; name: string }): void;
  execute(c: { portal: string; rows: number }): void;
  sync(): void;
  query(text: string): void;
  sendCopyFail(msg: string): void;
  stream: { destroy(e?: Error): void };
}

/** Corks the client's socket; the returned function uncorks it on the next tick (after this tick's writes). */
function cork(client: pg.PoolClient): () => void {
  const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  if (!stream?.cork || !stream.uncork) return () => undefined;
  stream.cork();
  return () => process.nextTick(() => stream.uncork!());
}
