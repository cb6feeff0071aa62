/**
 * Runs the classifiers over the shared real-world corpora and measures them;
 * used by corpus-report.ts (prints everything) and corpus.test.ts (asserts
 * the thresholds). Call initClassifiers() first.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseSync } from 'libpg-query';
import { classifySql } from './sql-pg.ts';
import { classifyMysql } from './sql-mysql.ts';
import { classifyShell } from './shell.ts';
import { obj, unwrap } from './pg-ast.ts';

/** Where the corpora live (the shared folder beside the repository), overridable with WRIT_CORPORA. */
export const CORPORA_DIR = process.env.WRIT_CORPORA ?? fileURLToPath(new URL('../../shared/corpora/', import.meta.url));

/** One timed item. */
interface Timed {
  label: string;
  ms: number;
}

/** What a corpus run measured. */
export interface CorpusStats {
  total: number;
  /** Items without a parse error (SQL: not WRIT_SQL_UNPARSEABLE / EMPTY; shell: not WRIT_SHELL_UNPARSEABLE). */
  parsed: number;
  /** Items with no error at all: every statement / command classified. */
  classified: number;
  /** Error codes with counts. */
  errors: Map<string, number>;
  /** Why items did not classify: unknown statement node types, or shell error messages, with counts. */
  unknown: Map<string, number>;
  /** SQL refused by design although every statement has a known kind (blind EXECUTE / FETCH, WITH HOLD), by reason. */
  refused: Map<string, number>;
  /** The slowest items, slowest first. */
  slowest: Timed[];
  /** Total classification time. */
  ms: number;
}

