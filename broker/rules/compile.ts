/**
 * Compiles one rule into checks over the principal, the target, the time and the facts
 * view, plus the literal keys the engine indexes it by. Grants (scope `all`) get safe
 * defaults for what a rule author rarely means to allow by leaving a key out.
 */
import type { Principal, TargetConfig } from '../../schemas/index.ts';
import type { ShellFacts, SqlStatementFacts } from '../../classify/index.ts';
import { argsCheck, argvCheck } from './args.ts';
import { boolCheck, columnMatcher, functionMatcher, globMatcher, listCheck, pathMatcher, programMatcher, type Check, type Scope } from './checks.ts';
import { GlobSet, isGlob } from './glob.ts';
import type { FlagValue, PolicyRule, ShellMatch, SqlMatch } from './schema.ts';
import { compileWindow, type CompiledWindow } from './time.ts';
import type { CommandView, ShellView, SqlView, StatementView } from './view.ts';

/** Wrappers that change the user a command runs as: a grant must name them to cover them. */
export const PRIVILEGE_WRAPPERS = ['sudo', 'su', 'doas', 'pkexec', 'runuser', 'setpriv', 'chroot', 'nsenter'] as const;
/** Environment prefixes a grant covers when it names none: locale and terminal only (no PAGER, LD_*, PATH…). */
export const SAFE_ENV = ['LANG', 'LANGUAGE', 'LC_*', 'TZ', 'TERM', 'COLUMNS', 'LINES', 'NO_COLOR'] as const;
/** Files a grant lets redirections write when it names none. */
export const SAFE_WRITES = ['/dev/null'] as const;

/** Checks of one command section: on the whole intent, then on each statement or command. */
interface Section<V, U> {
  readonly batch: readonly Check<V>[];
  readonly unit: readonly Check<U>[];
}

/** Literal keys a rule can be found by; null in a dimension where it has none. */
export interface IndexKeys {
  readonly target: readonly string[] | null;
  readonly sub: readonly string[] | null;
  readonly group: readonly string[] | null;
  readonly unit: readonly string[] | null;
  /** Schemas of the tables a denial needs one statement to touch (`tbl:<schema>`). */
  readonly table: readonly string[] | null;
}

export interface CompiledRule {
  readonly rule: PolicyRule;
  /** Position in the document: the earliest matching grant decides. */
  readonly order: number;
  readonly scope: Scope;
  readonly principal: readonly Check<Principal>[];
  readonly target: readonly Check<TargetConfig>[];
  readonly window: CompiledWindow | undefined;
  /** Whether the rule can match a SQL resp. shell intent (a rule naming neither section matches both). */
  readonly forSql: boolean;
  readonly forShell: boolean;
  /** Checks on SQL facts; undefined when the rule puts no condition on them. */
  readonly sql: Section<SqlView, StatementView> | undefined;
  readonly shell: Section<ShellView, CommandView> | undefined;
  readonly keys: IndexKeys;
}

const fmt = (v: readonly unknown[]) => `[${v.join(', ')}]`;

function principalChecks(m: PolicyRule['match']['principal']): Check<Principal>[] {
  const out: Check<Principal>[] = [];
  if (!m) return out;
  if (m.sub) {
    const s = new GlobSet(m.sub);
    out.push({ label: `principal.sub ${fmt(m.sub)}`, test: (p) => s.test(p.sub) });
  }
  if (m.groups) {
    const s = new GlobSet(m.groups);
    out.push({
      label: `principal.groups ${fmt(m.groups)}`,
      test(p) {
        for (const g of p.groups) if (s.test(g)) return true;
        return false;
      },
    });
  }
  if (m.issuer) {
    const s = new GlobSet(m.issuer);
    out.push({ label: `principal.issuer ${fmt(m.issuer)}`, test: (p) => s.test(p.iss) });
  }
  return out;
}

