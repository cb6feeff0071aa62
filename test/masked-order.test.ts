/**
 * On a real PostgreSQL behind the whole path: rows must not come back in the order of a masked
 * column. An index-only scan of an index that holds the masked e-mail beside the selected columns
 * (`(email) INCLUDE (id)`) reads in e-mail order, and so does a sequential scan of a table
 * CLUSTERed on such an index: `SELECT id, email FROM accounts` handed the ids back in e-mail
 * order. The worker checks the plan of a statement on such a table (EXPLAIN): a plain read answers
 * in an order of its masked rows, and anything whose result depends on the order is refused
 * (WRIT_MASKED_FILTER). docs/policy.md "Row order".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { SCHEMA_SQL, startStack, type Stack } from './fixture.ts';

const ROWS = 5000;
let s: Stack;
let reader: WritClient;
let limited: WritClient;
let writer: WritClient;

beforeAll(async () => {
  s = await startStack({
    schemaSql: `${SCHEMA_SQL}
      CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, bio text);
      INSERT INTO accounts SELECT g, md5(g::text) || '@example.com', repeat('x', 400) FROM generate_series(1, ${ROWS}) g;
      CREATE INDEX accounts_email_id ON accounts (email) INCLUDE (id);
      CREATE TABLE clustered (id int PRIMARY KEY, email text NOT NULL);
      INSERT INTO clustered SELECT g, md5(g::text) || '@example.org' FROM generate_series(1, 50) g;
      CREATE INDEX clustered_email ON clustered (email);
      CLUSTER clustered USING clustered_email;
      CREATE VIEW cl_ids AS SELECT string_agg(id::text, ',') AS ids FROM clustered;
      CREATE TABLE parted (id int, email text NOT NULL, pad text) PARTITION BY RANGE (id);
      CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100000);
      INSERT INTO parted SELECT g, md5(g::text) || '@example.net', repeat('y', 400) FROM generate_series(1, 2000) g;
      CREATE INDEX parted_email ON parted (email) INCLUDE (id);
      CREATE TABLE by_email (id int, email text NOT NULL) PARTITION BY RANGE (email);
      CREATE TABLE by_email_am PARTITION OF by_email FOR VALUES FROM ('a') TO ('n');
      CREATE TABLE by_email_nz PARTITION OF by_email FOR VALUES FROM ('n') TO (MAXVALUE);
      INSERT INTO by_email VALUES (1, 'alice@example.com'), (2, 'nina@example.com'), (3, 'bob@example.com');
      CREATE TABLE sorted (id int PRIMARY KEY, email text NOT NULL);
      INSERT INTO sorted SELECT g, md5(g::text) || '@example.com' FROM generate_series(1, 200) g ORDER BY 2;
      CREATE MATERIALIZED VIEW by_mail AS SELECT id, email FROM sorted ORDER BY email;`,
    config: {
      policy: {
        rules: [
          { id: 'readers', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read', limits: { rows: 10000 } },
          { id: 'limited', effect: 'allow', groups: ['limited'], targets: ['db'], mode: 'read', limits: { rows: 100 } },
          { id: 'writers', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write' },
        ],
        masking: {
          columns: [
            { column: 'public.accounts.email' },
            { column: 'public.clustered.email' },
            { column: 'public.parted.email' },
            { column: 'public.by_email.email' },
            { column: 'public.sorted.email' },
          ],
          detectors: [],
        },
      },
    },
  });
  // The visibility map an index-only scan needs, and statistics that make it the cheapest plan.
  await s.admin.query('VACUUM ANALYZE accounts');
  await s.admin.query('ANALYZE clustered');
  await s.admin.query('VACUUM ANALYZE parted_1');
  await s.admin.query('ANALYZE by_mail');
  await s.admin.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${s.db.roles.read.user}`);
  reader = s.client(await s.token('alice', ['analysts']));
  limited = s.client(await s.token('lim', ['limited']));
  writer = s.client(await s.token('dba1', ['dba']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

const canonical = (rows: unknown[][]) => [...rows].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

describe('PostgreSQL: a row order or place that follows a masked column, by other ways', () => {
  it.each([
    // ARRAY(…) keeps its rows in the order they arrive.
    'SELECT ARRAY(SELECT id FROM clustered) AS ids',
    // A partition's index (named after the partition) in the masked column's order.
    'SELECT id FROM parted LIMIT 5',
    'SELECT ARRAY(SELECT id FROM parted) AS ids',
    // A row's physical place on a table stored in e-mail order, and a scan by it.
    'SELECT ctid::text AS pos, id FROM clustered',
    "SELECT id FROM clustered WHERE ctid < '(1,0)'",
    'SELECT id FROM clustered TABLESAMPLE SYSTEM (50) REPEATABLE (7) LIMIT 10',
    // The partition a row is in, of a table partitioned by the masked column.
    'SELECT tableoid::regclass::text AS part, id FROM by_email',
    'SELECT id FROM by_email_am',
    // A materialized view is stored in the order its query produced.
    'SELECT id FROM by_mail LIMIT 3',
    'SELECT id FROM by_mail',
    // A view whose own definition aggregates in the order rows arrive.
    'SELECT ids FROM cl_ids',
    // A value taken anew per row records the order (sorting by it gave the e-mail order), and a
    // floating-point sum rounds by it (the 1 is kept only when its row comes after both others).
    'SELECT id, clock_timestamp()::text AS t FROM clustered',
    'SELECT id, random() AS r FROM clustered',
    'SELECT sum(CASE id WHEN 1 THEN power(2, 60) WHEN 2 THEN -power(2, 60) WHEN 3 THEN 1 ELSE 0 END::float8) AS s FROM clustered',
    'SELECT avg(id::float8) AS a FROM clustered',
  ])('is refused: %s', async (sql) => {
    const o = await reader.run({ target: 'db', sql });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('holds: plain reads of those relations answer in an order of their masked rows, and a filter on the key as asked', async () => {
    for (const sql of ['SELECT id FROM parted', 'SELECT id FROM by_email']) {
      const o = await reader.run({ target: 'db', sql });
      expect(o.status, `${sql}: ${JSON.stringify(o.error)}`).toBe('succeeded');
      expect(o.result!.rows, sql).toEqual(canonical(o.result!.rows));
    }
    const k = await reader.run({ target: 'db', sql: 'SELECT id FROM sorted WHERE id <= 3' });
    expect(k.result?.rows, JSON.stringify(k.error)).toEqual([[1], [2], [3]]);
    const u = await writer.run({ target: 'db', sql: 'UPDATE clustered SET email = email WHERE id = 7' });
    expect(u.status, JSON.stringify(u.error)).toBe('succeeded');
  });
});

describe('PostgreSQL: a plan that reads in the order of a masked column', () => {
  it('the plan the check is about: the admin sees an index-only scan in e-mail order', async () => {
    const plan = await s.admin.query('EXPLAIN (FORMAT JSON) SELECT id, email FROM accounts');
    expect(JSON.stringify(plan.rows[0])).toContain('accounts_email_id');
    const seq = await s.admin.query('SELECT id FROM clustered LIMIT 3');
    const byEmail = await s.admin.query('SELECT id FROM clustered ORDER BY email LIMIT 3');
    expect(seq.rows).toEqual(byEmail.rows);
  });

  it('answers a plain read through it in an order of its masked rows, not the index', async () => {
    const o = await reader.run({ target: 'db', sql: 'SELECT id, email FROM accounts' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    const rows = o.result!.rows;
    expect(rows.length).toBe(ROWS);
    expect(rows).toEqual(canonical(rows));
    expect(rows.every((r) => r[1] === '[MASKED:column]')).toBe(true);
    const c = await reader.run({ target: 'db', sql: 'SELECT id FROM clustered' });
    expect(c.result!.rows).toEqual(canonical(Array.from({ length: 50 }, (_, i) => [i + 1])));
  });

  it.each([
    'SELECT id, email FROM accounts LIMIT 4000',
    'SELECT id, email FROM accounts OFFSET 10',
    "SELECT string_agg(a.id::text, ',') AS ids, count(a.email) AS n FROM accounts a",
    'SELECT id, row_number() OVER () AS r, email FROM accounts',
    'SELECT id FROM clustered LIMIT 3',
    'SELECT array_agg(id) AS ids FROM clustered',
  ])('refuses what depends on the order of the rows: %s', async (sql) => {
    // The server's plan for it reads in e-mail order (what makes the refusal needed).
    const plan = JSON.stringify((await s.admin.query(`EXPLAIN (FORMAT JSON) ${sql}`)).rows[0]);
    expect(plan.includes('accounts_email_id') || plan.includes('"Relation Name":"clustered"'), plan).toBe(true);
    const o = await reader.run({ target: 'db', sql });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('refuses a plain read whose rows were cut at the row limit, and a copy in that order', async () => {
    const o = await limited.run({ target: 'db', sql: 'SELECT id, email FROM accounts' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    const w = await writer.run({ target: 'db', sql: 'INSERT INTO events (note) SELECT id::text FROM clustered' });
    expect(w.error?.code, JSON.stringify(w.error)).toBe('WRIT_MASKED_FILTER');
    expect((await s.admin.query('SELECT count(*)::int AS n FROM events')).rows[0].n).toBe(0);
  });

  it('holds: a plan by an unmasked key answers as asked', async () => {
    const o = await reader.run({ target: 'db', sql: 'SELECT id FROM accounts WHERE id < 4 ORDER BY id DESC' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.rows).toEqual([[3], [2], [1]]);
    const l = await reader.run({ target: 'db', sql: 'SELECT id, email FROM accounts ORDER BY id LIMIT 2' });
    expect(l.status, JSON.stringify(l.error)).toBe('succeeded');
    expect(l.result!.rows).toEqual([
      [1, '[MASKED:column]'],
      [2, '[MASKED:column]'],
    ]);
  });
});
