/**
 * Builds the MariaDB corpus from MariaDB's own test suite (Debian's `mariadb-test` package,
 * 10.11: /usr/share/mysql/mysql-test/main/*.test): `npx tsx test/corpora/mariadb/extract.ts`.
 * A .test file is a mysqltest script: SQL statements ending with the current delimiter, among
 * mysqltest commands (`--echo`, `let`, `--error`, `--source`, `if (…) {`, heredocs up to EOF…),
 * which are dropped, as are statements holding a mysqltest variable (`$x`). A statement after
 * `--error ER_PARSE_ERROR` (1064) is one the server's parser rejects: it goes to rejected.jsonl.
 * Statements expected to fail otherwise (a missing table, a privilege) are dropped: their
 * syntax is valid but whether it was the point of the test is not known. Texts are
 * de-duplicated, then every k-th is kept so statements.jsonl stays near MAX_ITEMS.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SRC = process.env.MARIADB_TEST_DIR ?? '/usr/share/mysql/mysql-test/main';
const OUT = new URL('.', import.meta.url).pathname;
const MAX_ITEMS = 12_000;
const MAX_SQL = 2_000;

/** mysqltest's own commands (a bare first word), from its manual. */
const COMMANDS = new Set(`append_file cat_file change_user character_set chmod connect connection copy_file copy_files_wildcard dec delimiter die diff_files dirty_close disable_abort_on_error disable_connect_log disable_info disable_metadata disable_parsing disable_ps_protocol disable_query_log disable_reconnect disable_result_log disable_rpl_parse disable_session_track_info disable_warnings disconnect echo enable_abort_on_error enable_connect_log enable_info enable_metadata enable_parsing enable_ps_protocol enable_query_log enable_reconnect enable_result_log enable_rpl_parse enable_session_track_info enable_warnings end end_timer error eval exec execw exit file_exists horizontal_results if inc let list_files list_files_append_file list_files_write_file lowercase_result mkdir move_file perl ping query query_attributes query_horizontal query_vertical real_sleep reap remove_file remove_files_wildcard replace_column replace_regex replace_result reset_connection result_format rmdir save_master_pos send send_eval send_quit send_shutdown shutdown_server skip sleep sorted_result source start_timer sync_slave_with_master sync_with_master system vertical_results wait_for_slave_to_stop while write_file write_line`.split(' '));
const HEREDOC = new Set(['perl', 'write_file', 'append_file']);

interface Item { file: string; n: number; sql: string; error?: string }

function extract(file: string, text: string): Item[] {
  const out: Item[] = [];
  let delimiter = ';';
  let buf: string[] = [];
  let expectError: string | undefined;
  let heredoc: string | undefined;
  let n = 0;
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (heredoc !== undefined) {
      if (t === heredoc) heredoc = undefined;
      continue;
    }
    if (buf.length === 0) {
      if (t === '' || t.startsWith('#') || t === '}' || t === '{') continue;
      const dashed = /^--\s*(\w+)\s*(.*)$/.exec(t);
      const bare = /^(\w+)\b\s*(.*)$/.exec(t);
      const cmd = dashed ?? (bare && COMMANDS.has(bare[1]!.toLowerCase()) ? bare : null);
      if (cmd) {
        const name = cmd[1]!.toLowerCase();
        const arg = cmd[2]!.replace(/;$/, '').trim();
        if (name === 'error') expectError = arg;
        else if (name === 'delimiter') delimiter = arg.replace(new RegExp(`${delimiter.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`), '') || ';';
        else if (HEREDOC.has(name)) heredoc = /^EOF|\bEOF$/.test(arg) || arg === '' ? 'EOF' : (arg.split(/\s+/).pop() ?? 'EOF');
        // A bare command runs to the delimiter; `if (…) {` / `while (…) {` open a block whose body is read line by line.
        if (!dashed && !t.endsWith(delimiter) && !t.endsWith('{') && !HEREDOC.has(name)) buf = ['\u0000skip'];
        continue;
      }
    }
    buf.push(line);
    if (!t.endsWith(delimiter)) continue;
    const body = buf.join('\n');
    buf = [];
    if (body.startsWith('\u0000skip')) continue;
    const sql = body.trim().slice(0, -delimiter.length).trim();
    const err = expectError;
    expectError = undefined;
    if (sql === '' || sql.includes('$') || sql.length > MAX_SQL) continue;
    n++;
    out.push({ file, n, sql, ...(err ? { error: err } : {}) });
  }
  return out;
}

const seen = new Set<string>();
const accepted: Item[] = [];
const rejected: Item[] = [];
let total = 0;
for (const f of readdirSync(SRC).filter((x) => x.endsWith('.test')).sort()) {
  for (const it of extract(f, readFileSync(join(SRC, f), 'latin1'))) {
    total++;
    if (seen.has(it.sql)) continue;
    seen.add(it.sql);
    if (it.error === undefined) accepted.push(it);
    else if (/\b(ER_PARSE_ERROR|1064)\b/.test(it.error) && !/,/.test(it.error)) rejected.push(it);
  }
}
const k = Math.max(1, Math.ceil(accepted.length / MAX_ITEMS));
const kept = accepted.filter((_, i) => i % k === 0);
const jsonl = (items: Item[]) => items.map((x) => JSON.stringify(x)).join('\n') + '\n';
writeFileSync(join(OUT, 'statements.jsonl'), jsonl(kept));
writeFileSync(join(OUT, 'rejected.jsonl'), jsonl(rejected));
console.log(`${total} statements read, ${seen.size} distinct; accepted ${accepted.length}, kept every ${k}th: ${kept.length}; rejected by the server's parser: ${rejected.length}`);
