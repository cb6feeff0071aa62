/**
 * Shared shapes for the per-statement handlers of the PostgreSQL classifier.
 * A handler records what the statement reads and writes into the collector
 * and returns the statement-level facts.
 */
import type { Node } from 'libpg-query';
import type { CopyFacts, SetFacts, SqlKind, SqlStatementFacts } from './types.ts';
import type { Collector, PgWalker, Scope } from './pg-walk.ts';
import { arr, nodeOf, obj, objectName, rangeVarName, str, unwrap, type Obj } from './pg-ast.ts';

type KeysOfUnion<T> = T extends unknown ? keyof T : never;

/** Every statement node type of the PostgreSQL 18 grammar, from libpg-query's own type of a parse-tree node. */
export type StmtType = Extract<KeysOfUnion<Node>, `${string}Stmt`>;

/** Statement-level facts a handler returns. */
export interface StmtInfo {
  kind: SqlKind;
  objectType?: string;
  objectNames?: string[];
  alterActions?: string[];
  /** The kind itself neither writes nor changes the session (the collected facts can still make it not read-only). */
  readOnlyKind?: boolean;
  copy?: CopyFacts;
  set?: SetFacts;
  transaction?: string;
  explain?: { analyze: boolean; inner: SqlStatementFacts };
  prepare?: { name: string; inner: SqlStatementFacts };
  execute?: { name: string; inner?: SqlStatementFacts };
  hasWhere?: boolean;
  whereTriviallyTrue?: boolean;
  requestsReadWrite?: boolean;
}

/** What a handler works with. */
export interface StmtCtx {
  c: Collector;
  w: PgWalker;
  scope: Scope;
  /** Classifies a statement nested in this one (EXPLAIN, PREPARE) on its own. */
  inner(node: unknown): SqlStatementFacts;
  /** PREPAREd statements seen earlier in the same batch, by name. */
  prepared: Map<string, SqlStatementFacts>;
  /** Cursors DECLAREd earlier in the same batch. */
  cursors: Set<string>;
  /** Marks the batch as not classifiable (WRIT_SQL_UNKNOWN): the statement acts on something the text does not show. */
  refuse(message: string): void;
}

/** A statement handler. */
export type Handler = (b: Obj, x: StmtCtx) => StmtInfo;

/** The RangeVar bodies held by a field: an unwrapped RangeVar, a wrapped one, or a list of them. */
export function relsOf(v: unknown): Obj[] {
  if (Array.isArray(v)) return v.flatMap(relsOf);
  const wrapped = nodeOf(v, 'RangeVar');
  if (wrapped) return [wrapped];
  const o = obj(v);
  return o && typeof o.relname === 'string' ? [o] : [];
}

/** Names held by a field: a string, a dotted name (list of Strings), or object nodes. */
export function namesIn(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) {
    if (v.every((x) => nodeOf(x, 'String'))) return v.length ? [v.map(objectName).join('.')] : [];
    return v.map(objectName);
  }
  return [objectName(v)];
}

/** Walks a statement body; when `rel` is given, bare column names resolve to it (CHECK, index expressions, ...). */
export function walkBody(b: Obj, x: StmtCtx, rel?: Obj): void {
  const scope = rel ? x.scope.child().addTable(str(rel.relname) ?? '?', rangeVarName(rel)) : x.scope;
  for (const v of Object.values(b)) x.w.visit(v, scope);
}

interface DefOptions {
  /** Field(s) holding the object's name. */
  names?: string | string[];
  /** Field(s) holding relations the statement changes (reported written). */
  rels?: string | string[];
  /** ALTER TABLE-like sub-commands field. */
  cmds?: string;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** A handler for a DDL-like statement: writes its relations, walks its body, names its objects. */
export function def(kind: SqlKind, objectType: string | ((b: Obj) => string), opts: DefOptions = {}): Handler {
  return (b, x) => {
    const rels = list(opts.rels).flatMap((f) => relsOf(b[f]));
    for (const rv of rels) x.c.write(rv);
    walkBody(b, x, rels[0]);
    const info: StmtInfo = {
      kind,
      objectType: typeof objectType === 'function' ? objectType(b) : objectType,
      objectNames: list(opts.names).flatMap((f) => namesIn(b[f])),
    };
    if (opts.cmds) info.alterActions = alterActions(b[opts.cmds]);
    return info;
  };
}

/** ALTER TABLE sub-command types, lower-case without the AT_ prefix. */
function alterActions(cmds: unknown): string[] {
  return arr(cmds).map((c) =>
    String(nodeOf(c, 'AlterTableCmd')?.subtype ?? 'unknown')
      .replace(/^AT_/, '')
      .toLowerCase(),
  );
}

/** The boolean value of a DefElem option (`analyze`, `analyze true`, `(analyze off)`); unknown values count as true. */
export function defElemBool(d: Obj): boolean {
  if (d.arg === undefined) return true;
  const u = unwrap(d.arg);
  if (!u) return true;
  const [type, body] = u;
  if (type === 'Boolean') return body.boolval === true;
  if (type === 'Integer') return Number(body.ival ?? 0) !== 0;
  if (type === 'A_Const') {
    if (body.ival) return Number(obj(body.ival)?.ival ?? 0) !== 0;
    if (body.boolval) return obj(body.boolval)?.boolval === true;
    return defElemBool({ arg: { String: obj(body.sval) ?? {} } });
  }
  const s = (str(body.sval) ?? '').toLowerCase();
  return !['off', 'false', 'f', 'no', 'n', '0'].includes(s);
}

/** The DefElem options of a list, by name. */
export function defElems(v: unknown): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const d of arr(v)) {
    const de = nodeOf(d, 'DefElem');
    if (de) out.set(str(de.defname) ?? '', de);
  }
  return out;
}
