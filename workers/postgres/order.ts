/**
 * Row order as a channel (the MySQL worker's workers/mysql/order.ts, for PostgreSQL). Without an
 * ORDER BY the server hands rows back in the order of its access path: an index scan, or an
 * index-only scan of an index that holds the masked column beside the selected ones (`(email)
 * INCLUDE (id)`), reads in the masked column's order, and so does a sequential scan of a table
 * CLUSTERed on such an index. So before a statement that touches a table with a masked column in
 * an index runs, the worker reads its plan (EXPLAIN, which plans without running, on the same
 * connection and settings): a plain SELECT through such an index runs and its rows are handed back
 * in a canonical order (RowsOutput.unordered); anything whose result depends on the order, or
 * whose rows were cut at a limit, is refused. docs/policy.md "Row order".
 */
import type pg from 'pg';
import type { SqlStatementFacts } from '../../classify/index.ts';
import { WritError } from '../../schemas/index.ts';
import { untraceable } from '../sql-common.ts';

/** What OriginResolver.maskedOrder found for the batch's relations (its comment says what each is). */
export interface OrderHazards {
  indexes: Set<string>;
  physical: Set<string>;
  masked: Set<string>;
  partitionedBy: Set<string>;
  ordered: Set<string>;
  relations: Set<string>;
}

/** Kinds the server explains without running them. */
const EXPLAINABLE = new Set(['select', 'values', 'insert', 'update', 'delete', 'merge']);
/** Statements that hand back and store no rows of what they read. */
const rowless = (st: SqlStatementFacts) =>
  (st.kind === 'create' && (st.objectType === 'view' || st.objectType === 'index')) || ['drop', 'truncate', 'comment', 'grant', 'revoke', 'analyze', 'vacuum', 'lock', 'show'].includes(st.kind);
/** Plan nodes that read an index in its order. */
const ORDERED_SCANS = new Set(['Index Scan', 'Index Only Scan']);
/** System columns that give a row's place: its physical position, its partition. */
const PLACE_COLUMNS = new Set(['ctid', 'tableoid']);

interface PlanNode {
  'Node Type'?: string;
  'Index Name'?: string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

/** The first plan node that reads in the order of a masked column, if any. */
function orderedBy(node: PlanNode | undefined, h: OrderHazards): string | undefined {
  if (!node) return undefined;
  const type = node['Node Type'] ?? '';
  if (ORDERED_SCANS.has(type) && node['Index Name'] !== undefined && h.indexes.has(node['Index Name'])) return `the index ${node['Index Name']}, which holds a masked column`;
  // Stored in a masked column's order: a scan of the heap (sequential, TID, sample, bitmap heap) reads in that order;
  // an index scan reads in its index's.
  if (!ORDERED_SCANS.has(type) && node['Relation Name'] !== undefined && h.physical.has(node['Relation Name'])) return `${node['Relation Name']}, whose rows are stored in a masked column's order`;
  for (const c of node.Plans ?? []) {
    const found = orderedBy(c, h);
    if (found) return found;
  }
  return undefined;
}

/**
 * Checks a statement before it runs (statement `statement` of the batch, 1-based when it has
 * several). False: its rows cannot follow a masked column. True: they may, and it is a plain read
 * whose rows are handed back in a canonical order. Anything else is refused (WRIT_MASKED_FILTER):
 * a row's place read from a relation holding a masked column (`ctid`, `tableoid`), a partition of
 * a table partitioned by one read by name, and a plan in a masked column's order for a statement
 * whose result depends on the order (its own facts, or a view it reads whose definition does).
 * An UPDATE or DELETE through such a plan runs (see below).
 */
export async function checkMaskedOrder(
  run: (sql: string) => Promise<pg.QueryResult>,
  sql: string,
  st: SqlStatementFacts,
  h: OrderHazards | undefined,
  statement: number | undefined,
): Promise<boolean> {
  if (!h) return false;
  const touched = [...st.tablesRead, ...st.tablesWritten].filter((t) => h.relations.has(t));
  if (touched.length === 0 || rowless(st)) return false;
  const where = statement ? `statement ${statement} ` : 'the statement ';
  const details = { ...(statement ? { statement } : {}) };
  const place = [...st.columns, ...(st.filterColumns ?? [])].find((c) => PLACE_COLUMNS.has(c.column) && (c.table === null ? touched.some((t) => h.masked.has(t)) : h.masked.has(c.table)));
  if (place) {
    throw new WritError(
      'WRIT_MASKED_FILTER',
      `${where}reads ${place.column} of ${place.table ?? touched[0]}, a row's place, which can follow the masked column it holds (its stored order, its partition); nothing ran`,
      {
        details,
      },
    );
  }
  const partition = touched.find((t) => h.partitionedBy.has(t));
  if (partition) {
    throw new WritError(
      'WRIT_MASKED_FILTER',
      `${where}reads ${partition}, a partition of a table partitioned by a masked column: which rows it holds tells the range of their values; read the partitioned table instead; nothing ran`,
      {
        details,
      },
    );
  }
  if (h.indexes.size === 0 && h.physical.size === 0) return false;
  if (!EXPLAINABLE.has(st.kind) || untraceable(st)) {
    throw new WritError('WRIT_MASKED_FILTER', `${where}reads ${touched[0]}, whose rows can come in a masked column's order, and its plan cannot be checked; nothing ran`, { details });
  }
  const r = await run(`EXPLAIN (FORMAT JSON) ${sql}`);
  const first = r.rows[0] as { 'QUERY PLAN'?: unknown } | undefined;
  const raw = first?.['QUERY PLAN'];
  const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan?: PlanNode }> | undefined;
  if (!Array.isArray(plan)) throw new WritError('WRIT_MASKED_FILTER', `${where}reads ${touched[0]}, and its plan could not be read; nothing ran`, { details });
  const via = orderedBy(plan[0]?.Plan, h);
  if (via === undefined) return false;
  // A side effect taken row by row (a dangerous function) follows the order too.
  const ordered = st.orderDependent === true || st.dangerousFunctions.length > 0 || touched.some((t) => h.ordered.has(t));
  if ((st.kind === 'select' || st.kind === 'values') && !ordered) return true;
  // An UPDATE or DELETE changes the rows its filter picks whatever order it meets them in (PostgreSQL
  // has no UPDATE … LIMIT); its RETURNING rows are sorted like a read's. Not so an INSERT … SELECT
  // (the copy is stored in that order), a sequence or other side effect taken row by row, or a
  // data-modifying CTE.
  if ((st.kind === 'update' || st.kind === 'delete') && !ordered && st.dangerousFunctions.length === 0 && !st.modifyingCte) return true;
  throw new WritError(
    'WRIT_MASKED_FILTER',
    `${where}would read ${touched[0]} through ${via}, and what it computes or stores depends on the order of its rows (a LIMIT, an ORDER BY with ties, a window, an ordered aggregate or ARRAY(…), DISTINCT ON, a view that has one, a write), which would follow the masked values; order by an unmasked key or filter on one; nothing ran`,
    { details },
  );
}
