/**
 * A view of classifier facts shaped for rule matching, derived once per facts object
 * (cached by identity, so cached facts cost nothing to view again): effective kinds of
 * each statement, normalised function names, the index keys of the intent.
 */
import { EXPANSION_MARK, type ColumnFact, type ShellCommand, type ShellFacts, type SqlFacts, type SqlKind, type SqlStatementFacts } from '../../classify/index.ts';
import type { CommandFacts } from '../policy.ts';
import { hasGlobChars, type Arg } from './args.ts';

/** One statement with what the rules look at. */
export interface StatementView {
  /** 1-based position, for reasons. */
  readonly n: number;
  readonly s: SqlStatementFacts;
  /**
   * The statement's kind plus the kinds of what it runs: EXPLAIN ANALYZE runs its statement,
   * PREPARE and EXECUTE carry theirs. So `EXPLAIN ANALYZE DELETE` is both `explain` and `delete`.
   */
  readonly kinds: readonly SqlKind[];
  /** Called functions without a `pg_catalog.` prefix (where PostgreSQL finds them anyway). */
  readonly functions: readonly string[];
  /** Tables read and written. */
  readonly tables: readonly string[];
  /** Columns read and written. */
  readonly columns: readonly ColumnFact[];
  readonly whereless: boolean;
  readonly trivialWhere: boolean;
  /** MySQL facts: table and column names are folded to lower case, so patterns are matched folded too. */
  readonly folded: boolean;
  /** MySQL facts: the default database, where a pattern's unqualified table name is placed too. */
  readonly home: string | undefined;
}

export interface SqlView {
  readonly kind: 'sql';
  readonly facts: SqlFacts;
  readonly units: readonly StatementView[];
  /** Index keys: `sql:<kind>` for every effective kind. */
  readonly keys: readonly string[];
  /** Index keys: `tbl:<schema>` for the schema of every table read or written. */
  readonly tableKeys: readonly string[];
  readonly readOnly: boolean;
}

/** One simple command with what the rules look at. */
export interface CommandView {
  readonly n: number;
  readonly c: ShellCommand;
  /** Program as written; null when built from an expansion. */
  readonly program: string | null;
  /** Last path segment of the program (`/usr/bin/rm` → `rm`). */
  readonly base: string | null;
  /**
   * Variables set for the command: its `VAR=x` prefixes plus every name the command line
   * assigns elsewhere (`PATH=/tmp/x; uptime`, `export`, `declare -x`), since those reach it too.
   */
  readonly envNames: readonly string[];
  /** The arguments, each with whether it holds an unquoted glob. */
  readonly args: readonly Arg[];
}

export interface ShellView {
  readonly kind: 'shell';
  readonly facts: ShellFacts;
  readonly units: readonly CommandView[];
  /** Index keys: `sh:<program>` and `sh:<basename>`. */
  readonly keys: readonly string[];
  readonly tableKeys: readonly string[];
  readonly readOnly: false;
  /** Redirection targets that hold an unquoted glob: uncertain as paths. */
  readonly globFiles: ReadonlySet<string>;
}

export type FactsView = SqlView | ShellView;

const cache = new WeakMap<object, FactsView>();

/** The view of one facts object; memoised by identity. */
export function viewOf(f: CommandFacts): FactsView {
  const hit = cache.get(f.facts);
  if (hit) return hit;
  const v = f.kind === 'sql' ? sqlView(f.facts) : shellView(f.facts);
  cache.set(f.facts, v);
  return v;
}

function innerKinds(s: SqlStatementFacts, out: Set<SqlKind>, depth = 0): void {
  out.add(s.kind);
  if (depth > 8) return;
  if (s.explain?.analyze) innerKinds(s.explain.inner, out, depth + 1);
  if (s.prepare) innerKinds(s.prepare.inner, out, depth + 1);
  if (s.execute?.inner) innerKinds(s.execute.inner, out, depth + 1);
}

function whereless(s: SqlStatementFacts, depth = 0): boolean {
  if (s.hasWhere === false) return true;
  if (depth > 8) return false;
  const inner = (s.explain?.analyze ? s.explain.inner : undefined) ?? s.prepare?.inner ?? s.execute?.inner;
  return inner ? whereless(inner, depth + 1) : false;
}

