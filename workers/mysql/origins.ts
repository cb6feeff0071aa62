/**
 * Column origins from the protocol's column definitions. MySQL and MariaDB report, for each
 * result field, `schema`, `orgTable` (the table behind an alias) and `orgName` (the column
 * behind an alias), but what they report is not always a base column (checked on MariaDB 10.11):
 * - a base table, aliased or not: its database, real name and real column;
 * - a merged derived table or a CTE: the current database, the derived table's or CTE's alias
 *   as the table and the alias of the inner expression as the column (`db.s.x`);
 * - a materialized derived table: an empty database, the inner base table and the alias;
 * - a view: the view's alias as the table (its name when not aliased), the view's column;
 * - UNION: the first branch's column name and no table; expressions: nothing.
 * So an origin is trusted only when its database is named, its table is a base table or view
 * the catalogue shows, its column is one of that table's, and no row source of the statement
 * (derived table, CTE, alias of another table) goes by that table's name. Anything else is a
 * computed field, masked by the base columns the statement draws on. A view's column is masked
 * when any base column the view draws on is sensitive (the view's definition, classified); a
 * view whose definition calls a function the worker cannot see into (a stored function: the
 * view runs it as its definer, and `email_of(id)` read the masked column) is opaque.
 * A generated column (`AS (upper(email)) VIRTUAL` or `STORED`) holds what it is computed from:
 * its expression's columns (information_schema.COLUMNS.GENERATION_EXPRESSION, classified; every
 * column of its table when that cannot be read) count wherever the column does.
 */
import type { Pool } from 'mysql2';
import { classifyMysqlCached as classifyMysql, type SqlStatementFacts } from '../../classify/index.ts';
import type { FieldInfo } from '../executor.ts';
import { sourcesOf, untraceable, type ColumnCatalogue } from '../sql-common.ts';
import { forbiddenRelation } from './catalogs.ts';

/** The column definition fields mysql2 reports (FieldPacket). */
export interface ColumnDefinition {
  name: string;
  schema?: string;
  table?: string;
  orgTable?: string;
  orgName?: string;
}

interface TableInfo {
  /** `db.table` as the server spells it. */
  table: string;
  view: boolean;
  columns: string[];
  /** For views: the base columns it draws on, transitively; null when its definition cannot be read. */
  baseColumns?: string[] | null;
  /** For views: its definition (or a view it reads) depends on the order rows reach it (`GROUP_CONCAT(id)`). */
  orderDependent?: boolean;
  /** Generated columns by lower-case name: the columns (as the server spells them) each is computed from. */
  generated?: Map<string, string[]>;
}

const MAX_VIEW_DEPTH = 16;
const key = (db: string, table: string) => `${db}\u0000${table}`.toLowerCase();

export class MysqlCatalogue implements ColumnCatalogue {
  readonly #pool: Pool;
  readonly #database: string;
  readonly #tables = new Map<string, TableInfo | null>();

  constructor(pool: Pool, database: string) {
    this.#pool = pool;
    this.#database = database;
  }

  #query<T>(sql: string, args: unknown[]): Promise<T[]> {
    return new Promise((resolve, reject) => this.#pool.query(sql, args, (e, rows) => (e ? reject(e) : resolve(rows as T[]))));
  }

