/**
 * The catalogue reads a statement's checks make, against a real PostgreSQL: prefetch reads in one
 * round trip what columnsOf and maskedOrder would have read in four, and they answer exactly as
 * they do without it, for plain, indexed, clustered, partitioned and inherited tables and views.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../../classify/index.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/index.ts';
import { OriginResolver } from './origins.ts';

let db: TestDatabase;
let pool: pg.Pool;
let queries: string[] = [];

const masked = (cols: readonly string[]) => cols.filter((c) => /\.(email|secret)$/.test(c));

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(`
    CREATE TABLE people (id int PRIMARY KEY, name text, email text);
    CREATE INDEX people_email ON people (email);
    CREATE TABLE plain (id int, note text);
    CREATE TABLE kept (id int PRIMARY KEY, secret text);
    CREATE INDEX kept_secret ON kept (secret);
    CLUSTER kept USING kept_secret;
    CREATE TABLE parted (id int, secret text) PARTITION BY RANGE (secret);
    CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('a') TO ('m');
    CREATE TABLE by_id (id int, secret text) PARTITION BY RANGE (id);
    CREATE TABLE by_id_1 PARTITION OF by_id FOR VALUES FROM (0) TO (100);
    CREATE TABLE base (id int, secret text);
    CREATE TABLE child (extra int) INHERITS (base);
    CREATE VIEW emails AS SELECT id, email FROM people;
    CREATE VIEW ordered AS SELECT string_agg(name, ',') AS names FROM people;
  `);
  await admin.end();
  pool = new pg.Pool({ connectionString: db.connectionString('read'), max: 1 });
  const query = pool.query.bind(pool) as (...a: unknown[]) => Promise<unknown>;
  (pool as unknown as { query: (...a: unknown[]) => Promise<unknown> }).query = (...a: unknown[]) => {
    const q = a[0] as string | { text: string };
    queries.push(typeof q === 'string' ? q : q.text);
    return query(...a);
  };
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** What the checks learn about `tables`, with Sets as sorted arrays. */
async function learn(tables: string[], prefetch: boolean) {
  const o = new OriginResolver(pool);
  queries = [];
  if (prefetch) await o.prefetch(tables);
  const columns = await o.columnsOf(tables);
  const order = await o.maskedOrder(tables, masked);
  const views = await o.viewBaseColumns(tables);
  return {
    columns: [...columns].sort(),
    views: [...views].sort(),
    order: Object.fromEntries(Object.entries(order).map(([k, v]) => [k, [...v].sort()])),
    queries: queries.length,
  };
}

describe('OriginResolver.prefetch', () => {
  const cases: Array<[string, string[]]> = [
    ['an indexed masked column', ['public.people']],
    ['no masked column', ['public.plain']],
    ['a table clustered on a masked index', ['public.kept']],
    ['a table partitioned by a masked column', ['public.parted']],
    ['a partition read by name', ['public.parted_a']],
    ['a partitioned table and its partition', ['public.parted', 'public.parted_a']],
    ['a table partitioned by another column', ['public.by_id', 'public.by_id_1']],
    ['an inheritance parent and child', ['public.base', 'public.child']],
    ['views', ['public.emails', 'public.ordered']],
    ['a name the catalogue does not hold', ['public.nowhere', 'public.people']],
  ];
  for (const [what, tables] of cases) {
    it(`answers as the lookups one by one do: ${what}`, async () => {
      const one = await learn(tables, false);
      const pre = await learn(tables, true);
      expect({ ...pre, queries: 0 }).toEqual({ ...one, queries: 0 });
      expect(pre.queries).toBeLessThanOrEqual(one.queries);
    });
  }

  it('reads a table with an indexed masked column in one round trip (four before)', async () => {
    const one = await learn(['public.people'], false);
    const pre = await learn(['public.people'], true);
    expect(one.order.indexes).toEqual(['people_email']);
    expect(one.queries).toBe(4);
    expect(pre.queries).toBe(1);
  });

  it('keeps its queries prepared on the connection, so the server plans each once', async () => {
    await learn(['public.people'], true);
    const r = await pool.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
    expect(r.rows.map((x) => x.name)).toEqual(expect.arrayContaining(['writ-origins-prefetch', 'writ-origins-by-name', 'writ-origins-indexes', 'writ-origins-partitions']));
  });
});
