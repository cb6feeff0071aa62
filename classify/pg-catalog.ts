/**
 * What the classifier positively knows about PostgreSQL built-ins, from the
 * generated catalogue (pg-catalog-data.ts, made by gen-pg-catalog.ts) plus
 * reviewed deny-lists on top of it.
 *
 * A function is *known safe* when every pg_catalog overload of its name is
 * immutable or stable (or on the short reviewed list of harmless volatile
 * ones) and the name is on no deny-list. Everything else is unknown: volatile
 * built-ins, user-defined functions, extension functions, names qualified to
 * any schema but pg_catalog. The decision is per name, not per overload: the
 * classifier does not resolve argument types, so one unsafe overload makes
 * the name unknown.
 *
 * Name resolution matches the worker's pinned `search_path = pg_catalog,
 * public`: an unqualified name that exists in pg_catalog is pg_catalog's,
 * anything else is public's (user-defined, hence unknown).
 */
import { PG_FUNCTIONS, PG_OPERATORS, PG_RELATIONS } from './pg-catalog-data.ts';

/**
 * Functions that run SQL given as text, or return the data of relations or
 * cursors named by a value: the classifier cannot see what they read, so they
 * are dangerous (not read-only), opaque (every computed output is suspect) and
 * unknown. Matched by exact name or as a prefix (families).
 */
const RUNS_SQL_PREFIXES = [
  'query_to_xml',
  'cursor_to_xml',
  'table_to_xml',
  'schema_to_xml',
  'database_to_xml', // incl. *_and_xmlschema, *schema
  'ts_stat', // ts_stat('SELECT tsvector FROM t'): runs the query
  'ts_rewrite', // ts_rewrite(tsquery, 'SELECT target, subst FROM t'): runs the query
];

/**
 * Built-ins that hand back data or definitions read by OID or name from a relation the statement does not
 * name (view, function and rule sources, statistics values, other sessions' query texts, sequence state).
 * Opaque and unknown, but not side-effecting.
 */
const OPAQUE_EXACT = new Set([
  'pg_mcv_list_items', // most-common values: real column data from statistics
  'pg_sequence_parameters',
  'pg_sequence_last_value',
  'currval',
  'lastval',
  'pg_stat_get_activity',
  'pg_stat_get_backend_activity', // other sessions' query texts (literals included)
  'pg_cursor',
  'pg_prepared_statement', // statements of the (pooled) session
  'pg_event_trigger_ddl_commands',
  'pg_event_trigger_dropped_objects',
]);
const OPAQUE_PREFIXES = [
  'pg_get_', // pg_get_viewdef, pg_get_functiondef, pg_get_expr, pg_get_ruledef, pg_get_function_sqlbody, ...
  'pg_read_',
  'pg_ls_',
  'lo_',
  'loread',
  'dblink',
  'pg_logical_slot_',
];

/**
 * Stable built-ins that are still not known safe: privilege probes and catalogue or server introspection
 * by name or OID (oracles about objects the grant does not cover), session state and statistics.
 */
const DENY_EXACT = new Set([
  'row_security_active',
  'pg_has_role',
  'pg_describe_object',
  'obj_description',
  'col_description',
  'shobj_description',
  'pg_show_all_settings',
  'pg_settings_get_flags',
  'pg_config',
  'pg_filenode_relation',
  'pg_relation_filenode',
  'pg_relation_filepath',
  'pg_tablespace_location',
  'pg_tablespace_databases',
  'pg_listening_channels',
  'pg_available_extensions',
  'pg_available_extension_versions',
  'pg_extension_update_paths',
  'pg_relation_is_updatable',
  'pg_column_is_updatable',
  'pg_relation_is_publishable',
  'pg_replication_origin_oid',
  'pg_index_column_has_property',
  'pg_index_has_property',
  'pg_indexam_has_property',
  'pg_options_to_table',
  'txid_current',
  'txid_current_if_assigned',
  'pg_current_xact_id',
  'pg_current_xact_id_if_assigned', // assign an xid
  'pg_trigger_depth',
  'pg_event_trigger_table_rewrite_oid',
  'pg_event_trigger_table_rewrite_reason',
  'fmgr_c_validator',
  'fmgr_internal_validator',
  'fmgr_sql_validator',
]);
const DENY_PREFIXES = ['has_', 'pg_stat_get_', 'pg_identify_object', 'binary_upgrade_'];