function targetChecks(m: PolicyRule['match']['target']): Check<TargetConfig>[] {
  const out: Check<TargetConfig>[] = [];
  if (!m) return out;
  if (m.name) {
    const s = new GlobSet(m.name);
    out.push({ label: `target.name ${fmt(m.name)}`, test: (t) => s.test(t.name) });
  }
  if (m.kind) {
    const kinds: readonly string[] = m.kind;
    out.push({ label: `target.kind ${fmt(m.kind)}`, test: (t) => kinds.includes(t.kind) });
  }
  if (m.tags) {
    const sets = m.tags.map((p) => new GlobSet([p]));
    out.push({
      label: `target.tags ${fmt(m.tags)}`,
      test(t) {
        outer: for (const s of sets) {
          for (const tag of t.tags) if (s.test(tag)) continue outer;
          return false;
        }
        return true;
      },
    });
  }
  return out;
}

/** `pg_catalog.f` and `f` are the same function (PostgreSQL searches pg_catalog first). */
const stripCatalog = (n: string) => (n.startsWith('pg_catalog.') ? n.slice('pg_catalog.'.length) : n);

const opt = <T>(v: T | undefined): readonly T[] => (v === undefined ? [] : [v]);

/**
 * Patterns as they apply to MySQL facts (classify/sql-mysql.ts), which name every table
 * `db.table` in lower case: the patterns are folded too, so a rule on `shop.Customers` sees
 * every spelling of it, and a table written without its database (`customers`, or
 * `customers.ssn` for a column, `p` for a stored routine) also names it in the target's default
 * database, as the SQL does. Only added to, never narrowed: `*` still matches every table.
 */
function forMysql(patterns: readonly string[], home: string | undefined, column: boolean): string[] {
  const out = new Set<string>();
  for (const p of patterns) {
    const lower = p.toLowerCase();
    out.add(lower);
    const dots = lower.split('.').length - 1;
    if (home !== undefined && !lower.startsWith('!') && dots === (column ? 1 : 0)) out.add(`${home}.${lower}`);
  }
  return [...out];
}

/** A table or column check whose patterns follow forMysql on a MySQL statement, compiled once per default database. */
function folding(patterns: readonly string[], column: boolean, make: (p: readonly string[]) => Check<StatementView>): Check<StatementView> {
  const exact = make(patterns);
  const byHome = new Map<string, Check<StatementView>>();
  return {
    label: exact.label,
    test(u) {
      if (!u.folded) return exact.test(u);
      const key = u.home ?? '';
      let c = byHome.get(key);
      if (!c) {
        c = make(forMysql(patterns, u.home, column));
        // One entry per MySQL target database; bounded in case facts come from anywhere.
        if (byHome.size < 1000) byHome.set(key, c);
      }
      return c.test(u);
    },
  };
}

