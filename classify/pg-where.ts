/**
 * Decides whether a WHERE clause holds for every row: constant-true
 * conditions (`true`, `1=1`, `'a'='a'`, `NOT false`), comparisons of an
 * expression with itself (`id = id`), tautologies (`x OR NOT x`,
 * `x IS NULL OR x IS NOT NULL`) and anything OR-ed with one of those. It
 * is a policy signal for "this UPDATE/DELETE hits the whole table": it errs
 * towards true (`x = x` is false for NULL rows) and never evaluates functions.
 */
import { arr, names, nodeOf, obj, shape, str, unwrap, type Obj } from './pg-ast.ts';

type Value = { k: 'bool'; v: boolean } | { k: 'num'; v: number } | { k: 'str'; v: string } | { k: 'null' };

const TRUE_WORDS = new Set(['t', 'tr', 'tru', 'true', 'y', 'ye', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['f', 'fa', 'fal', 'fals', 'false', 'n', 'no', 'of', 'off', '0']);

/** True when the expression is true for every row (see the module comment). */
export function isTriviallyTrue(expr: unknown): boolean {
  return truth(expr) === true;
}

function truth(expr: unknown): boolean | undefined {
  const u = unwrap(expr);
  if (!u) return undefined;
  const [type, body] = u;
  if (type === 'BoolExpr') return boolExpr(body);
  if (type === 'SubLink') return exists(body);
  return toBool(evaluate(expr));
}

function toBool(v: Value | undefined): boolean | undefined {
  if (!v) return undefined;
  if (v.k === 'bool') return v.v;
  if (v.k === 'null') return false;
  if (v.k === 'str') {
    const s = v.v.trim().toLowerCase();
    if (TRUE_WORDS.has(s)) return true;
    if (FALSE_WORDS.has(s)) return false;
  }
  return undefined;
}

function boolExpr(b: Obj): boolean | undefined {
  const args = arr(b.args);
  const vals = args.map(truth);
  switch (b.boolop) {
    case 'NOT_EXPR':
      return vals[0] === undefined ? undefined : !vals[0];
    case 'AND_EXPR':
      if (vals.some((v) => v === false)) return false;
      return vals.every((v) => v === true) ? true : undefined;
    case 'OR_EXPR':
      if (vals.some((v) => v === true) || tautology(args)) return true;
      return vals.every((v) => v === false) ? false : undefined;
    default:
      return undefined;
  }
}

/** `x OR NOT x`, `x IS NULL OR x IS NOT NULL`. */
function tautology(args: unknown[]): boolean {
  const shapes = new Set(args.map(shape));
  for (const a of args) {
    const not = nodeOf(a, 'BoolExpr');
    if (not?.boolop === 'NOT_EXPR' && shapes.has(shape(arr(not.args)[0]))) return true;
    const nt = nodeOf(a, 'NullTest');
    if (nt) {
      const other = { NullTest: { ...nt, nulltesttype: nt.nulltesttype === 'IS_NULL' ? 'IS_NOT_NULL' : 'IS_NULL' } };
      if (shapes.has(shape(other))) return true;
    }
  }
  return false;
}

/** `EXISTS (SELECT 1)`: a subquery without FROM whose own WHERE (if any) is trivially true. */
function exists(s: Obj): boolean | undefined {
  if (s.subLinkType !== 'EXISTS_SUBLINK') return undefined;
  const sel = nodeOf(s.subselect, 'SelectStmt');
  if (!sel || arr(sel.fromClause).length || sel.havingClause || sel.limitCount) return undefined;
  return sel.whereClause === undefined || truth(sel.whereClause) === true ? true : undefined;
}

function evaluate(expr: unknown): Value | undefined {
  const u = unwrap(expr);
  if (!u) return undefined;
  const [type, b] = u;
  switch (type) {
    case 'A_Const':
      return constant(b);
    case 'TypeCast':
      return cast(evaluate(b.arg), names(obj(b.typeName)?.names).pop() ?? '');
    case 'BoolExpr':
    case 'SubLink': {
      const t = truth(expr);
      return t === undefined ? undefined : { k: 'bool', v: t };
    }
    case 'A_Expr':
      return aExpr(b);
    case 'NullTest': {
      const v = evaluate(b.arg);
      if (!v) return undefined;
      return { k: 'bool', v: (v.k === 'null') === (b.nulltesttype === 'IS_NULL') };
    }
    case 'BooleanTest':
      return booleanTest(b);
    default:
      return undefined;
  }
}

function constant(b: Obj): Value | undefined {
  if (b.isnull) return { k: 'null' };
  if (b.boolval) return { k: 'bool', v: obj(b.boolval)?.boolval === true };
  if (b.ival) return { k: 'num', v: Number(obj(b.ival)?.ival ?? 0) };
  if (b.fval) return { k: 'num', v: Number(str(obj(b.fval)?.fval) ?? NaN) };
  if (b.sval) return { k: 'str', v: str(obj(b.sval)?.sval) ?? '' };
  return undefined;
}

function cast(v: Value | undefined, type: string): Value | undefined {
  if (!v || v.k === 'null') return v;
  if (type === 'bool' || type === 'boolean') {
    const t = v.k === 'num' ? (v.v === 0 ? false : v.v === 1 ? true : undefined) : toBool(v);
    return t === undefined ? undefined : { k: 'bool', v: t };
  }
  if (/^(int[248]?|integer|smallint|bigint|numeric|decimal|float[48]?|real|double)$/.test(type)) {
    const n = v.k === 'num' ? v.v : v.k === 'str' ? Number(v.v.trim()) : v.v ? 1 : 0;
    return Number.isNaN(n) ? undefined : { k: 'num', v: n };
  }
  if (/^(text|varchar|bpchar|char|name)$/.test(type)) {
    return { k: 'str', v: v.k === 'bool' ? (v.v ? 'true' : 'false') : String(v.v) };
  }
  return undefined;
}

function booleanTest(b: Obj): Value | undefined {
  const v = evaluate(b.arg);
  const t = v?.k === 'null' ? null : toBool(v);
  if (t === undefined) return undefined;
  const tests: Record<string, boolean> = {
    IS_TRUE: t === true,
    IS_NOT_TRUE: t !== true,
    IS_FALSE: t === false,
    IS_NOT_FALSE: t !== false,
    IS_UNKNOWN: t === null,
    IS_NOT_UNKNOWN: t !== null,
  };
  const r = tests[String(b.booltesttype)];
  return r === undefined ? undefined : { k: 'bool', v: r };
}

function aExpr(b: Obj): Value | undefined {
  const op = names(b.name).pop() ?? '';
  const same = shape(b.lexpr) === shape(b.rexpr);
  switch (b.kind) {
    case 'AEXPR_OP': {
      const cmp = compare(evaluate(b.lexpr), evaluate(b.rexpr));
      if (cmp !== undefined) return opResult(op, cmp);
      if (same && ['=', '<=', '>='].includes(op)) return { k: 'bool', v: true };
      if (same && ['<>', '!=', '<', '>'].includes(op)) return { k: 'bool', v: false };
      return undefined;
    }
    case 'AEXPR_NOT_DISTINCT':
    case 'AEXPR_DISTINCT': {
      const cmp = compare(evaluate(b.lexpr), evaluate(b.rexpr));
      const equal = same || cmp === 0;
      if (!equal && cmp === undefined) return undefined;
      return { k: 'bool', v: (b.kind === 'AEXPR_NOT_DISTINCT') === equal };
    }
    case 'AEXPR_IN': {
      const list = arr(nodeOf(b.rexpr, 'List')?.items ?? b.rexpr);
      const l = evaluate(b.lexpr);
      const hit = list.some((x) => shape(x) === shape(b.lexpr) || compare(l, evaluate(x)) === 0);
      if (!hit) return undefined;
      return { k: 'bool', v: op === '=' };
    }
    case 'AEXPR_LIKE':
    case 'AEXPR_ILIKE': {
      const pattern = evaluate(b.rexpr);
      if (pattern?.k === 'str' && /^%+$/.test(pattern.v)) return { k: 'bool', v: op === '~~' || op === '~~*' };
      return undefined;
    }
    case 'AEXPR_BETWEEN':
    case 'AEXPR_NOT_BETWEEN': {
      const [lo, hi] = arr(nodeOf(b.rexpr, 'List')?.items ?? b.rexpr);
      const v = evaluate(b.lexpr);
      const a = compare(v, evaluate(lo));
      const z = compare(v, evaluate(hi));
      if (a === undefined || z === undefined) return undefined;
      const inside = a >= 0 && z <= 0;
      return { k: 'bool', v: b.kind === 'AEXPR_BETWEEN' ? inside : !inside };
    }
    default:
      return undefined;
  }
}

/** -1/0/1 for two comparable constants; undefined otherwise. An untyped string literal compares as a number against a number. */
function compare(a: Value | undefined, b: Value | undefined): number | undefined {
  if (!a || !b || a.k === 'null' || b.k === 'null') return undefined;
  let x: string | number | boolean = a.v;
  let y: string | number | boolean = b.v;
  if (a.k === 'num' && b.k === 'str') y = Number(b.v.trim());
  else if (a.k === 'str' && b.k === 'num') x = Number(a.v.trim());
  else if (a.k === 'bool' && b.k === 'str') y = toBool(b) ?? NaN;
  else if (a.k === 'str' && b.k === 'bool') x = toBool(a) ?? NaN;
  else if (a.k !== b.k) return undefined;
  if (typeof x === 'number' && Number.isNaN(x)) return undefined;
  if (typeof y === 'number' && Number.isNaN(y)) return undefined;
  return x === y ? 0 : x < y ? -1 : 1;
}

function opResult(op: string, cmp: number): Value | undefined {
  const table: Record<string, boolean> = { '=': cmp === 0, '<>': cmp !== 0, '!=': cmp !== 0, '<': cmp < 0, '>': cmp > 0, '<=': cmp <= 0, '>=': cmp >= 0 };
  const r = table[op];
  return r === undefined ? undefined : { k: 'bool', v: r };
}
