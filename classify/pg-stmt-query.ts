/**
 * Handlers for queries, DML, COPY, session and transaction statements,
 * EXPLAIN / PREPARE / EXECUTE, cursors and other non-DDL statements.
 */
import type { SetFacts, SqlStatementFacts } from './types.ts';
import type { Collector } from './pg-walk.ts';
import { arr, names, nodeOf, obj, rangeVarName, str } from './pg-ast.ts';
import { isTriviallyTrue } from './pg-where.ts';
import { defElemBool, defElems, namesIn, walkBody, type Handler, type StmtInfo, type StmtType } from './pg-stmt-common.ts';

/** Folds an inner statement's facts into the outer collector; writes only when the inner one runs. */
function merge(c: Collector, inner: SqlStatementFacts, runs: boolean): void {
  for (const t of inner.tablesRead) c.tablesRead.add(t);
  for (const col of inner.columns) c.addColumn(col);
  for (const t of inner.wholeRowTables) c.wholeRow.add(t);
  // An inner statement's filters stay filters (EXPLAIN's estimated row counts come from statistics of them).
  for (const col of inner.filterColumns ?? inner.columns) c.filterColumns.set(`${col.table ?? ''}\u0000${col.column}`, col);
  for (const t of inner.filterWholeRowTables ?? inner.wholeRowTables) c.filterWholeRow.add(t);
  for (const f of inner.functions) c.functions.add(f);
  if (!runs) return;
  for (const t of inner.tablesWritten) c.tablesWritten.add(t);
  for (const col of inner.columnsWritten) c.addColumn(col, true);
  c.modifyingCte ||= inner.modifyingCte;
  c.selectInto ||= inner.selectInto;
  c.rowLocks ||= inner.rowLocks;
}

const dml =
  (type: 'InsertStmt' | 'UpdateStmt' | 'DeleteStmt' | 'MergeStmt', kind: 'insert' | 'update' | 'delete' | 'merge'): Handler =>
  (b, x) => {
    x.w.dml(type, b, x.scope);
    const info: StmtInfo = { kind };
    if (kind === 'update' || kind === 'delete') {
      info.hasWhere = b.whereClause !== undefined;
      info.whereTriviallyTrue = b.whereClause !== undefined && isTriviallyTrue(b.whereClause);
    }
    return info;
  };

/** The value of a SET argument list as lower-case text (`off`, `0`, `a, public`). */
function setValue(args: unknown): string {
  return arr(args)
    .map((a) => {
      const c = nodeOf(a, 'A_Const');
      if (!c) return '?';
      if (c.sval) return (str(obj(c.sval)?.sval) ?? '').toLowerCase();
      if (c.ival) return String(obj(c.ival)?.ival ?? 0);
      if (c.boolval) return String(obj(c.boolval)?.boolval === true);
      return '?';
    })
    .join(', ');
}

const READ_ONLY_VARS = new Set(['transaction_read_only', 'default_transaction_read_only']);
const FALSE_VALUES = new Set(['off', 'false', 'f', 'no', 'n', '0', 'of', 'fa', 'fal', 'fals']);

/** SET TRANSACTION READ WRITE and friends carry a transaction_read_only DefElem that is false. */
function asksReadWrite(options: unknown): boolean {
  const ro = defElems(options).get('transaction_read_only');
  return ro !== undefined && !defElemBool(ro);
}

const variableSet: Handler = (b) => {
  const kind = String(b.kind);
  const reset = kind === 'VAR_RESET' || kind === 'VAR_RESET_ALL';
  const variable = kind === 'VAR_RESET_ALL' ? 'all' : (str(b.name) ?? '').toLowerCase();
  const value = setValue(b.args);
  // Setting one of the read-only switches to off, to DEFAULT or resetting it (the default may be read-write) asks for writes.
  const readWrite =
    ((variable === 'transaction' || variable === 'session characteristics') && asksReadWrite(b.args)) ||
    (READ_ONLY_VARS.has(variable) && (reset || kind === 'VAR_SET_DEFAULT' || FALSE_VALUES.has(value))) ||
    variable === 'all';
  const set: SetFacts = {
    variable,
    local: b.is_local === true,
    role: variable === 'role' || variable === 'all',
    sessionAuthorization: variable === 'session_authorization' || variable === 'all',
    transactionReadWrite: readWrite,
    searchPath: variable === 'search_path' || variable === 'all',
  };
  return { kind: reset ? 'reset' : 'set', set, requestsReadWrite: readWrite, objectNames: [] };
};

