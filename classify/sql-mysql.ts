/**
 * MySQL / MariaDB classification with node-sql-parser's MySQL grammar. The
 * grammar covers less than the servers do: whatever it cannot parse fails
 * closed. Statement boundaries come from a MySQL-rule scanner checked under
 * the sql_modes that change them; executable comments (`/*! ... *\/`, which
 * the server runs and the parser skips) are refused.
 */
import type { CopyFacts, SetFacts, SqlErrorCode, SqlFacts, SqlKind, SqlStatementFacts, ColumnFact } from './types.ts';
import { mysqlParser } from './runtime.ts';
import { isDangerousMysql, isKnownSafeMysql } from './sql-functions.ts';
import { MYSQL_KEYWORDS } from './sql-mysql-keywords.ts';
import { filterOf, functionName } from './sql-mysql-filters.ts';
import { safeMessage } from './text.ts';
import { WritError } from '../schemas/errors.ts';

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

interface Mode {
  /** Backslash escapes in strings (off with NO_BACKSLASH_ESCAPES). */
  backslash: boolean;
  /** "..." quotes an identifier (ANSI_QUOTES), where a backslash is no escape. */
  ansiQuotes: boolean;
}

interface Scan {
  pieces: string[];
  executableComment: boolean;
  unterminated: boolean;
  /** `--` not followed by a blank: two minus signs to MySQL, a comment to the parser. */
  bareDashes: boolean;
  /** An optimizer hint comment (`/*+ ... *\/`). */
  optimizerHint: boolean;
}

/** Cuts a MySQL text at top-level semicolons; pieces holding only comments and blanks are dropped. */
function scan(text: string, mode: Mode): Scan {
  const pieces: string[] = [];
  let start = 0;
  let content = false;
  let executableComment = false;
  let unterminated = false;
  let bareDashes = false;
  let optimizerHint = false;
  const n = text.length;
  const quoted = (i: number, q: string, backslash: boolean): number => {
    let j = i + 1;
    for (; j < n; j++) {
      if (backslash && text[j] === '\\') j++;
      else if (text[j] === q) {
        if (text[j + 1] === q) j++;
        else return j;
      }
    }
    unterminated = true;
    return n;
  };
  for (let i = 0; i < n; i++) {
    const c = text[i] as string;
    if (c === "'" || (c === '"' && !mode.ansiQuotes)) {
      i = quoted(i, c, mode.backslash);
      content = true;
    } else if (c === '`' || (c === '"' && mode.ansiQuotes)) {
      i = quoted(i, c, false);
      content = true;
    } else if (c === '#' || (c === '-' && text[i + 1] === '-' && (i + 2 >= n || /[\x00-\x20]/.test(text[i + 2] as string)))) {
      // A comment: '--' counts as one only before an ASCII blank or control character (MySQL's
      // lexer; U+00A0 and other Unicode spaces are not blanks to it).
      const eol = text.indexOf('\n', i);
      i = eol < 0 ? n : eol;
    } else if (c === '-' && text[i + 1] === '-') {
      // MySQL runs what follows `--0`; the parser would skip it as a comment.
      bareDashes = true;
      content = true;
      i++;
    } else if (c === '/' && text[i + 1] === '*') {
      if (text[i + 2] === '!' || (text[i + 2] === 'M' && text[i + 3] === '!')) executableComment = true;
      // MySQL 8 reads optimizer hints: SET_VAR(sql_select_limit=…), MAX_EXECUTION_TIME(…) and
      // RESOURCE_GROUP change, for one statement, the limits the worker set for the session.
      if (text[i + 2] === '+') optimizerHint = true;
      const end = text.indexOf('*/', i + 2);
      if (end < 0) unterminated = true;
      i = end < 0 ? n : end + 1;
    } else if (c === ';') {
      if (content) pieces.push(text.slice(start, i).trim());
      start = i + 1;
      content = false;
    } else if (!/\s/.test(c)) content = true;
  }
  if (content) pieces.push(text.slice(start).trim());
  return { pieces, executableComment, unterminated, bareDashes, optimizerHint };
}

function failed(code: SqlErrorCode, message: string): SqlFacts {
  return { dialect: 'mysql', statements: [], error: { code, message } };
}

