/**
 * Loads the parsers once. libpg-query and tree-sitter are WASM modules whose
 * loading is asynchronous; after initClassifiers() resolves every classify
 * function is synchronous.
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
  mysql: MysqlParser;
}

let loaded: Loaded | undefined;
let loading: Promise<void> | undefined;

async function load(): Promise<void> {
  const require = createRequire(import.meta.url);
  await loadModule();
  await Parser.init();
  const bashLanguage = await Language.load(require.resolve('tree-sitter-bash/tree-sitter-bash.wasm'));
  const bash = new Parser();
  bash.setLanguage(bashLanguage);
  // The MySQL-only build: the full bundle carries every dialect's grammar.
  const mysqlModule = (await import('node-sql-parser/build/mysql.js')) as unknown as {
    Parser?: new () => MysqlParser;
    default?: { Parser: new () => MysqlParser };
  };
  const MysqlParserClass = mysqlModule.Parser ?? mysqlModule.default?.Parser;
  if (!MysqlParserClass) throw new WritError('WRIT_INTERNAL', 'node-sql-parser has no Parser export');
  loaded = { bash, mysql: new MysqlParserClass() };
}

/** Loads the WASM parsers; idempotent and safe to call concurrently. */
export async function initClassifiers(): Promise<void> {
  if (loaded) return;
  loading ??= load().catch((e: unknown) => {
    loading = undefined; // let a later call retry after a transient failure
    throw e;
  });
  await loading;
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

/** node-sql-parser's MySQL parser. */
export function mysqlParser(): MysqlParser {
  return need().mysql;
}