const explain: Handler = (b, x) => {
  const opts = defElems(b.options);
  const a = opts.get('analyze');
  const analyze = a !== undefined && defElemBool(a);
  const inner = x.inner(b.query);
  merge(x.c, inner, analyze);
  // Plain EXPLAIN only plans; EXPLAIN ANALYZE runs the statement and is exactly as read-only as it.
  return { kind: 'explain', explain: { analyze, inner }, readOnlyKind: analyze ? inner.readOnly : true };
};

/**
 * A prepared statement outlives the intent on a pooled connection and runs later, under whoever sends
 * EXECUTE: PREPARE counts as the inner statement itself (its writes, kinds and read-only flag).
 */
const prepare: Handler = (b, x) => {
  const inner = x.inner(b.query);
  const name = str(b.name) ?? '';
  x.prepared.set(name, inner);
  merge(x.c, inner, true);
  x.w.visit(b.argtypes, x.scope);
  return { kind: 'prepare', prepare: { name, inner }, objectNames: [name], readOnlyKind: inner.readOnly };
};

const execute: Handler = (b, x) => {
  const name = str(b.name) ?? '';
  const inner = x.prepared.get(name);
  x.w.visit(b.params, x.scope);
  if (inner) merge(x.c, inner, true);
  // Without the PREPARE in the same batch the classifier cannot see what runs (another principal's, on a pooled connection).
  else x.refuse(`EXECUTE ${name}: no PREPARE of it in the same text, so what runs cannot be seen`);
  return { kind: 'execute', execute: inner ? { name, inner } : { name }, objectNames: [name], readOnlyKind: inner?.readOnly ?? false };
};

/** CURSOR_OPT_HOLD of DeclareCursorStmt.options (parsenodes.h). */
const CURSOR_OPT_HOLD = 0x20;

const declareCursor: Handler = (b, x) => {
  x.w.visit(b.query, x.scope);
  const name = str(b.portalname) ?? '';
  x.cursors.add(name);
  // WITH HOLD keeps the cursor (and its rows) past the transaction, on a connection other principals reuse.
  const hold = (Number(b.options ?? 0) & CURSOR_OPT_HOLD) !== 0;
  if (hold) x.refuse(`DECLARE ${name} ... WITH HOLD: the cursor would outlive the intent`);
  return { kind: 'declare', readOnlyKind: !hold, objectNames: [name] };
};

/** FETCH / MOVE / CLOSE act on a cursor: only one DECLAREd earlier in the same text is visible. */
const cursorUse =
  (kind: 'fetch' | 'move' | 'close'): Handler =>
  (b, x) => {
    const name = str(b.portalname);
    const known = name !== undefined && x.cursors.has(name);
    if (!known) x.refuse(`${kind.toUpperCase()} ${name ?? 'ALL'}: no DECLARE of the cursor in the same text, so what it reads cannot be seen`);
    return { kind, readOnlyKind: known, objectNames: name !== undefined ? [name] : [] };
  };

const copy: Handler = (b, x) => {
  const rv = obj(b.relation);
  const from = b.is_from === true;
  if (rv) {
    const table = rangeVarName(rv);
    if (from) x.c.write(rv);
    else {
      x.c.tablesRead.add(table);
      x.c.claimed.add(rv);
      const cols = names(b.attlist);
      for (const col of cols) x.c.addColumn({ table, column: col });
      if (!cols.length) {
        x.c.addColumn({ table, column: '*' });
        x.c.wholeRow.add(table);
      }
    }
  }
  walkBody({ query: b.query, whereClause: b.whereClause, options: b.options }, x, rv);
  const program = b.is_program === true;
  const file = typeof b.filename === 'string' && !program;
  const stdio = b.filename === undefined;
  return {
    kind: 'copy',
    copy: { direction: from ? 'from' : 'to', program, file, stdio, query: b.query !== undefined },
    readOnlyKind: !from && stdio,
    objectNames: typeof b.filename === 'string' ? [b.filename] : [],
  };
};

