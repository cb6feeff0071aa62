/**
 * MySQL: the columns a statement reads in positions whose value is not handed back as a result
 * field (WHERE, JOIN ON/USING, GROUP BY, HAVING, ORDER BY, LIMIT, DISTINCT, UPDATE/DELETE
 * filters, and everything nested in them, subqueries included). The worker cannot mask a value
 * there, and a filter on it is an oracle (`WHERE email LIKE 'a%'`), so it refuses such a read of
 * a masked column (filterColumns in classify/types.ts).
 */
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);

/**
 * Resolves a column reference (qualifier as written, or null) to base columns; undefined when it
 * names a derived table or CTE. `derivedInScope`: the SELECT the reference stands in reads a
 * derived table or CTE, so an unqualified name may be one of its columns.
 */
export type Resolve = (qualifier: string | null, column: string, derivedInScope: boolean) => Array<{ table: string | null; column: string }> | undefined;

/** A SELECT's row sources that are derived tables or CTEs, by the name the SELECT gives them, with their SELECT. */
interface Scope {
  derived: Map<string, Obj>;
  /** Every row source of its FROM is one of `derived`. */
  onlyDerived: boolean;
}

/** What filterOf found: the columns, and whether one of them could not be placed (a derived table's or CTE's column). */
export interface FilterReads {
  columns: Array<{ table: string | null; column: string }>;
  unknown: boolean;
  /** A user variable (`@x`) stands in a filter position: it may hold what an earlier statement of the batch read. */
  variables: boolean;
  /** Functions called in a filter position, as written (lower case): a stored one may read a masked column there. */
  functions: string[];
}

/** Keys of a SELECT whose expressions are output positions; every other key of it is a filter position. */
const SELECT_OUTPUT = new Set(['columns', 'from', 'with', '_next', 'into', 'type', 'options', 'set_op', 'collate', 'locking_read']);
/** UPDATE / DELETE / INSERT: keys whose expressions are stored values, not filters (the masked-copy check covers them). */
const WRITE_OUTPUT = new Set(['set', 'values', 'columns', 'table', 'type', 'db', 'prefix', 'partition', 'on_duplicate_update', 'select', 'with']);

function columnName(o: Obj): string | undefined {
  if (typeof o.column === 'string') return o.column;
  const v = obj(obj(o.column)?.expr)?.value;
  return typeof v === 'string' ? v : undefined;
}

/** A function call's name as written, lower case (schema-qualified when it is); EXISTS (subquery) is none. */
export function functionName(o: Obj): string | undefined {
  if (o.type === 'function') {
    const name = obj(o.name);
    const parts = (Array.isArray(name?.name) ? name.name : []).map((p) => {
      const v = obj(p)?.value;
      return typeof v === 'string' ? v : '?';
    });
    const schema = obj(name?.schema)?.value;
    const full = [...(typeof schema === 'string' ? [schema] : []), ...parts].join('.').toLowerCase();
    return full && full !== 'exists' ? full : undefined;
  }
  return o.type === 'aggr_func' && typeof o.name === 'string' ? o.name.toLowerCase() : undefined;
}

