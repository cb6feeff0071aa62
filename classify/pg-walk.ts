/**
 * Walks a PostgreSQL raw parse tree and collects tables, columns and
 * functions, resolving names through scopes: FROM items (tables, subqueries,
 * functions, joins), CTEs, and outer queries for correlated subqueries.
 */
import type { ColumnFact } from './types.ts';
import { aliasName, arr, names, nodeOf, obj, rangeVarName, str, sval, unwrap, type Obj } from './pg-ast.ts';
import { entryColumn, entryStar, orRowCall, resolveRef, Scope, starEntries, type Relation, type Resolved } from './pg-scope.ts';
import { isCatalogOperator, isOrderSensitivePg, isUnaryCallable, mayReturnSetPg } from './pg-catalog.ts';

export { Scope, type Relation } from './pg-scope.ts';

/** Facts gathered from one statement (and what it nests). */
export class Collector {
  readonly tablesRead = new Set<string>();
  readonly tablesWritten = new Set<string>();
  readonly columns = new Map<string, ColumnFact>();
  readonly columnsWritten = new Map<string, ColumnFact>();
  readonly wholeRow = new Set<string>();
  readonly functions = new Set<string>();
  modifyingCte = false;
  selectInto = false;
  rowLocks = false;
  /** What the statement computes depends on the order rows reach it (SqlStatementFacts.orderDependent). */
  orderDependent = false;
  /** Columns and whole-row tables read where their value is not a result field (SqlStatementFacts.filterColumns). */
  readonly filterColumns = new Map<string, ColumnFact>();
  readonly filterWholeRow = new Set<string>();
  /** Functions called in such a position (SqlStatementFacts.filterFunctions). */
  readonly filterFunctions = new Set<string>();
  /** Columns and whole-row tables that only a RETURNING list reads (keys as in `columns`). */
  readonly returningOnly = { columns: new Map<string, ColumnFact>(), wholeRow: new Set<string>() };
  /** RangeVar bodies a statement handler already attributed (as write targets), so the walk does not count them as reads. */
  readonly claimed = new WeakSet<object>();

  addColumn(c: ColumnFact, written = false): void {
    (written ? this.columnsWritten : this.columns).set(`${c.table ?? ''}\u0000${c.column}`, c);
  }

  /** Marks a RangeVar body as written and claimed. */
  write(rv: Obj | undefined): void {
    if (!rv || typeof rv.relname !== 'string') return;
    this.tablesWritten.add(rangeVarName(rv));
    this.claimed.add(rv);
  }
}

/** A handler for a nested statement node met during the walk (CTE bodies, rule actions, CREATE SCHEMA elements, ...). */
export type NestedStatementHandler = (type: string, body: Obj, walker: PgWalker, scope: Scope) => boolean;

const EMPTY: Relation = { outputs: [], stars: [] };
/** Scratch walks one statement may spend tracing recursive CTEs, and rounds for one CTE. */
const TRACE_BUDGET = 64;
const TRACE_ROUNDS = 8;

/** The walker; one per statement. */
export class PgWalker {
  constructor(
    readonly c: Collector,
    private readonly nested: NestedStatementHandler,
    /**
     * Scratch walks left for tracing recursive CTEs (recursiveCte), shared by the walkers of one
     * statement: nested recursive CTEs multiply them, so past the budget a CTE fails closed.
     */
    private readonly tracing: { left: number } = { left: TRACE_BUDGET },
  ) {}

  /** Inside a position whose value is no result field (WHERE, ORDER BY, a FROM function's arguments, …). */
  private filterDepth = 0;
  /**
   * Outside any query or DML the walker knows the positions of (a DDL expression, a CHECK, a COPY
   * WHERE, a CALL's arguments): where a column is used there is unknown, so it counts as a filter.
   * SELECT and DML reset it for what they hold; a known filter position stays one all the way down.
   */
  private unknownPosition = true;
  /** Open captures of every column read (`*` for a whole row): a derived table's output sources. */
  private readonly captures: ColumnFact[][] = [];

  /** Visits in a filter position. */
  filtered(v: unknown, scope: Scope): void {
    this.filterDepth++;
    try {
      this.visit(v, scope);
    } finally {
      this.filterDepth--;
    }
  }

  /** Runs `f` as a known query position (SELECT, DML): its own filter positions are marked by it. */
  private known<T>(f: () => T): T {
    const before = this.unknownPosition;
    this.unknownPosition = false;
    try {
      return f();
    } finally {
      this.unknownPosition = before;
    }
  }

