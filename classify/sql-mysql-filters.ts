/**
 * MySQL: the columns a statement reads in positions whose value is not handed back as a result
 * field (WHERE, JOIN ON/USING, GROUP BY, HAVING, ORDER BY, LIMIT, DISTINCT, UPDATE/DELETE
 * filters, and everything nested in them, subqueries included). The worker cannot mask a value
 * there, and a filter on it is an oracle (`WHERE email LIKE 'a%'`), so it refuses such a read of
 * a masked column (filterColumns in classify/types.ts).
 */
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);

/** Resolves a column reference (qualifier as written, or null) to base columns; undefined when it names a derived table or CTE. */
export type Resolve = (qualifier: string | null, column: string) => Array<{ table: string | null; column: string }> | undefined;

/** What filterOf found: the columns, and whether one of them could not be placed (a derived table's or CTE's column). */
export interface FilterReads {
  columns: Array<{ table: string | null; column: string }>;
  unknown: boolean;
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

/** The filter reads of a statement's tree. */
export function filterOf(ast: unknown, resolve: Resolve): FilterReads {
  const out: FilterReads = { columns: [], unknown: false };
  const add = (q: string | null, col: string) => {
    const r = resolve(q, col);
    if (r === undefined || r.length === 0) out.unknown = true;
    else out.columns.push(...r);
  };
  // Everything under a filter position is a filter read, whatever its shape.
  const filter = (v: unknown, aliases: Map<string, unknown>): void => {
    if (Array.isArray(v)) return v.forEach((x) => filter(x, aliases));
    const o = obj(v);
    if (!o) return;
    const col = o.type === 'column_ref' ? columnName(o) : undefined;
    if (col !== undefined) {
      const q = typeof o.table === 'string' ? o.table : null;
      add(q, col);
      // ORDER BY / HAVING / GROUP BY may name a select item's alias: its expression is what is compared.
      const item = q === null ? aliases.get(col.toLowerCase()) : undefined;
      if (item !== undefined) filter(item, new Map());
    }
    if (Array.isArray(o.using)) for (const u of o.using) add(null, typeof u === 'string' ? u : String(obj(u)?.value));
    for (const x of Object.values(o)) filter(x, aliases);
  };
  const output = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(output);
    const o = obj(v);
    if (!o) return;
    const type = String(o.type ?? '').toLowerCase();
    if (type === 'select') {
      const items = Array.isArray(o.columns) ? o.columns.map(obj) : [];
      const aliases = new Map<string, unknown>();
      for (const it of items) if (typeof it?.as === 'string') aliases.set(it.as.toLowerCase(), it.expr);
      for (const [k, x] of Object.entries(o)) {
        if (x === null || x === undefined) continue;
        // MySQL's DISTINCT compares every output column.
        if (k === 'columns' && o.distinct) filter(x, aliases);
        else if (k === 'from') fromItems(x, aliases);
        else if (k === 'orderby' || k === 'groupby') {
          // `ORDER BY 2` sorts by the second select item.
          const list = Array.isArray(x) ? x : (obj(x)?.columns ?? []);
          if (Array.isArray(list) && list.some((e) => obj(obj(e)?.expr)?.type === 'number' || obj(e)?.type === 'number'))
            filter(
              items.map((it) => it?.expr),
              aliases,
            );
          filter(x, aliases);
        } else if (SELECT_OUTPUT.has(k)) output(x);
        else filter(x, aliases);
      }
      return;
    }
    if (type === 'update' || type === 'delete' || type === 'insert' || type === 'replace') {
      for (const [k, x] of Object.entries(o)) {
        if (x === null || x === undefined) continue;
        if (k === 'from' || (k === 'table' && Array.isArray(x))) fromItems(x, new Map());
        else if (WRITE_OUTPUT.has(k)) output(x);
        else filter(x, new Map());
      }
      return;
    }
    for (const x of Object.values(o)) output(x);
  };
  const fromItems = (v: unknown, aliases: Map<string, unknown>) => {
    for (const item of Array.isArray(v) ? v : [v]) {
      const it = obj(item);
      if (!it) continue;
      for (const [k, x] of Object.entries(it)) {
        if (x === null || x === undefined) continue;
        if (k === 'on' || k === 'using') filter(k === 'using' ? { using: x } : x, aliases);
        else output(x);
      }
    }
  };
  output(ast);
  return out;
}