function sqlSection(m: SqlMatch, scope: Scope, readMode: boolean, safeDefaults = true): Section<SqlView, StatementView> {
  const batch: Check<SqlView>[] = [];
  const unit: Check<StatementView>[] = [];
  const L = (k: string, v: unknown) => `sql.${k} ${Array.isArray(v) ? fmt(v) : String(v)}`;
  if (m.minStatements !== undefined) {
    const n = m.minStatements;
    batch.push({ label: L('minStatements', n), test: (v) => v.units.length >= n });
  }
  if (m.maxStatements !== undefined) {
    const n = m.maxStatements;
    batch.push({ label: L('maxStatements', n), test: (v) => v.units.length <= n });
  }
  if (m.dialect) {
    const d = m.dialect;
    batch.push({ label: L('dialect', d), test: (v) => v.facts.dialect === d });
  }

  const kindSet = (ks: readonly string[]) => new GlobSet(ks);
  if (m.kinds) unit.push(listCheck(L('kinds', m.kinds), (u) => u.kinds, globMatcher(kindSet(m.kinds)), scope));
  if (m.notKinds) unit.push(listCheck(L('notKinds', m.notKinds), (u) => u.kinds, globMatcher(kindSet(m.notKinds)), scope, true));
  if (m.objectTypes) unit.push(listCheck(L('objectTypes', m.objectTypes), (u) => opt(u.s.objectType), globMatcher(new GlobSet(m.objectTypes)), scope));
  if (m.tablesRead) unit.push(folding(m.tablesRead, false, (p) => listCheck(L('tablesRead', m.tablesRead), (u) => u.s.tablesRead, globMatcher(new GlobSet(p)), scope)));
  if (m.tablesWritten) unit.push(folding(m.tablesWritten, false, (p) => listCheck(L('tablesWritten', m.tablesWritten), (u) => u.s.tablesWritten, globMatcher(new GlobSet(p)), scope)));
  if (m.tables) unit.push(folding(m.tables, false, (p) => listCheck(L('tables', m.tables), (u) => u.tables, globMatcher(new GlobSet(p)), scope)));
  if (m.columns) unit.push(folding(m.columns, true, (p) => listCheck(L('columns', m.columns), (u) => u.columns, columnMatcher(p), scope)));
  // The view strips `pg_catalog.` from calls, so patterns drop it too (`pg_catalog.pg_sleep` must still deny `pg_sleep`).
  // MySQL places an unknown unqualified call (`CALL p()`) in the default database like a table: so do its patterns.
  if (m.functions) unit.push(folding(m.functions, false, (p) => listCheck(L('functions', m.functions), (u) => u.functions, functionMatcher(new GlobSet(p.map(stripCatalog))), scope)));
  if (m.denyFunctions)
    unit.push(folding(m.denyFunctions, false, (p) => listCheck(L('denyFunctions', m.denyFunctions), (u) => u.functions, functionMatcher(new GlobSet(p.map(stripCatalog))), scope, true)));
  if (m.setVariables) unit.push(listCheck(L('setVariables', m.setVariables), (u) => opt(u.s.set?.variable), globMatcher(new GlobSet(m.setVariables)), scope));
  if (m.copy) {
    const c = m.copy;
    const flag = (want: FlagValue | undefined, v: boolean) => want === undefined || want === 'any' || want === v;
    const ok = (s: SqlStatementFacts) => !s.copy || ((c.direction === undefined || s.copy.direction === c.direction) && flag(c.program, s.copy.program) && flag(c.file, s.copy.file));
    unit.push(scope === 'all' ? { label: `sql.copy ${JSON.stringify(c)}`, test: (u) => ok(u.s) } : { label: `sql.copy ${JSON.stringify(c)}`, test: (u) => u.s.copy !== undefined && ok(u.s) });
  }
  const grant = scope === 'all' && safeDefaults;
  // `any` puts no condition, and lifts the default a grant would otherwise get.
  const bool = (key: keyof SqlMatch, get: (u: StatementView) => boolean, safeDefault?: boolean) => {
    const v = m[key] as FlagValue | undefined;
    if (v === 'any') return;
    if (v !== undefined) unit.push(boolCheck(L(key, v), get, v));
    else if (grant && safeDefault !== undefined) unit.push(boolCheck(`sql.${key} ${safeDefault} (default for grants)`, get, safeDefault));
  };
  // An allow-list of functions names the dangerous ones it allows, so it replaces the default.
  bool('dangerousFunctions', (u) => u.s.dangerousFunctions.length > 0, m.functions ? undefined : false);
  bool('modifyingCte', (u) => u.s.modifyingCte, false);
  bool('selectInto', (u) => u.s.selectInto, false);
  bool('whereless', (u) => u.whereless);
  bool('trivialWhere', (u) => u.trivialWhere);
  bool('rowLocks', (u) => u.s.rowLocks);
  bool('readOnly', (u) => u.s.readOnly);
  bool('requestsReadWrite', (u) => u.s.requestsReadWrite);
  if (readMode) unit.push(boolCheck('mode read (covers read-only statements only)', (u) => u.s.readOnly, true));
  if (scope === 'all') unit.push(folding(m.functions ?? [], false, (p) => namedFunctionsCheck(p)));
  return { batch, unit };
}

/**
 * A grant covers a function the classifier does not know to be safe (user-defined, missing
 * from the catalogue, possibly attribute notation) or knows to be dangerous only when its
 * `functions` list names it exactly, as it is called (`pg_catalog.` aside). A glob does
 * not name: `*` or `pg_*` written for ordinary functions would otherwise admit every
 * unknown one too, including functions created after the policy was written.
 */