  /** Visits `v` and returns every column it reads (`*` with the table for a whole row). */
  private capture(f: () => void): ColumnFact[] {
    const cap: ColumnFact[] = [];
    this.captures.push(cap);
    try {
      f();
    } finally {
      this.captures.pop();
    }
    return cap;
  }

  /** Visits any value of the tree. */
  visit(v: unknown, scope: Scope): void {
    if (Array.isArray(v)) {
      for (const x of v) this.visit(x, scope);
      return;
    }
    const u = unwrap(v);
    if (u) {
      this.dispatch(u[0], u[1], scope);
      return;
    }
    const o = obj(v);
    if (!o) return;
    if (typeof o.relname === 'string') {
      this.readRangeVar(o, scope); // an unwrapped RangeVar (a struct-typed field)
      return;
    }
    for (const val of Object.values(o)) this.visit(val, scope);
  }

  private dispatch(type: string, body: Obj, scope: Scope): void {
    switch (type) {
      case 'SelectStmt':
        this.select(body, scope);
        return;
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        this.dml(type, body, scope);
        return;
      case 'RangeVar':
        this.readRangeVar(body, scope);
        return;
      case 'ColumnRef':
        this.recordRef(arr(body.fields), scope);
        return;
      case 'A_Indirection':
        this.indirection(body, scope);
        return;
      case 'FuncCall':
        this.funcCall(body, scope);
        return;
      case 'A_Expr': {
        // An operator is a function call: one pg_catalog does not define (a user's, in public, or
        // OPERATOR(schema.op)) runs code the classifier cannot see, so it is reported as `operator(op)`.
        const op = names(body.name);
        const between = String(body.kind ?? '').startsWith('AEXPR_BETWEEN') || String(body.kind ?? '').startsWith('AEXPR_NOT_BETWEEN');
        if (op.length && !between && !isCatalogOperator(op)) this.c.functions.add(`operator(${op.join('.')})`);
        for (const val of Object.values(body)) this.visit(val, scope);
        return;
      }
      case 'SubLink':
        // EXISTS/IN/ANY/scalar: in a filter position the whole subquery is one (filterDepth carries down).
        // ARRAY(SELECT …) keeps its rows in the order they arrive: an order-sensitive aggregate.
        if (body.subLinkType === 'ARRAY_SUBLINK') this.c.orderDependent = true;
        this.visit(body.testexpr, scope);
        this.visit(body.subselect, new Scope(scope));
        return;
      case 'WindowDef':
        // PARTITION BY / ORDER BY of a window sort the rows that come back (plain columns in the masked
        // column's order), so they are filter positions like ORDER BY; the window function's value is a
        // computed field (masked by its sources).
        this.filtered(body, scope);
        return;
      case 'RangeSubselect':
      case 'RangeFunction':
      case 'JoinExpr':
      case 'RangeTableSample':
      case 'RangeTableFunc':
      case 'JsonTable':
        this.fromItem(type, body, scope);
        return;
      case 'LockingClause':
        this.c.rowLocks = true; // lockedRels name FROM aliases, not new tables
        return;
      case 'IntoClause':
        this.c.write(obj(body.rel));
        this.visit(body.options, scope);
        return;
      default:
        if (this.nested(type, body, this, scope)) return;
        for (const val of Object.values(body)) this.visit(val, scope);
    }
  }

  /** A RangeVar met outside a FROM clause (LIKE, REFERENCES, INHERITS, ...): counted as read unless claimed. */
  private readRangeVar(rv: Obj, scope: Scope): void {
    if (this.c.claimed.has(rv)) return;
    const rel = str(rv.relname) ?? '';
    if (!rv.schemaname && scope.findCte(rel)) return;
    this.c.tablesRead.add(rangeVarName(rv));
  }

  private funcCall(f: Obj, scope: Scope): void {
    let parts = names(f.funcname);
    // EXTRACT, SUBSTRING, OVERLAY... come back as pg_catalog.x although not written so.
    if (f.funcformat === 'COERCE_SQL_SYNTAX' && parts[0] === 'pg_catalog' && parts.length > 1) parts = parts.slice(1);
    if (parts.length) this.c.functions.add(parts.join('.'));
    if (parts.length && (this.filterDepth > 0 || this.unknownPosition)) this.c.filterFunctions.add(parts.join('.'));
    // A set-returning function's arguments decide how many rows come back (generate_series(1, ascii(email))):
    // a row-count oracle, so they are a filter position wherever the call stands.
    if (parts.length && mayReturnSetPg(parts.join('.'))) this.filtered(f.args, scope);
    else this.visit(f.args, scope);
    this.visit(f.agg_order, scope);
    this.visit(f.agg_filter, scope);
    if (f.over) this.filtered(f.over, scope);
    if (f.over || (parts.length && isOrderSensitivePg(parts.join('.')))) this.c.orderDependent = true;
  }

