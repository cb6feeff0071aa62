/**
 * Facts the classifiers extract from a command. The policy matches rules on
 * these facts, never on the raw text, so every field says what it covers and
 * where it is conservative (reports more than strictly true) or blind.
 */

/** Every statement kind the SQL classifiers report. `unknown` is only for a node the mapping does not know. */
export const SQL_KINDS = [
  'select',
  'values',
  'insert',
  'update',
  'delete',
  'merge',
  'create',
  'alter',
  'drop',
  'truncate',
  'grant',
  'revoke',
  'comment',
  'security_label',
  'import',
  'reassign',
  'copy',
  'do',
  'call',
  'prepare',
  'execute',
  'deallocate',
  'set',
  'reset',
  'show',
  'transaction',
  'explain',
  'vacuum',
  'analyze',
  'cluster',
  'reindex',
  'refresh',
  'checkpoint',
  'lock',
  'unlock',
  'listen',
  'notify',
  'unlisten',
  'discard',
  'declare',
  'fetch',
  'move',
  'close',
  'load',
  'use',
  'unknown',
] as const;

/** A statement kind (see SQL_KINDS). */
export type SqlKind = (typeof SQL_KINDS)[number];

/** The SQL dialect a fact set was produced for. */
type SqlDialect = 'postgres' | 'mysql';

/** Error codes the SQL classifiers set; all are in schemas/errors.ts. */
export type SqlErrorCode = 'WRIT_SQL_EMPTY' | 'WRIT_SQL_UNPARSEABLE' | 'WRIT_SQL_UNKNOWN';

/** Error codes the shell classifier sets; all are in schemas/errors.ts. */
export type ShellErrorCode = 'WRIT_SHELL_EMPTY' | 'WRIT_SHELL_UNPARSEABLE' | 'WRIT_SHELL_UNKNOWN';

/** Why a text was not (fully) classified. Its presence means the policy must fail closed. */
interface ClassifyError<C extends string> {
  /** Stable code from the catalogue. */
  code: C;
  /** Safe message: control characters removed, parser excerpts capped, never the whole text. */
  message: string;
}

/** A column reference, resolved to the base table where the classifier can see it. */
export interface ColumnFact {
  /** Schema-qualified table, or null when the reference is ambiguous or leads to no visible table. */
  table: string | null;
  /** Column name as PostgreSQL folds it; `*` for a star or a whole-row reference. */
  column: string;
}

/** What a COPY statement does. */
export interface CopyFacts {
  /** `from` loads into a table (a write), `to` unloads. */
  direction: 'to' | 'from';
  /** COPY ... PROGRAM: runs a shell command on the database server. */
  program: boolean;
  /** COPY to/from a file on the database server. */
  file: boolean;
  /** COPY to/from the client connection (STDIN/STDOUT). */
  stdio: boolean;
  /** COPY (query) TO ...: the query's facts are merged into the statement. */
  query: boolean;
}

/** What a SET / RESET (or SET CONSTRAINTS) statement changes. */
export interface SetFacts {
  /** Lower-case variable: `role`, `session_authorization`, `search_path`, `transaction`, `session characteristics`, `constraints`, `all` (RESET ALL), ... */
  variable: string;
  /** SET LOCAL (only until the end of the transaction). */
  local: boolean;
  /** SET ROLE / RESET ROLE: changes the privileges the session runs with. */
  role: boolean;
  /** SET SESSION AUTHORIZATION / RESET SESSION AUTHORIZATION. */
  sessionAuthorization: boolean;
  /** Asks for a read-write transaction (SET TRANSACTION READ WRITE, SET [default_]transaction_read_only = off, ...). */
  transactionReadWrite: boolean;
  /** Changes search_path, which decides what unqualified names resolve to. */
  searchPath: boolean;
}

