/**
 * PostgreSQL classification with the real PostgreSQL grammar (libpg-query).
 * Every statement of a batch is classified; a text that does not parse, or
 * holds a statement the mapping does not know, carries an error so the
 * policy fails closed.
 */
import { WritError } from '../schemas/errors.ts';
import type { SqlErrorCode, SqlFacts, SqlStatementFacts } from './types.ts';
import { pgParse } from './runtime.ts';
import { arr, obj, unwrap } from './pg-ast.ts';
import { Collector, PgWalker, Scope } from './pg-walk.ts';
import type { Handler, StmtCtx, StmtInfo, StmtType } from './pg-stmt-common.ts';
import { QUERY_HANDLERS } from './pg-stmt-query.ts';
import { DDL_HANDLERS } from './pg-stmt-ddl.ts';
import { isDangerousPg } from './sql-functions.ts';
import { isKnownSafePg, isOpaquePg } from './pg-catalog.ts';
import { safeMessage } from './text.ts';

/** One handler per statement type of the grammar: a type added to libpg-query's types breaks the build here. */
const HANDLERS: Record<StmtType, Handler> = { ...QUERY_HANDLERS, ...DDL_HANDLERS };

function handlerFor(type: string): Handler | undefined {
  return Object.hasOwn(HANDLERS, type) ? HANDLERS[type as StmtType] : undefined;
}

interface Batch {
  prepared: Map<string, SqlStatementFacts>;
  cursors: Set<string>;
  /** Why the batch cannot be classified (a statement acting on a prepared statement or cursor it does not show). */
  refusals: string[];
}

/** Classifies one statement node (top-level, or inside EXPLAIN / PREPARE). */
function classifyNode(node: unknown, text: string, batch: Batch): SqlStatementFacts {
  const c = new Collector();
  const base = {
    inner: (n: unknown) => classifyNode(n, text, batch),
    prepared: batch.prepared,
    cursors: batch.cursors,
    refuse: (m: string) => void batch.refusals.push(m),
  };
  const walker = new PgWalker(c, (type, body, w, scope) => {
    const h = handlerFor(type);
    if (!h) return false;
    h(body, { c, w, scope, ...base });
    return true;
  });
  const u = unwrap(node);
  const handler = u ? handlerFor(u[0]) : undefined;
  const ctx: StmtCtx = { c, w: walker, scope: new Scope(), ...base };
  const info: StmtInfo = u && handler ? handler(u[1], ctx) : { kind: 'unknown' };
  return toFacts(info, c, text);
}

function toFacts(info: StmtInfo, c: Collector, text: string): SqlStatementFacts {
  const functions = [...c.functions];
  const dangerousFunctions = functions.filter(isDangerousPg);
  // Known safe only from the generated catalogue and its deny-lists (pg-catalog.ts); names resolve as under
  // the worker's pinned search_path (pg_catalog, then public), so an unqualified user function is public's.
  const unknownFunctions = functions.filter((f) => !isKnownSafePg(f));
  const requestsReadWrite = info.requestsReadWrite === true;
  const facts: SqlStatementFacts = {
    kind: info.kind,
    objectNames: info.objectNames ?? [],
    text,
    tablesRead: [...c.tablesRead],
    tablesWritten: [...c.tablesWritten],
    columns: [...c.columns.values()],
    columnsWritten: [...c.columnsWritten.values()],
    wholeRowTables: [...c.wholeRow],
    filterColumns: [...c.filterColumns.values()],
    filterWholeRowTables: [...c.filterWholeRow],
    ...(c.filterFunctions.size > 0 ? { filterFunctions: [...c.filterFunctions] } : {}),
    functions,
    dangerousFunctions,
    unknownFunctions,
    opaqueReads: functions.some(isOpaquePg),
    modifyingCte: c.modifyingCte,
    selectInto: c.selectInto,
    rowLocks: c.rowLocks,
    ...(c.orderDependent || c.selectInto ? { orderDependent: true } : {}),
    requestsReadWrite,
    readOnly: info.readOnlyKind === true && !c.modifyingCte && !c.selectInto && !c.rowLocks && !requestsReadWrite && dangerousFunctions.length === 0 && c.tablesWritten.size === 0,
  };
  if (info.objectType !== undefined) facts.objectType = info.objectType;
  if (info.alterActions) facts.alterActions = info.alterActions;
  if (info.hasWhere !== undefined) facts.hasWhere = info.hasWhere;
  if (info.whereTriviallyTrue !== undefined) facts.whereTriviallyTrue = info.whereTriviallyTrue;
  if (info.copy) facts.copy = info.copy;
  if (info.explain) facts.explain = info.explain;
  if (info.prepare) facts.prepare = info.prepare;
  if (info.execute) facts.execute = info.execute;
  if (info.set) facts.set = info.set;
  if (info.transaction !== undefined) facts.transaction = info.transaction;
  if (c.returningOnly.columns.size > 0 || c.returningOnly.wholeRow.size > 0) {
    facts.returningOnly = { columns: [...c.returningOnly.columns.values()], wholeRowTables: [...c.returningOnly.wholeRow] };
  }
  return facts;
}