  /**
   * `(c).col`, `(c).*`: a field of a whole-row reference is that column of the table. A field name can also be
   * a function call (`(c).row_to_json` is `row_to_json(c)`, `(c.password).md5` is `md5(c.password)`), so a field
   * that names a one-argument function is reported as a call of it.
   */
  private indirection(ind: Obj, scope: Scope): void {
    const ref = nodeOf(ind.arg, 'ColumnRef');
    const fields = arr(ref?.fields);
    const first = arr(ind.indirection)[0];
    const field = sval(first);
    const star = nodeOf(first, 'A_Star') !== undefined;
    for (const f of arr(ind.indirection)) {
      const n = sval(f);
      if (n !== undefined && isUnaryCallable(n)) this.c.functions.add(n);
    }
    if (ref && fields.length === 1 && (field !== undefined || star)) {
      const name = sval(fields[0]);
      const entry = name !== undefined ? scope.findEntry(name) : undefined;
      if (entry) {
        const at = (ws: boolean) => {
          const row = entryStar(entry, ws);
          return star ? row : orRowCall({ origins: entryColumn(entry, field ?? '*', ws), whole: [] }, field ?? '*', row);
        };
        this.record(at(false), at(true));
        this.visit(arr(ind.indirection).slice(1), scope);
        return;
      }
    }
    this.visit(ind.arg, scope);
    this.visit(ind.indirection, scope);
  }

  // ---- column resolution -------------------------------------------------

  /** `r` as resolved for `columns`; `src` with derived outputs' sources (what a filter or a capture sees). */
  private record(r: Resolved, src: Resolved = r): void {
    for (const o of r.origins) this.c.addColumn(o);
    for (const t of r.whole) this.c.wholeRow.add(t);
    for (const f of r.calls ?? []) this.c.functions.add(f);
    const read = [...src.origins, ...src.whole.map((t) => ({ table: t, column: '*' }))];
    for (const cap of this.captures) cap.push(...read);
    if (this.filterDepth > 0 || this.unknownPosition) {
      for (const o of src.origins) {
        this.c.filterColumns.set(`${o.table ?? ''}\u0000${o.column}`, o);
        if (o.column === '*' && o.table !== null) this.c.filterWholeRow.add(o.table);
      }
      for (const t of src.whole) this.c.filterWholeRow.add(t);
    }
  }

  private recordRef(fields: unknown[], scope: Scope): void {
    this.record(resolveRef(fields, scope), resolveRef(fields, scope, true));
  }

  // ---- queries -------------------------------------------------------------

  /** A SELECT (or VALUES, or set operation); returns what it exposes to an enclosing query. */
  select(s: Obj, parent: Scope): Relation {
    return this.known(() => this.selectBody(s, parent));
  }

