/**
 * One statement through a portal (pg-cursor): Parse/Bind/Describe/Execute, the extended
 * protocol, one statement per message. Rows are fetched in batches sized to the byte
 * budget: the first batch is small, later ones are sized from the bytes per row seen so
 * far, and fetching stops at the row limit or once the rows received pass the budget. The
 * wire watch bounds what a batch can still bring past that (see wire.ts): one message past
 * its cap, or rows past budget + cap, close the connection and end the statement as cut.
 */
import type pg from 'pg';
import Cursor from 'pg-cursor';
import type { Session } from './session.ts';
import type { WireLimitError } from './wire.ts';

const FIRST_BATCH = 100;

export interface CursorResult {
  fields: pg.FieldDef[];
  rows: unknown[][];
  /** Every row of the statement was received (its command tag and row count are known). */
  complete: boolean;
  /** Rows were left out (row limit, byte budget, or the wire cap). */
  truncated: boolean;
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

export async function runCursor(s: Session, text: string, lim: FetchLimits): Promise<CursorResult> {
  const { client, watch } = s;
  watch.arm(lim.maxMessage, lim.bytes + lim.maxMessage);
  const cursor = new Cursor(text, undefined, { rowMode: 'array' });
  // 'end' comes with ReadyForQuery, after which the client's transaction status is current.
  const ended = new Promise<void>((resolve) => cursor.once('end', () => resolve()));
  const rows: unknown[][] = [];
  let complete = false;
  let cut: WireLimitError | null = null;
  // pg writes each protocol message with its own socket write; corking sends them in one.
  let uncork = cork(client);
  client.query(cursor);
  let batch = Math.min(FIRST_BATCH, lim.maxRows + 1);
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
    batch = Math.max(1, Math.min(lim.maxRows + 1 - rows.length, Math.floor((lim.bytes - watch.rowBytes) / perRow)));
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
  const overRows = rows.length > lim.maxRows;
  if (overRows) rows.length = lim.maxRows;
  return {
    fields: res.fields ?? [],
    rows,
    complete: complete && !overRows,
    truncated: cut !== null || overRows || !complete,
    cut,
    // A SELECT fetched in several Executes reports only the last Execute's rows in its tag: the
    // count is what arrived. A write's tag counts every row it affected (it ran at the first Execute).
    rowCount: complete && !overRows ? (res.command === 'SELECT' || res.command === null ? rows.length : (res.rowCount ?? rows.length)) : rows.length,
    command: complete ? res.command : null,
  };
}

/** Corks the client's socket; the returned function uncorks it on the next tick (after this tick's writes). */
function cork(client: pg.PoolClient): () => void {
  const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  if (!stream?.cork || !stream.uncork) return () => undefined;
  stream.cork();
  return () => process.nextTick(() => stream.uncork!());
}
