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

/** What OriginResolver.maskedOrder found for the batch's relations. */
export interface OrderHazards {
  indexes: Set<string>;
  clustered: Set<string>;
  relations: Set<string>;
}

/** Kinds the server explains without running them. */
const EXPLAINABLE = new Set(['select', 'values', 'insert', 'update', 'delete', 'merge']);
/** Statements that hand back and store no rows of what they read. */
const rowless = (st: SqlStatementFacts) =>
  (st.kind === 'create' && (st.objectType === 'view' || st.objectType === 'index')) || ['drop', 'truncate', 'comment', 'grant', 'revoke', 'analyze', 'vacuum', 'lock', 'show'].includes(st.kind);
/** Plan nodes that read an index in its order. */
const ORDERED_SCANS = new Set(['Index Scan', 'Index Only Scan']);

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
  if (ORDERED_SCANS.has(type) && node['Index Name'] !== undefined && h.indexes.has(node['Index Name'])) return `the index ${node['Index Name']}`;
  if (type === 'Seq Scan' && node['Relation Name'] !== undefined && h.clustered.has(node['Relation Name'])) return `${node['Relation Name']}, clustered on an index of a masked column,`;
  for (const c of node.Plans ?? []) {
    const found = orderedBy(c, h);
    if (found) return found;
  }
  return undefined;
}

/**
 * Checks `sql`'s plan before it runs (statement `statement` of the batch, 1-based when it has
 * several). False: its rows cannot follow a masked column. True: they may, and it is a plain read
 * whose rows are handed back in a canonical order. Anything else is refused (WRIT_MASKED_FILTER).
 */
export async function checkMaskedOrder(
  run: (sql: string) => Promise<pg.QueryResult>,
  sql: string,
  st: SqlStatementFacts,
  h: OrderHazards | undefined,
  statement: number | undefined,
): Promise<boolean> {
  if (!h || h.indexes.size === 0) return false;
  const touched = [...st.tablesRead, ...st.tablesWritten].filter((t) => h.relations.has(t));
  if (touched.length === 0 || rowless(st)) return false;
  const where = statement ? `statement ${statement} ` : 'the statement ';
  const details = { ...(statement ? { statement } : {}) };
  if (!EXPLAINABLE.has(st.kind) || untraceable(st)) {
    throw new WritError('WRIT_MASKED_FILTER', `${where}reads ${touched[0]}, whose index on a masked column can order what comes back, and its plan cannot be checked; nothing ran`, { details });
  }
  const r = await run(`EXPLAIN (FORMAT JSON) ${sql}`);
  const first = r.rows[0] as { 'QUERY PLAN'?: unknown } | undefined;
  const raw = first?.['QUERY PLAN'];
  const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan?: PlanNode }> | undefined;
  if (!Array.isArray(plan)) throw new WritError('WRIT_MASKED_FILTER', `${where}reads ${touched[0]}, and its plan could not be read; nothing ran`, { details });
  const via = orderedBy(plan[0]?.Plan, h);
  if (via === undefined) return false;
  if ((st.kind === 'select' || st.kind === 'values') && st.orderDependent !== true) return true;
  throw new WritError(
    'WRIT_MASKED_FILTER',
    `${where}would read ${touched[0]} through ${via} which holds a masked column, and what it computes or stores depends on the order of its rows (a LIMIT, an ORDER BY with ties, a window, an ordered aggregate, DISTINCT ON, a write), which would follow the masked values; order by an unmasked key or filter on one; nothing ran`,
    { details },
  );
}
