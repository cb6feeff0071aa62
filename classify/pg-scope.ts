/**
 * Name resolution for the PostgreSQL walker: what each query level makes
 * visible (tables, derived tables, CTEs, function results) and how a column
 * reference resolves to base-table columns through them.
 */
import type { ColumnFact } from './types.ts';
import { nodeOf, sval } from './pg-ast.ts';
import { isRowCallable } from './pg-catalog.ts';

/** Resolved columns (`*` for all of a table) and tables referenced as whole rows. */
export interface Resolved {
  origins: ColumnFact[];
  whole: string[];
  /** Functions the reference may call through attribute notation (`t.row_to_json` is `row_to_json(t)`). */
  calls?: string[];
}

/** One output column of a derived table (subquery, CTE) and the base columns it shows unchanged. */
interface Output {
  name: string;
  origins: ColumnFact[];
  /**
   * Every base column (`*` for a whole row) the output's expression reads, computed or not
   * (`length(email) AS l` has no origin but draws on email): what a filter on it reveals.
   */
  sources?: ColumnFact[];
}

/** What a derived table exposes: named outputs, plus tables whose every column it passes through (`SELECT *`). */
export interface Relation {
  outputs: Output[];
  /** Tables shown whole through a star; null when the star's source is not a visible table. */
  stars: Array<string | null>;
}

export type Entry = { name: string; kind: 'table'; table: string } | { name: string; kind: 'derived'; rel: Relation } | { name: string; kind: 'opaque' }; // function results, XMLTABLE, JSON_TABLE: no base table behind

/** Names visible at one query level; lookups go outwards through `parent`. */
export class Scope {
  readonly entries: Entry[] = [];
  readonly ctes = new Map<string, Relation>();
  constructor(readonly parent?: Scope) {}

  /** A new inner level (a subquery's). */
  child(): Scope {
    return new Scope(this);
  }

  /** Makes a base table visible under a name; returns this scope. */
  addTable(name: string, table: string): this {
    this.entries.push({ name, kind: 'table', table });
    return this;
  }

  findEntry(name: string): Entry | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const e = s.entries.find((x) => x.name === name);
      if (e) return e;
    }
    return undefined;
  }

  findCte(name: string): Relation | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const c = s.ctes.get(name);
      if (c) return c;
    }
    return undefined;
  }
}

/** Resolves a ColumnRef's fields to base columns (`*` for a star) and whole-row tables. */
export function resolveRef(fields: unknown[], scope: Scope, withSources = false): Resolved {
  const parts = fields.map((f) => (nodeOf(f, 'A_Star') ? '*' : (sval(f) ?? '?')));
  const last = parts[parts.length - 1] ?? '?';
  if (parts.length === 1) {
    if (last === '*') return starAll(scope, withSources);
    const entry = scope.findEntry(last);
    // PostgreSQL prefers a column of that name, and takes the whole row only when no row source has
    // one; the classifier cannot see columns, so it reports both (`FROM secrets s, other AS password
    // WHERE password LIKE …` reads secrets.password).
    if (entry) {
      const row = entryStar(entry, withSources);
      // Only another row source could have the column: of the aliased one, the whole row is read anyway.
      if (!hasOtherEntry(scope, entry)) return row;
      return { origins: [...row.origins, { table: null, column: last }], whole: row.whole };
    }
    return { origins: unqualified(last, scope, withSources), whole: [] };
  }
  const qual = parts[0] as string;
  const entry = scope.findEntry(qual);
  if (entry && parts.length <= 3) {
    const col = parts[1] as string; // with 3 parts: alias.compositecol.field
    if (col === '*') return entryStar(entry, withSources);
    const r: Resolved = { origins: entryColumn(entry, col, withSources), whole: [] };
    if (parts.length === 2) return orRowCall(r, col, entryStar(entry, withSources));
    return last === '*' ? r : orRowCall(r, last, { origins: [], whole: [] });
  }
  if (parts.length >= 3) {
    const table = parts.slice(-3, -1).join('.');
    const star: Resolved = { origins: [{ table, column: '*' }], whole: [table] };
    return last === '*' ? star : orRowCall({ origins: [{ table, column: last }], whole: [] }, last, star);
  }
  return { origins: [{ table: null, column: last }], whole: [] };
}

function hasOtherEntry(scope: Scope, entry: Entry): boolean {
  for (let s: Scope | undefined = scope; s; s = s.parent) if (s.entries.some((e) => e !== entry)) return true;
  return false;
}

