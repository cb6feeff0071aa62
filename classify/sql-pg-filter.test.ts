/**
 * PostgreSQL classifier: filterColumns / filterWholeRowTables, the columns read where their
 * value is no result field (the worker refuses a masked one there: WRIT_MASKED_FILTER).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifySql, initClassifiers } from './index.ts';

beforeAll(async () => {
  await initClassifiers();
});

const E = 'public.customers.email';
const col = (c: { table: string | null; column: string }) => `${c.table ?? '?'}.${c.column}`;
const filterOf = (sql: string) => {
  const st = classifySql(sql).statements[0]!;
  return { cols: (st.filterColumns ?? []).map(col), whole: st.filterWholeRowTables ?? [] };
};

const filters: string[] = [
  `SELECT id, name FROM customers WHERE email LIKE 'a%'`,
  `SELECT id, name FROM customers WHERE length(email) = 17`,
  `SELECT id, name FROM customers ORDER BY email DESC`,
  `SELECT name FROM customers GROUP BY name HAVING max(email) LIKE 'c%'`,
  `SELECT email FROM customers GROUP BY email`,
  `SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.id = c.id AND d.email ~ '^b')`,
  `SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE email ILIKE 'a%')`,
  `SELECT 1 FROM generate_series(1, (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 2)) g`,
  `SELECT generate_series(1, length(email)) FROM customers`,
  `SELECT unnest(string_to_array(email, '@')) FROM customers`,
  `SELECT id FROM customers LIMIT (SELECT length(email) FROM customers WHERE id = 1)`,
  `SELECT DISTINCT ON (email) id FROM customers`,
  `SELECT DISTINCT email LIKE 'a%' FROM customers`,
  `SELECT email LIKE 'a%' FROM customers UNION SELECT true`,
  `SELECT id, row_number() OVER (ORDER BY email) FROM customers`,
  `SELECT id, count(*) OVER (PARTITION BY email) FROM customers`,
  `SELECT c.id FROM customers c JOIN customers d ON c.email = d.email`,
  `SELECT c.id FROM customers c JOIN customers d USING (email)`,
  // Through a derived table, a CTE and a star: a computed output carries the columns it reads.
  `SELECT * FROM (SELECT id, length(email) AS l FROM customers) s WHERE l = 17`,
  `SELECT * FROM (SELECT * FROM (SELECT id, length(email) AS l FROM customers) a) b WHERE l = 17`,
  `WITH x(i, l) AS (SELECT id, length(email) FROM customers) SELECT i FROM x WHERE l = 17`,
  `SELECT s.id FROM (SELECT id, email AS e FROM customers) s ORDER BY s.e`,
  `SELECT id FROM customers c, LATERAL unnest(ARRAY[c.email]) u(v) WHERE v LIKE 'a%'`,
  `DELETE FROM events WHERE id = (SELECT length(email) FROM customers WHERE id = 1)`,
  `UPDATE customers SET name = 'x' WHERE email LIKE 'a%'`,
  `MERGE INTO events e USING customers c ON e.id = length(c.email) WHEN MATCHED THEN DELETE`,
  `EXPLAIN SELECT id FROM customers WHERE email = 'x'`,
  // A recursive CTE's own column in its recursive term carries what the other term put there.
  `WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < length(e)) SELECT id, note FROM events WHERE id IN (SELECT n FROM r)`,
  `WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE e LIKE 'a%' AND n < 5) SELECT n FROM r`,
  `WITH RECURSIVE r(k, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT k + 1, e FROM r WHERE k < length(e)) DELETE FROM events WHERE id IN (SELECT max(k) FROM r)`,
  `WITH RECURSIVE r AS (SELECT 1 AS n, email AS e FROM customers UNION ALL SELECT r.n + 1, r.e FROM r WHERE r.e > 'b') SELECT n FROM r`,
  // Found only in a second round: n takes email's length in the recursive term, then bounds it.
  `WITH RECURSIVE r(n, e) AS (SELECT 0, email FROM customers WHERE id = 1 UNION ALL SELECT n + length(e), e FROM r WHERE n < 100) SELECT 1`,
  `WITH RECURSIVE r(a, b, e) AS (SELECT 0, 0, email FROM customers UNION ALL SELECT b, length(e), e FROM r WHERE a < 20) SELECT 1`,
  `WITH RECURSIVE r AS (SELECT * FROM customers WHERE id = 1 UNION ALL SELECT * FROM r WHERE email LIKE 'a%' LIMIT 5) SELECT id FROM r`,
  // A result column named by position or by its output name.
  `SELECT email, id FROM customers ORDER BY 1`,
  `SELECT email AS e, id FROM customers ORDER BY e`,
  `SELECT length(email) AS l, count(*) FROM customers GROUP BY 1`,
  `SELECT id, email FROM customers UNION ALL SELECT 0, 'x' ORDER BY 2`,
  // Outside a query the position is unknown: a filter.
  `ALTER TABLE customers ADD CHECK (email NOT LIKE 'a%')`,
  // The conflict check compares the inserted values with the stored ones on every unique index.
  `INSERT INTO customers (name, email) SELECT 'p' || g, g FROM unnest(ARRAY['a@b.c']) g ON CONFLICT (email) DO NOTHING RETURNING name`,
  `INSERT INTO customers (name, email) VALUES ('p', 'a@b.c') ON CONFLICT DO NOTHING`,
  `INSERT INTO customers (name) VALUES ('p') ON CONFLICT (email) DO UPDATE SET name = customers.name RETURNING id`,
];

describe('filterColumns', () => {
  for (const sql of filters) {
    it(`counts the masked column as a filter: ${sql}`, () => {
      expect(filterOf(sql).cols).toContain(E);
    });
  }

  it('counts a whole row compared or sorted as a whole-row filter', () => {
    expect(filterOf(`SELECT id FROM customers c WHERE c::text LIKE '%a%'`).whole).toEqual(['public.customers']);
    expect(filterOf(`SELECT id FROM customers c ORDER BY c`).whole).toEqual(['public.customers']);
    // A position past a star cannot be placed: the whole row.
    expect(filterOf(`SELECT * FROM customers ORDER BY 3`).whole).toEqual(['public.customers']);
    // ON CONFLICT with no column list: every column is compared.
    expect(filterOf(`INSERT INTO customers VALUES (9, 'p', 'a@b.c') ON CONFLICT DO NOTHING`).whole).toEqual(['public.customers']);
  });

  const outputs = [
    `SELECT id, email FROM customers`,
    `SELECT length(email) FROM customers`,
    `SELECT id, name FROM customers WHERE id = 1`,
    `UPDATE customers SET email = lower(email)`,
    `SELECT email FROM customers UNION ALL SELECT 'x'`,
    `SELECT (SELECT email FROM customers WHERE id = 1)`,
    `SELECT s.e FROM (SELECT id AS i, email AS e FROM customers) s WHERE s.i = 1`,
    `CREATE VIEW v AS SELECT id, email FROM customers`,
    `DELETE FROM customers WHERE id = 1 RETURNING email`,
    `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r`,
    `WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT n, e FROM r`,
  ];
  for (const sql of outputs) {
    it(`leaves a returned column out: ${sql}`, () => {
      expect(filterOf(sql).cols).not.toContain(E);
      expect(filterOf(sql).whole).toEqual([]);
    });
  }

  it('fails closed on recursive CTEs nested past the tracing budget: every column their bodies read is a filter', () => {
    let sql = `SELECT email FROM customers`;
    for (let i = 0; i < 8; i++) sql = `WITH RECURSIVE r${i}(e) AS (${sql} UNION ALL SELECT e FROM r${i} WHERE false) SELECT e FROM r${i}`;
    expect(filterOf(sql).cols).toContain(E);
    // One level is traced: email is only returned.
    expect(filterOf(`WITH RECURSIVE r0(e) AS (SELECT email FROM customers UNION ALL SELECT e FROM r0 WHERE false) SELECT e FROM r0`).cols).not.toContain(E);
  });

  it('always fills the fields', () => {
    const st = classifySql('SELECT 1').statements[0]!;
    expect(st.filterColumns).toEqual([]);
    expect(st.filterWholeRowTables).toEqual([]);
  });
});

describe('orderDependent: what a statement computes from the order its rows arrive in', () => {
  const dep = (sql: string) => classifySql(sql).statements.some((s) => s.orderDependent === true);
  it.each([
    'SELECT id FROM customers LIMIT 1',
    'SELECT id FROM customers OFFSET 1',
    'SELECT id FROM customers ORDER BY name',
    "SELECT string_agg(id::text, ',') FROM customers",
    'SELECT array_agg(id) FROM customers',
    'SELECT id, row_number() OVER () FROM customers',
    'SELECT DISTINCT ON (plan) id FROM customers',
    'SELECT id FROM (SELECT id FROM customers LIMIT 2) s',
    'SELECT id INTO t FROM customers',
    'SELECT id FROM customers UNION SELECT 1 LIMIT 1',
    'SELECT ARRAY(SELECT id FROM customers) AS ids',
    'SELECT json_agg(id) FROM customers',
    'SELECT sum(id::float8) FROM customers',
    'SELECT id, clock_timestamp() FROM customers',
  ])('%s depends on it', (sql) => {
    expect(dep(sql)).toBe(true);
  });
  it.each([
    'SELECT id FROM customers',
    'SELECT DISTINCT id, plan FROM customers',
    'SELECT count(*), max(id), bool_and(id > 0) FROM customers',
    'SELECT id FROM customers UNION ALL SELECT 0',
    'SELECT upper(name), now() FROM customers',
  ])('%s does not', (sql) => {
    expect(dep(sql)).toBe(false);
  });
});
