/**
 * `writ policy check`: schema errors with their paths, targets a rule names that no
 * declaration knows, and rules that can never decide because another rule always wins
 * over them. The shadowing check is syntactic and conservative: it reports a rule only
 * when every condition of the winning rule is provably at least as wide as the shadowed
 * rule's own (same keys, wider or equal values), so it never reports a live rule.
 */
import { isDeepStrictEqual } from 'node:util';
import { WritError } from '../../schemas/index.ts';
import { PRIVILEGE_WRAPPERS, SAFE_ENV, SAFE_WRITES } from './compile.ts';
import { RulePolicy } from './engine.ts';
import { globMatchesLiteral, GlobSet, isGlob } from './glob.ts';
import type { PolicyRule, PolicyTarget } from './schema.ts';

interface LintFinding {
  level: 'error' | 'warning';
  /** Path in the document (`rules[3].match.target.name`), or `(yaml)` / `(root)`. */
  path: string;
  message: string;
}

export interface LintResult {
  findings: LintFinding[];
  /** The compiled policy when the document is valid. */
  policy?: RulePolicy;
}

/** Lints a policy text; `targets` adds declarations from a Writ config. */
export function lintPolicy(text: string, opts: { source?: string; targets?: readonly PolicyTarget[] } = {}): LintResult {
  let policy: RulePolicy;
  try {
    policy = RulePolicy.fromText(text, opts.source);
  } catch (e) {
    if (!(e instanceof WritError)) throw e;
    const issues = (e.details?.issues as string[] | undefined) ?? [e.message];
    return {
      findings: issues.map((line) => {
        const at = line.indexOf(': ');
        return { level: 'error', path: at > 0 ? line.slice(0, at) : '(root)', message: at > 0 ? line.slice(at + 2) : line };
      }),
    };
  }
  const findings: LintFinding[] = [];
  const known = new Map<string, PolicyTarget>();
  for (const t of opts.targets ?? []) known.set(t.name, t);
  for (const t of policy.doc.targets ?? []) known.set(t.name, t);
  checkTargets(policy.doc.rules, known, findings);
  checkFlags(policy.doc.rules, findings);
  checkShadowing(policy.doc.rules, findings);
  return { findings, policy };
}

function checkTargets(rules: readonly PolicyRule[], known: ReadonlyMap<string, PolicyTarget>, out: LintFinding[]): void {
  if (known.size === 0) {
    if (rules.some((r) => r.match.target?.name)) out.push({ level: 'warning', path: 'targets', message: 'no targets declared (in the policy or --config): target names cannot be checked' });
    return;
  }
  rules.forEach((r, i) => {
    const t = r.match.target;
    const names = t?.name ?? [];
    names.forEach((p, j) => {
      const path = `rules[${i}].match.target.name[${j}]`;
      const hits = [...known.values()].filter((k) => globMatchesLiteral(p, k.name));
      if (hits.length > 0) return;
      if (isGlob(p)) out.push({ level: 'warning', path, message: `pattern ${JSON.stringify(p)} matches no declared target` });
      else out.push({ level: 'error', path, message: `unknown target ${JSON.stringify(p)}` });
    });
    // Literal targets whose kind the rule's conditions can never apply to.
    const lits = names
      .filter((p) => !isGlob(p))
      .map((n) => known.get(n))
      .filter((k): k is PolicyTarget => k !== undefined);
    if (lits.length === 0 || lits.length !== names.length) return;
    if (t?.kind && lits.every((k) => !t.kind!.includes(k.kind)))
      out.push({ level: 'warning', path: `rules[${i}].match.target.kind`, message: 'no named target is of these kinds: the rule never matches' });
    if (r.match.sql && !r.match.shell && lits.every((k) => k.kind === 'ssh'))
      out.push({ level: 'warning', path: `rules[${i}].match.sql`, message: 'every named target is an ssh target: SQL conditions never match' });
    if (r.match.shell && !r.match.sql && lits.every((k) => k.kind !== 'ssh'))
      out.push({ level: 'warning', path: `rules[${i}].match.shell`, message: 'no named target is an ssh target: shell conditions never match' });
  });
}

/** Flags a grant leaves out by default: `true` on a grant narrows it to what has the flag, rarely what is meant. */
const GRANT_FLAGS = { sql: ['dangerousFunctions', 'modifyingCte', 'selectInto'], shell: ['network', 'opaque'] } as const;

function checkFlags(rules: readonly PolicyRule[], out: LintFinding[]): void {
  rules.forEach((r, i) => {
    if (scopeOf(r) !== 'all') return;
    for (const part of ['sql', 'shell'] as const) {
      const c = r.match[part] as Record<string, unknown> | undefined;
      for (const k of GRANT_FLAGS[part]) {
        if (c?.[k] !== true) continue;
        out.push({
          level: 'warning',
          path: `rules[${i}].match.${part}.${k}`,
          message: `true covers only what has ${k} set, in every ${part === 'sql' ? 'statement' : 'command line'}; write \`any\` to cover both`,
        });
      }
    }
  });
}

type Scope = 'all' | 'any';
const scopeOf = (r: PolicyRule): Scope => r.scope ?? (r.effect === 'deny' ? 'any' : 'all');

/** Every pattern of `narrow` is one of `wide`'s, or a literal one of `wide`'s globs matches. */
function subset(narrow: readonly string[] | undefined, wide: readonly string[] | undefined): boolean {
  if (wide === undefined) return true;
  if (narrow === undefined) return false;
  const w = new GlobSet(wide);
  return narrow.every((p) => wide.includes(p) || wide.includes('**') || (!isGlob(p) && w.test(p)));
}