function namedFunctionsCheck(patterns: readonly string[] | undefined): Check<StatementView> {
  const named = new Set((patterns ?? []).filter((p) => !isGlob(p)).map(stripCatalog));
  return {
    label: `sql: every unknown or dangerous function named in sql.functions${named.size ? ` ${fmt([...named])}` : ' (none named)'} (grants)`,
    test(u) {
      for (const f of u.s.unknownFunctions ?? []) if (!named.has(stripCatalog(f))) return false;
      for (const f of u.s.dangerousFunctions) if (!named.has(stripCatalog(f))) return false;
      return true;
    },
  };
}

function shellSection(m: ShellMatch, scope: Scope): Section<ShellView, CommandView> {
  const batch: Check<ShellView>[] = [];
  const unit: Check<CommandView>[] = [];
  const L = (k: string, v: unknown) => `shell.${k} ${Array.isArray(v) ? fmt(v) : typeof v === 'object' ? JSON.stringify(v) : String(v)}`;
  const grant = scope === 'all';
  if (m.minCommands !== undefined) {
    const n = m.minCommands;
    batch.push({ label: L('minCommands', n), test: (v) => v.units.length >= n });
  }
  if (m.maxCommands !== undefined) {
    const n = m.maxCommands;
    batch.push({ label: L('maxCommands', n), test: (v) => v.units.length <= n });
  }
  const files = (k: 'pathsRead' | 'pathsWritten', get: (f: ShellFacts) => readonly string[], dflt?: readonly string[]) => {
    const pats = m[k] ?? (grant ? dflt : undefined);
    if (!pats) return;
    // An empty list covers no file at all.
    const label = m[k] ? L(k, pats) : `shell.${k} ${fmt(pats)} (default for grants)`;
    const globs = (v: ShellView) => (f: string) => v.globFiles.has(f);
    const set = new GlobSet(pats);
    batch.push(
      listCheck(
        label,
        (v: ShellView) => get(v.facts).map((f) => [v, f] as const),
        ([v, f], loose) => pathMatcher(set, globs(v))(f, loose),
        scope,
      ),
    );
  };
  // A grant reads files through redirections only where it says so (`cat < /etc/shadow` is no `cat /var/log/x`).
  files('pathsRead', (f) => f.filesRead, []);
  files('pathsWritten', (f) => f.filesWritten, SAFE_WRITES);
  if (m.redirections !== undefined && m.redirections !== 'any') batch.push(boolCheck(L('redirections', m.redirections), (v) => v.facts.redirections.length > 0, m.redirections));
  if (m.network !== undefined) {
    if (m.network !== 'any') batch.push(boolCheck(L('network', m.network), (v) => (v.facts.network?.length ?? 0) > 0, m.network));
  } else if (grant) batch.push(boolCheck('shell.network false (default for grants)', (v) => (v.facts.network?.length ?? 0) > 0, false));
  if (m.constructs) batch.push(listCheck(L('constructs', m.constructs), (v) => v.facts.structure, globMatcher(new GlobSet(m.constructs)), scope));

  // A denial, and notPrograms, name programs wherever they run, wrappers included: `busybox uptime`
  // and `bash -c uptime` run busybox and bash, which a deny list of them must catch. A grant's
  // programs are what finally runs (its wrappers are checked by `wrappers`).
  const withWrappers = (u: CommandView) => (u.c.wrappers.length === 0 ? [u.program] : [u.program, ...u.c.wrappers]);
  if (m.programs) unit.push(listCheck(L('programs', m.programs), scope === 'any' ? withWrappers : (u) => [u.program], programMatcher(new GlobSet(m.programs)), scope));
  if (m.notPrograms) unit.push(listCheck(L('notPrograms', m.notPrograms), withWrappers, programMatcher(new GlobSet(m.notPrograms)), scope, true));
  if (m.args) unit.push(argsCheck(L('args', m.args), m.args, (u: CommandView) => u, scope));
  if (m.argv) unit.push(argvCheck(L('argv', m.argv), m.argv, (u: CommandView) => u, scope));
  if (m.wrappers) unit.push(listCheck(L('wrappers', m.wrappers), (u) => u.c.wrappers, programMatcher(new GlobSet(m.wrappers)), scope));
  else if (grant) unit.push(listCheck(`shell.wrappers: none of ${fmt(PRIVILEGE_WRAPPERS)} (default for grants)`, (u) => u.c.wrappers, programMatcher(new GlobSet(PRIVILEGE_WRAPPERS)), scope, true));
  const envNames = (u: CommandView) => u.envNames;
  if (m.env) unit.push(listCheck(L('env', m.env), envNames, globMatcher(new GlobSet(m.env)), scope));
  else if (grant) unit.push(listCheck(`shell.env ${fmt(SAFE_ENV)} (default for grants)`, envNames, globMatcher(new GlobSet(SAFE_ENV)), scope));
  if (m.opaque !== undefined) {
    if (m.opaque !== 'any') unit.push(boolCheck(L('opaque', m.opaque), (u) => u.c.opaque, m.opaque));
  } else if (grant) unit.push(boolCheck('shell.opaque false (default for grants)', (u) => u.c.opaque, false));
  return { batch, unit };
}

