/**
 * One statement through the text protocol (COM_QUERY, multi-statements off, so the server
 * itself refuses a second statement hidden in one). Rows stream in as they are parsed and are
 * kept up to the row limit and the byte budget; the session's sql_select_limit (limit + 1)
 * stops a top-level SELECT at the server, and the byte watch closes the connection when an
 * answer passes budget + one row's cap, whatever the statement is (SHOW, RETURNING, CALL).
 */
import type { FieldPacket, ResultSetHeader } from 'mysql2';
import { WritError } from '../../schemas/index.ts';
import type { Session, WireLimitError } from './session.ts';

export interface StatementResult {
  fields: FieldPacket[];
  rows: unknown[][];
  /** Every row of the statement was received (its counts are known). */
  complete: boolean;
  /** Rows were left out (row limit, byte budget, or the wire cap). */
  truncated: boolean;
  /** The byte watch closed the connection: nothing more can run on it. */
  cut: WireLimitError | null;
  /** Rows returned, or rows affected (matched, with FOUND_ROWS) by a write without a result set. */
  rowCount: number;
  /** Rows affected, when the server sent an OK packet for the statement. */
  affectedRows: number | null;
}

export interface FetchLimits {
  maxRows: number;
  bytes: number;
  /** What the connection may receive for one statement before it is closed. */
  wireCap: number;
}

export function fetchLimits(maxRows: number, bytes: number): FetchLimits {
  // One row may be up to twice the budget (masking can shrink it; the runtime cuts masked rows
  // to the budget); past budget + that, the connection is closed.
  return { maxRows, bytes, wireCap: 3 * bytes + 65_536 };
}

/**
 * Rough size of a row as received (the watch counts the exact bytes; this decides when to stop
 * keeping rows). A parsed JSON value is sized as its JSON: `String()` gave `[object Object]`
 * (15 bytes for any object) and threw for an object with a `toString` key, which mysql2 took
 * for a lost connection.
 */
function valueBytes(v: unknown): number {
  if (v === null || v === undefined) return 1;
  if (typeof v === 'string') return Buffer.byteLength(v) + 2;
  if (v instanceof Uint8Array) return v.length + 2;
  if (typeof v === 'object' && !(v instanceof Date)) {
    try {
      return Buffer.byteLength(JSON.stringify(v) ?? '') + 2;
    } catch {
      return 2;
    }
  }
  return `${v as string | number | bigint | boolean | Date}`.length + 2;
}

function rowBytes(row: unknown[]): number {
  let n = 4;
  for (const v of row) n += valueBytes(v);
  return n;
}

export function runStatement(s: Session, sql: string, lim: FetchLimits, timeoutMs: number): Promise<StatementResult> {
  s.watch.arm(lim.wireCap);
  const started = Date.now();
  return new Promise<StatementResult>((resolve, reject) => {
    const rows: unknown[][] = [];
    let fields: FieldPacket[] | null = null;
    let sets = 0;
    let over = false;
    let bytes = 0;
    let affectedRows: number | null = null;
    const q = s.conn.query({ sql, rowsAsArray: true });
    q.on('fields', (f: FieldPacket[] | undefined) => {
      if (!f) return; // mysql2 announces an OK packet (a write's answer) as fields `undefined`
      sets++;
      // A CALL answers with several result sets: the first is the result, the rest are read and dropped.
      if (sets === 1) fields = f;
    });
    q.on('result', (r: unknown) => {
      if (!Array.isArray(r)) {
        const h = r as ResultSetHeader;
        if (typeof h.affectedRows === 'number') affectedRows = (affectedRows ?? 0) + h.affectedRows;
        return;
      }
      if (sets !== 1) return;
      if (over || rows.length >= lim.maxRows || bytes >= lim.bytes) {
        over = true;
        return;
      }
      rows.push(r);
      bytes += rowBytes(r);
    });
    const failed = (e: Error) => {
      if (s.watch.tripped) {
        // Cut before the column definitions were read: not a result at all, whatever came before.
        if (fields === null) {
          reject(
            new WritError('WRIT_RESULT_TOO_LARGE', `${s.watch.tripped.message} before the result's columns were read; the connection was closed and nothing of the result is returned`, {
              details: { limit: lim.bytes },
            }),
          );
          return;
        }
        resolve({ fields, rows, complete: false, truncated: true, cut: s.watch.tripped, rowCount: rows.length, affectedRows: null });
      } else reject(e);
    };
    q.on('error', failed);
    // A query without a callback is not told when its connection dies (mysql2 tells the connection): the session is.
    s.dead.catch(failed);
    q.on('end', () => {
      // MariaDB's max_statement_time ends some functions quietly (BENCHMARK answers 0, GET_LOCK
      // NULL): a statement that ran for the whole limit is the limit's, never a success.
      if (Date.now() - started >= timeoutMs) {
        reject(Object.assign(new Error(`the statement ran for the whole ${timeoutMs} ms limit`), { code: 'WORKER_LIMIT_ELAPSED' }));
        return;
      }
      const returned = fields !== null;
      resolve({
        fields: fields ?? [],
        rows,
        complete: !over,
        truncated: over,
        cut: null,
        rowCount: returned ? rows.length : (affectedRows ?? 0),
        affectedRows,
      });
    });
  });
}