function failed(code: SqlErrorCode, message: string): SqlFacts {
  return { dialect: 'postgres', statements: [], error: { code, message } };
}

interface Parsed {
  stmts: Array<{ node: unknown; text: string }>;
}

/** Parses and cuts the text at the parser's statement boundaries (byte offsets into the UTF-8 text). */
function parse(text: string): Parsed | SqlFacts {
  // The parser reads a C string: it would stop at a NUL and see less than PostgreSQL is sent.
  if (text.includes('\u0000')) return failed('WRIT_SQL_UNPARSEABLE', 'the text holds a NUL character');
  if (text.length === 0) return failed('WRIT_SQL_EMPTY', 'the SQL text holds no statement'); // libpg-query throws on ''
  let tree: unknown;
  try {
    tree = pgParse(text);
  } catch (e) {
    if (e instanceof WritError) throw e; // not initialised: a programming error, not bad input
    const details = obj((e as { sqlDetails?: unknown }).sqlDetails);
    const pos = typeof details?.cursorPosition === 'number' ? ` at character ${details.cursorPosition + 1}` : '';
    return failed('WRIT_SQL_UNPARSEABLE', `${safeMessage(e instanceof Error ? e.message : String(e))}${pos}`);
  }
  const raw = arr(obj(tree)?.stmts);
  if (raw.length === 0) return failed('WRIT_SQL_EMPTY', 'the SQL text holds no statement');
  const bytes = Buffer.from(text, 'utf8');
  const stmts = raw.map((r) => {
    const o = obj(r) ?? {};
    const start = typeof o.stmt_location === 'number' ? o.stmt_location : 0;
    const len = typeof o.stmt_len === 'number' && o.stmt_len > 0 ? o.stmt_len : bytes.length - start;
    return {
      node: o.stmt,
      text: bytes
        .subarray(start, start + len)
        .toString('utf8')
        .trim(),
    };
  });
  return { stmts };
}

/** Classifies a PostgreSQL text. Never throws for bad input: the facts carry an error instead. */
export function classifySql(text: string): SqlFacts {
  const parsed = parse(text);
  if (!('stmts' in parsed)) return parsed;
  const batch: Batch = { prepared: new Map(), cursors: new Set(), refusals: [] };
  let statements: SqlStatementFacts[];
  try {
    statements = parsed.stmts.map((s) => classifyNode(s.node, s.text, batch));
  } catch (e) {
    if (e instanceof WritError) throw e;
    // A tree deep enough to exhaust the JS stack: refuse rather than half-classify.
    if (e instanceof RangeError) return failed('WRIT_SQL_UNPARSEABLE', 'the statement is nested too deeply to classify');
    // A classifier bug must not let a statement through unseen, nor take the caller down.
    return failed('WRIT_SQL_UNKNOWN', 'the classifier failed on this text');
  }
  const facts: SqlFacts = { dialect: 'postgres', statements };
  const unknown = statements.findIndex((s) => s.kind === 'unknown');
  if (unknown >= 0) facts.error = { code: 'WRIT_SQL_UNKNOWN', message: `statement ${unknown + 1} could not be classified` };
  else if (batch.refusals.length) facts.error = { code: 'WRIT_SQL_UNKNOWN', message: safeMessage(batch.refusals[0] as string) };
  return facts;
}

/**
 * The statement texts of a PostgreSQL batch, cut where the parser cuts them, for running one statement per
 * protocol message. Throws WritError WRIT_SQL_EMPTY / WRIT_SQL_UNPARSEABLE.
 */
export function splitSql(text: string): string[] {
  const parsed = parse(text);
  if (!('stmts' in parsed)) {
    const err = parsed.error ?? { code: 'WRIT_SQL_UNPARSEABLE' as const, message: 'the SQL text could not be parsed' };
    throw new WritError(err.code, err.message);
  }
  return parsed.stmts.map((s) => s.text);
}