/** The statements of a MySQL text, or the reason to refuse it. */
function split(text: string): string[] | SqlFacts {
  if (text.includes('\u0000')) return failed('WRIT_SQL_UNPARSEABLE', 'the text holds a NUL character');
  const base = scan(text, { backslash: true, ansiQuotes: false });
  if (base.executableComment) return failed('WRIT_SQL_UNPARSEABLE', 'executable comments (/*! ... */) run on the server but are invisible to the parser');
  if (base.unterminated) return failed('WRIT_SQL_UNPARSEABLE', 'unterminated string, identifier or comment');
  if (base.optimizerHint) {
    return failed('WRIT_SQL_UNPARSEABLE', "optimizer hints (/*+ ... */) are read by MySQL 8 and can change the worker's limits for the statement (SET_VAR, MAX_EXECUTION_TIME)");
  }
  if (base.bareDashes) {
    return failed('WRIT_SQL_UNPARSEABLE', "'--' not followed by a space: MySQL reads two minus signs and runs the rest of the line, which a comment would hide (write '- -' or '-- ' for a comment)");
  }
  // The server's sql_mode is unknown here: the cut must be the same whichever mode it runs with.
  for (const mode of [
    { backslash: false, ansiQuotes: false },
    { backslash: true, ansiQuotes: true },
  ]) {
    const other = scan(text, mode);
    if (other.unterminated || other.bareDashes || other.pieces.join('\u0000') !== base.pieces.join('\u0000')) {
      return failed('WRIT_SQL_UNPARSEABLE', 'the statement boundaries depend on the server sql_mode (backslashes or double quotes in literals)');
    }
  }
  if (base.pieces.length === 0) return failed('WRIT_SQL_EMPTY', 'the SQL text holds no statement');
  return base.pieces;
}

/** Walks the AST, calling `fn` on every object. */
function each(v: unknown, fn: (o: Obj) => void): void {
  if (Array.isArray(v)) for (const x of v) each(x, fn);
  else {
    const o = obj(v);
    if (!o) return;
    fn(o);
    for (const x of Object.values(o)) each(x, fn);
  }
}

/** Built-ins whose value depends on the order rows reach them: aggregates that collect or add them up, and functions evaluated anew per row (a window function is caught by its OVER). */
const ORDER_SENSITIVE_FUNCTIONS = new Set([
  'group_concat',
  'json_arrayagg',
  'json_objectagg',
  'rownum',
  'any_value',
  // Evaluated anew per row: RAND(7) per row is a position in a known sequence; SYSDATE(6) and UUID() carry the time.
  'rand',
  'uuid',
  'uuid_short',
  'sys_guid',
  'sysdate',
  'random_bytes',
  'nextval',
  'lastval',
  // Floating-point sums round differently in another order.
  'sum',
  'avg',
  'std',
  'stddev',
  'stddev_pop',
  'stddev_samp',
  'variance',
  'var_pop',
  'var_samp',
]);

function functionsOf(ast: unknown): string[] {
  const out = new Set<string>();
  each(ast, (o) => {
    const name = functionName(o);
    if (name !== undefined) out.add(name);
  });
  return [...out];
}

/**
 * The names of the statement's CTEs that stand for no base table. A CTE's body sees only the
 * CTEs before it (and itself when RECURSIVE): `WITH customers AS (SELECT … FROM customers)` reads
 * the base table customers, and the parser's table list holds the name once for both uses, so
 * such a name is not dropped from the tables read (a rule on customers must still see it).
 */
function cteNames(ast: Obj): Set<string> {
  const list = (Array.isArray(ast.with) ? ast.with : []).map((w) => obj(w) ?? {});
  const names = list.map((w) => String(obj(w.name)?.value ?? '').toLowerCase());
  const out = new Set(names);
  list.forEach((w, i) => {
    const body = obj(w.stmt)?.tableList;
    for (const entry of Array.isArray(body) ? body : []) {
      const [, db = 'null', table = ''] = String(entry).split('::');
      const j = names.indexOf(table.toLowerCase());
      if (db === 'null' && j >= 0 && (j > i || (j === i && w.recursive !== true))) out.delete(names[j]!);
    }
  });
  return out;
}

