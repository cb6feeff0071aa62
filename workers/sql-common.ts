/**
 * What the SQL workers (PostgreSQL, MySQL/MariaDB) share about a batch's SQL facts: which base
 * columns it may draw on (for computed fields and for error scrubbing), why a computed field
 * cannot be traced, which writes have row counts the server does not report, and the row-limit
 * signal a batch throws before its rollback. Pure, except for the catalogue the caller passes.
 */
import { isOpaquePg, type SqlStatementFacts } from '../classify/index.ts';
import { columnStrategy, MaskingSpecSchema, sensitiveColumns, type MaskingSpec } from '../masking/index.ts';
import { deepFreeze, WritError, type AccessMode } from '../schemas/index.ts';

/** The catalogue lookups a worker answers from its target (cached there). */
export interface ColumnCatalogue {
  /** Every column (schema.table.column) of the named tables; for a view, also the base columns it draws on. */
  columnsOf(tables: readonly string[]): Promise<string[]>;
  /** The base columns of those of the named relations that are views; empty for tables. */
  viewBaseColumns(tables: readonly string[]): Promise<string[]>;
  /** Views among the named relations whose base columns cannot be known (MySQL: definition unreadable). */
  opaqueViews?(tables: readonly string[]): Promise<string[]>;
  /** The columns with what each also is: partition or inheritance relatives' columns (PostgreSQL), a generated column's inputs. */
  withRelatives?(columns: readonly string[]): Promise<string[]>;
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
  // A partition's column is its parent's too (and the other way round), and a generated column holds its inputs.
  return cat.withRelatives ? cat.withRelatives([...out]) : [...out];
}

/** Why a statement's computed fields cannot be traced, if they cannot. */
export function opaqueReason(st: SqlStatementFacts): string | undefined {
  if (st.opaqueReads) return `opaque:${st.functions.join(',') || 'read'}`;
  if (st.unknownFunctions?.length) return `opaque:${st.unknownFunctions.join(',')}`;
  return undefined;
}

