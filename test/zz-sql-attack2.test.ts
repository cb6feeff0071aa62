import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { SCHEMA_SQL, startStack, type Stack } from '/work/main/test/fixture.ts';

let s: Stack;
let reader: WritClient;
let writer: WritClient;
const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net', 'Dave@Example.com', 'dave@example.com', 'S3cret-owned', 'example'];

beforeAll(async () => {
  s = await startStack({
    schemaSql: `${SCHEMA_SQL}
      INSERT INTO events (note) VALUES ('seed');
      CREATE FUNCTION email_of(i int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT email FROM customers WHERE id = i $$;
      CREATE VIEW customer_emails AS SELECT id, email_of(id) AS e FROM customers;
      CREATE FUNCTION all_customers() RETURNS SETOF customers LANGUAGE sql STABLE AS $$ SELECT * FROM customers $$;
      CREATE VIEW customers_fn AS SELECT * FROM all_customers();
      CREATE TABLE gen (id int PRIMARY KEY, email text, email_norm text GENERATED ALWAYS AS (lower(email)) STORED);
      INSERT INTO gen (id, email) VALUES (1, 'Dave@Example.com');
      CREATE VIEW col_stats AS SELECT tablename, attname, most_common_vals::text AS mcv, histogram_bounds::text AS hb FROM pg_stats WHERE schemaname = 'public';
      CREATE TABLE owned1 (id int PRIMARY KEY, secret text);
      CREATE TABLE owned2 (id int PRIMARY KEY, secret text);
      CREATE TABLE owned3 (id int PRIMARY KEY, secret text);
      CREATE TABLE owned4 (id int PRIMARY KEY, secret text, plan text);
      INSERT INTO owned1 VALUES (1, 'S3cret-owned-1');
      INSERT INTO owned2 VALUES (1, 'S3cret-owned-2');
      INSERT INTO owned3 VALUES (1, 'S3cret-owned-3');
      INSERT INTO owned4 VALUES (1, 'S3cret-owned-4', 'p');
      CREATE SCHEMA s2;
      ANALYZE customers;`,
    config: {
      policy: {
        rules: [
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
          { id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write' },
        ],
        masking: {
          columns: [
            { column: 'public.customers.email' },
            { column: 'public.gen.email' },
            { column: 'public.owned1.secret' },
            { column: 'public.owned2.secret' },
            { column: 'public.owned3.secret' },
            { column: 'public.owned4.secret' },
          ],
          detectors: [],
        },
      },
    },
  });
  const rw = s.db.roles.write.user;
  const ro = s.db.roles.read.user;
  await s.admin.query(`
    ALTER TABLE owned1 OWNER TO ${rw}; ALTER TABLE owned2 OWNER TO ${rw}; ALTER TABLE owned3 OWNER TO ${rw}; ALTER TABLE owned4 OWNER TO ${rw};
    GRANT USAGE, CREATE ON SCHEMA s2 TO ${rw}; GRANT USAGE ON SCHEMA s2 TO ${ro};`);
  reader = s.client(await s.token('alice', ['analysts']));
  writer = s.client(await s.token('dba1', ['dba']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

async function go(sql: string, c = reader): Promise<string> {
  const o = await c.run({ target: 'db', sql });
  const text = JSON.stringify({ status: o.status, error: o.error, cols: o.result?.columns, rows: o.result?.rows });
  const leaked = SECRETS.filter((x) => text.includes(x));
  const line = `${leaked.length ? 'LEAK ' + JSON.stringify(leaked) : 'held'} :: ${sql}\n   => ${text.slice(0, 600)}`;
  console.log(line);
  return text;
}

describe('classifier', () => {
  it('runs', async () => {
    await go(
      "WITH RECURSIVE r(id, e) AS (SELECT id, email FROM customers UNION ALL SELECT id, e FROM r WHERE false) SEARCH BREADTH FIRST BY e SET ord SELECT id FROM r WHERE ord::text LIKE '(0,a%'",
    );
    await go('WITH RECURSIVE r(id, e) AS (SELECT id, email FROM customers UNION ALL SELECT id, e FROM r WHERE false) SEARCH BREADTH FIRST BY e SET ord SELECT id FROM r ORDER BY ord');
    await go(
      "WITH RECURSIVE r(id, e) AS (SELECT id, email FROM customers UNION ALL SELECT id, e FROM r WHERE false) CYCLE e SET cyc USING path SELECT id FROM r WHERE path::text LIKE '%(b%'",
    );
    await go("SELECT c.id FROM customers c WHERE c.id IN (WITH RECURSIVE r(id, e) AS (SELECT id, email FROM customers UNION ALL SELECT id, e FROM r WHERE false) SEARCH BREADTH FIRST BY e SET ord SELECT id FROM r WHERE ord::text LIKE '(0,a%')");
    await go("SELECT c.id FROM customers c WHERE c.id IN (WITH RECURSIVE r(id, e) AS (SELECT id, email FROM customers UNION ALL SELECT id, e FROM r WHERE false) SEARCH BREADTH FIRST BY e SET ord SELECT id FROM r WHERE ord::text LIKE '(0,z%')");
    await go("WITH RECURSIVE r(id, e) AS (SELECT id, email FROM customers UNION ALL SELECT id, e FROM r WHERE false) SEARCH BREADTH FIRST BY e SET ord SELECT ord::text AS o, path FROM r CYCLE e SET cyc USING path");
    await go("SELECT id FROM customers WHERE email_of(id) LIKE 'a%'");
    await go("SELECT email_of(1) AS x");
    await go("SELECT id FROM customers c WHERE (c).email LIKE 'a%'");
    await go("SELECT id FROM customers c WHERE ROW(c.id, c.email) > ROW(1, 'b')");
    await go("SELECT id FROM customers c WHERE (ARRAY[c.email])[1] LIKE 'a%'");
    await go("SELECT DISTINCT ON (2) id, email FROM customers");
    await go("SELECT id, email FROM customers GROUP BY GROUPING SETS ((id, email))");
    await go("SELECT email AS e, id FROM customers UNION ALL SELECT 'x', 0 ORDER BY 1");
    await go("SELECT id FROM customers LIMIT (SELECT length(email) FROM customers WHERE id = 1)");
    await go("SELECT id, (regexp_match(email, '^a')) AS m FROM customers");
    await go("SELECT id FROM customers c, LATERAL (SELECT c.email AS e) x WHERE x.e LIKE 'a%'");
    await go("SELECT id FROM customers c WHERE c::text LIKE '%alice%'");
    await go("SELECT id FROM customers c WHERE c.id = ANY (SELECT 1 WHERE c.email::text LIKE 'a%')");
    await go("SELECT id FROM customers c CROSS JOIN LATERAL (VALUES (c.email)) v WHERE column1 LIKE 'a%'");
    await go("SELECT x, id FROM customers c(id, n, x) JOIN events e USING (id) WHERE x LIKE 'a%'");
    await go("SELECT i FROM customers AS c(i, n, x), generate_series(1, 1) g WHERE x LIKE 'a%'");
    await go('SELECT upper(x) AS u, reverse(x) AS r FROM customers AS c(i, n, x), generate_series(1, 1) g');
    await go('INSERT INTO events (note) SELECT x FROM customers AS c(i, n, x), generate_series(1, 1) g', writer);
    await go('SELECT id, note FROM events');
  });
});
