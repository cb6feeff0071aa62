// What the PostgreSQL worker refuses to read whatever the grant masks, by name: used before a
// statement runs (index.ts) and for the views a statement reads (origins.ts).

/**
 * Catalogue relations that hand back data values or other sessions' statements, whatever the
 * grant masks: column statistics (most common values, histogram bounds: after ANALYZE, which
 * autovacuum runs, pg_stats returned every e-mail of a masked column in the clear), extended
 * statistics, the statement texts (literals included) of other sessions of the mode's one database
 * user, the pooled session's prepared statements and cursors, large objects, and the
 * user-mapping and subscription options (passwords). Matched by relation name in any schema
 * (pg_stat_statements lives where its extension was created).
 */
const VALUE_CATALOGS = new Set([
  'pg_stats',
  'pg_stats_ext',
  'pg_stats_ext_exprs',
  'pg_statistic',
  'pg_statistic_ext',
  'pg_statistic_ext_data',
  'pg_stat_activity',
  'pg_stat_statements',
  'pg_stat_statements_info',
  'pg_prepared_statements',
  'pg_cursors',
  'pg_largeobject',
  'pg_user_mappings',
  'pg_user_mapping',
  'pg_subscription',
  'pg_stat_subscription',
  'pg_stat_wal_receiver',
]);
export const valueCatalog = (table: string) => VALUE_CATALOGS.has(table.slice(table.lastIndexOf('.') + 1));
/** lo_import, lo_from_bytea, lo_get, lowrite, … (server-side large object functions). */
export const LARGE_OBJECT_FUNCTION = /^(lo_|lo$|loread$|lowrite$)/;
/** The functions behind some of them, callable in FROM (`SELECT * FROM pg_stat_statements(true)`). */
export const VALUE_FUNCTIONS = new Set([
  'pg_stat_statements',
  'pg_stat_statements_info',
  'pg_stat_get_activity',
  'pg_stat_get_backend_activity',
  'pg_mcv_list_items',
  'pg_cursor',
  'pg_prepared_statement',
]);
