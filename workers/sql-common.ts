/**
 * What the SQL workers (PostgreSQL, MySQL/MariaDB) share about a batch's SQL facts: which base
 * columns it may draw on (for computed fields and for error scrubbing), why a computed field
 * cannot be traced, which writes have row counts the server does not report, and the row-limit
 * signal a batch throws before its rollback. Pure, except for the catalogue the caller passes.
 */
import type { SqlStatementFacts } from '../classify/index.ts';
import { WritError } from '../schemas/index.ts';

/** The catalogue lookups a worker answers from its target (cached there). */
export interface ColumnCatalogue {
  /** Every column (schema.table.column) of the named tables; for a view, also the base columns it draws on. */
  columnsOf(tables: readonly string[]): Promise<string[]>;
  /** The base columns of those of the named relations that are views; empty for tables. */
  viewBaseColumns(tables: readonly string[]): Promise<string[]>;
}

/** Thrown inside the batch; becomes WRIT_ROW_LIMIT once the rollback's fate is known. */
export class RowLimit {
  constructor(
    readonly affected: number | null,
    readonly limit: number,
  ) {}
}

/**
 * Every base column statements may draw on, from their SQL facts: qualified column
 * references, ambiguous ones against every table read, all columns of tables read whole
 * (`row_to_json(c)`, `c.*`) and, with `written`, of tables written. Over-inclusive by design.
 */
export async function sourcesOf(cat: ColumnCatalogue, facts: readonly SqlStatementFacts[], written = false): Promise<string[]> {
  const out = new Set<string>();
  const whole = new Set<string>();
  const read = new Set<string>();
  for (const st of facts) {
    st.tablesRead.forEach((x) => read.add(x));
    for (const c of [...st.columns, ...(written ? st.columnsWritten : [])]) {
      if (c.column === '*') {
        if (c.table) whole.add(c.table);
        else st.tablesRead.forEach((x) => whole.add(x));
      } else if (c.table) out.add(`${c.table}.${c.column}`);
      else for (const x of st.tablesRead) out.add(`${x}.${c.column}`);
    }
    st.wholeRowTables.forEach((x) => whole.add(x));
    if (written) st.tablesWritten.forEach((x) => whole.add(x));
  }
  for (const c of await cat.columnsOf([...whole])) out.add(c);
  // A computed field over a view draws on the view's base columns.
  for (const c of await cat.viewBaseColumns([...read])) out.add(c);
  return [...out];
}

/** Why a statement's computed fields cannot be traced, if they cannot. */
export function opaqueReason(st: SqlStatementFacts): string | undefined {
  if (st.opaqueReads) return `opaque:${st.functions.join(',') || 'read'}`;
  if (st.unknownFunctions?.length) return `opaque:${st.unknownFunctions.join(',')}`;
  return undefined;
}

/** Writes whose affected rows the server does not report in the statement's own count. */
export function uncountable(st: SqlStatementFacts): boolean {
  if (st.modifyingCte || st.kind === 'do' || st.kind === 'call') return true;
  if (st.kind === 'explain') return st.explain?.analyze === true && !st.explain.inner.readOnly;
  if ((st.unknownFunctions?.length ?? 0) > 0) return true;
  return (st.kind === 'select' || st.kind === 'values') && (st.dangerousFunctions.length > 0 || st.selectInto);
}

/** Whether the statement changes rows (so a cut result leaves its count unknown). */
export function writesRows(st: SqlStatementFacts): boolean {
  if (st.kind === 'execute') return st.execute?.inner?.readOnly !== true;
  return ['insert', 'update', 'delete', 'merge', 'copy'].includes(st.kind) || st.modifyingCte || st.selectInto;
}

/**
 * What a failed batch's caller is told, never claiming a rollback that did not happen. With the
 * connection lost while COMMIT was in flight the outcome is unknown (WRIT_COMMIT_UNKNOWN);
 * otherwise the fate is what is known (committed in part, rolled back by the server or by
 * `rollback()`, or never committed), a row limit becomes WRIT_ROW_LIMIT with it, and any other
 * error is rethrown carrying it as `writFate`.
 */
export async function batchFailure(e: unknown, o: { committing: boolean; connectionLost: boolean; leftStatements: number; rollback: () => Promise<boolean> }): Promise<never> {
  if (o.committing && o.connectionLost) {
    throw new WritError('WRIT_COMMIT_UNKNOWN', 'the connection was lost while COMMIT was in flight: the transaction may or may not have been committed; check the target before trying again', {
      cause: e,
    });
  }
  let fate: string;
  if (o.leftStatements >= 0) fate = 'what ran may have been committed';
  else if (o.committing) fate = 'COMMIT failed, so the server rolled it back';
  else if (await o.rollback()) fate = 'it was rolled back';
  else fate = 'the connection was closed before COMMIT, so nothing was committed';
  if (e instanceof RowLimit) {
    const what = e.affected === null ? 'returned more rows than the worker reads, so how many it affected is unknown' : `affected ${e.affected} rows`;
    throw new WritError('WRIT_ROW_LIMIT', `the statement ${what}; the limit is ${e.limit}; ${fate}`, { details: { ...(e.affected !== null ? { rowsAffected: e.affected } : {}), limit: e.limit } });
  }
  if (e instanceof WritError) throw e;
  throw Object.assign(e as object, { writFate: fate });
}