  /**
   * What the worker cannot hold a write to `tables` to. `uncounted`: a write changes more rows
   * than its own count reports: a child table's foreign key that cascades (ON DELETE/UPDATE
   * CASCADE, SET NULL, SET DEFAULT: InnoDB runs those outside the statement's affected-rows
   * count), a trigger, or a view (whose base tables' triggers and cascades are not looked up).
   * `nonTransactional`: a base table whose engine cannot roll back (MyISAM, Aria, MEMORY…), so
   * neither a limit nor a failure can undo a write to it. Found in information_schema as `via`
   * sees it (the write credential's pool): what that user cannot see is not found (docs).
   */
  async writeHazards(tables: readonly string[], via: Pool = this.#pool): Promise<{ uncounted: string[]; nonTransactional: string[] }> {
    if (tables.length === 0) return { uncounted: [], nonTransactional: [] };
    const q = <T>(sql: string, args: unknown[]) => new Promise<T[]>((resolve, reject) => via.query(sql, args, (e, rows) => (e ? reject(e) : resolve(rows as T[]))));
    const where = (names: ReadonlyArray<[string, string]>, schema: string, table: string) => names.map(() => `(LOWER(${schema}) = ? AND LOWER(${table}) = ?)`).join(' OR ');
    const name = (r: { s: string; t: string }) => `${r.s}.${r.t}`;
    const split = (t: string) => this.#split(t).map((x) => x.toLowerCase()) as [string, string];
    // Every table a write can reach: the written ones, a view's base tables (its definition read
    // and classified), and what their triggers write, followed to a depth. A write through a view
    // over a MyISAM table, or a trigger writing one, was kept after the batch was reported rolled
    // back; a definition or trigger body the worker cannot read is a table it cannot check.
    const reached = new Set<string>();
    const nonTransactional = new Set<string>();
    let frontier = [...new Set(tables.map((t) => split(t).join('.')))];
    let uncounted: string[] = [];
    for (let depth = 0; frontier.length > 0; depth++) {
      for (const t of frontier) reached.add(t);
      if (depth >= MAX_VIEW_DEPTH) {
        for (const t of frontier) nonTransactional.add(`${t} (nested too deeply to check)`);
        break;
      }
      const names = frontier.map((t) => split(t));
      const args = names.flat();
      const info = await q<{ s: string; t: string; type: string; engine: string | null; def: string | null }>(
        `SELECT T.TABLE_SCHEMA AS s, T.TABLE_NAME AS t, T.TABLE_TYPE AS type, T.ENGINE AS engine, V.VIEW_DEFINITION AS def FROM information_schema.TABLES T LEFT JOIN information_schema.VIEWS V ON V.TABLE_SCHEMA = T.TABLE_SCHEMA AND V.TABLE_NAME = T.TABLE_NAME WHERE ${where(names, 'T.TABLE_SCHEMA', 'T.TABLE_NAME')}`,
        args,
      );
      const triggers = await q<{ s: string; t: string; body: string | null }>(
        `SELECT EVENT_OBJECT_SCHEMA AS s, EVENT_OBJECT_TABLE AS t, ACTION_STATEMENT AS body FROM information_schema.TRIGGERS WHERE ${where(names, 'EVENT_OBJECT_SCHEMA', 'EVENT_OBJECT_TABLE')}`,
        args,
      );
      if (depth === 0) {
        const fks = await q<{ s: string; t: string }>(
          `SELECT UNIQUE_CONSTRAINT_SCHEMA AS s, REFERENCED_TABLE_NAME AS t FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE (${where(names, 'UNIQUE_CONSTRAINT_SCHEMA', 'REFERENCED_TABLE_NAME')}) AND (DELETE_RULE NOT IN ('RESTRICT', 'NO ACTION') OR UPDATE_RULE NOT IN ('RESTRICT', 'NO ACTION'))`,
          args,
        );
        uncounted = [...new Set([...fks, ...triggers, ...info.filter((r) => r.type === 'VIEW')].map(name))];
      }
      const next: string[] = [];
      const follow = (sql: string | null, schema: string, what: string, pick: (st: SqlStatementFacts) => readonly string[]) => {
        const facts = sql ? classifyMysql(sql) : undefined;
        if (!facts || facts.error) {
          nonTransactional.add(`${what} (its definition cannot be read, so what it writes cannot be checked)`);
          return;
        }
        for (const st of facts.statements) for (const t of pick(qualifyFacts(st, schema))) next.push(split(t).join('.'));
      };
      for (const r of info) {
        if (r.type === 'VIEW') follow(r.def, r.s, name(r), (st) => [...st.tablesRead, ...st.tablesWritten]);
        else if ((r.engine ?? '').toLowerCase() !== 'innodb') nonTransactional.add(name(r));
      }
      for (const tr of triggers) follow(tr.body, tr.s, `a trigger on ${name(tr)}`, (st) => st.tablesWritten);
      frontier = [...new Set(next)].filter((t) => !reached.has(t));
    }
    return { uncounted, nonTransactional: [...nonTransactional] };
  }