/**
 * PostgreSQL reads `t.name` as `name(t)` when t has no column `name` and a function `name` takes the row
 * (attribute notation). The classifier sees no table columns, so when `name` is such a function it reports
 * both: the column, and a call of `name` on the whole row.
 */
export function orRowCall(column: Resolved, name: string, row: Resolved): Resolved {
  if (!isRowCallable(name)) return column;
  return { origins: [...column.origins, ...row.origins], whole: [...column.whole, ...row.whole], calls: [name] };
}

/** The entries a star target (`*`, `alias.*`) expands, when it names visible entries; undefined otherwise. */
export function starEntries(fields: unknown[], scope: Scope): Entry[] | undefined {
  if (fields.length === 1) {
    for (let s: Scope | undefined = scope; s; s = s.parent) if (s.entries.length) return s.entries;
    return undefined;
  }
  if (fields.length !== 2) return undefined;
  const q = sval(fields[0]);
  const e = q !== undefined ? scope.findEntry(q) : undefined;
  return e ? [e] : undefined;
}

function starAll(scope: Scope, withSources: boolean): Resolved {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    if (s.entries.length === 0) continue;
    const out = { origins: [] as ColumnFact[], whole: [] as string[] };
    for (const e of s.entries) {
      const r = entryStar(e, withSources);
      out.origins.push(...r.origins);
      out.whole.push(...r.whole);
    }
    return out;
  }
  return { origins: [], whole: [] };
}

/** With `withSources`, a derived table's outputs count every column their expressions read (see Output.sources). */
export function entryStar(e: Entry, withSources = false): Resolved {
  if (e.kind === 'table') return { origins: [{ table: e.table, column: '*' }], whole: [e.table] };
  if (e.kind === 'opaque') return { origins: [], whole: [] };
  const origins = e.rel.outputs.flatMap((o) => (withSources ? [...o.origins, ...(o.sources ?? [])] : o.origins));
  const whole: string[] = [];
  for (const s of e.rel.stars) {
    origins.push({ table: s, column: '*' });
    if (s !== null) whole.push(s);
  }
  return { origins, whole };
}

export function entryColumn(e: Entry, col: string, withSources = false): ColumnFact[] {
  if (e.kind === 'table') return [{ table: e.table, column: col }];
  if (e.kind === 'opaque') return [];
  const out = e.rel.outputs.find((o) => o.name === col);
  if (out) return withSources ? [...out.origins, ...(out.sources ?? [])] : out.origins;
  if (e.rel.stars.length === 1) return [{ table: e.rel.stars[0] ?? null, column: col }];
  if (e.rel.stars.length > 1) return [{ table: null, column: col }];
  return [];
}

function unqualified(col: string, scope: Scope, withSources: boolean): ColumnFact[] {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    const candidates = s.entries.filter((e) => e.kind !== 'derived' || e.rel.stars.length > 0 || e.rel.outputs.some((o) => o.name === col));
    if (candidates.length === 0) continue;
    // A function's result (an opaque entry) may or may not have the column: when it does not, the
    // name is an outer table's (`EXISTS (SELECT 1 FROM generate_series(1, 1) g WHERE password …)`
    // reads the outer secrets.password). Unknown owner: any table read with that column.
    if (candidates.length === 1 && candidates[0]!.kind === 'opaque') return [{ table: null, column: col }];
    if (candidates.length === 1) return entryColumn(candidates[0] as Entry, col, withSources);
    // Several row sources could own the name (the classifier does not know every table's columns):
    // where it decides what a filter reads, it is every one of them, derived outputs' sources
    // included. `LATERAL (VALUES (s.password)) v(x) … WHERE x LIKE 'h%'` is v's x, which is the
    // password, though secrets could as well have been the owner; "unknown" hid it.
    if (withSources) return [{ table: null, column: col }, ...candidates.flatMap((e) => (e.kind === 'table' ? [] : entryColumn(e, col, true)))];
    // A derived source with an output of that name may be the owner: what that output reads counts
    // too (`FROM customers AS c(i, n, x), generate_series(1, 1) g` … `upper(x)` is the e-mail).
    return [{ table: null, column: col }, ...candidates.flatMap((e) => (e.kind === 'derived' && e.rel.outputs.some((o) => o.name === col) ? entryColumn(e, col, false) : []))];
  }
  return [{ table: null, column: col }];
}
