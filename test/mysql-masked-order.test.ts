/**
 * On a real MariaDB behind the whole path: rows must not come back in the order of a masked
 * column. InnoDB reads a covering secondary index in its own order, and every secondary index
 * holds the primary key: with a unique index on the masked e-mail, `SELECT id FROM customers`
 * came back in e-mail order, and so did GROUP_CONCAT(id) and a LIMIT; with a write grant, rows
 * inserted with guessed e-mails then showed where each real one sorts, and all three e-mails
 * were recovered one character per intent. The worker checks the plan of a statement on such a
 * table (EXPLAIN) and refuses one that reads through the index (WRIT_MASKED_FILTER).
 * docs/policy.md "Masked values outside the result".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';

let stack: MariaStack;
let analyst: WritClient;
let ops: WritClient;
let lookups: WritClient;
let limited: WritClient;

beforeAll(async () => {
  stack = await startMariaStack({
    setup: () => [
      // Two more rows whose e-mails sort before and between the others: e-mail order is 4, 1, 2, 5, 3.
      "INSERT INTO customers VALUES (4, 'Dan Example', 'aaron@example.com', 'free'), (5, 'Eve Example', 'bz@example.com', 'free')",
      'CREATE TABLE keyed (email varchar(100) PRIMARY KEY, note varchar(20))',
      "INSERT INTO keyed VALUES ('zed@example.com', 'first'), ('amy@example.com', 'second')",
      'CREATE VIEW customer_ids AS SELECT id, plan FROM customers',
      'CREATE VIEW id_list AS SELECT GROUP_CONCAT(id) AS ids FROM customers',
      "CREATE TABLE pe (id int, email varchar(100)) PARTITION BY RANGE COLUMNS(email) (PARTITION pam VALUES LESS THAN ('n'), PARTITION pnz VALUES LESS THAN (MAXVALUE))",
      "INSERT INTO pe VALUES (1, 'alice@example.com'), (2, 'nina@example.com'), (3, 'bob@example.com')",
    ],
    policyYaml: (db) => {
      const columns = `[{ column: "${db.database}.customers.email" }, { column: "${db.database}.keyed.email" }, { column: "${db.database}.pe.email" }]`;
      return `
version: mysql-masked-order
defaults:
  masking: { columns: ${columns}, detectors: [] }
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] } }
  - id: ops-write
    effect: allow
    mode: write
    match: { principal: { groups: [ops] } }
  - id: limited-read
    effect: allow
    mode: read
    limits: { rows: 3 }
    match: { principal: { groups: [limited] } }
  - id: lookups
    effect: allow
    mode: read
    masking: { columns: ${columns}, detectors: [], filterMasked: true }
    match: { principal: { groups: [lookups] } }
`;
    },
  });
  analyst = stack.s.client(await stack.s.token('alice', ['analysts']));
  ops = stack.s.client(await stack.s.token('olga', ['ops']));
  lookups = stack.s.client(await stack.s.token('lou', ['lookups']));
  limited = stack.s.client(await stack.s.token('lim', ['limited']));
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

describe('MariaDB: a plan that reads through an index on a masked column', () => {
  it.each([
    'SELECT GROUP_CONCAT(id) AS g FROM customers',
    'SELECT JSON_ARRAYAGG(id) AS g FROM customers',
    'SELECT id FROM customers LIMIT 1',
    'SELECT id, ROW_NUMBER() OVER () AS r FROM customers',
    'SELECT @n := id AS x FROM customers',
    'SELECT count(*) AS n, GROUP_CONCAT(note) AS g FROM keyed',
    'SELECT note FROM keyed LIMIT 1',
    // A view whose own definition aggregates in the order rows arrive.
    'SELECT ids FROM id_list',
    // A value taken anew per row records the order, and a floating-point sum rounds by it.
    'SELECT id, RAND(7) AS r FROM customers',
    'SELECT id, UUID() AS r FROM customers',
    'SELECT id, SYSDATE(6) AS r FROM customers',
    'SELECT SUM(CASE id WHEN 4 THEN POW(2, 60) WHEN 5 THEN -POW(2, 60) WHEN 1 THEN 1 ELSE 0 END) AS s FROM customers',
    // A table partitioned by the masked column is scanned partition by partition (grouped by its ranges).
    'SELECT id FROM pe LIMIT 2',
  ])('is refused when what it computes depends on the order of the rows: %s', async (sql) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it.each([
    'SELECT id, count(*) AS n FROM customers',
    'SELECT id, count(*) AS n FROM customers WHERE id <> 4',
    'SELECT id DIV 1000 AS g, id FROM customers GROUP BY g',
    'SELECT id, max(id) AS m FROM customers',
  ])('fails a column beside an aggregate that the server would take from the first row it reads: %s', async (sql) => {
    // ONLY_FULL_GROUP_BY: MariaDB otherwise answers with the row whose e-mail sorts first (4, then 1 without 4).
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.status, JSON.stringify(o)).toBe('failed');
    expect(o.result).toBeUndefined();
  });

  it.each([
    ['SELECT id FROM customers', [[1], [2], [3], [4], [5]]],
    ['SELECT DISTINCT id FROM customers', [[1], [2], [3], [4], [5]]],
    ['SELECT id FROM customers UNION ALL SELECT 0', [[0], [1], [2], [3], [4], [5]]],
    ['SELECT id FROM customer_ids', [[1], [2], [3], [4], [5]]],
    ['SELECT note FROM keyed', [['first'], ['second']]],
    ['SELECT id, email FROM customers', [1, 2, 3, 4, 5].map((id) => [id, '[MASKED:column]'])],
    ['SELECT id FROM pe', [[1], [2], [3]]],
    ['SELECT count(*) AS n, max(id) AS m FROM customers', [[5, 5]]],
  ] as const)('answers a plain read in an order of its masked rows, not the index: %s', async (sql, rows) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.rows).toEqual(rows);
  });

  it('refuses a plain read whose rows were cut at the row limit (which rows were kept would follow the index)', async () => {
    const o = await limited.run({ target: 'maria', sql: 'SELECT id FROM customers' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('is refused after rows with guessed e-mails were inserted, and in a copy of the ids in index order', async () => {
    const probe = await ops.run({ target: 'maria', sql: "INSERT INTO customers VALUES (100, 'probe', 'b', 'free')" });
    expect(probe.status, JSON.stringify(probe.error)).toBe('succeeded');
    // The probe's row sorts between the e-mails of 1 and 2; the answer's order does not show it.
    const o = await ops.run({ target: 'maria', sql: 'SELECT id FROM customers' });
    expect(o.result?.rows, JSON.stringify(o.error)).toEqual([[100], [1], [2], [3], [4], [5]]);
    const copy = await ops.run({ target: 'maria', sql: 'INSERT INTO events (note) SELECT id FROM customers' });
    expect(copy.error?.code, JSON.stringify(copy.error)).toBe('WRIT_MASKED_FILTER');
    const batch = await ops.run({ target: 'maria', sql: 'DELETE FROM customers WHERE id = 100; SELECT GROUP_CONCAT(id) AS g FROM customers' });
    expect(batch.error?.code, JSON.stringify(batch.error)).toBe('WRIT_MASKED_FILTER');
    // The batch was refused before its second statement: the DELETE was rolled back with it.
    const left = await ops.run({ target: 'maria', sql: 'DELETE FROM customers WHERE id = 100' });
    expect(left.result?.rowCount, JSON.stringify(left)).toBe(1);
    expect((await analyst.run({ target: 'maria', sql: 'SELECT count(*) AS n FROM events' })).result?.rows).toEqual([[0]]);
  });

  it('holds: plans that read in key or table order answer, in that order', async () => {
    for (const [sql, rows] of [
      ['SELECT id FROM customers ORDER BY id', [[1], [2], [3], [4], [5]]],
      ['SELECT id, name FROM customers WHERE id = 2', [[2, 'Bob Example']]],
      [
        'SELECT id, plan FROM customers ORDER BY id',
        [
          [1, 'pro'],
          [2, 'free'],
          [3, 'team'],
          [4, 'free'],
          [5, 'free'],
        ],
      ],
    ] as const) {
      const o = await analyst.run({ target: 'maria', sql });
      expect(o.status, `${sql}: ${JSON.stringify(o.error)}`).toBe('succeeded');
      expect(o.result!.rows, sql).toEqual(rows);
    }
  });

  it('is allowed where the masking says filterMasked: true (the value may be searched, so its order tells nothing more)', async () => {
    const o = await lookups.run({ target: 'maria', sql: 'SELECT GROUP_CONCAT(id) AS g FROM customers' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.rows).toEqual([['4,1,2,5,3']]);
    // Without the check the plan hands rows back in e-mail order: the channel it closes.
    const k = await lookups.run({ target: 'maria', sql: 'SELECT note FROM keyed' });
    expect(k.status, JSON.stringify(k.error)).toBe('succeeded');
    expect(k.result!.rows).toEqual([['second'], ['first']]);
  });
});