const transaction: Handler = (b) => ({
  kind: 'transaction',
  transaction: String(b.kind ?? '')
    .replace(/^TRANS_STMT_/, '')
    .toLowerCase(),
  requestsReadWrite: asksReadWrite(b.options),
  objectNames: namesIn(b.savepoint_name ?? b.gid),
});

const select: Handler = (b, x) => {
  x.w.select(b, x.scope);
  const values = arr(b.valuesLists).length > 0 && !b.intoClause;
  return { kind: values ? 'values' : 'select', readOnlyKind: true };
};

/** Statements with nothing to resolve but their kind. */
const plain =
  (kind: StmtInfo['kind'], readOnlyKind: boolean, nameField?: string): Handler =>
  (b, x) => {
    walkBody(b, x);
    return { kind, readOnlyKind, objectNames: nameField ? namesIn(b[nameField]) : [] };
  };

/** Handlers for the non-DDL statement types. */
export const QUERY_HANDLERS = {
  SelectStmt: select,
  // Only in analysed trees, never from the raw parser; mapped for completeness.
  SetOperationStmt: select,
  InsertStmt: dml('InsertStmt', 'insert'),
  UpdateStmt: dml('UpdateStmt', 'update'),
  DeleteStmt: dml('DeleteStmt', 'delete'),
  MergeStmt: dml('MergeStmt', 'merge'),
  CopyStmt: copy,
  VariableSetStmt: variableSet,
  VariableShowStmt: (b) => ({ kind: 'show', readOnlyKind: true, objectNames: namesIn(b.name) }),
  ConstraintsSetStmt: (b, x) => {
    walkBody(b, x);
    const set: SetFacts = { variable: 'constraints', local: true, role: false, sessionAuthorization: false, transactionReadWrite: false, searchPath: false };
    return { kind: 'set', set };
  },
  TransactionStmt: transaction,
  ExplainStmt: explain,
  PrepareStmt: prepare,
  ExecuteStmt: execute,
  // Drops prepared statements of the session (possibly another principal's on a pooled connection): a session change.
  DeallocateStmt: plain('deallocate', false, 'name'),
  DeclareCursorStmt: declareCursor,
  FetchStmt: (b, x) => cursorUse(b.ismove === true ? 'move' : 'fetch')(b, x),
  ClosePortalStmt: cursorUse('close'),
  DoStmt: (b) => {
    const lang = defElems(b.args).get('language');
    return { kind: 'do', objectType: lang ? (namesIn(obj(lang.arg) ? lang.arg : undefined)[0] ?? 'plpgsql') : 'plpgsql' };
  },
  CallStmt: (b, x) => {
    x.w.visit({ FuncCall: b.funccall }, x.scope);
    return { kind: 'call', objectType: 'procedure', objectNames: namesIn(obj(b.funccall)?.funcname) };
  },
  ListenStmt: plain('listen', false, 'conditionname'),
  UnlistenStmt: plain('unlisten', false, 'conditionname'),
  NotifyStmt: plain('notify', false, 'conditionname'),
  LoadStmt: plain('load', false, 'filename'),
  CheckPointStmt: plain('checkpoint', false),
  DiscardStmt: (b) => ({
    kind: 'discard',
    objectType: String(b.target ?? '')
      .replace(/^DISCARD_/, '')
      .toLowerCase(),
  }),
  // Only inside PL/pgSQL and SQL-function bodies, never a top-level statement.
  ReturnStmt: plain('unknown', false),
  PLAssignStmt: plain('unknown', false),
  // The wrapper libpg-query puts around every statement; never a statement itself.
  RawStmt: plain('unknown', false),
} satisfies Partial<Record<StmtType, Handler>>;
