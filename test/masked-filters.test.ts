/**
 * "What is masked does not come back", against oracles: a masked column read where its value
 * is no result field (a filter, join, grouping, ordering, row count) lets plain columns or the
 * number of rows answer questions about it, and a binary search of them recovers the value.
 * The worker refuses such statements before anything runs (WRIT_MASKED_FILTER) unless the
 * rule's masking says `filterMasked: true`; catalogue relations holding column values (pg_stats
 * after ANALYZE) or other sessions' statements are refused whatever the grant. Real PostgreSQL,
 * whole path (broker → worker → masking), as an agent sends them.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { startStack, type Stack } from './fixture.ts';

const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net'];
const MASKING = '{ columns: [{ column: "public.customers.email" }], detectors: [] }';

let s: Stack;
let analyst: WritClient;
let ops: WritClient;
let trusted: WritClient;
let trustedOps: WritClient;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-masked-filters-'));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    `
version: masked-filters
defaults:
  masking: ${MASKING}
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] }, sql: { functions: ["*", pg_stat_get_activity] } }
  - id: ops-write
    effect: allow
    mode: write
    match: { principal: { groups: [ops] }, sql: { functions: ["*"] } }
  - id: lookup-read
    effect: allow
    mode: read
    masking: { columns: [{ column: "public.customers.email" }], detectors: [], filterMasked: true }
    match: { principal: { groups: [lookup] }, sql: { functions: ["*", pg_stat_get_activity] } }
  - id: lookup-write
    effect: allow
    mode: write
    masking: { columns: [{ column: "public.customers.email" }], detectors: [], filterMasked: true }
    match: { principal: { groups: [lookupw] }, sql: { functions: ["*"] } }
`,
  );
  s = await startStack({ config: { policyFile } });
  await s.admin.query("INSERT INTO events (note) SELECT 'e' || g FROM generate_series(1, 30) g; ANALYZE customers");
  // A lookup index on the masked column, as deployments have: the conflict check below uses it.
  await s.admin.query('CREATE UNIQUE INDEX customers_email ON customers (email)');
  await s.admin.query(`CREATE VIEW contacts AS SELECT id, email AS contact FROM customers; GRANT SELECT ON contacts TO ${s.db.roles.read.user}`);
  analyst = s.client(await s.token('alice', ['analysts']));
  ops = s.client(await s.token('olga', ['ops']));
  trusted = s.client(await s.token('lou', ['lookup']));
  trustedOps = s.client(await s.token('wes', ['lookupw']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

function expectNoSecrets(value: unknown) {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

const eventCount = async () => Number((await s.admin.query('SELECT count(*) AS n FROM events')).rows[0].n);

/** Each asked, on the attack round's fixtures, a question about the masked e-mail whose answer came back in plain columns or row counts. */
const oracles: Array<[string, string, number]> = [
  ['WHERE LIKE', "SELECT id, name FROM customers WHERE email LIKE 'a%'", 1],
  ['WHERE =', "SELECT id, name FROM customers WHERE email = 'alice@example.com'", 1],
  ['WHERE length()', 'SELECT id, name FROM customers WHERE length(email) = 17', 2],
  ['ORDER BY', 'SELECT id, name FROM customers ORDER BY email DESC', 3],
  ['HAVING', "SELECT name FROM customers GROUP BY name HAVING max(email) LIKE 'c%'", 1],
  ['EXISTS', "SELECT id, name FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.id = c.id AND d.email ~ '^b')", 1],
  ['IN', "SELECT id, name FROM customers WHERE id IN (SELECT id FROM customers WHERE email ILIKE 'A%')", 1],
  ['a FROM function row count', 'SELECT 1 AS one FROM generate_series(1, (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 2)) g', 98],
  ['a set-returning function in the select list', 'SELECT generate_series(1, length(email)) AS n FROM customers WHERE id = 1', 17],
  ['LIMIT', 'SELECT id FROM events LIMIT (SELECT length(email) FROM customers WHERE id = 1)', 17],
  ['a JOIN condition', "SELECT c.id FROM customers c JOIN customers d ON d.id = c.id AND d.email LIKE 'a%'", 1],
  ['a window ORDER BY', 'SELECT id, row_number() OVER (ORDER BY email DESC) AS r FROM customers', 3],
  ['a filter on a derived table computed column', 'SELECT * FROM (SELECT id, length(email) AS l FROM customers) s WHERE l = 17', 2],
  ['ORDER BY a position', 'SELECT email, id FROM customers ORDER BY 1 DESC', 3],
  ['ORDER BY an output name', 'SELECT email AS e, id FROM customers ORDER BY e DESC', 3],
  ['a whole row compared', "SELECT id FROM customers c WHERE c::text LIKE '%alice%'", 1],
  [
    "a recursive CTE's own column bounding its recursion",
    'WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < length(e)) SELECT id, note FROM events WHERE id IN (SELECT n FROM r)',
    17,
  ],
  ["a recursive CTE's own column in a LIKE", "WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE e LIKE 'a%' AND n < 5) SELECT n FROM r", 5],
  ['plain EXPLAIN (estimates from statistics)', "EXPLAIN SELECT id FROM customers WHERE email = 'alice@example.com'", 1],
];

