/**
 * A small LRU of classification results keyed by the SHA-256 of the dialect
 * and the exact text: parsing a large statement can cost more than running it,
 * and agents resend the same commands. Cached facts are frozen, because every
 * caller gets the same object.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ShellFacts, SqlFacts } from './types.ts';
import { classifySql } from './sql-pg.ts';
import { classifyMysql } from './sql-mysql.ts';
import { classifyShell } from './shell.ts';

/** What a cache entry was classified as. */
export type CacheDialect = 'postgres' | 'mysql' | 'shell';

/** A bounded least-recently-used map. */
export interface FactsCache<T extends NonNullable<unknown>> {
  /** The entry, refreshed as most recently used; undefined on a miss. */
  get(key: string): T | undefined;
  /** Stores an entry, evicting the least recently used one beyond `max`. */
  set(key: string, value: T): void;
  /** Number of entries. */
  readonly size: number;
  /** Drops every entry. */
  clear(): void;
}

/** Creates an LRU holding at most `max` entries (at least 1). */
export function createFactsCache<T extends NonNullable<unknown>>(max: number): FactsCache<T> {
  const lru = new LRUCache<string, T>({ max: Math.max(1, Math.floor(max)) });
  return {
    get: (key) => lru.get(key),
    set: (key, value) => void lru.set(key, value),
    get size() {
      return lru.size;
    },
    clear: () => lru.clear(),
  };
}

/** The cache key: SHA-256 of the dialect and the exact text (a NUL cannot occur in a dialect name). */
export function cacheKey(dialect: CacheDialect, text: string): string {
  return createHash('sha256').update(dialect).update('\u0000').update(text, 'utf8').digest('hex');
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

const DEFAULT_MAX = 2000;
let sqlCache: FactsCache<SqlFacts> | undefined;
let shellCache: FactsCache<ShellFacts> | undefined;

function cached<T extends NonNullable<unknown>>(cache: FactsCache<T>, dialect: CacheDialect, text: string, classify: (t: string) => T): T {
  const key = cacheKey(dialect, text);
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const facts = deepFreeze(classify(text));
  cache.set(key, facts);
  return facts;
}

/** classifySql through an LRU (a shared one of 2000 entries unless given). The facts are frozen. */
export function classifySqlCached(text: string, cache: FactsCache<SqlFacts> = (sqlCache ??= createFactsCache(DEFAULT_MAX))): SqlFacts {
  return cached(cache, 'postgres', text, classifySql);
}

/** classifyMysql through an LRU (shared with classifySqlCached unless given; keys differ by dialect). The facts are frozen. */
export function classifyMysqlCached(text: string, cache: FactsCache<SqlFacts> = (sqlCache ??= createFactsCache(DEFAULT_MAX))): SqlFacts {
  return cached(cache, 'mysql', text, classifyMysql);
}

/** classifyShell through an LRU (a shared one of 2000 entries unless given). The facts are frozen. */
export function classifyShellCached(text: string, cache: FactsCache<ShellFacts> = (shellCache ??= createFactsCache(DEFAULT_MAX))): ShellFacts {
  return cached(cache, 'shell', text, classifyShell);
}