/** Every row-source name of the statement (tables, aliases, derived tables, CTEs) and what it stands for. */
function relationsOf(ast: unknown, names: Names): Array<{ name: string; table: string | null }> {
  const out = new Map<string, { name: string; table: string | null }>();
  const add = (name: string, table: string | null) => out.set(`${name}\u0000${table ?? ''}`, { name, table });
  each(ast, (o) => {
    if (typeof o.table === 'string' && 'db' in o && 'as' in o && o.type === undefined) {
      add(String(o.as ?? o.table).toLowerCase(), names.table(o.db, o.table, false));
    } else if (typeof o.as === 'string' && obj(o.expr)?.ast !== undefined) add(o.as.toLowerCase(), null);
    else if (obj(o.name)?.value !== undefined && o.stmt !== undefined) add(String(obj(o.name)?.value).toLowerCase(), null);
  });
  return [...out.values()];
}

/**
 * The words of a statement written bare: outside strings, quoted identifiers and comments, and
 * not right after a dot (MySQL reads a word after `t.` as a name even when it is reserved).
 * Lower-cased. The worker pins the default sql_mode, so `"…"` is a string.
 */
function bareWords(text: string): Set<string> {
  const out = new Set<string>();
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text[i] as string;
    if (c === "'" || c === '"' || c === '`') {
      for (i++; i < n && text[i] !== c; i++) if (c !== '`' && text[i] === '\\') i++;
    } else if (c === '#' || (c === '-' && text[i + 1] === '-')) {
      const eol = text.indexOf('\n', i);
      i = eol < 0 ? n : eol;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 1;
    } else if (/[\p{L}\p{N}_$\u0080-\uffff]/u.test(c)) {
      let j = i;
      while (j < n && /[\p{L}\p{N}_$\u0080-\uffff]/u.test(text[j] as string)) j++;
      if (text[i - 1] !== '.') out.add(text.slice(i, j).toLowerCase());
      i = j - 1;
    }
  }
  return out;
}

/**
 * A keyword or operator the parser took as a name: a column, table, alias or CTE name of the
 * parse that is a MariaDB reserved word (MYSQL_KEYWORDS) and stands bare in the text. The server
 * reads such a word as the keyword (`SELECT binary email` applies BINARY to email, where the
 * parser saw a column `binary` aliased `email`), so the facts would describe another statement.
 */
function misreadKeyword(text: string, ast: unknown): string | undefined {
  // From the tree, not the parser's columnList, which also lists DDL keywords (`INDEX(a)` as a column).
  const named = new Set<string>();
  each(ast, (o) => {
    // `as` is an alias on a select item or row source; elsewhere (CREATE TABLE … AS) the keyword itself.
    for (const v of ['expr' in o || typeof o.table === 'string' ? o.as : undefined, o.column, o.table, o.db, obj(o.name)?.value, obj(obj(o.column)?.expr)?.value])
      if (typeof v === 'string') named.add(v.toLowerCase());
    if (Array.isArray(o.using)) for (const u of o.using) named.add(String(typeof u === 'string' ? u : obj(u)?.value).toLowerCase());
  });
  const hits = [...named].filter((x) => MYSQL_KEYWORDS.has(x));
  if (hits.length === 0) return undefined;
  const bare = bareWords(text);
  return hits.find((x) => bare.has(x));
}

/** MySQL truthiness of a constant WHERE: a non-zero number, TRUE, `x = x`, `... OR <true>`. */
function trivial(e: unknown): boolean | undefined {
  const o = obj(e);
  if (!o) return undefined;
  if (o.type === 'bool' || o.type === 'boolean') return o.value === true;
  if (o.type === 'number') return Number(o.value) !== 0;
  if (o.type === 'single_quote_string' || o.type === 'double_quote_string' || o.type === 'string') return parseFloat(String(o.value)) ? true : false;
  if (o.type !== 'binary_expr') return undefined;
  const op = String(o.operator).toUpperCase();
  if (op === 'OR' || op === '||') return trivial(o.left) === true || trivial(o.right) === true ? true : undefined;
  if (op === 'AND' || op === '&&') return trivial(o.left) === true && trivial(o.right) === true ? true : undefined;
  const l = obj(o.left);
  const r = obj(o.right);
  const same = JSON.stringify(o.left) === JSON.stringify(o.right);
  const constant = (x: Obj | undefined) => x && ['number', 'single_quote_string', 'double_quote_string', 'bool'].includes(String(x.type));
  if (['=', '<=>', '>=', '<='].includes(op) && (same || (constant(l) && constant(r) && String(l?.value) === String(r?.value)))) return true;
  if (op === 'LIKE' && r && /^%+$/.test(String(r.value))) return true;
  return undefined;
}