/** Facts of one SQL statement. */
export interface SqlStatementFacts {
  /** Statement kind. */
  kind: SqlKind;
  /** For create/alter/drop/comment/grant/...: the object type (`table`, `index`, `view`, `function`, `role`, `schema`, ...). */
  objectType?: string;
  /** Names of the objects a DDL/DCL statement acts on (relations schema-qualified as in tablesRead; others as written). Not filled for MySQL. */
  objectNames: string[];
  /** ALTER TABLE sub-commands, lower-case without the AT_ prefix (`disablerowsecurity`, `dropcolumn`, ...). */
  alterActions?: string[];
  /** This statement's own text, cut at the parser's statement boundary, whitespace trimmed (comments between statements stay). */
  text: string;
  /**
   * Tables (and views) read, schema-qualified, as PostgreSQL folds identifiers (unquoted names lower-case,
   * quoted names as written). An unqualified name is assumed to be in `public`, except `pg_*` names, which
   * are assumed to be in `pg_catalog` (searched first by default). CTE names are not tables. Resolved through
   * subqueries, joins, set operations, LATERAL, and the target of a DML statement with RETURNING.
   * MySQL: `db.table`, lower-cased; an unqualified name is placed in the target's default database (classifyMysql).
   */
  tablesRead: string[];
  /**
   * Relations whose data, definition, privileges or storage the statement changes or locks: DML targets,
   * SELECT INTO / CREATE TABLE AS targets, COPY FROM targets, and the relations of CREATE/ALTER/DROP/TRUNCATE/
   * GRANT/LOCK/VACUUM/CLUSTER/REINDEX/REFRESH. Same naming as tablesRead.
   */
  tablesWritten: string[];
  /** Columns read; the table is resolved through aliases, derived tables and CTEs; null when ambiguous. */
  columns: ColumnFact[];
  /** Columns written: INSERT column lists, UPDATE SET targets, MERGE actions. */
  columnsWritten: ColumnFact[];
  /**
   * PostgreSQL DML with RETURNING: the columns and whole-row tables among `columns` and
   * `wholeRowTables` that only a RETURNING list reads (at any DML of the statement, a CTE's
   * included). Such a read hands rows back and stores nothing, so the worker's masked-copy check
   * leaves it out for a statement with no modifying CTE. Absent when there are none.
   */
  returningOnly?: { columns: ColumnFact[]; wholeRowTables: string[] };
  /**
   * MySQL only: every name the statement gives a row source (a table or view with or without an
   * alias, a derived table, a CTE), lower-cased, with the base table (`db.table` or `table`) it
   * stands for, null for a derived table or CTE. MySQL/MariaDB report such a name as a result
   * field's table, so the worker trusts a field's origin only when its name stands for that table.
   */
  relations?: Array<{ name: string; table: string | null }>;
  /** Tables read as a whole row or with a star (`SELECT c FROM customers c`, `row_to_json(c)`, `c.*`, `*`). */
  wholeRowTables: string[];
  /**
   * Columns read in a position whose value is not handed back as a result field, so the worker cannot
   * mask it there: WHERE, JOIN ON/USING, GROUP BY, HAVING, ORDER BY, DISTINCT ON, LIMIT/OFFSET, window
   * PARTITION BY/ORDER BY, arguments of FROM-clause functions, set-returning functions in a select list,
   * UPDATE/DELETE/MERGE filters, and everything nested in any of those (subqueries included). Such a read
   * is an oracle (`WHERE email LIKE 'a%'` says whether the masked value starts with `a` through the rows
   * that come back). Resolved like `columns` (aliases, derived tables, CTEs). A column the classifier
   * cannot place is counted here. Optional so that a classifier that does not fill it is refused by the
   * worker's masked-filter check (absent = unknown = refused when the grant masks anything).
   */
  filterColumns?: ColumnFact[];
  /** Tables read as a whole row in such a position (`WHERE c::text LIKE '%a%'`, `ORDER BY c`). Same rules as filterColumns. */
  filterWholeRowTables?: string[];
  /** Functions called in such a position (`WHERE email_of(id) LIKE 'a%'`). */
  filterFunctions?: string[];
  /**
   * MySQL: a user variable (`@x`) stands in such a position. A variable holds what a statement
   * of the same batch put there (connections are reset between intents), so the worker counts
   * what the batch's statements up to this one read as filter reads too.
   */
  filterVariables?: boolean;
  /**
   * What the statement hands back or stores depends on the order in which rows reach it, beyond
   * the set of rows: a LIMIT/OFFSET, an ORDER BY (its ties), a window, an order-sensitive aggregate
   * (GROUP_CONCAT, JSON_ARRAYAGG, string_agg, array_agg), DISTINCT ON, ROWNUM(), a user-variable
   * assignment, or SELECT … INTO.
   */
  orderDependent?: boolean;
  /** Every function called, as folded by the parser (lower-case unless quoted), schema-qualified only if written so. */
  functions: string[];
  /** The side-effecting or dangerous ones among `functions` (see DANGEROUS_FUNCTIONS in sql-functions.ts). */
  dangerousFunctions: string[];
  /**
   * Functions among `functions` that the classifier does not positively know to be free of side effects and
   * to read no relations (user-defined functions, anything missing from the generated catalogue, attribute
   * notation that may be a call). No grant covers them unless a rule's `functions` names them. Always set by
   * the classifiers.
   */
  unknownFunctions?: string[];
  /**
   * The statement calls a function that runs SQL text or reads a relation named by a value (`query_to_xml`,
   * `table_to_xml`, `ts_stat`, …): where its output comes from cannot be known, so the worker redacts every
   * computed field unless the grant's masking trusts them. Always set by the classifiers.
   */
  opaqueReads?: boolean;
  /** UPDATE/DELETE only: the statement has a WHERE clause (WHERE CURRENT OF counts). */
  hasWhere?: boolean;
  /** UPDATE/DELETE only: the WHERE clause is true for every row (`true`, `1=1`, `'a'='a'`, `x=x`, `... OR true`, ...). */
  whereTriviallyTrue?: boolean;
  /** A WITH clause (at any depth) holds INSERT/UPDATE/DELETE/MERGE. */
  modifyingCte: boolean;
  /** SELECT ... INTO new_table (creates and fills a table). */
  selectInto: boolean;
  /** FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE (MySQL: LOCK IN SHARE MODE) anywhere. */
  rowLocks: boolean;
  /** COPY details. */
  copy?: CopyFacts;
  /**
   * EXPLAIN: the inner statement's facts (its `text` is the whole EXPLAIN's). Its tables, columns and functions are
   * merged into this statement; its writes, locks and CTE flags only with ANALYZE, which runs it.
   */
  explain?: { analyze: boolean; inner: SqlStatementFacts };
  /** PREPARE name AS stmt: the prepared statement's facts (merged into this one). */
  prepare?: { name: string; inner: SqlStatementFacts };
  /** EXECUTE name: the facts of the PREPARE of the same batch, when there is one; otherwise the statement is blind. */
  execute?: { name: string; inner?: SqlStatementFacts };
  /** SET / RESET facts. */
  set?: SetFacts;
  /** Transaction control: begin, start, commit, rollback, savepoint, release, rollback_to, prepare, commit_prepared, rollback_prepared. */
  transaction?: string;
  /** The statement asks for a read-write transaction (SET ... READ WRITE, BEGIN READ WRITE, transaction_read_only = off, ...). */
  requestsReadWrite: boolean;
  /**
   * True only when nothing the statement text shows can write or have a side effect: no DML/DDL, no modifying CTE,
   * no SELECT INTO, no row locks, no dangerous function, no session or transaction change. Functions the classifier
   * does not know (user-defined ones) are assumed not to write: the worker's READ ONLY transaction is the backstop.
   */
  readOnly: boolean;
}