  /**
   * A catalogue of its own for one intent: what names stand for is read for each intent. A cache
   * kept for the worker's life traced a view a migration (or a write grant's CREATE OR REPLACE
   * VIEW) had redefined by its old definition, and kept "no such table" for a view made since:
   * the masked column came back in clear.
   */
  fresh(): MysqlCatalogue {
    return new MysqlCatalogue(this.#pool, this.#database);
  }

  /** `db.table` → [db, table]; an unqualified name is in the target's database. */
  #split(name: string): [string, string] {
    const i = name.indexOf('.');
    return i < 0 ? [this.#database, name] : [name.slice(0, i), name.slice(i + 1)];
  }

  async #ensure(names: ReadonlyArray<[string, string]>, depth = 0): Promise<void> {
    const missing = [...new Map(names.filter(([d, t]) => !this.#tables.has(key(d, t))).map((n) => [key(...n), n])).values()];
    if (missing.length === 0) return;
    // Case-insensitively: the classifier folds names, the server (on Linux) does not; a name that
    // matches two tables takes both (over-inclusive, never under).
    const where = missing.map(() => '(LOWER(TABLE_SCHEMA) = ? AND LOWER(TABLE_NAME) = ?)').join(' OR ');
    const args = missing.flat().map((x) => x.toLowerCase());
    const tables = await this.#query<{ TABLE_SCHEMA: string; TABLE_NAME: string; TABLE_TYPE: string }>(
      `SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE ${where}`,
      args,
    );
    // GENERATION_EXPRESSION: NULL (MariaDB) or '' (MySQL) for a stored column, the expression for a generated one.
    const cols = await this.#query<{ TABLE_SCHEMA: string; TABLE_NAME: string; COLUMN_NAME: string; GENERATION_EXPRESSION: string | null }>(
      `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE ${where} ORDER BY ORDINAL_POSITION`,
      args,
    );
    for (const n of missing) this.#tables.set(key(...n), null);
    const views: TableInfo[] = [];
    for (const r of tables) {
      const k = key(r.TABLE_SCHEMA, r.TABLE_NAME);
      const prev = this.#tables.get(k);
      if (prev) {
        // two tables whose names differ in case only: one entry for both, a view if either is
        prev.view ||= r.TABLE_TYPE === 'VIEW';
        if (prev.view && !views.includes(prev)) views.push(prev);
        continue;
      }
      const info: TableInfo = { table: `${r.TABLE_SCHEMA}.${r.TABLE_NAME}`, view: r.TABLE_TYPE === 'VIEW', columns: [] };
      this.#tables.set(k, info);
      if (info.view) views.push(info);
    }
    for (const c of cols) this.#tables.get(key(c.TABLE_SCHEMA, c.TABLE_NAME))?.columns.push(c.COLUMN_NAME);
    for (const c of cols) {
      const t = this.#tables.get(key(c.TABLE_SCHEMA, c.TABLE_NAME));
      if (t && !t.view && c.GENERATION_EXPRESSION) (t.generated ??= new Map()).set(c.COLUMN_NAME.toLowerCase(), generatedFrom(c.GENERATION_EXPRESSION, t.columns));
    }
    if (views.length > 0) await this.#loadViews(views, depth);
  }

  /** Each column with the columns it is computed from when it is a generated one (same table, as the server spells them). */
  async withRelatives(columns: readonly string[]): Promise<string[]> {
    const tableOf = (c: string) => c.slice(0, c.lastIndexOf('.'));
    await this.#ensure([...new Set(columns.map(tableOf))].map((t) => this.#split(t)));
    const out = new Set(columns);
    for (const c of columns) {
      const table = tableOf(c);
      const t = this.#tables.get(key(...this.#split(table)));
      for (const from of t?.generated?.get(c.slice(table.length + 1).toLowerCase()) ?? []) out.add(`${t!.table}.${from}`);
    }
    return [...out];
  }

  /** A view's base columns: its definition classified, nested views followed; unreadable ones stay null. */
  async #loadViews(views: TableInfo[], depth: number): Promise<void> {
    const where = views.map(() => '(LOWER(TABLE_SCHEMA) = ? AND LOWER(TABLE_NAME) = ?)').join(' OR ');
    const defs = await this.#query<{ TABLE_SCHEMA: string; TABLE_NAME: string; VIEW_DEFINITION: string | null }>(
      `SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE ${where}`,
      views.flatMap((v) => this.#split(v.table).map((x) => x.toLowerCase())),
    );
    for (const v of views) v.baseColumns = null;
    const seen = new Set<TableInfo>();
    for (const d of defs) {
      const v = this.#tables.get(key(d.TABLE_SCHEMA, d.TABLE_NAME));
      // Two views under one folded name: their definitions' sources are merged, and an unreadable one poisons both.
      if (v && seen.has(v) && v.baseColumns === null) continue;
      // An empty definition: the worker's user lacks SHOW VIEW. Unknown sources are never cleared.
      if (!v || !d.VIEW_DEFINITION || depth >= MAX_VIEW_DEPTH) continue;
      const facts = classifyMysql(d.VIEW_DEFINITION);
      // A function it cannot see into (a stored function runs as the view's definer and may read any column) leaves it opaque.
      if (facts.error || facts.statements.some(untraceable)) continue;
      const qualified = facts.statements.map((st) => qualifyFacts(st, d.TABLE_SCHEMA));
      // A view over statistics or other sessions' statements hands back values no column rule names.
      if (qualified.some((st) => st.tablesRead.some((x) => forbiddenRelation(x) !== undefined))) continue;
      const inner = new Catalogue(this, depth + 1);
      const found = await sourcesOf(inner, qualified);
      v.baseColumns = inner.unknown ? null : [...(seen.has(v) ? (v.baseColumns ?? []) : []), ...found];
      v.orderDependent ||= qualified.some((st) => st.orderDependent === true) || qualified.some((st) => st.tablesRead.some((r) => this.#tables.get(key(...this.#split(r)))?.orderDependent === true));
      seen.add(v);
    }
  }

  /** Info of a `db.table`, loading it (and its view's base columns) on first use. */
  async info(name: string, depth = 0): Promise<TableInfo | null> {
    const [d, t] = this.#split(name);
    await this.#ensure([[d, t]], depth);
    return this.#tables.get(key(d, t)) ?? null;
  }

  async columnsOf(tables: readonly string[]): Promise<string[]> {
    await this.#ensure(tables.map((t) => this.#split(t)));
    const out: string[] = [];
    for (const name of tables) {
      const t = this.#tables.get(key(...this.#split(name)));
      if (!t) continue;
      for (const c of t.columns) out.push(`${t.table}.${c}`);
      if (t.baseColumns) out.push(...t.baseColumns); // a whole row of a view is all it draws on
    }
    return out;
  }

  async viewBaseColumns(tables: readonly string[]): Promise<string[]> {
    await this.#ensure(tables.map((t) => this.#split(t)));
    const out: string[] = [];
    for (const name of tables) {
      const t = this.#tables.get(key(...this.#split(name)));
      if (t?.baseColumns) out.push(...t.baseColumns);
    }
    return out;
  }

  /**
   * What may hand rows back in the order of a column `masked` picks: the indexes holding such a
   * column (InnoDB reads a covering secondary index in its order), and the tables whose primary
   * key holds one (a table scan runs in primary-key order, and every secondary index ends with
   * the primary key). `relations`: those tables and the views over them, by lower-case name.
   */
  async maskedOrder(
    tables: readonly string[],
    masked: (columns: readonly string[]) => string[],
  ): Promise<{ indexes: Set<string>; primaryKeyed: boolean; ordered: Set<string>; relations: Set<string> }> {
    const out = { indexes: new Set<string>(), primaryKeyed: false, ordered: new Set<string>(), relations: new Set<string>() };
    await this.#ensure(tables.map((t) => this.#split(t)));
    const baseOf = new Map<string, string[]>();
    for (const name of tables) {
      const t = this.#tables.get(key(...this.#split(name)));
      if (!t) continue;
      const bases = t.view ? [...new Set((t.baseColumns ?? []).map((c) => c.slice(0, c.lastIndexOf('.'))))] : [t.table];
      baseOf.set(t.table, bases);
    }
    const bases = [...new Set([...baseOf.values()].flat())];
    const hazardous = new Set<string>();
    for (const b of bases) if (masked(await this.columnsOf([b])).length > 0) hazardous.add(b);
    if (hazardous.size === 0) return out;
    const names = [...hazardous].map((b) => this.#split(b));
    const where = names.map(() => '(LOWER(TABLE_SCHEMA) = ? AND LOWER(TABLE_NAME) = ?)').join(' OR ');
    const rows = await this.#query<{ TABLE_SCHEMA: string; TABLE_NAME: string; INDEX_NAME: string; COLUMN_NAME: string | null }>(
      `SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE ${where}`,
      names.flat().map((x) => x.toLowerCase()),
    );
    const byTable = new Map<string, Map<string, string[]>>();
    for (const r of rows) {
      const t = `${r.TABLE_SCHEMA}.${r.TABLE_NAME}`;
      const idx = byTable.get(t) ?? new Map<string, string[]>();
      // An index on an expression has no column name: what it orders by is not known, so it counts.
      idx.set(r.INDEX_NAME, [...(idx.get(r.INDEX_NAME) ?? []), r.COLUMN_NAME === null ? '*' : `${t}.${r.COLUMN_NAME}`]);
      byTable.set(t, idx);
    }
    // A table partitioned by a masked column (or by an expression that may hold one) is scanned
    // partition by partition: its rows come back grouped by the column's ranges.
    const parts = await this.#query<{ TABLE_SCHEMA: string; TABLE_NAME: string; E: string | null; S: string | null }>(
      `SELECT TABLE_SCHEMA, TABLE_NAME, PARTITION_EXPRESSION AS E, SUBPARTITION_EXPRESSION AS S FROM information_schema.PARTITIONS WHERE (${where}) AND PARTITION_NAME IS NOT NULL`,
      names.flat().map((x) => x.toLowerCase()),
    );
    for (const p of parts) {
      const t = `${p.TABLE_SCHEMA}.${p.TABLE_NAME}`;
      const cols = masked(await this.columnsOf([t])).map((c) => c.slice(c.lastIndexOf('.') + 1).toLowerCase());
      const text = `${p.E ?? ''} ${p.S ?? ''}`.toLowerCase();
      if (cols.some((c) => new RegExp(`(^|[^a-z0-9_$])${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^a-z0-9_$])`).test(text))) out.primaryKeyed = true;
    }
    for (const idx of byTable.values()) {
      const primary = idx.get('PRIMARY');
      const primaryMasked = primary !== undefined && (primary.includes('*') || masked(primary).length > 0);
      if (primaryMasked) out.primaryKeyed = true;
      for (const [name, cols] of idx) if (primaryMasked || cols.includes('*') || masked(cols).length > 0) out.indexes.add(name.toLowerCase());
    }
    if (out.indexes.size === 0 && !out.primaryKeyed) return out;
    for (const [rel, bs] of baseOf) {
      if (!bs.some((b) => hazardous.has(b))) continue;
      out.relations.add(rel.toLowerCase());
      if (this.#tables.get(key(...this.#split(rel)))?.orderDependent === true) out.ordered.add(rel.toLowerCase());
    }
    return out;
  }

  /** Views among the named relations whose base columns cannot be known (definition unreadable). */
  async opaqueViews(tables: readonly string[]): Promise<string[]> {
    await this.#ensure(tables.map((t) => this.#split(t)));
    return tables.filter((name) => {
      const t = this.#tables.get(key(...this.#split(name)));
      return t?.view === true && !t.baseColumns;
    });
  }

  /**
   * The result's fields: trusted origins as base columns (views with their base columns),
   * everything else as computed fields drawing on `sources` (the statement's base columns).
   */
  async resolve(defs: readonly ColumnDefinition[], st: SqlStatementFacts, computed: () => Promise<Pick<FieldInfo, 'sources' | 'opaque'>>): Promise<FieldInfo[]> {
    const out: FieldInfo[] = [];
    let shared: Pick<FieldInfo, 'sources' | 'opaque'> | undefined;
    for (const f of defs) {
      const o = await this.#origin(f, st);
      // A generated column is masked by what it is computed from, as a view's column is by its base columns.
      if (o && !o.view && o.generatedFrom)
        out.push({ name: f.name, origin: { table: o.table, column: o.column }, viewSources: [`${o.table}.${o.column}`, ...o.generatedFrom.map((c) => `${o.table}.${c}`)] });
      else if (o && !o.view) out.push({ name: f.name, origin: { table: o.table, column: o.column } });
      else if (o && o.baseColumns) out.push({ name: f.name, origin: { table: o.table, column: o.column }, viewSources: o.baseColumns });
      // A view column whose base columns cannot be known is never cleared: computed and opaque.
      else if (o) out.push({ name: f.name, origin: null, opaque: `opaque:view:${o.table}` });
      else {
        shared ??= await computed();
        out.push({ name: f.name, origin: null, ...shared });
      }
    }
    return out;
  }

  async #origin(f: ColumnDefinition, st: SqlStatementFacts): Promise<{ table: string; column: string; view: boolean; baseColumns?: string[] | null; generatedFrom?: string[] } | null> {
    const db = f.schema ?? '';
    const table = f.orgTable ?? '';
    const column = f.orgName ?? '';
    if (!db || !table || !column) return null;
    // A row source of the statement that goes by this name but is not this table (a derived
    // table, a CTE, an alias of another table or view): the server may be reporting it.
    const lname = table.toLowerCase();
    const full = `${db}.${table}`.toLowerCase();
    const sameDb = db.toLowerCase() === this.#database.toLowerCase();
    for (const r of st.relations ?? []) {
      if (r.name !== lname) continue;
      if (r.table === null) return null;
      if (r.table !== full && !(sameDb && r.table === lname)) return null;
    }
    const info = await this.info(`${db}.${table}`);
    if (!info || !info.columns.some((c) => c.toLowerCase() === column.toLowerCase())) return null;
    // The origin as the server spells it (masking rules name it so).
    const generatedFrom = info.generated?.get(column.toLowerCase());
    return { table: `${db}.${table}`, column, view: info.view, ...(info.view ? { baseColumns: info.baseColumns ?? null } : {}), ...(generatedFrom ? { generatedFrom } : {}) };
  }
}

/** A view's catalogue one level deeper, which notes whether any view it met could not be read. */
class Catalogue implements ColumnCatalogue {
  unknown = false;
  constructor(
    readonly outer: MysqlCatalogue,
    readonly depth: number,
  ) {}
  async columnsOf(tables: readonly string[]): Promise<string[]> {
    if ((await this.outer.opaqueViews(tables)).length > 0) this.unknown = true;
    return this.outer.columnsOf(tables);
  }
  async viewBaseColumns(tables: readonly string[]): Promise<string[]> {
    if ((await this.outer.opaqueViews(tables)).length > 0) this.unknown = true;
    return this.outer.viewBaseColumns(tables);
  }
  // A view over a generated column draws on what it is computed from.
  withRelatives(columns: readonly string[]): Promise<string[]> {
    return this.outer.withRelatives(columns);
  }
}

/**
 * The columns of its table a generated column's expression reads: `SELECT <expr>` classified, its
 * column references matched to `columns`. Every column of the table when that cannot be done
 * (an expression the parser does not read, a name not among the columns): never fewer.
 */
function generatedFrom(expression: string, columns: readonly string[]): string[] {
  const facts = classifyMysql(`SELECT ${expression}`);
  const st = facts.statements[0];
  if (facts.error || facts.statements.length !== 1 || !st || st.kind !== 'select' || untraceable(st)) return [...columns];
  const out: string[] = [];
  for (const c of st.columns) {
    const found = columns.find((x) => x.toLowerCase() === c.column.toLowerCase());
    if (c.column === '*' || !found) return [...columns];
    out.push(found);
  }
  return [...new Set(out)];
}

/** The statement's facts with unqualified tables placed in `database` (the worker refuses USE, so it stays the current one). */
export function qualifyFacts(st: SqlStatementFacts, database: string): SqlStatementFacts {
  const q = (t: string) => (t.includes('.') ? t : `${database}.${t}`);
  const qc = (c: { table: string | null; column: string }) => ({ ...c, table: c.table === null ? null : q(c.table) });
  return {
    ...st,
    tablesRead: st.tablesRead.map(q),
    tablesWritten: st.tablesWritten.map(q),
    columns: st.columns.map(qc),
    columnsWritten: st.columnsWritten.map(qc),
    wholeRowTables: st.wholeRowTables.map(q),
    // Absent stays absent: the masked-filter check refuses facts that cannot say where columns are used.
    ...(st.filterColumns ? { filterColumns: st.filterColumns.map(qc) } : {}),
    ...(st.filterWholeRowTables ? { filterWholeRowTables: st.filterWholeRowTables.map(q) } : {}),
  };
}

/**
 * A user variable in a filter position may hold a value any statement of the batch up to it
 * read (`SELECT @x := email …; SELECT id FROM events WHERE @x LIKE 'a%'` filtered on the e-mail):
 * such a statement's filter reads gain every column and whole row those statements read.
 * Qualified facts in, qualified facts out.
 */
export function carryVariables(facts: readonly SqlStatementFacts[]): SqlStatementFacts[] {
  return facts.map((st, i) => {
    // Facts that do not say where they read stay so: the check refuses them whatever they read.
    if (!st.filterVariables || st.filterColumns === undefined || st.filterWholeRowTables === undefined) return st;
    const upTo = facts.slice(0, i + 1);
    return {
      ...st,
      filterColumns: [...st.filterColumns, ...upTo.flatMap((s) => s.columns)],
      filterWholeRowTables: [...new Set([...st.filterWholeRowTables, ...upTo.flatMap((s) => s.wholeRowTables)])],
    };
  });
}