function trivialWhere(s: SqlStatementFacts, depth = 0): boolean {
  if (s.whereTriviallyTrue === true) return true;
  if (depth > 8) return false;
  const inner = (s.explain?.analyze ? s.explain.inner : undefined) ?? s.prepare?.inner ?? s.execute?.inner;
  return inner ? trivialWhere(inner, depth + 1) : false;
}

function stripCatalog(name: string): string {
  return name.startsWith('pg_catalog.') ? name.slice('pg_catalog.'.length) : name;
}

function sqlView(facts: SqlFacts): SqlView {
  const keys = new Set<string>();
  const tableKeys = new Set<string>();
  const units = facts.statements.map((s, i): StatementView => {
    const kinds = new Set<SqlKind>();
    innerKinds(s, kinds);
    for (const k of kinds) keys.add(`sql:${k}`);
    for (const t of [...s.tablesRead, ...s.tablesWritten]) {
      const dot = t.indexOf('.');
      if (dot > 0) tableKeys.add(`tbl:${t.slice(0, dot)}`);
    }
    return {
      n: i + 1,
      s,
      kinds: [...kinds],
      functions: s.functions.map(stripCatalog),
      tables: s.tablesWritten.length === 0 ? s.tablesRead : [...new Set([...s.tablesRead, ...s.tablesWritten])],
      columns: s.columnsWritten.length === 0 ? s.columns : [...s.columns, ...s.columnsWritten],
      whereless: whereless(s),
      trivialWhere: trivialWhere(s),
      folded: facts.dialect === 'mysql',
      home: facts.database,
    };
  });
  const readOnly = !facts.error && units.length > 0 && units.every((u) => u.s.readOnly);
  return { kind: 'sql', facts, units, keys: [...keys], tableKeys: [...tableKeys], readOnly };
}

function shellView(facts: ShellFacts): ShellView {
  const keys = new Set<string>();
  const assigned = facts.assignments ?? [];
  const units = facts.commands.map((c, i): CommandView => {
    const program = c.unknown ? null : c.program;
    const base = program === null ? null : program.slice(program.lastIndexOf('/') + 1);
    if (program !== null) keys.add(`sh:${program}`);
    if (base !== null) keys.add(`sh:${base}`);
    // A denial's programs match wrappers too (compile.ts): they are keys of the command as well.
    for (const w of c.wrappers) keys.add(`sh:${w}`);
    const own = Object.keys(c.env);
    const envNames = assigned.length === 0 ? own : [...new Set([...own, ...assigned])];
    // Facts from before the classifier marked globs: any glob character counts as an unquoted glob.
    const globArgs = c.globArgs ? new Set(c.globArgs) : null;
    const args = c.args.map((text, j): Arg => ({ text, glob: globArgs ? globArgs.has(j) : hasGlobChars(text) }));
    return { n: i + 1, c, program, base, envNames, args };
  });
  // A target counts as a glob unless the classifier says it is not one (a quoted `'*'` costs only precision).
  const globFiles = new Set(facts.redirections.filter((r) => r.glob === true || (r.glob !== false && hasGlobChars(r.target))).map((r) => r.target));
  return { kind: 'shell', facts, units, keys: [...keys], tableKeys: [], readOnly: false, globFiles };
}

/** True when an argument holds an expansion whose value the classifier cannot know. */
export function isExpanded(arg: string): boolean {
  return arg.includes(EXPANSION_MARK);
}

/** A statement or command, shortened for a reason string. */
export function describeUnit(u: StatementView | CommandView): string {
  if ('s' in u) {
    const text = clean(u.s.text);
    return `statement ${u.n} (${u.kinds.join('+')}: ${text.length > 60 ? `${text.slice(0, 57)}...` : text})`;
  }
  const src = clean(u.c.source);
  return `command ${u.n} (${src.length > 60 ? `${src.slice(0, 57)}...` : src})`;
}

function clean(s: string): string {
  return s.replace(/[\s\u0000-\u001f\u007f]+/g, ' ').trim();
}