/** Facts of a SQL text (a batch of statements). */
export interface SqlFacts {
  /** Dialect the text was parsed as. */
  dialect: SqlDialect;
  /** The statements, in order. Empty when the text is empty or did not parse. */
  statements: SqlStatementFacts[];
  /** Set when the text is empty, did not parse, or holds a statement of kind `unknown`. */
  error?: ClassifyError<SqlErrorCode>;
  /** MySQL: the default database unqualified names were placed in (lower case), when one was given. */
  database?: string;
}

/**
 * Marks an expansion inside a shell word: each `$x`, `${..}`, `$(..)`, backticks, `$((..))`, `<(..)` and
 * unquoted brace expansion is kept as its source text between two EXPANSION_MARK characters. NUL cannot
 * occur in a real argument, so a marked argument can never equal a literal one.
 */
export const EXPANSION_MARK = '\u0000';

/** One simple command found anywhere in the shell tree. */
export interface ShellCommand {
  /** Program after quote removal and unwrapping (as written: `rm` and `/bin/rm` differ); null when built from an expansion. */
  program: string | null;
  /** Arguments after quote removal; an argument holding an expansion carries EXPANSION_MARK (see there). Unquoted globs are kept as written. */
  args: string[];
  /** `VAR=x` prefixes, including those given to `env` and `sudo`. */
  env: Record<string, string>;
  /** Wrappers that were unwrapped to reach the program, outermost first (`['sudo', 'env']`). */
  wrappers: string[];
  /** The command runs code the classifier cannot see: `eval "$x"`, `sh -c "$VAR"`, `source file`, `curl .. | sh`. */
  opaque: boolean;
  /** The program name comes from an expansion (`$X`, `$(..)`, globs, brace expansion). */
  unknown: boolean;
  /**
   * Indexes into `args` of arguments holding an unquoted glob (`*`, `?`, `[…]`, extglob): the shell may expand
   * them to other paths (`.?` to `..` in dash), so they are uncertain for path patterns. Always set by classifyShell.
   */
  globArgs?: number[];
  /** How the command is reached when not directly: `sh -c`, `bash -c`, `eval`, `find -exec`, `xargs`, `env -S`, `watch`, `su -c`, `sh stdin`. */
  via?: string;
  /** Source text of the simple command the program was found in. */
  source: string;
}