  private selectBody(s: Obj, parent: Scope): Relation {
    const scope = new Scope(parent);
    if (s.withClause) this.withClause(obj(s.withClause) ?? {}, scope);
    if (s.op && s.op !== 'SETOP_NONE') {
      // UNION (without ALL), INTERSECT and EXCEPT compare the rows' values: how many come back says
      // whether a masked value equals another, so their branches' results are filter positions.
      const compares = !(s.op === 'SETOP_UNION' && s.all === true);
      if (compares) this.filterDepth++;
      let l: Relation;
      let r: Relation;
      try {
        l = this.select(obj(s.larg) ?? {}, scope);
        r = this.select(obj(s.rarg) ?? {}, scope);
      } finally {
        if (compares) this.filterDepth--;
      }
      this.filtered([s.sortClause, s.limitOffset, s.limitCount], scope);
      if (arr(s.sortClause).length || s.limitOffset || s.limitCount) this.c.orderDependent = true;
      if (s.lockingClause) this.c.rowLocks = true;
      const rel: Relation = {
        outputs: l.outputs.map((o, i) => ({
          name: o.name,
          origins: [...o.origins, ...(r.outputs[i]?.origins ?? [])],
          sources: [...(o.sources ?? []), ...(r.outputs[i]?.sources ?? [])],
        })),
        stars: [...l.stars, ...r.stars],
      };
      this.outputRefs(arr(s.sortClause), rel);
      return rel;
    }
    for (const item of arr(s.fromClause)) this.fromEntry(item, scope);
    // Plain DISTINCT (a list of empty nodes) compares the whole result row, DISTINCT ON its expressions.
    const distinct = arr(s.distinctClause);
    const plainDistinct = distinct.length > 0 && distinct.every((d) => unwrap(d) === undefined);
    const valuesSources = this.capture(() => (plainDistinct ? this.filtered(s.valuesLists, scope) : this.visit(s.valuesLists, scope)));
    const targetSources = arr(s.targetList).map((t) => this.capture(() => (plainDistinct ? this.filtered(t, scope) : this.visit(t, scope))));
    this.filtered([s.whereClause, s.groupClause, s.havingClause, s.windowClause], scope);
    this.filtered([plainDistinct ? [] : s.distinctClause, s.limitOffset, s.limitCount], scope);
    // DISTINCT ON keeps the first row of each group: which one follows the order rows arrive in.
    if (arr(s.sortClause).length || s.limitOffset || s.limitCount || arr(s.windowClause).length || (distinct.length > 0 && !plainDistinct)) this.c.orderDependent = true;
    if (arr(s.lockingClause).length) this.c.rowLocks = true;
    if (s.intoClause) {
      this.c.selectInto = true;
      this.c.write(obj(obj(s.intoClause)?.rel));
    }
    let rel: Relation;
    if (arr(s.valuesLists).length) {
      const first = arr(nodeOf(arr(s.valuesLists)[0], 'List')?.items);
      rel = { outputs: first.map((_, i) => ({ name: `column${i + 1}`, origins: [], sources: valuesSources })), stars: [] };
    } else rel = this.outputsOf(arr(s.targetList), scope, targetSources);
    // ORDER BY a bare name takes a result column's name first (`SELECT email AS e … ORDER BY e`): that
    // one is no table column (outputRefs counts what it reads); anything else is an expression.
    const named = new Set(arr(s.targetList).map((t) => str(nodeOf(t, 'ResTarget')?.name)));
    const outputName = (item: unknown) => {
      const fields = arr(nodeOf(nodeOf(item, 'SortBy')?.node, 'ColumnRef')?.fields);
      const n = fields.length === 1 ? sval(fields[0]) : undefined;
      return n !== undefined && named.has(n);
    };
    this.filtered(
      arr(s.sortClause).filter((i) => !outputName(i)),
      scope,
    );
    this.outputRefs([...arr(s.groupClause), ...(plainDistinct ? [] : distinct), ...arr(s.sortClause)], rel);
    return rel;
  }

  /**
   * ORDER BY / GROUP BY / DISTINCT ON may name a result column by position (`ORDER BY 1`) or by its
   * output name (`SELECT email AS e … ORDER BY e`): what that column reads is then a filter. A
   * position past a star cannot be placed, so every column of the result counts.
   */
  private outputRefs(items: unknown[], rel: Relation): void {
    const add = (cols: readonly ColumnFact[]) => {
      for (const o of cols) {
        this.c.filterColumns.set(`${o.table ?? ''}\u0000${o.column}`, o);
        if (o.column === '*' && o.table !== null) this.c.filterWholeRow.add(o.table);
      }
    };
    const all = () => {
      for (const o of rel.outputs) add([...o.origins, ...(o.sources ?? [])]);
      add(rel.stars.map((t) => ({ table: t, column: '*' })));
    };
    for (const item of items) {
      const gs = nodeOf(item, 'GroupingSet');
      if (gs) {
        this.outputRefs(arr(gs.content), rel);
        continue;
      }
      const e = nodeOf(item, 'SortBy')?.node ?? item;
      const k = nodeOf(e, 'A_Const');
      const ival = k ? obj(k.ival) : undefined;
      if (ival) {
        const n = Number(ival.ival ?? 0);
        const o = rel.stars.length === 0 ? rel.outputs[n - 1] : undefined;
        if (o) add([...o.origins, ...(o.sources ?? [])]);
        else all();
        continue;
      }
      const fields = arr(nodeOf(e, 'ColumnRef')?.fields);
      const name = fields.length === 1 ? sval(fields[0]) : undefined;
      if (name !== undefined) for (const o of rel.outputs) if (o.name === name) add([...o.origins, ...(o.sources ?? [])]);
    }
  }

