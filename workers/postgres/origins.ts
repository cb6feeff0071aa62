/**
 * Resolves the (tableID, columnID) pairs that PostgreSQL reports for each result field
 * to schema.table.column, once per table and intent (cached for the intent), so an alias never hides a column.
 * Column 0 of a table is a whole-row reference. A view reports its own column, not the
 * base table's, so for a view (or materialized view) the resolver also collects the base
 * columns it draws on, through nested views: the runtime masks a view column whole when
 * any of those is sensitive (conservative: the catalog does not say which view column
 * comes from which base column).
 *
 * What the catalogue does not show by column is made conservative here:
 * - A view whose rewrite rule holds a whole-row reference (`c::text`, `row_to_json(c)`,
 *   `to_jsonb(c)`) records a dependency on at most the table as a whole, or none at all beside a
 *   column it also names: such a view draws on every column of every relation it reads.
 * - A partition or inheritance child holds its parent's rows under its own name (and a parent its
 *   children's): a column is also each relative's column of the same name, so a rule written on
 *   either covers both.
 * - A view that calls a function the classifier does not know to read no relation (one an operator
 *   wrote: `email_of(id)` reads customers.email; `query_to_xml`), or reads a catalogue that hands
 *   back data values (`pg_stats`), draws on what the catalogue does not show: it is opaque, its
 *   columns are masked whole and a filter or copy of it is refused, as for such a call in SQL.
 * - A generated column (`GENERATED ALWAYS AS (lower(email))`) holds what it is computed from.
 */
import type pg from 'pg';
import { classifySqlCached, isKnownSafePg } from '../../classify/index.ts';
import type { FieldInfo } from '../executor.ts';
import { valueCatalog } from './catalogs.ts';

interface TableInfo {
  table: string;
  kind: string;
  columns: Map<number, string>;
  /** For views: base columns (schema.table.column) the view draws on, transitively. */
  baseColumns?: string[];
  /** Partition and inheritance ancestors and descendants (schema.table). */
  relatives?: string[];
  /** For views: why what it draws on cannot be traced (an unknown function, a value catalogue), transitively. */
  opaque?: string;
  /** Generated columns (GENERATED ALWAYS AS …): the columns of the table each is computed from. */
  generated?: Map<string, string[]>;
}

const MAX_VIEW_DEPTH = 16;
const SYSTEM_SCHEMA = /^(pg_catalog|information_schema)\./;

/** A relation's row (one per column) as relationsSql reads it. */
interface LoadRow {
  oid: number;
  nspname: string;
  relname: string;
  relkind: string;
  attnum: number | null;
  attname: string | null;
  relatives: string[] | null;
  generated_from: string[] | null;
}

/** An index of a relation, for maskedOrder. */
interface IndexRow {
  rel: string;
  relname: string;
  idx: string;
  clustered: boolean;
  expr: boolean;
  cols: string[];
}

/** A partition and its partitioned parent, for maskedOrder. */
interface PartitionRow {
  rel: string;
  relname: string;
  part_parent: string | null;
  part_cols: string[] | null;
}

/**
 * Each relation `where` picks (over pg_class c), its columns and, only for one that has any, its
 * partition or inheritance relatives up and down: one row per column.
 */
function relationsSql(where: string): string {
  return `WITH rels AS (
         SELECT c.oid, n.nspname, c.relname, c.relkind,
                CASE WHEN c.relhassubclass OR c.relispartition OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) THEN (
                  WITH RECURSIVE up(rel) AS (SELECT c.oid UNION SELECT i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.rel),
                                 down(rel) AS (SELECT c.oid UNION SELECT i.inhrelid FROM down JOIN pg_inherits i ON i.inhparent = down.rel)
                  SELECT array_agg(DISTINCT rn.nspname || '.' || rc.relname)
                    FROM (SELECT rel FROM up UNION SELECT rel FROM down) x
                    JOIN pg_class rc ON rc.oid = x.rel JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                   WHERE x.rel <> c.oid) END AS relatives
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE ${where})
       SELECT r.oid::int AS oid, r.nspname, r.relname, r.relkind::text AS relkind, a.attnum::int AS attnum, a.attname, r.relatives,
              CASE WHEN a.attgenerated <> '' THEN (
                SELECT array_agg(ra.attname::text) FROM pg_attrdef ad
                  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                  JOIN pg_attribute ra ON ra.attrelid = d.refobjid AND ra.attnum = d.refobjsubid
                 WHERE ad.adrelid = r.oid AND ad.adnum = a.attnum AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = r.oid AND d.refobjsubid > 0 AND d.refobjsubid <> a.attnum) END AS generated_from
         FROM rels r LEFT JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped`;
}