/** The filter reads of a statement's tree. */
export function filterOf(ast: unknown, resolve: Resolve): FilterReads {
  const out: FilterReads = { columns: [], unknown: false, variables: false, functions: [] };
  // CTEs by name (WITH at the top or of any SELECT; a name shadows nothing here, being a lookup aid).
  const ctes = new Map<string, Obj>();
  /** A CTE's column list (`WITH t(a, b) AS …`): its columns by position, whatever its SELECT names them. */
  const cteColumns = new Map<Obj, string[]>();
  const collectCtes = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(collectCtes);
    const o = obj(v);
    if (!o) return;
    if (Array.isArray(o.with))
      for (const w of o.with) {
        const name = obj(obj(w)?.name)?.value;
        const body = obj(obj(obj(w)?.stmt)?.ast) ?? obj(obj(w)?.stmt);
        if (typeof name === 'string' && body) {
          ctes.set(name.toLowerCase(), body);
          const cols = obj(w)?.columns;
          if (Array.isArray(cols) && cols.length > 0)
            cteColumns.set(
              body,
              cols.map((c) => String((typeof c === 'string' ? c : (columnName(obj(c) ?? {}) ?? obj(c)?.value)) ?? '').toLowerCase()),
            );
        }
      }
    for (const x of Object.values(o)) collectCtes(x);
  };
  collectCtes(ast);
  const scopeOf = (select: Obj): Scope => {
    const derived = new Map<string, Obj>();
    let others = 0;
    for (const f of Array.isArray(select.from) ? select.from : []) {
      const it = obj(f);
      const sub = obj(obj(it?.expr)?.ast);
      if (sub && typeof it?.as === 'string') derived.set(it.as.toLowerCase(), sub);
      else if (typeof it?.table === 'string' && (it.db === null || it.db === undefined) && ctes.has(it.table.toLowerCase()))
        derived.set(String(it.as ?? it.table).toLowerCase(), ctes.get(it.table.toLowerCase())!);
      else others++;
    }
    return { derived, onlyDerived: derived.size > 0 && others === 0 };
  };
  const NO_SCOPE: Scope = { derived: new Map(), onlyDerived: false };
  const add = (q: string | null, col: string, scope: Scope) => {
    const r = resolve(q, col, scope.derived.size > 0);
    if (r === undefined || r.length === 0) out.unknown = true;
    else out.columns.push(...r);
  };
  /**
   * A derived table's (or CTE's) column used in a filter: what its SELECT puts there is what is
   * compared, so that expression's columns are filter reads (in the derived SELECT's own scope).
   * False when the column cannot be found among its items (a star, a set operation).
   */
  const throughDerived = (sub: Obj, col: string): boolean => {
    if (sub._next || sub.set_op) return false;
    const items = Array.isArray(sub.columns) ? sub.columns.map(obj) : [];
    const listed = cteColumns.get(sub);
    if (listed) {
      // Named by the list, by position: the list's name, not the SELECT's, is what the outside uses.
      const i = listed.indexOf(col.toLowerCase());
      const item = i >= 0 && listed.length === items.length ? items[i] : undefined;
      if (!item || obj(item.expr)?.type === 'star' || columnName(obj(item.expr) ?? {}) === '*') return false;
      filter(item.expr, new Map(), scopeOf(sub));
      return true;
    }
    const hit = items.find((it) => {
      const as = typeof it?.as === 'string' ? it.as : undefined;
      const name = as ?? (obj(it?.expr)?.type === 'column_ref' ? columnName(obj(it?.expr)!) : undefined);
      return name !== undefined && name.toLowerCase() === col.toLowerCase();
    });
    if (!hit) return false;
    filter(hit.expr, new Map(), scopeOf(sub));
    return true;
  };
  // Everything under a filter position is a filter read, whatever its shape.
  const filter = (v: unknown, aliases: Map<string, unknown>, scope: Scope): void => {
    if (Array.isArray(v)) return v.forEach((x) => filter(x, aliases, scope));
    const o = obj(v);
    if (!o) return;
    // A nested SELECT resolves its names against its own FROM.
    if (String(o.type ?? '').toLowerCase() === 'select') scope = scopeOf(o);
    if (o.type === 'var') out.variables = true;
    const fn = functionName(o);
    if (fn !== undefined && !out.functions.includes(fn)) out.functions.push(fn);
    const col = o.type === 'column_ref' ? columnName(o) : undefined;
    if (col !== undefined) {
      const q = typeof o.table === 'string' ? o.table.toLowerCase() : null;
      const sub = q !== null ? scope.derived.get(q) : scope.onlyDerived && scope.derived.size === 1 ? [...scope.derived.values()][0] : undefined;
      if (!(sub && throughDerived(sub, col))) add(q, col, scope);
      // ORDER BY / HAVING / GROUP BY may name a select item's alias: its expression is what is compared.
      const item = q === null ? aliases.get(col.toLowerCase()) : undefined;
      if (item !== undefined) filter(item, new Map(), scope);
    }
    if (Array.isArray(o.using)) for (const u of o.using) add(null, typeof u === 'string' ? u : String(obj(u)?.value), scope);
    for (const x of Object.values(o)) filter(x, aliases, scope);
  };
  const output = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(output);
    const o = obj(v);
    if (!o) return;
    const type = String(o.type ?? '').toLowerCase();
    if (type === 'select') {
      const scope = scopeOf(o);
      const items = Array.isArray(o.columns) ? o.columns.map(obj) : [];
      const aliases = new Map<string, unknown>();
      for (const it of items) if (typeof it?.as === 'string') aliases.set(it.as.toLowerCase(), it.expr);
      // UNION (DISTINCT), INTERSECT and EXCEPT compare whole rows of both sides: every item of
      // both is a filter read (UNION ALL compares nothing).
      const setOp = typeof o.set_op === 'string' ? o.set_op.toLowerCase().replace(/\s+/g, ' ').trim() : undefined;
      const next = obj(o._next);
      // A DISTINCT union de-duplicates everything to its left: `A UNION ALL B UNION C` compares A's
      // rows too, so a branch is compared when any operator after it in the chain is not UNION ALL.
      let compares = false;
      for (let n: Obj | undefined = o; n && obj(n._next); n = obj(n._next)) {
        const op = typeof n.set_op === 'string' ? n.set_op.toLowerCase().replace(/\s+/g, ' ').trim() : 'union';
        if (op !== 'union all') compares = true;
      }
      if (compares && next) {
        filter(
          items.map((it) => it?.expr),
          aliases,
          scope,
        );
        const nextItems = Array.isArray(next.columns) ? next.columns.map((c) => obj(c)?.expr) : [next];
        filter(nextItems, new Map(), scopeOf(next));
      }
      for (const [k, x] of Object.entries(o)) {
        if (x === null || x === undefined) continue;
        // MySQL's DISTINCT compares every output column.
        if (k === 'columns' && o.distinct) filter(x, aliases, scope);
        else if (k === 'from') fromItems(x, aliases, scope);
        else if (k === 'orderby' || k === 'groupby') {
          // `ORDER BY 2` sorts by the second select item.
          const list = Array.isArray(x) ? x : (obj(x)?.columns ?? []);
          if (Array.isArray(list) && list.some((e) => obj(obj(e)?.expr)?.type === 'number' || obj(e)?.type === 'number'))
            filter(
              items.map((it) => it?.expr),
              aliases,
              scope,
            );
          filter(x, aliases, scope);
        } else if (SELECT_OUTPUT.has(k)) output(x);
        else filter(x, aliases, scope);
      }
      return;
    }
    if (type === 'update' || type === 'delete' || type === 'insert' || type === 'replace') {
      // REPLACE, INSERT IGNORE and ON DUPLICATE KEY UPDATE compare the inserted values with the
      // stored ones on every unique key, and the affected-rows count says which matched (2 an
      // update, 1 an insert): the target's columns are filter reads, all of them without a list.
      const prefix = String(o.prefix ?? o.ignore ?? '').toLowerCase();
      if (type === 'replace' || (type === 'insert' && ((o.on_duplicate_update !== null && o.on_duplicate_update !== undefined) || prefix.includes('ignore') || o.ignore === true))) {
        const target = (Array.isArray(o.table) ? o.table : [o.table]).map(obj).find((t) => typeof t?.table === 'string');
        const name = target ? String(target.as ?? target.table).toLowerCase() : null;
        const cols = Array.isArray(o.columns) ? o.columns.map((c) => (typeof c === 'string' ? c : (columnName(obj(c) ?? {}) ?? String(obj(c)?.value ?? '')))) : ['*'];
        for (const c of cols) add(name, c, NO_SCOPE);
      }
      for (const [k, x] of Object.entries(o)) {
        if (x === null || x === undefined) continue;
        if (k === 'from' || (k === 'table' && Array.isArray(x))) fromItems(x, new Map(), NO_SCOPE);
        else if (WRITE_OUTPUT.has(k)) output(x);
        else filter(x, new Map(), NO_SCOPE);
      }
      return;
    }
    for (const [k, x] of Object.entries(o)) {
      // A window's PARTITION BY and ORDER BY decide which rows a function sees and in what order the
      // rows come (`ROW_NUMBER() OVER (ORDER BY email)` put the ids in e-mail order): filter reads.
      if (k === 'over') filter(x, new Map(), NO_SCOPE);
      else output(x);
    }
  };
  const fromItems = (v: unknown, aliases: Map<string, unknown>, scope: Scope) => {
    for (const item of Array.isArray(v) ? v : [v]) {
      const it = obj(item);
      if (!it) continue;
      for (const [k, x] of Object.entries(it)) {
        if (x === null || x === undefined) continue;
        if (k === 'on' || k === 'using') filter(k === 'using' ? { using: x } : x, aliases, scope);
        else output(x);
      }
    }
  };
  output(ast);
  return out;
}