  /** `sources[i]`: every column target i reads (see Output.sources). */
  private outputsOf(targets: unknown[], scope: Scope, sources: ColumnFact[][]): Relation {
    const rel: Relation = { outputs: [], stars: [] };
    for (const [i, t] of targets.entries()) {
      const rt = nodeOf(t, 'ResTarget');
      if (!rt) continue;
      const ref = nodeOf(rt.val, 'ColumnRef');
      const fields = arr(ref?.fields);
      if (ref && nodeOf(fields[fields.length - 1], 'A_Star')) {
        // A derived table's outputs pass through a star under their own names, computed ones with
        // their sources (a filter on them further out still reaches the masked column).
        const entries = starEntries(fields, scope);
        if (entries) {
          for (const e of entries) {
            if (e.kind === 'table') rel.stars.push(e.table);
            else if (e.kind === 'derived') {
              rel.outputs.push(...e.rel.outputs);
              rel.stars.push(...e.rel.stars);
            }
          }
          continue;
        }
        const r = resolveRef(fields, scope);
        for (const o of r.origins) {
          if (o.column === '*') rel.stars.push(o.table);
          else rel.outputs.push({ name: o.column, origins: [o] });
        }
        continue;
      }
      const name = str(rt.name) ?? (ref ? sval(fields[fields.length - 1]) : undefined) ?? funcOutputName(rt.val);
      const origins = ref ? resolveRef(fields, scope).origins.filter((o) => o.column !== '*') : [];
      rel.outputs.push({ name, origins, sources: sources[i] ?? [] });
    }
    return rel;
  }

  private withClause(w: Obj, scope: Scope): void {
    const recursive = w.recursive === true;
    for (const item of arr(w.ctes)) {
      const cte = nodeOf(item, 'CommonTableExpr');
      if (!cte) continue;
      const name = str(cte.ctename) ?? '?';
      const colnames = names(cte.aliascolnames);
      if (recursive) scope.ctes.set(name, EMPTY); // visible in its own body; its outputs are unknown until then
      const u = unwrap(cte.ctequery);
      let rel: Relation = EMPTY;
      if (u && u[0] === 'SelectStmt' && recursive) rel = this.recursiveCte(name, u[1], colnames, scope);
      else if (u && u[0] === 'SelectStmt') rel = renameCte(this.select(u[1], scope), colnames);
      else if (u) {
        if (u[0] === 'InsertStmt' || u[0] === 'UpdateStmt' || u[0] === 'DeleteStmt' || u[0] === 'MergeStmt') this.c.modifyingCte = true;
        this.visit(cte.ctequery, scope);
      }
      const search = obj(cte.search_clause);
      const cycle = obj(cte.cycle_clause);
      if (search || cycle) rel = this.searchOrCycle(rel, search, cycle);
      scope.ctes.set(name, rel);
    }
  }

  /**
   * `SEARCH … BY e SET ord` and `CYCLE e SET cyc USING path` order and compare the rows by the
   * columns they name (as plain strings, which the walk does not read as references), and add
   * columns that hold those values: a filter on `ord` (`WHERE ord::text LIKE '(0,alice@%'`) is one
   * on the e-mail. The named outputs count as a filter, and as the sources of the added columns;
   * a name the classifier cannot place (over a star) makes it every output.
   */
  private searchOrCycle(rel: Relation, search: Obj | undefined, cycle: Obj | undefined): Relation {
    const s = obj(search?.CTESearchClause) ?? search;
    const c = obj(cycle?.CTECycleClause) ?? cycle;
    const every: ColumnFact[] = [...rel.outputs.flatMap((o) => [...o.origins, ...(o.sources ?? [])]), ...rel.stars.map((t) => ({ table: t, column: '*' }))];
    const readOf = (cols: string[]): ColumnFact[] => {
      const outs = cols.map((n) => rel.outputs.find((o) => o.name === n));
      return outs.some((o) => o === undefined) ? every : outs.flatMap((o) => [...o!.origins, ...(o!.sources ?? [])]);
    };
    const searched = s ? readOf(names(s.search_col_list)) : [];
    const cycled = c ? readOf(names(c.cycle_col_list)) : [];
    const all: Resolved = { origins: [...searched, ...cycled], whole: [] };
    this.filterDepth++;
    try {
      this.record(all);
    } finally {
      this.filterDepth--;
    }
    const extra = [
      ...(s && str(s.search_seq_column) ? [{ name: str(s.search_seq_column)!, origins: searched, sources: searched }] : []),
      ...(c && str(c.cycle_mark_column) ? [{ name: str(c.cycle_mark_column)!, origins: cycled, sources: cycled }] : []),
      ...(c && str(c.cycle_path_column) ? [{ name: str(c.cycle_path_column)!, origins: cycled, sources: cycled }] : []),
    ];
    return { outputs: [...rel.outputs, ...extra], stars: rel.stars };
  }

