// What the MySQL worker refuses to read whatever the grant masks, by name: used before a
// statement runs (index.ts) and for the views a statement reads (origins.ts).

/**
 * Relations that show what other sessions of the same database user are doing: every principal
 * of a mode runs as that mode's one user, so another principal's statement text (literals
 * included: `WHERE email = 'alice@example.com'`), its plan or its locks would come back
 * unmasked. performance_schema and sys (views over it) hold statement texts and histories, and
 * so do the general and slow query logs when they are written to tables.
 */
const OTHER_SESSIONS = new Set([
  'information_schema.processlist',
  'information_schema.innodb_trx',
  'information_schema.innodb_locks',
  'information_schema.innodb_lock_waits',
  'information_schema.metadata_lock_info',
  'mysql.general_log',
  'mysql.slow_log',
]);

/**
 * Relations that hold values of any column, masked ones included: MariaDB's engine-independent
 * statistics (`min_value`, `max_value` and histograms, after ANALYZE TABLE … PERSISTENT FOR ALL)
 * and MySQL 8's histograms (bucket values as JSON).
 */
const VALUE_CATALOGS = new Set(['mysql.column_stats', 'information_schema.column_statistics']);

/** Why a relation (`db.table`, any case) cannot be read through Writ, or undefined. */
export function forbiddenRelation(table: string): 'sessions' | 'values' | undefined {
  const t = table.toLowerCase();
  if (OTHER_SESSIONS.has(t) || t.startsWith('performance_schema.') || t.startsWith('sys.')) return 'sessions';
  return VALUE_CATALOGS.has(t) ? 'values' : undefined;
}
