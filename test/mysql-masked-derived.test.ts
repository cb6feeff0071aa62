/**
 * On a real MariaDB behind the whole path: values computed from a masked column inside the
 * database come back masked, and a filter or a copy of them is refused. A generated column
 * (`AS (upper(email)) VIRTUAL` or `STORED`) holds what it is computed from; a view that calls a
 * stored function runs it as its definer (`email_of(id)` reads the e-mail), so the view is
 * opaque; a stored function in a filter answers a question about whatever it reads; and the
 * server's column statistics hold minimum and maximum values of every column.
 * docs/policy.md "What masking follows".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';

const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net', 'ALICE@EXAMPLE.COM', 'BOB@EXAMPLE.ORG'];
let stack: MariaStack;
let analyst: WritClient;
let ops: WritClient;

beforeAll(async () => {
  stack = await startMariaStack({
    setup: (m) => [
      'ALTER TABLE customers ADD COLUMN email_up varchar(100) AS (upper(email)) VIRTUAL',
      "ALTER TABLE customers ADD COLUMN email_st varchar(100) AS (concat(email, '')) STORED",
      'ALTER TABLE customers ADD COLUMN name_up varchar(100) AS (upper(name)) VIRTUAL',
      'CREATE FUNCTION email_of(i int) RETURNS varchar(100) READS SQL DATA RETURN (SELECT email FROM customers WHERE id = i)',
      'CREATE VIEW via_fn AS SELECT id, email_of(id) AS e FROM customers',
      'CREATE VIEW over_gen AS SELECT id, email_up AS u FROM customers',
      'CREATE VIEW plain_fn AS SELECT id, upper(name) AS n FROM customers',
      'ANALYZE TABLE customers PERSISTENT FOR ALL',
      'CREATE VIEW col_stats AS SELECT column_name, min_value, max_value FROM mysql.column_stats',
      // A role that may call the function and read the statistics: the refusals below are the worker's, not the server's.
      `GRANT EXECUTE ON \`${m.database}\`.* TO '${m.users.read.user}'@'127.0.0.1'`,
      `GRANT SELECT ON mysql.column_stats TO '${m.users.read.user}'@'127.0.0.1'`,
    ],
    rules: [
      { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['maria'], mode: 'read', limits: { rows: 50 } },
      { id: 'ops-write', effect: 'allow', groups: ['ops'], targets: ['maria'], mode: 'write' },
    ],
  });
  analyst = stack.s.client(await stack.s.token('alice', ['analysts']));
  ops = stack.s.client(await stack.s.token('olga', ['ops']));
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

function expectNoSecrets(what: string, o: unknown): void {
  const text = JSON.stringify(o);
  for (const v of SECRETS) expect(text, what).not.toContain(v);
}

describe('MariaDB: a generated column over the masked column', () => {
  it.each(['SELECT id, email_up FROM customers', 'SELECT id, email_st FROM customers', 'SELECT * FROM customers', 'SELECT upper(email_st) AS z FROM customers', 'SELECT id, u FROM over_gen'])(
    'comes back masked: %s',
    async (sql) => {
      const o = await analyst.run({ target: 'maria', sql });
      expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
      expect(o.result!.rows.length).toBe(3);
      expect(o.result!.columns.some((c) => c.masked)).toBe(true);
      expectNoSecrets(sql, o);
    },
  );

  it.each([
    "SELECT id FROM customers WHERE email_up LIKE 'A%'",
    "SELECT id FROM customers WHERE id = 1 AND email_st > 'b'",
    "SELECT id FROM over_gen WHERE u LIKE 'A%'",
    'SELECT id FROM customers ORDER BY email_st',
  ])('is refused in a filter: %s', async (sql) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('is refused as a copy into an unmasked column, and nothing is stored', async () => {
    const o = await ops.run({ target: 'maria', sql: 'INSERT INTO events (note) SELECT email_up FROM customers' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_COPY');
    const left = await analyst.run({ target: 'maria', sql: 'SELECT count(*) AS n FROM events' });
    expect(left.result?.rows).toEqual([[0]]);
  });

  it('holds: a generated column over an unmasked one is not masked', async () => {
    const o = await analyst.run({ target: 'maria', sql: 'SELECT id, name_up FROM customers ORDER BY id' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.rows[0]).toEqual([1, 'ALICE EXAMPLE']);
    expect(o.result!.columns[1]!.masked).toBe(false);
  });
});

describe('MariaDB: a stored function', () => {
  it('behind a view makes the view opaque: its columns come back masked and a filter on it is refused', async () => {
    const o = await analyst.run({ target: 'maria', sql: 'SELECT id, e FROM via_fn' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.columns[1]!.masked).toBe(true);
    expectNoSecrets('via_fn', o);
    const f = await analyst.run({ target: 'maria', sql: "SELECT id FROM via_fn WHERE e LIKE 'a%'" });
    expect(f.error?.code, JSON.stringify(f.error)).toBe('WRIT_MASKED_FILTER');
  });

  it.each([
    "SELECT id FROM customers WHERE email_of(id) LIKE 'a%'",
    "SELECT 1 AS x FROM DUAL WHERE email_of(1) LIKE 'a%'",
    "SELECT id FROM (SELECT id, email_of(id) AS e FROM customers) d WHERE d.e LIKE 'a%'",
    'SELECT id, name FROM customers ORDER BY email_of(id)',
  ])('in a filter is refused: %s', async (sql) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('holds: a view over built-ins only is traced, not opaque', async () => {
    const o = await analyst.run({ target: 'maria', sql: 'SELECT id, n FROM plain_fn ORDER BY id' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.rows[0]).toEqual([1, 'ALICE EXAMPLE']);
    expect(o.result!.columns.some((c) => c.masked)).toBe(false);
  });
});

describe("MariaDB: the server's column statistics", () => {
  it('are refused, read directly', async () => {
    const o = await analyst.run({ target: 'maria', sql: 'SELECT column_name, min_value, max_value FROM mysql.column_stats' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_UNSUPPORTED');
    expectNoSecrets('column_stats', o);
  });

  it('make a view over them opaque', async () => {
    const o = await analyst.run({ target: 'maria', sql: 'SELECT column_name, min_value, max_value FROM col_stats' });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result!.rows.length).toBeGreaterThan(0);
    expect(o.result!.columns.every((c) => c.masked)).toBe(true);
    expectNoSecrets('col_stats', o);
  });
});