  /**
   * A CTE of WITH RECURSIVE, visible in its own body. Its recursive term reads its own columns
   * (`SELECT n + 1, e FROM r WHERE n < length(e)`), which carry what the other term put there
   * (`SELECT 1, email …`): a filter on `e` is one on `email`, and it decides how many rows come
   * back. So the body is walked first by scratch walkers (their facts dropped), each round with the
   * columns the last one found, until they stop growing; then for real with that relation. What
   * cannot be traced in a few rounds (or within the statement's budget) fails closed: every column
   * the body reads counts as a filter.
   */
  private recursiveCte(name: string, body: Obj, colnames: string[], scope: Scope): Relation {
    let traced: Relation | undefined = EMPTY;
    for (let round = 0; ; round++) {
      if (round === TRACE_ROUNDS || this.tracing.left <= 0) {
        traced = undefined;
        break;
      }
      this.tracing.left--;
      scope.ctes.set(name, traced);
      const scratch = new PgWalker(new Collector(), () => false, this.tracing);
      const next = unionRel(traced, renameCte(scratch.select(body, scope), colnames));
      if (relKey(next) === relKey(traced)) break;
      traced = next;
    }
    scope.ctes.set(name, traced ?? EMPTY);
    if (traced) return unionRel(traced, renameCte(this.select(body, scope), colnames));
    this.filterDepth++;
    try {
      return renameCte(this.select(body, scope), colnames);
    } finally {
      this.filterDepth--;
    }
  }

  /** Adds one FROM item to the scope. */
  fromEntry(item: unknown, scope: Scope): void {
    const u = unwrap(item);
    if (!u) return this.visit(item, scope);
    this.fromItem(u[0], u[1], scope);
  }

  private fromItem(type: string, body: Obj, scope: Scope): void {
    switch (type) {
      case 'RangeVar': {
        const rel = str(body.relname) ?? '?';
        const alias = aliasName(body.alias) ?? rel;
        const cte = body.schemaname ? undefined : scope.findCte(rel);
        if (cte) {
          // `FROM c AS c2(i, x)` renames the CTE's columns as it does a subquery's.
          scope.entries.push({ name: alias, kind: 'derived', rel: renameColumns(cte, body.alias) });
          return;
        }
        const table = rangeVarName(body);
        if (!this.c.claimed.has(body)) this.c.tablesRead.add(table);
        const renamed = names(obj(body.alias)?.colnames);
        if (renamed.length) {
          // `FROM customers AS c(i, n, x)` renames the table's columns by position, which only the
          // catalog knows: each new name may be any column of the table (x was email), and the
          // names past the list keep theirs (the star).
          const any: ColumnFact[] = [{ table, column: '*' }];
          scope.entries.push({ name: alias, kind: 'derived', rel: { outputs: renamed.map((name) => ({ name, origins: any, sources: any })), stars: [table] } });
          return;
        }
        scope.entries.push({ name: alias, kind: 'table', table });
        return;
      }
      case 'RangeSubselect': {
        const sub = nodeOf(body.subquery, 'SelectStmt');
        const rel = sub ? this.select(sub, scope) : (this.visit(body.subquery, new Scope(scope)), EMPTY);
        const alias = aliasName(body.alias);
        if (alias) scope.entries.push({ name: alias, kind: 'derived', rel: renameColumns(rel, body.alias) });
        return;
      }
      case 'JoinExpr': {
        const before = scope.entries.length;
        this.fromEntry(body.larg, scope);
        this.fromEntry(body.rarg, scope);
        this.filtered(body.quals, scope);
        // USING (a, b) and NATURAL compare the named (or every common) column of both sides.
        const joined = scope.entries.slice(before);
        const using = names(body.usingClause);
        this.filterDepth++;
        try {
          for (const e of joined) {
            if (body.isNatural === true) this.record({ origins: [], whole: [] }, entryStar(e, true));
            else for (const col of using) this.record({ origins: entryColumn(e, col), whole: [] }, { origins: entryColumn(e, col, true), whole: [] });
          }
        } finally {
          this.filterDepth--;
        }
        const alias = aliasName(body.alias);
        if (alias) scope.entries.push({ name: alias, kind: 'derived', rel: renameColumns({ outputs: [], stars: [null] }, body.alias) });
        return;
      }
      case 'RangeTableSample':
        this.fromEntry(body.relation, scope);
        this.filtered([body.args, body.repeatable], scope);
        return;
      default: {
        // RangeFunction, RangeTableFunc, JsonTable: expressions evaluated in this scope, result is no base table.
        // Their arguments decide which and how many rows come back (generate_series(1, length(email))):
        // a filter position, like everything they nest.
        for (const [k, v] of Object.entries(body)) if (k !== 'alias') this.filtered(v, scope);
        const fn = arr(body.functions)[0];
        const fname = names(nodeOf(arr(nodeOf(fn, 'List')?.items)[0], 'FuncCall')?.funcname).pop();
        const alias = aliasName(body.alias) ?? fname ?? (type === 'RangeTableFunc' ? 'xmltable' : type === 'JsonTable' ? 'json_table' : undefined);
        if (alias) scope.entries.push({ name: alias, kind: 'opaque' });
      }
    }
  }