function unitKeys(rule: PolicyRule): string[] | null {
  const { sql, shell } = rule.match;
  if (!sql && !shell) return null;
  const keys: string[] = [];
  if (sql) {
    if (!sql.kinds) return null;
    keys.push(...sql.kinds.map((k) => `sql:${k}`));
  }
  if (shell) {
    const lits = shell.programs ? new GlobSet(shell.programs).literalKeys() : null;
    if (!lits) return null;
    keys.push(...lits.map((p) => `sh:${p}`));
  }
  return keys;
}

/**
 * A denial (scope any) fires only on a statement touching a table its tables condition
 * names, so it can be found by that table's schema when every pattern has a literal one.
 */
function tableKeys(rule: PolicyRule, scope: Scope): string[] | null {
  const { sql, shell } = rule.match;
  if (scope !== 'any' || !sql || shell) return null;
  for (const pats of [sql.tables, sql.tablesRead, sql.tablesWritten]) {
    if (!pats) continue;
    const schemas = pats.map((p) => {
      const dot = p.indexOf('.');
      const schema = dot > 0 ? p.slice(0, dot) : '';
      return schema && !isGlob(schema) ? schema : null;
    });
    // Folded too: MySQL facts name `SHOP.t` as `shop.t`.
    if (schemas.every((x): x is string => x !== null)) return [...new Set(schemas.flatMap((x) => [x, x.toLowerCase()]))].map((x) => `tbl:${x}`);
  }
  return null;
}

function literal(patterns: readonly string[] | undefined): string[] | null {
  return patterns ? new GlobSet(patterns).literalKeys() : null;
}

/** Compiles a validated rule. */
export function compileRule(rule: PolicyRule, order: number): CompiledRule {
  const scope: Scope = rule.scope ?? (rule.effect === 'deny' ? 'any' : 'all');
  const m = rule.match;
  const readMode = rule.effect !== 'deny' && rule.mode === 'read';
  const forSql = m.sql !== undefined || m.shell === undefined;
  const forShell = m.shell !== undefined || m.sql === undefined;
  return {
    rule,
    order,
    scope,
    principal: principalChecks(m.principal),
    target: targetChecks(m.target),
    window: m.time ? compileWindow(m.time) : undefined,
    forSql,
    forShell,
    // mode: read needs read-only statements even on a rule that names no SQL conditions.
    // A grant that matches SQL always gets a section: unknown and dangerous functions must be named.
    sql: m.sql ? sqlSection(m.sql, scope, readMode) : forSql && (readMode || scope === 'all') ? sqlSection({}, scope, readMode, false) : undefined,
    shell: m.shell ? shellSection(m.shell, scope) : undefined,
    keys: {
      target: literal(m.target?.name),
      sub: literal(m.principal?.sub),
      group: literal(m.principal?.groups),
      unit: unitKeys(rule),
      table: tableKeys(rule, scope),
    },
  };
}
