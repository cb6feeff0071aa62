/**
 * Classification: turns a command text into facts for the policy. SQL for
 * PostgreSQL (the real grammar, libpg-query) and MySQL/MariaDB
 * (node-sql-parser), shell with tree-sitter-bash. Await initClassifiers()
 * once; after it every function here is synchronous and never throws for bad
 * input: the facts carry an `error` and the policy fails closed.
 */
export type * from './types.ts';
export { EXPANSION_MARK, SQL_KINDS } from './types.ts';
export { initClassifiers } from './runtime.ts';
export { classifySql, splitSql } from './sql-pg.ts';
export { isKnownSafePg, isOpaquePg } from './pg-catalog.ts';
export { classifyMysql, splitMysql } from './sql-mysql.ts';
export { classifyShell } from './shell.ts';
export { quoteShellArg, quoteShellArgs } from './shell-quote.ts';
export { cacheKey, classifyMysqlCached, classifyShellCached, classifySqlCached, createFactsCache } from './cache.ts';
export { sqlLiterals, sqlTokenShape, shellLiterals, shellTokenShape, type LiteralSpan } from './literals.ts';