/** Volatile built-ins reviewed as harmless: no write, no session change, no relation read. */
const HARMLESS_VOLATILE = new Set(['random', 'clock_timestamp', 'timeofday', 'gen_random_uuid', 'pg_is_in_recovery', 'pg_jit_available']);

/** Argument types that accept a whole row (a table's composite type). */
const ROW_ARG_TYPES = new Set(['record', '"any"', 'anyelement', 'anynonarray', 'anycompatible', 'anycompatiblenonarray']);

/**
 * Functions of common extensions (installed outside pg_catalog, so not in the catalogue) that take a whole
 * row: `s.hstore` is `hstore(s)`. They are unknown anyway; the list only makes attribute notation visible.
 */
const EXTENSION_ROW_FUNCTIONS = ['hstore', 'populate_record'];

interface NameInfo {
  /** Every overload immutable/stable (or reviewed harmless volatile). */
  pure: boolean;
  /** Some overload takes one argument that can be a whole row (attribute notation `t.name` calls it on the row). */
  rowCallable: boolean;
  /** Some overload can be called with exactly one argument (`(expr).name` calls it on expr). */
  unary: boolean;
  /** Some overload returns a set (generate_series, unnest, regexp_matches, …). */
  setReturning: boolean;
  /** Some overload is an aggregate or a window function. */
  aggregate: boolean;
}

const CATALOG = new Map<string, NameInfo>();
for (const [name, vol, kind, retset, ndef, variadic, args] of PG_FUNCTIONS) {
  const info = CATALOG.get(name) ?? { pure: true, rowCallable: false, unary: false, setReturning: false, aggregate: false };
  if (retset) info.setReturning = true;
  if (kind === 'a' || kind === 'w') info.aggregate = true;
  if (vol === 'v' && !HARMLESS_VOLATILE.has(name)) info.pure = false;
  const required = args.length - ndef - (variadic ? 1 : 0);
  const oneArg = args.length >= 1 && required <= 1;
  if (oneArg) info.unary = true;
  if (oneArg && ROW_ARG_TYPES.has(args[0] as string)) info.rowCallable = true;
  if (variadic && args.length === 1 && args[0] === '"any"') info.rowCallable = true; // num_nulls(VARIADIC "any")
  CATALOG.set(name, info);
}
const RELATIONS = new Set(PG_RELATIONS);

const matches = (base: string, exact: Set<string>, prefixes: readonly string[]) => exact.has(base) || prefixes.some((p) => base.startsWith(p));

/**
 * The pg_catalog name a written function name resolves to, or undefined when it resolves elsewhere
 * (qualified to another schema, or unqualified and absent from pg_catalog, hence public's).
 */
function catalogName(written: string): string | undefined {
  const parts = written.split('.');
  if (parts.length > 2) return undefined; // db.schema.fn: cross-database, never ours
  const base = parts[parts.length - 1] as string;
  if (parts.length === 2 && parts[0] !== 'pg_catalog') return undefined;
  return CATALOG.has(base) ? base : undefined;
}

/**
 * The function may return a set: some pg_catalog overload of its name does, or it is not pg_catalog's
 * (a user's function may return a set). In a select list its arguments decide how many rows come back.
 */
export function mayReturnSetPg(written: string): boolean {
  const base = catalogName(written);
  return base === undefined || CATALOG.get(base)?.setReturning === true;
}

/** The function runs SQL text or reads a relation named by a value (dangerous, opaque and unknown). */
function runsSql(written: string): boolean {
  const base = (written.split('.').pop() ?? written).toLowerCase();
  return RUNS_SQL_PREFIXES.some((p) => base.startsWith(p));
}