/** One redirection. */
export interface ShellRedirection {
  /** The operator as written: `>`, `>>`, `&>`, `&>>`, `>|`, `<`, `>&`, `<&`, `<<`, `<<-`, `<<<`, ... */
  op: string;
  /** Target after quote removal (a file, a fd number, the here-doc delimiter, or the here-string). */
  target: string;
  /** The redirection writes its target (a file; not a fd duplication). */
  writes: boolean;
  /** The redirection reads its target as a file. */
  reads: boolean;
  /** Explicit file descriptor (`2>`). */
  fd?: number;
  /** The target holds an unquoted glob (uncertain as a path). */
  glob?: boolean;
}

/** Facts of a shell command line. */
export interface ShellFacts {
  /** Every simple command in the tree, in source order (inner ones of substitutions and `sh -c` included). */
  commands: ShellCommand[];
  /** Every redirection, in source order. */
  redirections: ShellRedirection[];
  /** Files written by redirections. */
  filesWritten: string[];
  /** Files read by redirections. */
  filesRead: string[];
  /** `/dev/tcp/...` and `/dev/udp/...` redirection targets (bash opens a network connection). Always set by classifyShell. */
  network?: string[];
  /** Names assigned outside a command prefix (`X=1`, `export X=1`, `declare`, `local`, `readonly`). Always set by classifyShell. */
  assignments?: string[];
  /** Constructs seen: pipeline, list, subshell, group, command_substitution, backticks, process_substitution, background, heredoc, herestring, function_definition, if, for, select, while, until, case, test, arithmetic, negation. */
  structure: string[];
  /** Set when the text is empty, did not parse, or holds an unknown or opaque command. */
  error?: ClassifyError<ShellErrorCode>;
}