const RELATIONS_BY_OID = relationsSql('c.oid = ANY($1::oid[])');

/** The indexes of relations (pg_index i, the table c in namespace n); a WHERE follows. */
const INDEXES_SQL = `SELECT n.nspname || '.' || c.relname AS rel, c.relname, ic.relname AS idx, i.indisclustered AS clustered,
        (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) AS expr,
        ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) AND a.attnum > 0) AS cols
   FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class ic ON ic.oid = i.indexrelid`;

/** Partitions (child c in n) of partitioned tables (pc in pn), with the key's columns; a WHERE follows. */
const PARTITIONS_SQL = `SELECT n.nspname || '.' || c.relname AS rel, c.relname, pn.nspname || '.' || pc.relname AS part_parent,
        ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = p.partrelid AND a.attnum = ANY(p.partattrs) AND a.attnum > 0) AS part_cols
   FROM pg_inherits i JOIN pg_partitioned_table p ON p.partrelid = i.inhparent
   JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   JOIN pg_class pc ON pc.oid = p.partrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace`;

/**
 * pg_class rows (c, with namespace n) named `schema.table` by $1, with $2 the relation names those
 * can end in (relnameCandidates): the name is matched whole, as before, and pg_class is reached
 * through its index on relname instead of read whole for each intent.
 */
const BY_NAME = `pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = ANY($2::name[]) AND (n.nspname || '.' || c.relname) = ANY($1::text[])`;

