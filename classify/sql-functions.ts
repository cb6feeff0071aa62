/**
 * Functions whose call is a side effect, a denial of service, or a way around
 * table-level policy (reading server files, other tables by name, raw pages).
 * Matched on the unqualified, lower-cased name whatever the schema, so a
 * same-named user function is flagged too (a false positive, never a miss).
 * Functions that only read session state (current_setting, currval, lastval)
 * are not listed.
 */

/** PostgreSQL functions flagged by exact name. */
const PG_EXACT = new Set([
  // run time / denial of service
  'pg_sleep',
  'pg_sleep_for',
  'pg_sleep_until',
  // session and server control
  'set_config',
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_promote',
  'pg_switch_wal',
  'pg_log_backend_memory_contexts',
  'pg_log_standby_snapshot',
  'pg_import_system_collations',
  'pg_truncate_visibility_map',
  'pg_stat_file',
  'pg_logdir_ls',
  'pg_drop_replication_slot',
  'pg_replication_slot_advance',
  'pg_logical_emit_message',
  'pg_start_backup',
  'pg_stop_backup',
  'pg_export_snapshot',
  // writes that a READ ONLY transaction may not stop, or that bypass table policy
  'nextval',
  'setval',
  'pg_notify',
  'txid_current',
  'pg_current_xact_id',
  'pg_restore_relation_stats',
  'pg_restore_attribute_stats',
  'pg_clear_relation_stats',
  'pg_clear_attribute_stats',
  'loread',
  'lowrite',
  'get_raw_page',
  'heap_page_items',
  'pg_stat_statements_reset',
]);

/** PostgreSQL function name prefixes flagged (families). */
const PG_PREFIXES = [
  'pg_read_', // pg_read_file, pg_read_binary_file: server files
  'pg_ls_', // directory listings of the server
  'pg_file_', // adminpack: write, rename, unlink server files
  'lo_', // large objects: lo_import/lo_export touch server files, the rest read/write outside tables
  'dblink', // connections to other servers, arbitrary remote SQL
  'pg_advisory_',
  'pg_try_advisory_', // locks that outlive the statement
  'pg_stat_reset', // statistics resets
  'pg_create_', // replication slots, restore points
  'pg_copy_', // replication slot copies
  'pg_logical_slot_get_', // consumes a slot's changes
  'pg_replication_origin_', // replication origin management
  'pg_backup_',
  'pg_wal_replay_',
  'binary_upgrade_',
  'query_to_xml',
  'cursor_to_xml', // run SQL passed as a string: the classifier cannot see it
  'table_to_xml',
  'schema_to_xml',
  'database_to_xml', // read whole tables named in a string
  'ts_stat',
  'ts_rewrite', // run the query given as text (see RUNS_SQL_PREFIXES in pg-catalog.ts)
];

/** MySQL/MariaDB functions flagged by exact name. */
const MYSQL_EXACT = new Set([
  'sleep',
  'benchmark',
  'load_file',
  'get_lock',
  'release_lock',
  'release_all_locks',
  'master_pos_wait',
  'source_pos_wait',
  'master_gtid_wait',
  'sys_exec',
  'sys_eval',
  'nextval',
  'setval',
  // MySQL 8's replication waits, MariaDB Galera's: they hold the connection like SLEEP.
  'wait_for_executed_gtid_set',
  'wait_until_sql_thread_after_gtids',
  'wsrep_sync_wait_upto_gtid',
]);

/**
 * MySQL/MariaDB built-ins reviewed as free of side effects and reading no table (aggregates, string, number,
 * date, JSON and control-flow functions). Hand-reviewed: MySQL has no catalogue of its built-ins to generate
 * this from. Anything else, stored functions included, is unknown (and opaque: it may run any SQL).
 */
const MYSQL_KNOWN_SAFE = new Set([
  'count',
  'sum',
  'avg',
  'min',
  'max',
  'group_concat',
  'bit_and',
  'bit_or',
  'bit_xor',
  'std',
  'stddev',
  'stddev_pop',
  'stddev_samp',
  'var_pop',
  'var_samp',
  'variance',
  'json_arrayagg',
  'json_objectagg',
  'any_value',
  'row_number',
  'rank',
  'dense_rank',
  'percent_rank',
  'cume_dist',
  'ntile',
  'lag',
  'lead',
  'first_value',
  'last_value',
  'nth_value',
  'abs',
  'ceil',
  'ceiling',
  'floor',
  'round',
  'truncate',
  'mod',
  'pow',
  'power',
  'sqrt',
  'exp',
  'ln',
  'log',
  'log2',
  'log10',
  'sign',
  'greatest',
  'least',
  'rand',
  'pi',
  'degrees',
  'radians',
  'sin',
  'cos',
  'tan',
  'conv',
  'hex',
  'unhex',
  'bin',
  'oct',
  'concat',
  'concat_ws',
  'lower',
  'upper',
  'lcase',
  'ucase',
  'length',
  'char_length',
  'character_length',
  'octet_length',
  'substring',
  'substr',
  'mid',
  'left',
  'right',
  'trim',
  'ltrim',
  'rtrim',
  'lpad',
  'rpad',
  'replace',
  'reverse',
  'repeat',
  'locate',
  'instr',
  'position',
  'field',
  'find_in_set',
  'format',
  'ascii',
  'ord',
  'char',
  'space',
  'strcmp',
  'substring_index',
  'insert',
  'quote',
  'md5',
  'sha1',
  'sha2',
  'crc32',
  'to_base64',
  'from_base64',
  'regexp_like',
  'regexp_replace',
  'regexp_substr',
  'regexp_instr',
  'uuid',
  'now',
  'current_timestamp',
  'current_date',
  'current_time',
  'curdate',
  'curtime',
  'sysdate',
  'utc_timestamp',
  'utc_date',
  'date',
  'time',
  'year',
  'month',
  'day',
  'dayofmonth',
  'dayofweek',
  'dayofyear',
  'hour',
  'minute',
  'second',
  'week',
  'weekday',
  'quarter',
  'date_format',
  'time_format',
  'str_to_date',
  'date_add',
  'date_sub',
  'adddate',
  'subdate',
  'datediff',
  'timediff',
  'timestampdiff',
  'timestampadd',
  'unix_timestamp',
  'from_unixtime',
  'last_day',
  'makedate',
  'extract',
  'monthname',
  'dayname',
  'convert_tz',
  'if',
  'ifnull',
  'nullif',
  'coalesce',
  'isnull',
  'cast',
  'convert',
  'json_extract',
  'json_unquote',
  'json_object',
  'json_array',
  'json_contains',
  'json_keys',
  'json_length',
  'json_type',
  'json_valid',
  'json_set',
  'json_insert',
  'json_replace',
  'json_remove',
  'database',
  'schema',
  'version',
  'current_user',
  'user',
  'session_user',
  'system_user',
  'connection_id',
]);

/** True when the MySQL function is a reviewed built-in free of side effects that reads no table. */
export function isKnownSafeMysql(name: string): boolean {
  return !name.includes('.') && MYSQL_KNOWN_SAFE.has(name.toLowerCase());
}

/** True when the (possibly schema-qualified) function name is a dangerous PostgreSQL function. */
export function isDangerousPg(name: string): boolean {
  const base = (name.split('.').pop() ?? name).toLowerCase();
  return PG_EXACT.has(base) || PG_PREFIXES.some((p) => base.startsWith(p));
}

/** True when the function name is a dangerous MySQL/MariaDB function. */
export function isDangerousMysql(name: string): boolean {
  const base = (name.split('.').pop() ?? name).toLowerCase();
  return MYSQL_EXACT.has(base);
}