/** Writes whose affected rows the server does not report in the statement's own count. */
export function uncountable(st: SqlStatementFacts): boolean {
  // TRUNCATE empties a table with no row count at all.
  if (st.modifyingCte || st.kind === 'do' || st.kind === 'call' || st.kind === 'truncate') return true;
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

/** Kinds that store nothing they read (their side-effect flags are checked apart). */
const STORES_NOTHING = new Set<SqlStatementFacts['kind']>([
  'select',
  'values',
  'show',
  'declare',
  'fetch',
  'move',
  'close',
  'prepare',
  'deallocate',
  'discard',
  'listen',
  'unlisten',
  'lock',
  'unlock',
  'delete',
  'truncate',
  'drop',
  'set',
  'reset',
  'transaction',
  'use',
]);

/**
 * Whether a statement may put what it reads where a later read gets it back as something
 * other than the masked column: rows (INSERT, UPDATE, MERGE, a modifying CTE), a new table
 * (CREATE TABLE AS, PostgreSQL's SELECT INTO), a file (COPY, INTO OUTFILE), server or session
 * state through a function (set_config, setval, pg_notify, advisory locks: the dangerous list),
 * or code the classifier cannot see into (DO, CALL; under a write grant any unknown function).
 * A view is not a copy: its columns are masked by the base columns it draws on. MySQL's
 * `SELECT … INTO @x` and `SET @x` only reach the session, whose later statements are masked by
 * what the batch read, and which is reset before another intent gets the connection.
 */
function mayStore(st: SqlStatementFacts, dialect: 'postgres' | 'mysql', mode: AccessMode): boolean {
  if (st.kind === 'execute') return st.execute?.inner === undefined || mayStore(st.execute.inner, dialect, mode);
  if (st.kind === 'explain' && st.explain?.analyze === true && mayStore(st.explain.inner, dialect, mode)) return true;
  if (st.modifyingCte || st.copy !== undefined || st.dangerousFunctions.length > 0) return true;
  if (st.selectInto && dialect === 'postgres') return true;
  // Under a read grant the read-only transaction and role keep an unknown function from writing rows.
  if (mode === 'write' && (st.unknownFunctions?.length ?? 0) > 0) return true;
  if (st.kind === 'create' && st.objectType === 'view') return false;
  return !STORES_NOTHING.has(st.kind) && st.kind !== 'explain';
}

/**
 * Whether what a statement computes may come from data its facts do not show: a function that
 * runs SQL text or reads a relation by name, a function the classifier does not know (its body
 * may read any table), a DO block. Reviewed built-ins on the dangerous list (pg_sleep, set_config,
 * nextval…) are side effects, not hidden reads: they make a statement store, not untraceable.
 */
export function untraceable(st: SqlStatementFacts): boolean {
  return st.opaqueReads === true || st.kind === 'do' || (st.unknownFunctions ?? []).some((f) => !st.dangerousFunctions.includes(f));
}

/**
 * Which of `columns` the grant's masking masks, where a masked column's order may not be seen:
 * undefined when the grant masks no column, or its masking says `filterMasked: true` (the
 * principal may look rows up by the value) or `copyMasked: true` (it may copy the value where it
 * reads in the clear): an order by the value tells either nothing more.
 */
export function maskedColumnsOf(claims: { mask?: unknown }): ((columns: readonly string[]) => string[]) | undefined {
  if (claims.mask === undefined) return undefined;
  const spec = specOf(claims.mask);
  if (spec.columns.length === 0 || spec.filterMasked === true || spec.copyMasked === true) return undefined;
  return (columns) => sensitiveColumns(spec, [...columns]);
}

/**
 * A result cut at a limit, from a plan that reads its rows in the order of a masked column (the
 * workers' order.ts): which rows were kept would tell, so it is refused.
 */
export function maskedOrderCut(statement: number | undefined): WritError {
  return new WritError(
    'WRIT_MASKED_FILTER',
    `${statement ? `statement ${statement}` : 'the statement'} read a table through an index on a masked column and its rows were cut at a limit, so which rows came back would follow the masked values; filter or order by an unmasked key to stay within the limit`,
    { details: { ...(statement ? { statement } : {}) } },
  );
}

/** Parsed specs by their JSON (grants of one rule carry the same spec), at most SPECS_MAX. */
const specsByText = new Map<string, MaskingSpec>();
const SPECS_MAX = 256;
/** The spec of each grant's own mask object: the checks of one run ask for it three times. */
const specsByObject = new WeakMap<object, MaskingSpec>();

/**
 * The grant's masking spec, parsed (and frozen: it is shared); a spec that does not parse runs
 * nothing (the runtime says the same). Parsed once per distinct spec, not three times per run.
 */
function specOf(mask: unknown): MaskingSpec {
  const own = typeof mask === 'object' && mask !== null ? mask : undefined;
  const known = own && specsByObject.get(own);
  if (known) return known;
  const text = JSON.stringify(mask);
  let spec = specsByText.get(text);
  if (!spec) {
    const r = MaskingSpecSchema.safeParse(mask);
    if (!r.success) throw new WritError('WRIT_MASKING_FAILED', 'the grant carries a masking spec this worker cannot apply');
    spec = deepFreeze(r.data);
    if (specsByText.size >= SPECS_MAX) specsByText.delete(specsByText.keys().next().value!);
    specsByText.set(text, spec);
  }
  if (own) specsByObject.set(own, spec);
  return spec;
}

/**
 * Refuses, before anything runs, a statement that may store (mayStore) a value drawn from a
 * column the grant's masking masks: masking follows a value by its column's origin, so a copy
 * in `events.note`, a new table, a sequence or a setting comes back in the clear to whoever
 * reads it, the writer included. What a statement may draw on is what it and every statement
 * before it in the batch read (the session carries values between them: user variables,
 * set_config, temp tables), views resolved. Where that cannot be known (an opaque or unknown
 * function, DO, a view whose definition is unreadable), it is refused too. Allowed: a write
 * whose every destination column is itself masked at least as strictly as its sources
 * (`UPDATE customers SET email = lower(email)`), and any write under `copyMasked: true`.
 */
export async function refuseMaskedCopies(cat: ColumnCatalogue, facts: readonly SqlStatementFacts[], claims: { mode: AccessMode; mask?: unknown }, dialect: 'postgres' | 'mysql'): Promise<void> {
  // The runtime refuses a grant without a masking spec before any executor runs (workers/runtime.ts);
  // an executor driven directly (its own tests) has no column rules to protect.
  if (claims.mask === undefined) return;
  const spec = specOf(claims.mask);
  if (spec.columns.length === 0 || spec.copyMasked === true) return;
  for (let i = 0; i < facts.length; i++) {
    const st = facts[i]!;
    await refuseMaskedRelationChange(cat, spec, st, facts.length > 1 ? i + 1 : undefined);
    if (!mayStore(st, dialect, claims.mode)) continue;
    const drawn = facts.slice(0, i + 1);
    const where = facts.length > 1 ? `statement ${i + 1} ` : 'the statement ';
    const opaque = drawn.some(untraceable) || ((await cat.opaqueViews?.([...new Set(drawn.flatMap((d) => d.tablesRead))]))?.length ?? 0) > 0;
    if (opaque) {
      throw new WritError(
        'WRIT_MASKED_COPY',
        `${where}stores what it computes, and what it draws on cannot be traced (a function or block the worker cannot see into), so it may copy a masked column; nothing ran`,
        { details: { statement: i + 1 } },
      );
    }
    const sensitive = [...new Set(sensitiveColumns(spec, await sourcesOf(cat, [...drawn.slice(0, -1), storedReads(st)])))];
    if (sensitive.length === 0 || intoMaskedColumns(st, sensitive, spec)) continue;
    throw new WritError(
      'WRIT_MASKED_COPY',
      `${where}would store values drawn from the masked column${sensitive.length > 1 ? 's' : ''} ${sensitive.slice(0, 5).join(', ')}${i > 0 ? ' (read by it or an earlier statement of the batch)' : ''}, where a later read gets them back unmasked; nothing ran`,
      { details: { statement: i + 1, columns: sensitive.slice(0, 20) } },
    );
  }
}

/** Objects a CREATE attaches to a relation, which then act on its rows (copy them on insert, filter them). */
const ATTACHED = new Set(['rule', 'trigger', 'policy']);

/**
 * Masking rules name columns, and masking follows a value by the column it comes from: a
 * statement that changes a relation holding a masked column could take its values out of the
 * rules (ALTER TABLE … RENAME COLUMN or RENAME TO or SET SCHEMA: the rule names the old place;
 * ADD COLUMN … GENERATED ALWAYS AS (email): a copy under a name no rule covers; CREATE RULE or
 * TRIGGER on it: a copy of each future row). Refused under a grant that masks, like a copy.
 */
async function refuseMaskedRelationChange(cat: ColumnCatalogue, spec: ReturnType<typeof specOf>, st: SqlStatementFacts, statement: number | undefined): Promise<void> {
  if (st.kind !== 'alter' && !(st.kind === 'create' && st.objectType !== undefined && ATTACHED.has(st.objectType))) return;
  const relations = [...new Set(st.tablesWritten)];
  if (relations.length === 0) return;
  const sensitive = [...new Set(sensitiveColumns(spec, await cat.columnsOf(relations)))];
  if (sensitive.length === 0) return;
  throw new WritError(
    'WRIT_MASKED_COPY',
    `${statement ? `statement ${statement} ` : 'the statement '}changes a relation holding the masked column${sensitive.length > 1 ? 's' : ''} ${sensitive.slice(0, 5).join(', ')}: renaming, moving or deriving from it would take its values out of the masking rules; nothing ran`,
    { details: { ...(statement ? { statement } : {}), columns: sensitive.slice(0, 20) } },
  );
}

/**
 * The statement with what only its RETURNING list reads left out: RETURNING hands rows back
 * (masked like any result) and stores nothing. Kept whole where RETURNING feeds another
 * statement (a modifying CTE) or calls something that may store (a dangerous or unknown function).
 */
function storedReads(st: SqlStatementFacts): SqlStatementFacts {
  const r = st.returningOnly;
  if (!r || st.modifyingCte || st.dangerousFunctions.length > 0 || (st.unknownFunctions?.length ?? 0) > 0) return st;
  const key = (c: { table: string | null; column: string }) => `${c.table ?? ''}\u0000${c.column}`;
  const cols = new Set(r.columns.map(key));
  const whole = new Set(r.wholeRowTables);
  return { ...st, columns: st.columns.filter((c) => !cols.has(key(c))), wholeRowTables: st.wholeRowTables.filter((t) => !whole.has(t)) };
}

/**
 * A plain INSERT/UPDATE/MERGE whose every written column is masked, each by `redact` or by
 * the same strategy as every masked column it may draw on: the copy is masked as strictly as
 * the original wherever it is read.
 */
function intoMaskedColumns(st: SqlStatementFacts, sources: readonly string[], spec: MaskingSpec): boolean {
  if (!['insert', 'update', 'merge'].includes(st.kind) || st.modifyingCte || st.dangerousFunctions.length > 0 || (st.unknownFunctions?.length ?? 0) > 0) return false;
  if (st.columnsWritten.length === 0) return false;
  const from = sources.map((c) => columnStrategy(spec, c));
  return st.columnsWritten.every((c) => {
    if (c.table === null || c.column === '*') return false;
    const to = columnStrategy(spec, `${c.table}.${c.column}`);
    return to !== undefined && (to === 'redact' || from.every((f) => f === to));
  });
}

/**
 * Refuses, before anything runs, a statement that reads a column the grant's masking masks
 * where its value is not handed back as a result field: a filter, a join condition, a
 * grouping, an ordering, DISTINCT, a LIMIT, a window's PARTITION/ORDER BY, a FROM-clause or
 * set-returning function's arguments, an UPDATE/DELETE/MERGE filter (the classifiers'
 * `filterColumns` and `filterWholeRowTables`). The worker masks result fields by their origin
 * or sources, but the rows a filter lets through are plain columns: `SELECT id FROM customers
 * WHERE email LIKE 'a%'` answers a question about the masked value, and a binary search of
 * such questions recovers it. Whole rows and views count with every base column they draw on
 * (the catalogue); a view whose definition cannot be read counts as masked. A statement whose
 * facts lack the fields (a classifier that cannot say where it reads) is refused outright.
 * `filterMasked: true` in the grant's masking allows it. Shared by the PostgreSQL and MySQL
 * workers; `dialect` only words the message.
 */
export async function refuseMaskedFilters(cat: ColumnCatalogue, facts: readonly SqlStatementFacts[], claims: { mask?: unknown }, dialect: 'postgres' | 'mysql'): Promise<void> {
  // As for refuseMaskedCopies: the runtime refuses a grant without a masking spec before any executor runs.
  if (claims.mask === undefined) return;
  const spec = specOf(claims.mask);
  if (spec.columns.length === 0 || spec.filterMasked === true) return;
  for (const [i, st] of facts.entries()) {
    const where = facts.length > 1 ? `statement ${i + 1} ` : 'the statement ';
    if (st.filterColumns === undefined || st.filterWholeRowTables === undefined) {
      throw new WritError(
        'WRIT_MASKED_FILTER',
        `the ${dialect === 'mysql' ? 'MySQL' : 'PostgreSQL'} classifier cannot say where ${where}uses the columns it reads, so it may filter on a masked column; nothing ran`,
        { details: { statement: i + 1 } },
      );
    }
    // A function whose output cannot be traced (one the classifier does not know: an operator's
    // `email_of(id)` reads customers.email) may hand a masked value to any filter of the statement
    // (`WHERE email_of(id) LIKE 'a%'` answered yes or no per row), also through a subquery's output.
    // MySQL: a stored function (one the classifier does not know, side effects aside) is as opaque.
    const untraced = dialect === 'postgres' ? st.functions.find(isOpaquePg) : (st.unknownFunctions ?? []).find((f) => !st.dangerousFunctions.includes(f));
    if (untraced && spec.trustComputed !== true && (st.filterColumns.length > 0 || st.filterWholeRowTables.length > 0 || (st.filterFunctions?.length ?? 0) > 0)) {
      throw new WritError('WRIT_MASKED_FILTER', `${where}filters, joins, groups or sorts while calling ${untraced}, whose output the worker cannot trace, so it may use a masked column; nothing ran`, {
        details: { statement: i + 1 },
      });
    }
    if (st.filterColumns.length === 0 && st.filterWholeRowTables.length === 0) continue;
    const filtered: SqlStatementFacts = { ...st, columns: st.filterColumns, wholeRowTables: st.filterWholeRowTables, tablesRead: st.tablesRead };
    const tables = [...new Set([...st.filterColumns.flatMap((c) => (c.table === null ? st.tablesRead : [c.table])), ...st.filterWholeRowTables])];
    const opaque = (await cat.opaqueViews?.(tables)) ?? [];
    if (opaque.length > 0) {
      throw new WritError('WRIT_MASKED_FILTER', `${where}filters, joins, groups or sorts on ${opaque[0]}, a view whose columns cannot be traced, so it may use a masked column; nothing ran`, {
        details: { statement: i + 1 },
      });
    }
    // sourcesOf adds every view-read's base columns; here only the views a filter touches count.
    const drawn = new Set(await sourcesOf(cat, [{ ...filtered, tablesRead: tables }]));
    const sensitive = [...new Set(sensitiveColumns(spec, [...drawn]))];
    if (sensitive.length === 0) continue;
    throw new WritError(
      'WRIT_MASKED_FILTER',
      `${where}uses the masked column${sensitive.length > 1 ? 's' : ''} ${sensitive.slice(0, 5).join(', ')} outside its result (a filter, join, grouping, ordering, LIMIT or a function's rows), so the rows that come back would tell its value; nothing ran`,
      { details: { statement: i + 1, columns: sensitive.slice(0, 20) } },
    );
  }
}

/** Largest delay setTimeout honours, and PostgreSQL's statement_timeout: past it, setTimeout fires at once. */
const MAX_TIMER_MS = 0x7fffffff;

/**
 * A grant's time limit in ms, as the databases and timers take it: at least 1 ms (a server limit
 * of 0 is no limit at all: 0.0004 s rounded to it) and at most 2^31 - 1 (past it a timer fires
 * at once, and a limit of 25 days stopped every statement at its start).
 */
export function timeLimitMs(seconds: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.round(seconds * 1000)));
}

/**
 * A batch's time limit is the whole batch's. The server's limit is per statement, and the
 * watchdog only stops a statement that is running when it fires: eight statements of 0.6 s
 * each under a 1 s limit all ran, and a write batch committed, when the watchdog fired in the
 * gap between two of them. So the worker checks the deadline before each statement and
 * before COMMIT; past it, nothing more runs and nothing is committed.
 */
export function assertBeforeDeadline(deadline: number, what: string): void {
  if (Date.now() >= deadline) throw Object.assign(new Error(`the batch reached its time limit before ${what}`), { code: 'WORKER_WATCHDOG' });
}

/** A watchdog delay past the limit, kept within what setTimeout honours. */
export function timerMs(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}