/** The rule's SQL and shell conditions with the defaults a grant gets written out. */
function effective(r: PolicyRule): { sql: Record<string, unknown> | undefined; shell: Record<string, unknown> | undefined } {
  const grant = scopeOf(r) === 'all';
  const m = r.match;
  let sql: Record<string, unknown> | undefined = m.sql ? { ...m.sql } : undefined;
  if (grant && sql) {
    if (sql.functions === undefined) sql.dangerousFunctions ??= false;
    sql.modifyingCte ??= false;
    sql.selectInto ??= false;
  }
  if (r.effect !== 'deny' && r.mode === 'read' && (m.sql || !m.shell)) sql = { ...sql, readOnly: true };
  // Every SQL grant covers unknown and dangerous functions only when it names them exactly.
  if (grant && (m.sql || !m.shell)) sql = { ...sql, namedFunctions: (m.sql?.functions ?? []).filter((p) => !isGlob(p)) };
  let shell: Record<string, unknown> | undefined = m.shell ? { ...m.shell } : undefined;
  if (grant && shell) {
    shell.pathsWritten ??= [...SAFE_WRITES];
    shell.pathsRead ??= [];
    shell.network ??= false;
    shell.env ??= [...SAFE_ENV];
    shell.opaque ??= false;
    if (shell.wrappers === undefined) shell.notWrappers = [...PRIVILEGE_WRAPPERS];
  }
  return { sql: withoutAny(sql), shell: withoutAny(shell) };
}

/** `any` puts no condition: the key is as good as absent. */
function withoutAny(c: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!c) return c;
  for (const [k, v] of Object.entries(c)) if (v === 'any') delete c[k];
  return c;
}

/** Keys whose values are conditions that narrow as their list widens (negations, required tags). */
const NEGATIVE = new Set(['notKinds', 'notPrograms', 'denyFunctions', 'notWrappers']);
/** Keys holding one value per statement/command (never an empty list). */
const SINGLE = new Set(['kinds', 'programs']);

/** True when every intent `b` matches, `a` matches too (provably, by the keys). */
function section(a: Record<string, unknown> | undefined, b: Record<string, unknown> | undefined, as: Scope, bs: Scope): boolean {
  if (a === undefined) return true;
  if (b === undefined) return false;
  if (as === 'all' && bs === 'any') return false;
  for (const [k, av] of Object.entries(a)) {
    const bv = b[k];
    if (k === 'maxStatements' || k === 'maxCommands') {
      if (typeof bv !== 'number' || bv > (av as number)) return false;
      continue;
    }
    if (k === 'minStatements' || k === 'minCommands') {
      if (typeof bv !== 'number' || bv < (av as number)) return false;
      continue;
    }
    if (typeof av === 'boolean' || typeof av === 'string' || k === 'args' || k === 'argv' || k === 'copy') {
      if (!isDeepStrictEqual(av, bv)) return false;
      continue;
    }
    if (NEGATIVE.has(k)) {
      if (!subset(av as string[], (bv as string[] | undefined) ?? [])) return false;
      continue;
    }
    // A positive list under `any` in `a` against `all` in `b`: `b` may match with no items at all.
    if (as === 'any' && bs === 'all' && !SINGLE.has(k)) return false;
    if (!subset(bv as string[] | undefined, av as string[])) return false;
  }
  return true;
}

/** True when rule `a` matches every intent rule `b` matches. */
export function covers(a: PolicyRule, b: PolicyRule): boolean {
  const am = a.match;
  const bm = b.match;
  if (!subset(bm.principal?.sub, am.principal?.sub) || !subset(bm.principal?.groups, am.principal?.groups) || !subset(bm.principal?.issuer, am.principal?.issuer)) return false;
  if (!subset(bm.target?.name, am.target?.name) || !subset(bm.target?.kind, am.target?.kind)) return false;
  if (am.target?.tags && !(bm.target?.tags && am.target.tags.every((t) => bm.target!.tags!.includes(t)))) return false;
  if (am.time && !isDeepStrictEqual(am.time, bm.time)) return false;
  const aForSql = am.sql !== undefined || am.shell === undefined;
  const aForShell = am.shell !== undefined || am.sql === undefined;
  const bForSql = bm.sql !== undefined || bm.shell === undefined;
  const bForShell = bm.shell !== undefined || bm.sql === undefined;
  if ((bForSql && !aForSql) || (bForShell && !aForShell)) return false;
  const ae = effective(a);
  const be = effective(b);
  if (bForSql && !section(ae.sql, be.sql, scopeOf(a), scopeOf(b))) return false;
  if (bForShell && !section(ae.shell, be.shell, scopeOf(a), scopeOf(b))) return false;
  return true;
}

/** Whether rule `a` (at index ai) always wins over rule `b` (at bi) when both match. */
function winsOver(a: PolicyRule, ai: number, b: PolicyRule, bi: number): boolean {
  if (b.effect === 'deny') return false; // every matching deny is reported
  if (a.effect === 'deny') return true;
  const aCover = a.effect === 'require_approval' && scopeOf(a) === 'all';
  if (b.effect === 'allow') return aCover || (a.effect === 'allow' && ai < bi);
  // b asks for approval: only an earlier approval rule of the same kind decides instead.
  return a.effect === 'require_approval' && scopeOf(a) === scopeOf(b) && ai < bi;
}

function checkShadowing(rules: readonly PolicyRule[], out: LintFinding[]): void {
  rules.forEach((b, bi) => {
    for (let ai = 0; ai < rules.length; ai++) {
      const a = rules[ai]!;
      if (ai === bi || !winsOver(a, ai, b, bi) || !covers(a, b)) continue;
      out.push({ level: 'warning', path: `rules[${bi}]`, message: `rule ${b.id} is shadowed by rule ${a.id} (${a.effect}): it can never decide` });
      break;
    }
  });
}