const KINDS: Record<string, SqlKind> = {
  select: 'select',
  insert: 'insert',
  replace: 'insert',
  update: 'update',
  delete: 'delete',
  create: 'create',
  drop: 'drop',
  truncate: 'truncate',
  alter: 'alter',
  rename: 'alter',
  use: 'use',
  show: 'show',
  desc: 'show',
  explain: 'explain',
  grant: 'grant',
  revoke: 'revoke',
  lock: 'lock',
  unlock: 'unlock',
  set: 'set',
  call: 'call',
  transaction: 'transaction',
  load_data: 'copy',
};
const READ_ONLY_KINDS = new Set<SqlKind>(['select', 'show', 'explain']);

/**
 * How a statement's names are written into its facts. MySQL has no search path: an unqualified
 * table or stored routine is in the connection's default database, which the worker sets from
 * its config and keeps (USE is refused). With `home` a database, every table is written
 * `db.table`; with `home` null (the default database is not known), an unqualified name is
 * noted, and the text refused; with `home` undefined, names stay as written (the worker, which
 * places them itself). Names are folded to lower case: MySQL compares column names without case
 * and, with lower_case_table_names=0, tables and databases with it; folding merges names the
 * server may keep apart, so a rule on one covers all its spellings (docs/policy.md).
 */
class Names {
  /** Names written without their database while the default database is unknown. */
  readonly unqualified = new Set<string>();
  /** Identifiers holding a dot (`` `shop.customers` ``), which would read as `db.table`. */
  readonly dotted = new Set<string>();
  constructor(readonly home: string | null | undefined) {}

  /** `note` false: a row-source name that may be a CTE's (relations), not a table the text must qualify. */
  table(db: unknown, table: unknown, note = true): string {
    const d = typeof db === 'string' && db !== 'null' && db ? db.toLowerCase() : undefined;
    const t = String(table).toLowerCase();
    if (t.includes('.') || d?.includes('.')) this.dotted.add(d ? `${d}.${t}` : t);
    return this.place(d, t, note);
  }

  /** A stored routine's name: an unqualified one outside the reviewed built-ins is placed like a table. */
  routine(name: string): string {
    if (name.includes('.') || isKnownSafeMysql(name) || isDangerousMysql(name)) return name;
    return this.place(undefined, name);
  }

  place(db: string | undefined, name: string, note = true): string {
    if (db) return `${db}.${name}`;
    if (typeof this.home === 'string') return `${this.home.toLowerCase()}.${name}`;
    if (this.home === null && note) this.unqualified.add(name);
    return name;
  }
}