/** Every relname `schema.table` can hold: what follows each dot (a quoted name may hold dots too). */
function relnameCandidates(names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const name of names) for (let i = name.indexOf('.'); i >= 0; i = name.indexOf('.', i + 1)) out.add(name.slice(i + 1));
  return [...out];
}

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

  /**
   * A catalogue query as a named prepared statement: the server plans it once per connection and
   * reuses the plan. Planning was most of the cost: 2 to 5 ms for the prefetch's query, which
   * then runs in 0.2 to 0.6 ms. Each name stands for one text. Only the resolver's own pool runs
   * them, and its connections are never reset (DISCARD ALL), so the statements stay prepared.
   */
  #query<R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    return this.#pool.query<R>({ name: `writ-origins-${name}`, text, values });
  }

  /** Names looked up in this intent that the catalogue does not hold (a CTE's, another session's temp table). */
  readonly #absent = new Set<string>();
  /** The index and partition rows maskedOrder reads, fetched by prefetch for `names`. */
  #orderRows: { names: Set<string>; indexes: IndexRow[]; partitions: PartitionRow[] } | undefined;

  /**
   * Everything this intent's checks read about the relations its statements name, in one round
   * trip before they run: each relation and its columns (what columnsOf loads), and the indexes
   * and partitioning that maskedOrder reads. Four catalogue round trips before a statement on a
   * table with a masked column were the largest part of its time in the worker (about 6 ms of a
   * 1,000-row read's 24). A view still has its rules read the way #ensure reads them, and a
   * relation reached only through one (a view's base table, a partition) is read when asked for.
   */
  async prefetch(tables: readonly string[]): Promise<void> {
    const names = [...new Set(tables)].filter((t) => !this.#byName.has(t) && !this.#absent.has(t));
    if (names.length === 0) return;
    const r = await this.#query<{ rels: LoadRow[] | null; indexes: IndexRow[] | null; partitions: PartitionRow[] | null }>(
      'prefetch',
      `WITH want AS (SELECT c.oid FROM ${BY_NAME})
       SELECT (SELECT json_agg(x) FROM (${relationsSql('c.oid IN (SELECT oid FROM want)')}) x) AS rels,
              (SELECT json_agg(x) FROM (${INDEXES_SQL} WHERE i.indrelid IN (SELECT oid FROM want)) x) AS indexes,
              (SELECT json_agg(x) FROM (${PARTITIONS_SQL} WHERE i.inhrelid IN (SELECT oid FROM want) OR p.partrelid IN (SELECT oid FROM want)) x) AS partitions`,
      [names, relnameCandidates(names)],
    );
    const row = r.rows[0];
    const views = this.#absorb(row?.rels ?? []);
    for (const t of names) if (!this.#byName.has(t)) this.#absent.add(t);
    this.#orderRows = { names: new Set(names), indexes: row?.indexes ?? [], partitions: row?.partitions ?? [] };
    if (views.length > 0) await this.#ensureViews(views);
  }

  async resolve(fields: readonly pg.FieldDef[]): Promise<FieldInfo[]> {
    await this.#ensure(fields.map((f) => f.tableID).filter((id) => id !== 0));
    return fields.map((f) => {
      if (f.tableID === 0) return { name: f.name, origin: null };
      const t = this.#tables.get(f.tableID);
      // An OID we cannot name is still a table column: the masking engine fails closed on it.
      if (!t) return { name: f.name, origin: { table: `oid:${f.tableID}`, column: String(f.columnID) } };
      if (t.opaque) return { name: f.name, origin: null, opaque: t.opaque };
      const cols = [...t.columns.values()];
      const info: FieldInfo =
        f.columnID === 0
          ? { name: f.name, origin: { table: t.table, column: '*' }, wholeRow: true, tableColumns: cols }
          : { name: f.name, origin: { table: t.table, column: t.columns.get(f.columnID) ?? String(f.columnID) } };
      if (t.baseColumns) info.viewSources = t.baseColumns;
      else if (t.relatives || t.generated) {
        const named = f.columnID === 0 ? cols : [info.origin!.column];
        const from = [...named, ...named.flatMap((c) => t.generated?.get(c) ?? [])];
        info.viewSources = [...from.map((c) => `${t.table}.${c}`), ...relativeColumns(t, from)];
      }
      return info;
    });
  }

  /** Every column of the named tables (schema.table), for whole-row references seen in SQL facts. */
  async columnsOf(tables: readonly string[]): Promise<string[]> {
    const unknown = tables.filter((t) => !this.#byName.has(t) && !this.#absent.has(t));
    if (unknown.length > 0) {
      const r = await this.#query<{ oid: number }>('by-name', `SELECT c.oid::int AS oid FROM ${BY_NAME}`, [unknown, relnameCandidates(unknown)]);
      await this.#ensure(r.rows.map((x) => x.oid));
      for (const t of unknown) if (!this.#byName.has(t)) this.#absent.add(t);
    }
    const out: string[] = [];
    for (const name of tables) {
      const t = this.#tables.get(this.#byName.get(name) ?? -1);
      if (!t) continue;
      for (const c of t.columns.values()) out.push(`${t.table}.${c}`);
      if (t.baseColumns) out.push(...t.baseColumns); // a whole row of a view is all it draws on
      if (t.relatives) out.push(...relativeColumns(t, [...t.columns.values()]));
    }
    return out;
  }

  /**
   * `columns` (schema.table.column) with what each also is: each partition or inheritance
   * relative's column of the same name, and for a generated column the columns it is computed from.
   */
  async withRelatives(columns: readonly string[]): Promise<string[]> {
    const tables = [...new Set(columns.map((c) => c.slice(0, c.lastIndexOf('.'))))];
    await this.columnsOf(tables);
    const out = new Set(columns);
    for (const c of columns) {
      const at = c.lastIndexOf('.');
      const t = this.#tables.get(this.#byName.get(c.slice(0, at)) ?? -1);
      // A generated column holds what it is computed from (email_norm = lower(email)).
      const from = [c.slice(at + 1), ...(t?.generated?.get(c.slice(at + 1)) ?? [])];
      for (const g of from.slice(1)) out.add(`${t!.table}.${g}`);
      if (t?.relatives) for (const r of relativeColumns(t, from)) out.add(r);
    }
    return [...out];
  }

  /**
   * What may hand rows back in the order of a column `masked` picks, for the named relations (views
   * by their base tables, partitions and inheritance relatives included; a column is masked when
   * it or a relative's column of its name is): the indexes holding such a column (an index scan,
   * or an index-only scan of `(email) INCLUDE (id)`, reads in its order; an index on an expression
   * or with a predicate counts when its table holds one), and the relations whose physical order
   * follows one, which a heap scan reads in that order: clustered on such an index, a materialized
   * view over one, the partitions of a table partitioned by one. (A table loaded in a masked
   * column's order, or clustered and then SET WITHOUT CLUSTER, is not seen: statistics could show it,
   * but a correlation threshold refused ORDER BY id on ordinary tables; docs/threat-model.md.) `masked`: every relation holding
   * a masked column (their `ctid` and `tableoid` give a row's place). `partitionedBy`: partitions
   * of a table partitioned by a masked column (reading one is a filter on it). `ordered`: views
   * whose own definition depends on the order rows reach it (`string_agg(id)` over such a table).
   * `relations`: those of the named relations that lead to any of it.
   */
  async maskedOrder(
    tables: readonly string[],
    masked: (columns: readonly string[]) => string[],
  ): Promise<{ indexes: Set<string>; physical: Set<string>; masked: Set<string>; partitionedBy: Set<string>; ordered: Set<string>; relations: Set<string> }> {
    const out = { indexes: new Set<string>(), physical: new Set<string>(), masked: new Set<string>(), partitionedBy: new Set<string>(), ordered: new Set<string>(), relations: new Set<string>() };
    const basesOf = new Map<string, string[]>();
    for (const name of tables) {
      const cols = await this.withRelatives([...(await this.columnsOf([name])), ...(await this.viewBaseColumns([name]))]);
      basesOf.set(name, [...new Set([name, ...cols.map((c) => c.slice(0, c.lastIndexOf('.')))])]);
    }
    /** A relation's masked columns, by its own names (a relative's rule counts). */
    const maskedOf = async (t: TableInfo): Promise<string[]> => {
      const cols = [...t.columns.values()];
      const hit = new Set(masked(await this.withRelatives(cols.map((c) => `${t.table}.${c}`))).map((c) => c.slice(c.lastIndexOf('.') + 1)));
      return cols.filter((c) => hit.has(c));
    };
    const hazardous = new Map<string, string[]>();
    for (const b of new Set([...basesOf.values()].flat())) {
      const t = this.#tables.get(this.#byName.get(b) ?? -1);
      if (!t || t.kind === 'v') continue;
      const cols = t.kind === 'm' ? (masked(t.baseColumns ?? []).length > 0 ? [...t.columns.values()] : []) : await maskedOf(t);
      if (cols.length === 0) continue;
      hazardous.set(b, cols);
      out.masked.add(b);
      // A materialized view is stored in the order its query produced.
      if (t.kind === 'm') out.physical.add(t.table.slice(t.table.indexOf('.') + 1));
    }
    // Views (and the views they read) whose own definition depends on the order rows reach it.
    const viewsOf = new Map<string, number[]>();
    for (const name of basesOf.keys()) {
      const seen = new Set<number>();
      const walk = (oid: number, depth: number): void => {
        const t = this.#tables.get(oid);
        if (!t || (t.kind !== 'v' && t.kind !== 'm') || seen.has(oid) || depth > MAX_VIEW_DEPTH) return;
        seen.add(oid);
        for (const d of this.#viewDeps.get(oid) ?? []) walk(d.oid, depth + 1);
      };
      walk(this.#byName.get(name) ?? -1, 0);
      if (seen.size > 0) viewsOf.set(name, [...seen]);
    }
    if (hazardous.size > 0 && viewsOf.size > 0) {
      const defs = await this.#query<{ oid: number; def: string | null }>('view-defs', 'SELECT c.oid::int AS oid, pg_get_viewdef(c.oid) AS def FROM pg_class c WHERE c.oid = ANY($1::oid[])', [
        [...new Set([...viewsOf.values()].flat())],
      ]);
      // A definition that cannot be read or classified counts as order-dependent.
      const ordered = new Set(
        defs.rows.filter((d) => !d.def || classifySqlCached(d.def).error !== undefined || classifySqlCached(d.def).statements.some((st) => st.orderDependent === true)).map((d) => d.oid),
      );
      for (const [name, oids] of viewsOf) if (oids.some((o) => ordered.has(o))) out.ordered.add(name);
    }
    if (hazardous.size > 0) {
      const names = [...hazardous.keys()];
      // Read beforehand (prefetch) when every relation asked about was; else asked for now.
      const pre = this.#orderRows;
      const all = [...new Set([...names, ...tables])];
      const prefetched = pre !== undefined && all.every((n) => pre.names.has(n));
      const wanted = new Set(names);
      const indexes = prefetched
        ? pre.indexes.filter((x) => wanted.has(x.rel))
        : (await this.#query<IndexRow>('indexes', `${INDEXES_SQL} WHERE (n.nspname || '.' || c.relname) = ANY($1::text[])`, [names])).rows;
      for (const row of indexes) {
        const cols = hazardous.get(row.rel) ?? [];
        if (!(row.expr || row.cols.some((c) => cols.includes(c)))) continue;
        out.indexes.add(row.idx);
        if (row.clustered) out.physical.add(row.relname);
      }
      // Partitions of a table partitioned by a masked column, read by name, and the partitions of such
      // a table read through it (an Append of them hands the rows back grouped by the key's ranges).
      const asked = new Set(all);
      const partitions = prefetched
        ? pre.partitions.filter((x) => asked.has(x.rel) || (x.part_parent !== null && asked.has(x.part_parent)))
        : (await this.#query<PartitionRow>('partitions', `${PARTITIONS_SQL} WHERE (n.nspname || '.' || c.relname) = ANY($1::text[]) OR (pn.nspname || '.' || pc.relname) = ANY($1::text[])`, [all]))
            .rows;
      for (const row of partitions) {
        // Partitioned by a masked column (or by an expression: unknown, so it counts).
        const byMasked = (row.part_cols ?? []).length === 0 || masked((row.part_cols ?? []).map((c) => `${row.part_parent}.${c}`)).length > 0;
        if (!byMasked) continue;
        // Read by its own name (a filter on the key), or only through its parent.
        if (asked.has(row.rel)) out.partitionedBy.add(row.rel);
        out.physical.add(row.relname);
      }
    }
    for (const [name, bases] of basesOf) {
      const lead = bases.some((b) => out.masked.has(b)) || out.partitionedBy.has(name) || out.ordered.has(name);
      if (lead) out.relations.add(name);
    }
    return out;
  }

  /** The named relations that are views whose base columns cannot be traced (see the header). */
  async opaqueViews(tables: readonly string[]): Promise<string[]> {
    await this.columnsOf(tables);
    return tables.filter((name) => this.#tables.get(this.#byName.get(name) ?? -1)?.opaque !== undefined);
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
    const missing = [...new Set(oids.filter((id) => !this.#tables.has(id)))];
    if (missing.length === 0) return;
    const r = await this.#query<LoadRow>('relations', RELATIONS_BY_OID, [missing]);
    await this.#ensureViews(this.#absorb(r.rows));
  }

  /** The rules of views just loaded, and what they read, through nested views. */
  async #ensureViews(loaded: number[]): Promise<void> {
    const views: number[] = [];
    let found = loaded;
    for (let depth = 0; found.length > 0 && depth < MAX_VIEW_DEPTH; depth++) {
      views.push(...found);
      const referenced = (await this.#rules(found)).filter((id) => !this.#tables.has(id));
      if (referenced.length === 0) break;
      const r = await this.#query<LoadRow>('relations', RELATIONS_BY_OID, [[...new Set(referenced)]]);
      found = this.#absorb(r.rows);
    }
    // Resolve views innermost first so a view on a view inherits its base columns.
    for (const v of views.reverse()) this.#baseColumnsOf(v, 0);
  }

  #baseColumnsOf(oid: number, depth: number): string[] {
    const t = this.#tables.get(oid);
    if (!t) return [];
    if (t.kind !== 'v' && t.kind !== 'm') {
      const cols = [...t.columns.values()];
      return [...cols.map((c) => `${t.table}.${c}`), ...(t.relatives ? relativeColumns(t, cols) : [])];
    }
    if (t.baseColumns && depth > 0) return t.baseColumns;
    const deps = this.#viewDeps.get(oid) ?? [];
    const whole = this.#wholeRowViews.has(oid);
    const fn = this.#viewCalls.get(oid);
    // PostgreSQL's own views (pg_settings, information_schema) call its catalogue functions by design;
    // a user's view over a value catalogue among them is caught by that catalogue's name below.
    if (fn && !SYSTEM_SCHEMA.test(t.table)) t.opaque ??= `opaque:view ${t.table} calls ${fn}`;
    const out = new Set<string>();
    for (const d of deps) {
      const bt = this.#tables.get(d.oid);
      if (!bt) continue;
      if (valueCatalog(bt.table)) t.opaque ??= `opaque:view ${t.table} reads ${bt.table}`;
      if ((bt.kind === 'v' || bt.kind === 'm') && depth < MAX_VIEW_DEPTH) {
        // A view read by column or whole: all it draws on (the catalogue does not say which of its columns).
        for (const c of this.#baseColumnsOf(d.oid, depth + 1)) out.add(c);
        if (bt.opaque) t.opaque ??= bt.opaque;
      } else if (whole) {
        for (const c of this.#baseColumnsOf(d.oid, depth + 1)) out.add(c);
      } else if (d.attnum > 0) {
        const col = bt.columns.get(d.attnum);
        if (col) {
          // A generated column holds what it is computed from: a view over email_norm shows lower(email).
          const from = [col, ...(bt.generated?.get(col) ?? [])];
          for (const c of from) out.add(`${bt.table}.${c}`);
          if (bt.relatives) for (const r of relativeColumns(bt, from)) out.add(r);
        }
      }
    }
    t.baseColumns = [...out];
    return t.baseColumns;
  }

  readonly #viewDeps = new Map<number, Array<{ oid: number; attnum: number }>>();
  /** Views whose rewrite rule holds a whole-row reference. */
  readonly #wholeRowViews = new Set<number>();
  /** Views whose rewrite rule calls a function not known to read no relation: its name. */
  readonly #viewCalls = new Map<number, string>();

  /** Relations just read (relationsSql's rows) into the intent's tables; returns the views among them. */
  #absorb(rows: readonly LoadRow[]): number[] {
    const views: number[] = [];
    for (const row of rows) {
      let t = this.#tables.get(row.oid);
      if (!t) {
        t = { table: `${row.nspname}.${row.relname}`, kind: row.relkind, columns: new Map(), ...(row.relatives?.length ? { relatives: row.relatives } : {}) };
        this.#tables.set(row.oid, t);
        this.#byName.set(t.table, row.oid);
        if (row.relkind === 'v' || row.relkind === 'm') views.push(row.oid);
      }
      if (row.attnum !== null && row.attname !== null) {
        t.columns.set(row.attnum, row.attname);
        if (row.generated_from?.length) (t.generated ??= new Map()).set(row.attname, row.generated_from);
      }
    }
    return views;
  }

  /** The rules of `views`: what each reads (into #viewDeps) and calls; returns the relations they read. */
  async #rules(views: readonly number[]): Promise<number[]> {
    const referenced: number[] = [];
    // The view's rewrite rule depends on each base column it uses (refobjsubid = attnum), or on
    // a relation as a whole (0) when it names none of its columns. A whole-row reference shows
    // only in the rule's stored tree, as a Var of attribute 0.
    const d = await this.#query<{ view: number; oid: number; attnum: number; whole: boolean }>(
      'rule-reads',
      `SELECT DISTINCT r.ev_class::int AS view, d.refobjid::int AS oid, d.refobjsubid::int AS attnum, r.ev_action::text ~ '\\{VAR :varno [0-9]+ :varattno 0 ' AS whole
         FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
        WHERE r.ev_class = ANY($1::oid[]) AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class`,
      [views],
    );
    // Every function the rule calls (also through an operator, an aggregate or a window), by OID
    // in its stored tree: built-ins are not in pg_depend, and query_to_xml reads what a string names.
    const calls = await this.#query<{ view: number; nspname: string; proname: string }>(
      'rule-calls',
      `SELECT r.ev_class::int AS view, n.nspname, p.proname
         FROM pg_rewrite r
         CROSS JOIN LATERAL (SELECT DISTINCT m[1]::oid AS fn FROM regexp_matches(r.ev_action::text, ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m) f
         JOIN pg_proc p ON p.oid = f.fn JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE r.ev_class = ANY($1::oid[])`,
      [views],
    );
    for (const c of calls.rows) {
      if ((c.nspname !== 'pg_catalog' || !isKnownSafePg(c.proname)) && !this.#viewCalls.has(c.view)) this.#viewCalls.set(c.view, `${c.nspname}.${c.proname}`);
    }
    for (const row of d.rows) {
      if (row.whole) this.#wholeRowViews.add(row.view);
      const list = this.#viewDeps.get(row.view) ?? [];
      list.push({ oid: row.oid, attnum: row.attnum });
      this.#viewDeps.set(row.view, list);
      referenced.push(row.oid);
    }
    return referenced;
  }
}

/** Each relative's column of the same name, for `columns` of `t`. */
function relativeColumns(t: TableInfo, columns: readonly string[]): string[] {
  return (t.relatives ?? []).flatMap((r) => columns.map((c) => `${r}.${c}`));
}
