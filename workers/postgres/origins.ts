/**
 * Resolves the (tableID, columnID) pairs that PostgreSQL reports for each result field
 * to schema.table.column, once per table and intent (cached for the intent), so an alias never hides a column.
 * Column 0 of a table is a whole-row reference. A view reports its own column, not the
 * base table's, so for a view (or materialized view) the resolver also collects the base
 * columns it draws on, through nested views: the runtime masks a view column whole when
 * any of those is sensitive (conservative: the catalog does not say which view column
 * comes from which base column).
 */
import type pg from 'pg';
import type { FieldInfo } from '../executor.ts';

interface TableInfo {
  table: string;
  kind: string;
  columns: Map<number, string>;
  /** For views: base columns (schema.table.column) the view draws on, transitively. */
  baseColumns?: string[];
}

const MAX_VIEW_DEPTH = 16;

export class OriginResolver {
  readonly #pool: pg.Pool;
  readonly #tables = new Map<number, TableInfo>();
  readonly #byName = new Map<string, number>();

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /**
   * A resolver of its own for one intent: what tables and views are is read for each intent. A
   * cache kept for the worker's life traced a view that CREATE OR REPLACE VIEW had pointed at a
   * masked column (same OID) by its old base columns.
   */
  fresh(): OriginResolver {
    return new OriginResolver(this.#pool);
  }

  async resolve(fields: readonly pg.FieldDef[]): Promise<FieldInfo[]> {
    await this.#ensure(fields.map((f) => f.tableID).filter((id) => id !== 0));
    return fields.map((f) => {
      if (f.tableID === 0) return { name: f.name, origin: null };
      const t = this.#tables.get(f.tableID);
      // An OID we cannot name is still a table column: the masking engine fails closed on it.
      if (!t) return { name: f.name, origin: { table: `oid:${f.tableID}`, column: String(f.columnID) } };
      const cols = [...t.columns.values()];
      const info: FieldInfo =
        f.columnID === 0
          ? { name: f.name, origin: { table: t.table, column: '*' }, wholeRow: true, tableColumns: cols }
          : { name: f.name, origin: { table: t.table, column: t.columns.get(f.columnID) ?? String(f.columnID) } };
      if (t.baseColumns) info.viewSources = t.baseColumns;
      return info;
    });
  }

  /** Every column of the named tables (schema.table), for whole-row references seen in SQL facts. */
  async columnsOf(tables: readonly string[]): Promise<string[]> {
    const unknown = tables.filter((t) => !this.#byName.has(t));
    if (unknown.length > 0) {
      const r = await this.#pool.query<{ oid: number }>(
        "SELECT c.oid::int AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE (n.nspname || '.' || c.relname) = ANY($1::text[])",
        [unknown],
      );
      await this.#ensure(r.rows.map((x) => x.oid));
    }
    const out: string[] = [];
    for (const name of tables) {
      const t = this.#tables.get(this.#byName.get(name) ?? -1);
      if (!t) continue;
      for (const c of t.columns.values()) out.push(`${t.table}.${c}`);
      if (t.baseColumns) out.push(...t.baseColumns); // a whole row of a view is all it draws on
    }
    return out;
  }

  /** The base columns of those of the named relations that are views; empty for tables. */
  async viewBaseColumns(tables: readonly string[]): Promise<string[]> {
    await this.columnsOf(tables);
    const out: string[] = [];
    for (const name of tables) {
      const t = this.#tables.get(this.#byName.get(name) ?? -1);
      if (t?.baseColumns) out.push(...t.baseColumns);
    }
    return out;
  }

  async #ensure(oids: readonly number[]): Promise<void> {
    let missing = [...new Set(oids.filter((id) => !this.#tables.has(id)))];
    const views: number[] = [];
    for (let depth = 0; missing.length > 0 && depth < MAX_VIEW_DEPTH; depth++) {
      const found = await this.#load(missing);
      views.push(...found.views);
      missing = found.referenced.filter((id) => !this.#tables.has(id));
    }
    // Resolve views innermost first so a view on a view inherits its base columns.
    for (const v of views.reverse()) this.#baseColumnsOf(v, 0);
  }

  #baseColumnsOf(oid: number, depth: number): string[] {
    const t = this.#tables.get(oid);
    if (!t) return [];
    if (t.kind !== 'v' && t.kind !== 'm') return [...t.columns.values()].map((c) => `${t.table}.${c}`);
    if (t.baseColumns && depth > 0) return t.baseColumns;
    const deps = this.#viewDeps.get(oid) ?? [];
    const out = new Set<string>();
    for (const d of deps) {
      const bt = this.#tables.get(d.oid);
      if (!bt) continue;
      if ((bt.kind === 'v' || bt.kind === 'm') && depth < MAX_VIEW_DEPTH) {
        for (const c of this.#baseColumnsOf(d.oid, depth + 1)) out.add(c);
      } else {
        const col = bt.columns.get(d.attnum);
        if (col) out.add(`${bt.table}.${col}`);
      }
    }
    t.baseColumns = [...out];
    return t.baseColumns;
  }

  readonly #viewDeps = new Map<number, Array<{ oid: number; attnum: number }>>();

  async #load(oids: number[]): Promise<{ views: number[]; referenced: number[] }> {
    const r = await this.#pool.query<{ oid: number; nspname: string; relname: string; relkind: string; attnum: number | null; attname: string | null }>(
      `SELECT c.oid::int AS oid, n.nspname, c.relname, c.relkind::text AS relkind, a.attnum::int AS attnum, a.attname
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.oid = ANY($1::oid[])`,
      [oids],
    );
    const views: number[] = [];
    for (const row of r.rows) {
      let t = this.#tables.get(row.oid);
      if (!t) {
        t = { table: `${row.nspname}.${row.relname}`, kind: row.relkind, columns: new Map() };
        this.#tables.set(row.oid, t);
        this.#byName.set(t.table, row.oid);
        if (row.relkind === 'v' || row.relkind === 'm') views.push(row.oid);
      }
      if (row.attnum !== null && row.attname !== null) t.columns.set(row.attnum, row.attname);
    }
    const referenced: number[] = [];
    if (views.length > 0) {
      // The view's rewrite rule depends on each base column it uses (refobjsubid = attnum).
      const d = await this.#pool.query<{ view: number; oid: number; attnum: number }>(
        `SELECT DISTINCT r.ev_class::int AS view, d.refobjid::int AS oid, d.refobjsubid::int AS attnum
           FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
          WHERE r.ev_class = ANY($1::oid[]) AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class AND d.refobjsubid > 0`,
        [views],
      );
      for (const row of d.rows) {
        const list = this.#viewDeps.get(row.view) ?? [];
        list.push({ oid: row.oid, attnum: row.attnum });
        this.#viewDeps.set(row.view, list);
        referenced.push(row.oid);
      }
    }
    return { views, referenced };
  }
}
