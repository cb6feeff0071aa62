/**
 * The MySQL parser (node-sql-parser's MySQL build) loads only when MySQL is classified or a
 * process asks for it: initClassifiers() for PostgreSQL and shell leaves it unloaded. This file
 * runs in its own module graph, so nothing has been loaded when it starts.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { classifyMysql, classifyShell, classifySql, initClassifiers } from './index.ts';
import { mysqlLoaded } from './runtime.ts';

/** Whether Node has loaded any module of node-sql-parser in this process. */
const sqlParserInCache = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('node-sql-parser'));

describe('the MySQL classifier', () => {
  it('is not loaded by initClassifiers() for PostgreSQL and shell', async () => {
    await initClassifiers();
    expect(classifySql('SELECT 1').statements[0]?.kind).toBe('select');
    expect(classifyShell('ls').commands[0]?.program).toBe('ls');
    expect(mysqlLoaded()).toBe(false);
    expect(sqlParserInCache()).toBe(false);
  });

  it('loads on the first MySQL classification, synchronously, and classifies', () => {
    expect(classifyMysql('SELECT name FROM t WHERE id = 1').statements[0]?.kind).toBe('select');
    expect(mysqlLoaded()).toBe(true);
    expect(sqlParserInCache()).toBe(true);
    // Unparseable MySQL still fails closed once loaded.
    expect(classifyMysql('SELEC 1').error?.code).toBe('WRIT_SQL_UNPARSEABLE');
  });
});