/** True when the written name is a pg_catalog function known to have no side effect and read no relation. */
export function isKnownSafePg(written: string): boolean {
  const name = catalogName(written);
  if (name === undefined) return false;
  const info = CATALOG.get(name);
  return info !== undefined && info.pure && !runsSql(name) && !matches(name, OPAQUE_EXACT, OPAQUE_PREFIXES) && !matches(name, DENY_EXACT, DENY_PREFIXES);
}

/**
 * True when where the function's output comes from cannot be known: it runs SQL text, reads a relation or
 * definition named by a value, or is not a pg_catalog built-in at all (a user-defined function may read anything).
 */
export function isOpaquePg(written: string): boolean {
  const name = catalogName(written);
  if (name === undefined) return true;
  return runsSql(name) || matches(name, OPAQUE_EXACT, OPAQUE_PREFIXES);
}

/**
 * Aggregates whose value is the same whatever order rows reach them in. Every other aggregate (or
 * window function) of the catalogue is taken to depend on it: `string_agg`, `array_agg`, the JSON and
 * XML ones, and `sum`/`avg`/variance, whose floating-point rounding does. Ordered-set and
 * hypothetical-set aggregates sort by their own WITHIN GROUP key.
 */
const ORDER_FREE_AGGREGATES = new Set([
  'count',
  'min',
  'max',
  'bool_and',
  'bool_or',
  'every',
  'bit_and',
  'bit_or',
  'bit_xor',
  'range_agg',
  'range_intersect_agg',
  'percentile_cont',
  'percentile_disc',
  'mode',
  'rank',
  'dense_rank',
  'percent_rank',
  'cume_dist',
]);
/** Volatile built-ins whose value is taken anew per row, so it records the order rows were met in. */
const PER_ROW_VOLATILE = new Set(['random', 'clock_timestamp', 'timeofday', 'gen_random_uuid']);

/**
 * Whether the function's value may depend on the order rows reach it: an aggregate or window
 * function not known to be order-free, a value taken anew per row, or a function that is not
 * pg_catalog's (it may do anything).
 */
export function isOrderSensitivePg(written: string): boolean {
  const name = catalogName(written);
  if (name === undefined) return true;
  return PER_ROW_VOLATILE.has(name) || (CATALOG.get(name)?.aggregate === true && !ORDER_FREE_AGGREGATES.has(name));
}

/** `t.name` may be `name(t)`: a built-in (or common extension function) that accepts a whole row. */
export function isRowCallable(name: string): boolean {
  return CATALOG.get(name)?.rowCallable === true || EXTENSION_ROW_FUNCTIONS.includes(name);
}

/** `(expr).name` may be `name(expr)`: a built-in callable with one argument, or one that takes a whole row. */
export function isUnaryCallable(name: string): boolean {
  return CATALOG.get(name)?.unary === true || isRowCallable(name);
}

const OPERATORS = new Set(PG_OPERATORS);

/** True when an operator name (`['+']`, `['pg_catalog', '+']`) is one of pg_catalog's (resolved as functions are). */
export function isCatalogOperator(parts: readonly string[]): boolean {
  if (parts.length > 2 || (parts.length === 2 && parts[0] !== 'pg_catalog')) return false;
  return OPERATORS.has(parts[parts.length - 1] as string);
}

/** Schema of an unqualified relation name under the pinned `search_path = pg_catalog, public`. */
export function relationSchema(relname: string): 'pg_catalog' | 'public' {
  return RELATIONS.has(relname) ? 'pg_catalog' : 'public';
}

/** The reviewed lists, for documentation and tests. */
export const PG_FUNCTION_LISTS = {
  runsSql: [...RUNS_SQL_PREFIXES],
  opaque: { exact: [...OPAQUE_EXACT].sort(), prefixes: [...OPAQUE_PREFIXES] },
  deny: { exact: [...DENY_EXACT].sort(), prefixes: [...DENY_PREFIXES] },
  harmlessVolatile: [...HARMLESS_VOLATILE].sort(),
} as const;