function statementFacts(text: string, result: { tableList?: unknown; columnList?: unknown; ast?: unknown }, names: Names): SqlStatementFacts {
  const ast = obj(Array.isArray(result.ast) ? result.ast[0] : result.ast) ?? {};
  const type = String(ast.type ?? '').toLowerCase();
  const kind: SqlKind = KINDS[type] ?? 'unknown';
  const ctes = cteNames(ast);
  const read = new Set<string>();
  const written = new Set<string>();
  for (const entry of Array.isArray(result.tableList) ? result.tableList : []) {
    const [op = '', db = 'null', table = 'null'] = String(entry).split('::');
    if (table === 'null' || op === 'use' || op === 'show') continue;
    if (db === 'null' && ctes.has(table.toLowerCase())) continue; // a CTE name is not a table
    (op.toLowerCase() === 'select' ? read : written).add(names.table(db, table));
  }
  // SHOW PROCESSLIST is a read of information_schema.PROCESSLIST: the statements (with their
  // literals) other sessions of the same database user are running, so rules and the worker see it.
  if (type === 'show' && String(ast.keyword ?? '').toLowerCase() === 'processlist') read.add('information_schema.processlist');
  // LOAD DATA and CREATE INDEX name their table outside tableList.
  const target = obj(Array.isArray(ast.table) ? ast.table[0] : ast.table);
  if (target && (type === 'load_data' || (type === 'create' && ast.keyword === 'index'))) written.add(names.table(target.db, target.table));
  const all = new Set([...read, ...written]);
  const only = all.size === 1 ? ([...all][0] ?? null) : null;
  const columns = new Map<string, ColumnFact>();
  const columnsWritten = new Map<string, ColumnFact>();
  // A qualifier names a row source first: once a table has an alias, MySQL knows it only by that
  // alias, and the alias may be another table's name (`orders AS products JOIN products AS
  // orders`). A name that stands for several sources (in different scopes) counts for each.
  const relations = relationsOf(ast, names);
  const sources = new Map<string, Set<string | null>>();
  for (const r of relations) {
    const set = sources.get(r.name) ?? new Set<string | null>();
    set.add(r.table);
    sources.set(r.name, set);
  }
  for (const entry of Array.isArray(result.columnList) ? result.columnList : []) {
    // `op::table::column`, or `op::db::table::column` for a three-part reference (`db.t.c`).
    const parts = String(entry).split('::');
    const [op = '', table = 'null', col = ''] = parts.length >= 4 ? [parts[0], `${parts[1]}.${parts[2]}`, parts.slice(3).join('::')] : parts;
    if (op === 'delete') continue;
    const q = table.toLowerCase();
    const named = table === 'null' || q.includes('.') ? undefined : sources.get(q);
    const tables: Array<string | null> = named
      ? // A derived table or CTE (null) stands for no base table: what it reads is listed from its own body.
        [...named].filter((x) => x !== null)
      : [table === 'null' ? only : ([...all].find((x) => x === q || x.endsWith(`.${q}`)) ?? null)];
    for (const t of tables) {
      // MySQL column names never depend on case.
      const fact: ColumnFact = { table: t, column: col === '(.*)' ? '*' : col.toLowerCase() };
      (op === 'select' ? columns : columnsWritten).set(`${fact.table}\u0000${fact.column}`, fact);
    }
  }
  // `JOIN … USING (col)` (and NATURAL JOIN's columns) compares col on both sides without naming
  // a table: the column is read from every base table the statement reads that may hold it, so
  // a rule on any of them sees it (a value compared is a value leaked, bit by bit).
  each(ast, (o) => {
    if (!Array.isArray(o.using)) return;
    for (const u of o.using) {
      const name = typeof u === 'string' ? u : str(obj(u)?.value);
      if (!name) continue;
      for (const t of read) columns.set(`${t}\u0000${name.toLowerCase()}`, { table: t, column: name.toLowerCase() });
    }
  });
  // Filter positions, resolved like `columns`; a column of a derived table or CTE (whose body's
  // columns are not traced to the outer filter) counts as a filter read of every column read.
  const filters = filterOf(ast, (qualifier, col, derivedInScope) => {
    const q = qualifier?.toLowerCase() ?? null;
    const named = q === null || q.includes('.') ? undefined : sources.get(q);
    if (named?.has(null)) return undefined;
    // Unqualified where the SELECT also reads a derived table or CTE: it may be one of their columns.
    if (q === null && derivedInScope) return undefined;
    const tables = named ? [...named] : [q === null ? only : ([...all].find((x) => x === q || x.endsWith(`.${q}`)) ?? null)];
    return tables.map((t) => ({ table: t, column: col === '*' ? '*' : col.toLowerCase() }));
  });
  const filterColumns = new Map<string, ColumnFact>();
  for (const c of filters.unknown ? [...filters.columns, ...columns.values()] : filters.columns) {
    if (c.column === '*' && c.table === null) for (const t of read) filterColumns.set(`${t}\u0000*`, { table: t, column: '*' });
    else filterColumns.set(`${c.table}\u0000${c.column}`, c);
  }
  const called = functionsOf(ast);
  const dangerousFunctions = called.filter(isDangerousMysql);
  // No built-in outside the reviewed list is known; a stored function may run any SQL, so its output is opaque.
  // Such a name may be a stored routine of the default database: it is placed there (`CALL p()` is `shop.p`).
  const unknownFunctions = called.filter((f) => !isKnownSafeMysql(f)).map((f) => names.routine(f));
  const functions = called.map((f) => names.routine(f));
  let rowLocks = false;
  // What the statement computes from the order in which rows reach it (see orderDependent in types.ts).
  let orderDependent = called.some((f) => ORDER_SENSITIVE_FUNCTIONS.has(f));
  each(ast, (o) => {
    if (o.locking_read) rowLocks = true;
    const limit = obj(o.limit);
    if ((Array.isArray(limit?.value) && limit.value.length > 0) || (o.orderby !== null && o.orderby !== undefined) || (o.over !== null && o.over !== undefined) || o.type === 'assign')
      orderDependent = true;
  });
  const into = obj(ast.into);
  const selectInto = type === 'select' && (into?.keyword !== undefined || into?.expr !== undefined);
  const facts: SqlStatementFacts = {
    kind,
    objectNames: [],
    text,
    tablesRead: [...read],
    tablesWritten: [...written],
    columns: [...columns.values()],
    columnsWritten: [...columnsWritten.values()],
    relations,
    wholeRowTables: [...new Set([...columns.values()].filter((c) => c.column === '*' && c.table).map((c) => c.table as string))],
    filterColumns: [...filterColumns.values()].filter((c) => c.column !== '*'),
    filterWholeRowTables: [...new Set([...filterColumns.values()].filter((c) => c.column === '*' && c.table).map((c) => c.table as string))],
    ...(filters.variables ? { filterVariables: true } : {}),
    ...(filters.functions.length > 0 ? { filterFunctions: filters.functions.map((f) => names.routine(f)) } : {}),
    functions,
    dangerousFunctions,
    unknownFunctions,
    opaqueReads: unknownFunctions.length > 0,
    modifyingCte: false, // the MySQL grammar has no data-modifying WITH
    selectInto,
    rowLocks,
    ...(orderDependent || selectInto ? { orderDependent: true } : {}),
    requestsReadWrite: false,
    readOnly: false,
  };
  if (typeof ast.keyword === 'string' && (kind === 'create' || kind === 'drop' || kind === 'truncate')) facts.objectType = ast.keyword.toLowerCase();
  if (type === 'update' || type === 'delete') {
    facts.hasWhere = ast.where !== null && ast.where !== undefined;
    facts.whereTriviallyTrue = facts.hasWhere && trivial(ast.where) === true;
  }
  const intoKeyword = String(into?.keyword ?? '').toLowerCase();
  if (selectInto && (intoKeyword === 'outfile' || intoKeyword === 'dumpfile')) {
    facts.copy = { direction: 'to', program: false, file: true, stdio: false, query: true } satisfies CopyFacts;
  }
  if (type === 'load_data') facts.copy = { direction: 'from', program: false, file: true, stdio: false, query: false };
  if (type === 'explain') facts.explain = { analyze: false, inner: statementFacts(text, { ast: ast.expr }, names) };
  if (type === 'transaction') {
    const expr = obj(ast.expr);
    facts.transaction = String(obj(expr?.action)?.value ?? '?').toLowerCase();
    facts.requestsReadWrite = JSON.stringify(expr?.modes ?? [])
      .toLowerCase()
      .includes('read write');
  }
  if (type === 'set') facts.set = setFacts(ast);
  facts.requestsReadWrite ||= facts.set?.transactionReadWrite === true;
  facts.readOnly = READ_ONLY_KINDS.has(kind) && written.size === 0 && dangerousFunctions.length === 0 && !selectInto && !rowLocks && !facts.requestsReadWrite;
  return facts;
}

