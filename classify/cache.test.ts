/** The facts cache: LRU behaviour, keys by dialect, frozen shared results. */
import { beforeAll, describe, expect, it } from 'vitest';
import { cacheKey, classifyMysqlCached, classifyShell, classifyShellCached, classifySql, classifySqlCached, createFactsCache, initClassifiers, type SqlFacts } from './index.ts';

beforeAll(async () => {
  await initClassifiers();
});

describe('createFactsCache', () => {
  it('evicts the least recently used entry', () => {
    const c = createFactsCache<number>(2);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1); // a is now the most recent
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.get('c')).toBe(3);
    expect(c.size).toBe(2);
    c.clear();
    expect(c.size).toBe(0);
  });

  it('keeps at least one entry whatever the size asked', () => {
    const c = createFactsCache<string>(0);
    c.set('k', 'v');
    expect(c.get('k')).toBe('v');
  });

  it('keys by SHA-256 of dialect and exact text', () => {
    expect(cacheKey('postgres', 'SELECT 1')).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey('postgres', 'SELECT 1')).not.toBe(cacheKey('mysql', 'SELECT 1'));
    expect(cacheKey('postgres', 'SELECT 1')).not.toBe(cacheKey('postgres', 'SELECT 1 '));
  });
});

describe('cached classification', () => {
  it('returns the same facts as the uncached call, then the same object', () => {
    const cache = createFactsCache<SqlFacts>(10);
    const text = 'DELETE FROM users WHERE 1=1';
    const first = classifySqlCached(text, cache);
    expect(first).toEqual(classifySql(text));
    expect(classifySqlCached(text, cache)).toBe(first);
    expect(cache.size).toBe(1);
  });

  it('freezes cached facts so one caller cannot change another caller’s', () => {
    const f = classifySqlCached('SELECT * FROM users');
    expect(Object.isFrozen(f)).toBe(true);
    expect(Object.isFrozen(f.statements[0]?.tablesRead)).toBe(true);
    expect(() => (f.statements[0]?.tablesRead as string[]).push('x')).toThrow(TypeError);
  });

  it('does not mix dialects in a shared cache', () => {
    const cache = createFactsCache<SqlFacts>(10);
    // PostgreSQL reads this as two statements, MySQL refuses it: the same text, two different answers.
    const text = "SELECT '\\' ; DROP TABLE users; --'";
    expect(classifySqlCached(text, cache).statements.length).toBe(2);
    expect(classifyMysqlCached(text, cache).error?.code).toBe('WRIT_SQL_UNPARSEABLE');
    expect(cache.size).toBe(2);
  });

  it('caches shell facts', () => {
    const a = classifyShellCached('sudo rm -rf /');
    expect(classifyShellCached('sudo rm -rf /')).toBe(a);
    expect(a).toEqual(classifyShell('sudo rm -rf /'));
  });
});