/** Reads a JSON Lines file of the corpora folder. */
export function readJsonl<T>(relative: string): T[] {
  const text = readFileSync(new URL(relative, `file://${CORPORA_DIR.endsWith('/') ? CORPORA_DIR : `${CORPORA_DIR}/`}`), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

function keepSlowest(list: Timed[], item: Timed, n: number): void {
  if (list.length >= n && item.ms <= (list[list.length - 1]?.ms ?? 0)) return;
  list.push(item);
  list.sort((a, b) => b.ms - a.ms);
  if (list.length > n) list.pop();
}

function emptyStats(): CorpusStats {
  return { total: 0, parsed: 0, classified: 0, errors: new Map(), unknown: new Map(), refused: new Map(), slowest: [], ms: 0 };
}

/** The statement node type of a text's n-th statement (for the unknown-kind breakdown). */
function nodeTypeOf(text: string, index: number): string {
  try {
    const stmt = (obj(parseSync(text))?.stmts as unknown[] | undefined)?.[index];
    return unwrap(obj(stmt)?.stmt)?.[0] ?? '?';
  } catch {
    return '?';
  }
}

/** A pg-regress line. */
export interface PgItem {
  file: string;
  n: number;
  sql: string;
}

/** Classifies PostgreSQL statements and measures them. */
export function runPg(items: PgItem[], slowest = 10): CorpusStats {
  const s = emptyStats();
  for (const it of items) {
    const t0 = performance.now();
    const f = classifySql(it.sql);
    const ms = performance.now() - t0;
    s.ms += ms;
    s.total += 1;
    keepSlowest(s.slowest, { label: `${it.file}#${it.n}`, ms }, slowest);
    if (f.error) bump(s.errors, f.error.code);
    if (!f.error || f.error.code === 'WRIT_SQL_UNKNOWN') s.parsed += 1;
    if (!f.error) s.classified += 1;
    f.statements.forEach((st, i) => {
      if (st.kind === 'unknown') bump(s.unknown, nodeTypeOf(it.sql, i));
    });
    // Refusals by design (EXECUTE / FETCH / MOVE / CLOSE without their PREPARE / DECLARE, WITH HOLD cursors).
    if (f.error?.code === 'WRIT_SQL_UNKNOWN' && f.statements.every((st) => st.kind !== 'unknown')) {
      bump(s.refused, f.error.message.replace(/^(\w+) [^:]*:/, '$1:').replace(/^DECLARE:/, 'DECLARE WITH HOLD:'));
    }
  }
  return s;
}

/** MariaDB's corpus, kept in the repository (test/corpora/mariadb/, built from mariadb-test 10.11 by its extract.ts). */
const MARIADB_CORPUS_DIR = fileURLToPath(new URL('../test/corpora/mariadb/', import.meta.url));

/** A MariaDB corpus line (`error`: what mysqltest expected the server to answer). */
export interface MysqlItem {
  file: string;
  n: number;
  sql: string;
  error?: string;
}

/** Reads a JSON Lines file of the MariaDB corpus. */
export function readMariadbCorpus(name: 'statements.jsonl' | 'rejected.jsonl'): MysqlItem[] {
  return readFileSync(`${MARIADB_CORPUS_DIR}${name}`, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as MysqlItem);
}

/** The leading keywords of a statement (`CREATE PROCEDURE`, `SHOW`), for the unparsed breakdown. */
function leadOf(sql: string): string {
  const words = sql
    .replace(/\/\*[\s\S]*?\*\/|--[^\n]*|#[^\n]*/g, ' ')
    .trim()
    .split(/[\s(;]+/)
    .map((w) => w.toUpperCase());
  const two = ['CREATE', 'DROP', 'ALTER', 'SHOW', 'SET', 'FLUSH', 'LOCK', 'XA', 'INSTALL', 'UNINSTALL', 'RESET', 'PURGE'];
  let w = words[0] ?? '?';
  if (two.includes(w)) {
    const next = ['OR', 'DEFINER', 'TEMPORARY', 'SQL', 'ALGORITHM', 'GLOBAL', 'SESSION', 'LOCAL', 'IF'].includes(words[1] ?? '')
      ? words.slice(1).find((x) => /^(TABLE|VIEW|PROCEDURE|FUNCTION|TRIGGER|EVENT|INDEX|DATABASE|SCHEMA|USER|ROLE|SEQUENCE|SERVER|TABLESPACE|STATISTICS|STATEMENT|PACKAGE)$/.test(x))
      : words[1];
    w = `${w} ${/^[A-Z_]+$/.test(next ?? '') ? next : '…'}`;
  }
  return /^[A-Z_ …]+$/.test(w) ? w : '?';
}

/** Classifies MySQL/MariaDB statements and measures them; `unknown` breaks the unparsed ones down by leading keywords. */
export function runMysql(items: MysqlItem[], slowest = 10): CorpusStats {
  const s = emptyStats();
  for (const it of items) {
    const t0 = performance.now();
    const f = classifyMysql(it.sql);
    const ms = performance.now() - t0;
    s.ms += ms;
    s.total += 1;
    keepSlowest(s.slowest, { label: `${it.file}#${it.n}`, ms }, slowest);
    if (f.error) bump(s.errors, f.error.code);
    if (!f.error || f.error.code === 'WRIT_SQL_UNKNOWN') s.parsed += 1;
    if (!f.error) s.classified += 1;
    if (f.error?.code === 'WRIT_SQL_UNPARSEABLE') {
      // Refusals by design: text the server runs and the parser does not see, or reads one way only under some sql_mode.
      if (/executable comments/.test(f.error.message)) bump(s.refused, 'executable comment (/*! … */)');
      else if (/sql_mode/.test(f.error.message)) bump(s.refused, 'statement boundaries depend on sql_mode');
      else bump(s.unknown, `unparsed: ${leadOf(it.sql)}`);
    } else if (f.error) bump(s.unknown, `${f.error.code}: ${leadOf(it.sql)}`);
  }
  return s;
}

/** A tldr line. */
export interface ShellItem {
  page: string;
  platform: string;
  command: string;
}

/** Classifies shell commands and measures them. */
export function runShell(items: ShellItem[], slowest = 10): CorpusStats {
  const s = emptyStats();
  for (const it of items) {
    const t0 = performance.now();
    const f = classifyShell(it.command);
    const ms = performance.now() - t0;
    s.ms += ms;
    s.total += 1;
    keepSlowest(s.slowest, { label: `${it.platform}/${it.page}: ${it.command.slice(0, 60)}`, ms }, slowest);
    if (f.error) {
      bump(s.errors, f.error.code);
      bump(s.unknown, `${f.error.code}: ${f.error.message.replace(/\d+/g, 'N')}`);
    }
    if (f.error?.code !== 'WRIT_SHELL_UNPARSEABLE') s.parsed += 1;
    if (!f.error) s.classified += 1;
  }
  return s;
}

/** True for tldr examples that are key presses for interactive programs (`<Ctrl c>`, `<q>`), not shell commands (see the corpus README). */
export function isKeyPressExample(command: string): boolean {
  return /<(Ctrl|Alt|Shift|Enter|Esc|Tab|Space|Backspace|[A-Za-z0-9~.,:;!?@#$%^&*+=_\[\]{}|\/\\'"`-])[^>]*>/.test(command);
}