function setFacts(ast: Obj): SetFacts {
  const vars: string[] = [];
  let readWrite = false;
  for (const e of Array.isArray(ast.expr) ? ast.expr : []) {
    const left = obj(obj(e)?.left);
    const members = Array.isArray(left?.members) ? left.members.map(String) : [];
    const name = String(members[members.length - 1] ?? left?.name ?? '?').toLowerCase();
    vars.push(`${left?.prefix ?? ''}${name}`);
    const value = String(obj(obj(e)?.right)?.value ?? '').toLowerCase();
    if ((name === 'transaction_read_only' || name === 'tx_read_only') && ['0', 'off', 'false'].includes(value)) readWrite = true;
  }
  const plain = vars.map((v) => v.replace(/^@+/, ''));
  return {
    variable: vars.join(', '),
    local: false,
    role: plain.includes('role'),
    sessionAuthorization: false,
    transactionReadWrite: readWrite,
    searchPath: false,
  };
}

/**
 * Classifies a MySQL / MariaDB text. Never throws for bad input: the facts carry an error instead.
 *
 * `database` is the default database of the connection the text will run on (the target's):
 * given, every table and stored routine in the facts is named `db.name`, as policies name them;
 * null (not known), a text naming any table or stored routine without its database is refused
 * (WRIT_SQL_UNKNOWN), and so is USE, which would move unqualified names; omitted, names stay
 * as written (for the worker, which places them in its own database).
 */