  /** INSERT / UPDATE / DELETE / MERGE: the target is written; WHERE, SET, RETURNING are resolved against it. */
  dml(type: string, s: Obj, parent: Scope): void {
    this.known(() => this.dmlBody(type, s, parent));
  }

  private dmlBody(type: string, s: Obj, parent: Scope): void {
    const scope = new Scope(parent);
    if (s.withClause) this.withClause(obj(s.withClause) ?? {}, scope);
    const rv = obj(s.relation);
    const target = rv ? rangeVarName(rv) : '?';
    this.c.write(rv);
    const alias = aliasName(rv?.alias) ?? str(rv?.relname) ?? '?';
    const addTarget = (sc: Scope) => sc.entries.push({ name: alias, kind: 'table', table: target });
    const written = (name: string | undefined) => {
      if (name) this.c.addColumn({ table: target, column: name }, true);
    };
    if (type === 'InsertStmt') {
      for (const col of arr(s.cols)) written(str(nodeOf(col, 'ResTarget')?.name));
      this.visit(s.selectStmt, scope);
      const oc = obj(s.onConflictClause);
      if (oc) {
        // The conflict check compares each inserted row with the stored ones on every unique index
        // (the arbiter names some, or none for all), and which rows were inserted, skipped or updated
        // comes back (RETURNING, the count): the inserted columns are filter reads of the target,
        // every column when no list names them. `ON CONFLICT (email) DO NOTHING RETURNING name` told
        // which guessed e-mails were stored. (The arbiter's index elements are names, not column references.)
        const cols = arr(s.cols)
          .map((col) => str(nodeOf(col, 'ResTarget')?.name))
          .filter((n): n is string => n !== undefined);
        if (cols.length === 0) this.c.filterWholeRow.add(target);
        for (const name of cols) this.c.filterColumns.set(`${target}\u0000${name}`, { table: target, column: name });
        for (const e of arr(obj(oc.infer)?.indexElems)) {
          const name = str(nodeOf(e, 'IndexElem')?.name);
          if (name) this.c.filterColumns.set(`${target}\u0000${name}`, { table: target, column: name });
        }
        const ocScope = new Scope(scope);
        addTarget(ocScope);
        ocScope.entries.push({ name: 'excluded', kind: 'table', table: target });
        for (const t of arr(oc.targetList)) written(str(nodeOf(t, 'ResTarget')?.name));
        this.visit(oc.targetList, ocScope);
        // The arbiter and the DO UPDATE WHERE decide which rows are changed: filters.
        this.filtered([oc.infer, oc.whereClause], ocScope);
      }
      addTarget(scope);
    } else if (type === 'MergeStmt') {
      addTarget(scope);
      this.fromEntry(s.sourceRelation, scope);
      this.filtered(s.joinCondition, scope);
      for (const w of arr(s.mergeWhenClauses)) {
        const mw = nodeOf(w, 'MergeWhenClause');
        for (const t of arr(mw?.targetList)) written(str(nodeOf(t, 'ResTarget')?.name));
        // WHEN … AND condition picks the rows each action changes: a filter; SET/VALUES store (masked-copy check).
        for (const [k, v] of Object.entries(mw ?? {})) {
          if (k === 'condition') this.filtered(v, scope);
          else this.visit(v, scope);
        }
      }
    } else {
      addTarget(scope);
      for (const item of arr(type === 'UpdateStmt' ? s.fromClause : s.usingClause)) this.fromEntry(item, scope);
      for (const t of arr(s.targetList)) written(str(nodeOf(t, 'ResTarget')?.name));
      this.visit(s.targetList, scope);
      // Which rows an UPDATE/DELETE changes is seen afterwards (the rows left, the count): a filter.
      this.filtered(s.whereClause, scope);
    }
    const ret = obj(s.returningClause);
    if (ret && arr(ret.exprs).length) {
      this.c.tablesRead.add(target); // RETURNING hands the target's rows back
      const retScope = new Scope(scope);
      for (const o of arr(ret.options)) {
        const name = str(nodeOf(o, 'ReturningOption')?.value);
        if (name) retScope.entries.push({ name, kind: 'table', table: target }); // RETURNING old.*, new.*
      }
      const cols = new Set(this.c.columns.keys());
      const whole = new Set(this.c.wholeRow);
      this.visit(ret.exprs, retScope);
      // RETURNING hands rows back and stores nothing: what only it reads is told apart for the
      // worker's masked-copy check (workers/sql-common.ts), which still counts it in a CTE.
      for (const [k, v] of this.c.columns) if (!cols.has(k)) this.c.returningOnly.columns.set(k, v);
      for (const t of this.c.wholeRow) if (!whole.has(t)) this.c.returningOnly.wholeRow.add(t);
    }
  }
}