describe('a masked column used outside the result is refused', () => {
  it.each(oracles)('refused: %s', async (_, sql) => {
    const o = await analyst.run({ target: 'db', sql });
    expect(o.status).toBe('failed');
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('refused: a DELETE whose filter reads the masked column, and nothing is deleted', async () => {
    const before = await eventCount();
    const o = await ops.run({ target: 'db', sql: 'DELETE FROM events WHERE id = (SELECT length(email) FROM customers WHERE id = 1)' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(await eventCount()).toBe(before);
  });

  it('refused: a DELETE driven by a recursive CTE whose recursion the masked column bounds, and nothing is deleted', async () => {
    const before = await eventCount();
    const o = await ops.run({
      target: 'db',
      sql: 'WITH RECURSIVE r(k, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT k + 1, e FROM r WHERE k < length(e)) DELETE FROM events WHERE id IN (SELECT max(k) FROM r)',
    });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(await eventCount()).toBe(before);
  });

  it.each([
    `INSERT INTO customers (name, email, plan) SELECT 'probe-' || g, g, 'free' FROM unnest(ARRAY['x2@y.z', 'alice@example.com']) g ON CONFLICT (email) DO NOTHING RETURNING name`,
    `INSERT INTO customers (name, email, plan) SELECT 'probe-' || g, g, 'free' FROM unnest(ARRAY['x@y.z', 'bob@example.org']) g ON CONFLICT DO NOTHING RETURNING name`,
    `INSERT INTO customers (name, email, plan) SELECT 'probe-' || g, g, 'free' FROM unnest(ARRAY['q1@y.z', 'alice@example.com']) g ON CONFLICT (email) DO UPDATE SET name = customers.name RETURNING id, name`,
  ])('refused: INSERT … ON CONFLICT guessing masked values against a unique index, and nothing is inserted: %s', async (sql) => {
    const o = await ops.run({ target: 'db', sql });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
    expect((await s.admin.query("SELECT count(*) AS n FROM customers WHERE name LIKE 'probe-%'")).rows[0].n).toBe('0');
  });

  it('refused: an UPDATE of an unmasked column filtered by the masked one', async () => {
    const o = await ops.run({ target: 'db', sql: "UPDATE events SET note = 'x' WHERE id < (SELECT ascii(email) FROM customers WHERE id = 1)" });
    expect(o.error?.code, JSON.stringify(o.error)).toMatch(/^WRIT_MASKED_(FILTER|COPY)$/);
    expect((await s.admin.query("SELECT count(*) AS n FROM events WHERE note = 'x'")).rows[0].n).toBe('0');
  });

  it('allowed where the rule says filterMasked: true (the same statements answer)', async () => {
    for (const [name, sql, rows] of oracles) {
      const o = await trusted.run({ target: 'db', sql });
      expect(o.error, `${name}: ${JSON.stringify(o.error)}`).toBeUndefined();
      if (!sql.startsWith('EXPLAIN')) expect(o.result!.rows.length, name).toBe(rows);
      expectNoSecrets(o);
    }
    const del = await trustedOps.run({ target: 'db', sql: 'DELETE FROM events WHERE id = (SELECT length(email) FROM customers WHERE id = 1)' });
    expect(del.error, JSON.stringify(del.error)).toBeUndefined();
    expect((await s.admin.query('SELECT count(*) AS n FROM events WHERE id = 17')).rows[0].n).toBe('0');
  });
});

describe('views', () => {
  // The catalogue gives a view's base columns as a whole, not per view column: a filter on any
  // column of a view that draws on a masked column counts as a filter on it (fail closed).
  it('refused: a filter on a view column that is the masked column, or on any column of such a view', async () => {
    for (const sql of ["SELECT id FROM contacts WHERE contact LIKE 'a%'", 'SELECT id, contact FROM contacts WHERE id = 1']) {
      const o = await analyst.run({ target: 'db', sql });
      expect(o.error?.code, `${sql}: ${JSON.stringify(o.error)}`).toBe('WRIT_MASKED_FILTER');
    }
  });

  it('allowed: the view read whole, masked', async () => {
    const o = await analyst.run({ target: 'db', sql: 'SELECT id, contact FROM contacts' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.rows.length).toBe(3);
    expect(o.result!.columns[1]).toMatchObject({ name: 'contact', masked: true });
    expectNoSecrets(o);
  });
});

describe('a masked column in the result stays allowed (masked)', () => {
  it('a plain masked column, filtered by an unmasked key', async () => {
    const o = await analyst.run({ target: 'db', sql: 'SELECT id, email FROM customers WHERE id = 1' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.rows.length).toBe(1);
    expect(o.result!.columns.map((c) => c.masked)).toEqual([false, true]);
    expectNoSecrets(o);
  });

  it('a computed field over the masked column', async () => {
    const o = await analyst.run({ target: 'db', sql: 'SELECT id, length(email) AS l FROM customers' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.columns.map((c) => c.masked)).toEqual([false, true]);
  });

  it('a recursive CTE over unmasked columns, and one carrying the masked column only to the result', async () => {
    const plain = await analyst.run({ target: 'db', sql: 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r' });
    expect(plain.error, JSON.stringify(plain.error)).toBeUndefined();
    expect(plain.result!.rows.length).toBe(5);
    const carried = await analyst.run({
      target: 'db',
      sql: 'WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT n, e FROM r',
    });
    expect(carried.error, JSON.stringify(carried.error)).toBeUndefined();
    expect(carried.result!.rows.length).toBe(3);
    expect(carried.result!.columns[1]).toMatchObject({ name: 'e', masked: true });
    expectNoSecrets(carried);
  });

  it('a masked column rewritten into itself without a filter on it', async () => {
    const o = await ops.run({ target: 'db', sql: 'UPDATE customers SET email = lower(email) WHERE id = 3' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.status).toBe('succeeded');
  });
});

describe('catalogue relations holding values or other sessions statements are refused', () => {
  it('pg_stats holds the masked values after ANALYZE (the statistics are there)', async () => {
    const r = await s.admin.query("SELECT most_common_vals::text AS v, histogram_bounds::text AS h FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'");
    expect(JSON.stringify(r.rows)).toContain('alice@example.com');
  });

  const catalogs = [
    "SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'",
    'SELECT * FROM pg_catalog.pg_stats',
    'SELECT * FROM pg_stats_ext',
    'SELECT * FROM pg_stats_ext_exprs',
    'SELECT stavalues1::text FROM pg_statistic',
    'SELECT * FROM pg_statistic_ext_data',
    'SELECT query FROM pg_stat_activity',
    'SELECT statement FROM pg_prepared_statements',
    'SELECT statement FROM pg_cursors',
    'SELECT query FROM pg_stat_get_activity(NULL)',
    'SELECT x FROM (SELECT histogram_bounds::text AS x FROM pg_stats) s',
  ];
  it.each(catalogs)('refused: %s', async (sql) => {
    for (const c of [analyst, trusted]) {
      const o = await c.run({ target: 'db', sql });
      expect(o.status).toBe('failed');
      expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_UNSUPPORTED');
      expectNoSecrets(o);
    }
  });
});