export function classifyMysql(text: string, database?: string | null): SqlFacts {
  const pieces = split(text);
  if (!Array.isArray(pieces)) return pieces;
  const names = new Names(database);
  const statements: SqlStatementFacts[] = [];
  for (const [i, piece] of pieces.entries()) {
    let result: { tableList?: unknown; columnList?: unknown; ast?: unknown };
    try {
      result = mysqlParser().parse(piece, { database: 'MySQL' });
    } catch (e) {
      if (e instanceof WritError) throw e; // not initialised
      const msg = e instanceof Error ? e.message : String(e);
      return failed('WRIT_SQL_UNPARSEABLE', `statement ${i + 1}: ${safeMessage(msg.replace(/^Expected .* but /, 'unexpected input: '))}`);
    }
    if (Array.isArray(result.ast) && result.ast.length !== 1) return failed('WRIT_SQL_UNPARSEABLE', `statement ${i + 1} holds ${result.ast.length} statements`);
    const misread = misreadKeyword(piece, result.ast);
    if (misread !== undefined) {
      return failed(
        'WRIT_SQL_UNPARSEABLE',
        `statement ${i + 1}: the parser read the keyword ${misread.toUpperCase()} as a name, where the server reads it as a keyword or operator; quote a name with backticks (\`${misread}\`)`,
      );
    }
    try {
      statements.push(statementFacts(piece, result, names));
    } catch {
      // An AST shape the fact builder did not expect: refuse rather than throw or guess.
      return failed('WRIT_SQL_UNKNOWN', `statement ${i + 1}: the classifier failed on it`);
    }
  }
  const facts: SqlFacts = { dialect: 'mysql', statements, ...(typeof database === 'string' ? { database: database.toLowerCase() } : {}) };
  const unknown = statements.findIndex((s) => s.kind === 'unknown');
  const use = database !== undefined ? statements.findIndex((s) => s.kind === 'use') : -1;
  const shown = (set: Set<string>) =>
    [...set]
      .slice(0, 3)
      .map((n) => safeMessage(n))
      .join(', ');
  if (unknown >= 0) facts.error = { code: 'WRIT_SQL_UNKNOWN', message: `statement ${unknown + 1} could not be classified` };
  else if (names.dotted.size > 0) {
    facts.error = { code: 'WRIT_SQL_UNKNOWN', message: `a table name holds a dot (${shown(names.dotted)}), which reads like database.table` };
  } else if (use >= 0) {
    facts.error = { code: 'WRIT_SQL_UNKNOWN', message: `statement ${use + 1}: USE would change the database unqualified names refer to; qualify names instead` };
  } else if (names.unqualified.size > 0) {
    facts.error = {
      code: 'WRIT_SQL_UNKNOWN',
      message: `${shown(names.unqualified)}: named without a database, and the target's default database is not known (set targets[].database); qualify names as database.table`,
    };
  }
  return facts;
}

/** The statement texts of a MySQL batch. Throws WritError WRIT_SQL_EMPTY / WRIT_SQL_UNPARSEABLE. */
export function splitMysql(text: string): string[] {
  const pieces = split(text);
  if (Array.isArray(pieces)) return pieces;
  throw new WritError(pieces.error?.code ?? 'WRIT_SQL_UNPARSEABLE', pieces.error?.message);
}
