/**
 * Loads the parsers once. libpg-query and tree-sitter are WASM modules whose
 * loading is asynchronous; after initClassifiers() resolves every classify
 * function is synchronous. The MySQL parser (node-sql-parser's MySQL build, the
 * largest of the three to load) is plain JavaScript: it loads synchronously on the
 * first MySQL classification, so a process without MySQL targets never loads it.
 */
import { createRequire } from 'node:module';
import { loadModule, parseSync } from 'libpg-query';
import { Language, Parser } from 'web-tree-sitter';
import { WritError } from '../schemas/errors.ts';

/** The subset of node-sql-parser's Parser that the MySQL classifier uses. */
export interface MysqlParser {
  parse(sql: string, opt?: { database?: string }): { tableList?: unknown; columnList?: unknown; ast?: unknown };
}

interface Loaded {
  bash: Parser;
}

let loaded: Loaded | undefined;
let loading: Promise<void> | undefined;
let mysql: MysqlParser | undefined;

async function load(): Promise<void> {
  const require = createRequire(import.meta.url);
  await loadModule();
  await Parser.init();
  const bashLanguage = await Language.load(require.resolve('tree-sitter-bash/tree-sitter-bash.wasm'));
  const bash = new Parser();
  bash.setLanguage(bashLanguage);
  loaded = { bash };
}

/** What initClassifiers loads besides the PostgreSQL and shell parsers. */
export interface InitOptions {
  /** Load the MySQL parser now (a process with MySQL targets), not on its first use. Default false. */
  mysql?: boolean;
}

/** Loads the WASM parsers; idempotent and safe to call concurrently. */
export async function initClassifiers(opts: InitOptions = {}): Promise<void> {
  if (opts.mysql) mysqlParser();
  if (loaded) return;
  loading ??= load().catch((e: unknown) => {
    loading = undefined; // let a later call retry after a transient failure
    throw e;
  });
  await loading;
}

/** Whether the MySQL parser has been loaded (by a MySQL classification or `initClassifiers({ mysql: true })`). */
export function mysqlLoaded(): boolean {
  return mysql !== undefined;
}

function need(): Loaded {
  if (!loaded) throw new WritError('WRIT_INTERNAL', 'initClassifiers() must be awaited before classifying');
  return loaded;
}

/** libpg-query's synchronous parse; throws when not initialised. */
export function pgParse(text: string): ReturnType<typeof parseSync> {
  need();
  return parseSync(text);
}

/** The bash tree-sitter parser. */
export function bashParser(): Parser {
  return need().bash;
}

/**
 * node-sql-parser's MySQL parser, loaded on first use. The MySQL-only build: the full bundle
 * carries every dialect's grammar. A parser that cannot load is an internal error (the caller
 * fails closed), never an unparseable statement.
 */
export function mysqlParser(): MysqlParser {
  if (mysql) return mysql;
  let mod: { Parser?: new () => MysqlParser; default?: { Parser: new () => MysqlParser } };
  try {
    mod = createRequire(import.meta.url)('node-sql-parser/build/mysql.js') as typeof mod;
  } catch (e) {
    throw new WritError('WRIT_INTERNAL', 'cannot load the MySQL parser (node-sql-parser)', { cause: e });
  }
  const MysqlParserClass = mod.Parser ?? mod.default?.Parser;
  if (!MysqlParserClass) throw new WritError('WRIT_INTERNAL', 'node-sql-parser has no Parser export');
  mysql = new MysqlParserClass();
  return mysql;
}