/** The output name PostgreSQL gives an unnamed expression (function name, else ?column?). */
function funcOutputName(v: unknown): string {
  return names(nodeOf(v, 'FuncCall')?.funcname).pop() ?? '?column?';
}

/** Applies a derived table's column alias list (`AS s(a, b)`) positionally. */
function renameColumns(rel: Relation, alias: unknown): Relation {
  const cols = names(obj(alias)?.colnames);
  if (!cols.length) return rel;
  // Over a star the new names cannot be placed (`(a JOIN b) AS j(a, b, c, d)`, `(SELECT * …) q(i, x)`):
  // each may be any column behind the stars, or any output.
  if (rel.stars.length) {
    const any: ColumnFact[] = [...rel.stars.map((t) => ({ table: t, column: '*' })), ...rel.outputs.flatMap((o) => [...o.origins, ...(o.sources ?? [])])];
    return { outputs: cols.map((name) => ({ name, origins: any, sources: any })), stars: [] };
  }
  return { outputs: rel.outputs.map((o, i) => ({ name: cols[i] ?? o.name, origins: o.origins, sources: o.sources ?? [] })), stars: [] };
}

/** Applies a CTE's column list (`WITH x(a, b) AS …`) positionally. */
function renameCte(rel: Relation, colnames: string[]): Relation {
  if (!colnames.length || rel.stars.length) return rel;
  return { outputs: colnames.map((n, i) => ({ name: n, origins: rel.outputs[i]?.origins ?? [], sources: rel.outputs[i]?.sources ?? [] })), stars: [] };
}

const factKey = (c: ColumnFact) => `${c.table ?? ''}\u0000${c.column}`;
const uniqueFacts = (cs: ColumnFact[]) => [...new Map(cs.map((c) => [factKey(c), c])).values()];

/** Both relations' columns, output by output (names from `b`, else `a`): what either round found. */
function unionRel(a: Relation, b: Relation): Relation {
  const n = Math.max(a.outputs.length, b.outputs.length);
  const outputs = Array.from({ length: n }, (_, i) => {
    const x = a.outputs[i];
    const y = b.outputs[i];
    return {
      name: y?.name ?? x?.name ?? '?column?',
      origins: uniqueFacts([...(x?.origins ?? []), ...(y?.origins ?? [])]),
      sources: uniqueFacts([...(x?.sources ?? []), ...(y?.sources ?? [])]),
    };
  });
  return { outputs, stars: [...new Set([...a.stars, ...b.stars])] };
}

/** A relation's content, order-independent within each output: equal keys, nothing new found. */
function relKey(r: Relation): string {
  const facts = (cs: ColumnFact[] | undefined) => (cs ?? []).map(factKey).sort().join('\u0001');
  return JSON.stringify([r.outputs.map((o) => [o.name, facts(o.origins), facts(o.sources)]), [...r.stars].map(String).sort()]);
}
