/**
 * Resolves the (tableID, columnID) pairs that PostgreSQL reports for each result field
 * to schema.table.column, once per pair (cached), so an alias never hides a column.
 * Column 0 of a table is a whole-row reference.
 */
import type pg from 'pg';
import type { FieldInfo } from '../executor.ts';

export class OriginResolver {
  readonly #pool: pg.Pool;
  readonly #tables = new Map<number, { table: string; columns: Map<number, string> }>();

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async resolve(fields: readonly pg.FieldDef[]): Promise<FieldInfo[]> {
    const missing = [...new Set(fields.map((f) => f.tableID).filter((id) => id !== 0 && !this.#tables.has(id)))];
    if (missing.length > 0) await this.#load(missing);
    return fields.map((f) => {
      if (f.tableID === 0) return { name: f.name, origin: null };
      const t = this.#tables.get(f.tableID);
      // An OID we cannot name is still a table column: keep its number, so masking by name fails closed elsewhere.
      if (!t) return { name: f.name, origin: { table: `oid:${f.tableID}`, column: String(f.columnID) } };
      if (f.columnID === 0) return { name: f.name, origin: { table: t.table, column: '*' }, wholeRow: true };
      return { name: f.name, origin: { table: t.table, column: t.columns.get(f.columnID) ?? String(f.columnID) } };
    });
  }

  async #load(oids: number[]): Promise<void> {
    const r = await this.#pool.query<{ oid: number; nspname: string; relname: string; attnum: number | null; attname: string | null }>(
      `SELECT c.oid::int AS oid, n.nspname, c.relname, a.attnum::int AS attnum, a.attname
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.oid = ANY($1::oid[])`,
      [oids],
    );
    for (const row of r.rows) {
      let t = this.#tables.get(row.oid);
      if (!t) {
        t = { table: `${row.nspname}.${row.relname}`, columns: new Map() };
        this.#tables.set(row.oid, t);
      }
      if (row.attnum !== null && row.attname !== null) t.columns.set(row.attnum, row.attname);
    }
  }
}
