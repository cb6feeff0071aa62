/**
 * Row order as a channel. Without an ORDER BY the server hands rows back in the order of the
 * access path it picks, and InnoDB reads a covering secondary index in its own order: on a table
 * with an index on the masked e-mail, `SELECT id FROM customers` came back in e-mail order, and
 * so did `GROUP_CONCAT(id)` and any LIMIT. With a write grant, rows inserted with guessed e-mails
 * then showed where each real one sorts, one character per intent, until all were recovered.
 * So before a statement that touches a table holding a masked column in an index (or in its
 * primary key or partitioning) runs, the worker asks the server for its plan (EXPLAIN, on the same
 * connection and settings). When the plan reads in such an order, a plain read runs and its rows
 * are handed back in a canonical order; anything whose result depends on the order is refused.
 * docs/policy.md "Row order".
 */
import type { SqlStatementFacts } from '../../classify/index.ts';
import { WritError } from '../../schemas/index.ts';
import { untraceable } from '../sql-common.ts';
import type { Session } from './session.ts';

/** What MysqlCatalogue.maskedOrder found for the batch's tables. */
export interface OrderHazards {
  indexes: Set<string>;
  /** A table whose primary key (or partitioning) holds a masked column: any scan of it is in that order. */
  primaryKeyed: boolean;
  /** Views whose own definition depends on the order rows reach it. */
  ordered: Set<string>;
  relations: Set<string>;
}

/** Statement kinds the server explains without running them. */
const EXPLAINABLE = new Set(['select', 'insert', 'replace', 'update', 'delete']);
/** Statements that hand back and store no rows of what they read: no order to follow. */
const rowless = (st: SqlStatementFacts) => (st.kind === 'create' && st.objectType === 'view') || ['drop', 'truncate', 'show', 'describe', 'explain', 'analyze'].includes(st.kind);
/** Access types that read a whole table or index in its stored order. */
const SCANS = new Set(['all', 'index']);

/**
 * Checks `sql`'s plan (statement `statement` of the batch, 1-based when it has several) before it
 * runs. False: its rows cannot follow a masked column. True: they may, and the statement hands
 * back no more than the set of its rows (a plain SELECT: no LIMIT, ORDER BY, window, GROUP_CONCAT,
 * user variable): it may run, its rows are handed back in a canonical order (RowsOutput.unordered),
 * and a result cut short is refused (which rows were kept would follow the index). Anything else
 * whose plan reads through such an index is refused (WRIT_MASKED_FILTER).
 */
export async function checkMaskedOrder(s: Session, sql: string, st: SqlStatementFacts, h: OrderHazards | undefined, statement: number | undefined): Promise<boolean> {
  if (!h || (h.indexes.size === 0 && !h.primaryKeyed)) return false;
  const touched = [...st.tablesRead, ...st.tablesWritten].filter((t) => h.relations.has(t.toLowerCase()));
  if (touched.length === 0 || rowless(st)) return false;
  const where = statement ? `statement ${statement} ` : 'the statement ';
  const details = { ...(statement ? { statement } : {}) };
  // EXPLAIN may evaluate a constant subquery while it plans: only a statement with nothing to run twice is explained.
  if (!EXPLAINABLE.has(st.kind) || untraceable(st) || st.dangerousFunctions.length > 0) {
    throw new WritError('WRIT_MASKED_FILTER', `${where}reads ${touched[0]}, whose index on a masked column can order what comes back, and its plan cannot be checked; nothing ran`, { details });
  }
  const plan = await s.rows<{ key?: string | null; type?: string | null }>(`EXPLAIN ${sql}`);
  for (const row of plan) {
    const keys = String(row.key ?? '')
      .split(',')
      .map((k) => k.trim().toLowerCase())
      .filter((k) => k.length > 0);
    const scan = SCANS.has(String(row.type ?? '').toLowerCase());
    const masked = keys.find((k) => h.indexes.has(k));
    if (masked === undefined && !(h.primaryKeyed && (scan || keys.length > 0))) continue;
    if (st.kind === 'select' && st.orderDependent !== true && !touched.some((t) => h.ordered.has(t.toLowerCase()))) return true;
    throw new WritError(
      'WRIT_MASKED_FILTER',
      masked !== undefined
        ? `${where}would read ${touched[0]} through the index ${masked}, which holds a masked column, and what it computes or stores depends on the order of its rows (a LIMIT, an ORDER BY with ties, a window, GROUP_CONCAT, a user variable, a write), which would follow the masked values; order by an unmasked key or filter on one; nothing ran`
        : `${where}would read ${touched[0]} in the order of a primary key that holds a masked column, and what it computes or stores depends on the order of its rows, which would follow the masked values; nothing ran`,
      { details: { ...details, index: masked ?? 'PRIMARY' } },
    );
  }
  return false;
}
