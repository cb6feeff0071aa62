/**
 * On a real MariaDB behind the whole path: a masked column may be read only where its value is
 * returned (and masked). Used in a filter, join, grouping, ordering or a DML filter, the rows
 * that come back would tell its value, so the worker refuses it (WRIT_MASKED_FILTER) unless the
 * rule's masking says `filterMasked: true`. And a keyword the parser reads as a name (`binary
 * email`: column `binary` aliased `email` to the parser, BINARY(email) to the server) is refused.
 * docs/policy.md "Masked values outside the result".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import type { Stack } from './fixture.ts';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';
import type { TestMariadb } from './helpers/index.ts';

const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net'];
let stack: MariaStack;
let s: Stack;
let m: TestMariadb;
let analyst: WritClient;
let trusted: WritClient;
let ops: WritClient;

beforeAll(async () => {
  stack = await startMariaStack({
    setup: () => ["INSERT INTO events (id, note) VALUES (1, 'one'), (2, 'two'), (3, 'three')"],
    policyYaml: (db) => {
      const masking = `columns: [{ column: "${db.database}.customers.email" }], detectors: []`;
      return `
version: mysql-masked-filters
defaults:
  masking: { ${masking} }
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] } }
  - id: lookups
    effect: allow
    mode: read
    masking: { ${masking}, filterMasked: true }
    match: { principal: { groups: [lookups] } }
  - id: ops-write
    effect: allow
    mode: write
    match: { principal: { groups: [ops] } }
`;
    },
  });
  ({ s, m } = stack);
  analyst = s.client(await s.token('alice', ['analysts']));
  trusted = s.client(await s.token('lou', ['lookups']));
  ops = s.client(await s.token('olga', ['ops']));
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

function expectNoSecrets(o: unknown): void {
  const text = JSON.stringify(o);
  for (const v of SECRETS) expect(text).not.toContain(v);
}

const oracles: Array<[string, string]> = [
  ['a prefix filter', "SELECT id, name FROM customers WHERE email LIKE 'a%'"],
  ['an equality filter', "SELECT id FROM customers WHERE email = 'bob@example.org'"],
  ['a length filter', 'SELECT id FROM customers WHERE char_length(email) = 17'],
  ['an ordering', 'SELECT id FROM customers ORDER BY email DESC'],
  ['an ordering by position', 'SELECT id, email FROM customers ORDER BY 2'],
  ['a grouping', 'SELECT count(*) AS n FROM customers GROUP BY email'],
  ['a HAVING', "SELECT id FROM customers GROUP BY id, email HAVING email LIKE 'c%'"],
  ['an EXISTS subquery', "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.id = c.id AND d.email LIKE 'b%')"],
  ['an IN subquery', "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE email LIKE '%.net')"],
  ['a JOIN condition', "SELECT c.id FROM customers c JOIN customers d ON d.id = c.id AND d.email LIKE 'a%'"],
  ['a derived table filtered outside', "SELECT id FROM (SELECT id, email AS e FROM customers) t WHERE t.e LIKE 'a%'"],
  ['a UNION comparing rows', "SELECT email FROM customers WHERE id = 1 UNION SELECT 'alice@example.com'"],
  ['an INTERSECT', "SELECT email FROM customers WHERE id = 1 INTERSECT SELECT 'alice@example.com'"],
  ['an EXCEPT', "SELECT email FROM customers WHERE id = 1 EXCEPT SELECT 'alice@example.com'"],
  ['a CTE whose column list renames the column', "WITH t(id, e, n) AS (SELECT email, id, name FROM customers) SELECT n FROM t WHERE id LIKE 'a%'"],
  ['a user variable carrying it into a later filter', "SELECT @x := email AS v FROM customers WHERE id = 1; SELECT id, note FROM events WHERE @x LIKE 'a%'"],
  ['an unqualified column of a two-table subquery', 'SELECT id FROM events WHERE id = (SELECT char_length(email) - 16 FROM customers, events e2 WHERE customers.id = 1 LIMIT 1)'],
];

describe('MariaDB: a masked column used outside the result', () => {
  it.each(oracles)('is refused: %s', async (_, sql) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.status).toBe('failed');
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(o.result).toBeUndefined();
  });

  it('is refused in a DELETE filter, and nothing is deleted', async () => {
    const o = await ops.run({ target: 'maria', sql: 'DELETE FROM events WHERE id = (SELECT char_length(email) - 16 FROM customers WHERE id = 1)' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    const left = await analyst.run({ target: 'maria', sql: 'SELECT count(*) AS n FROM events' });
    expect(left.result?.rows).toEqual([[3]]);
  });

  it('is allowed where the rule says filterMasked: true, and the returned column stays masked', async () => {
    const o = await trusted.run({ target: 'maria', sql: "SELECT id, email FROM customers WHERE email LIKE 'a%'" });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result?.rows.map((r) => r[0])).toEqual([1]);
    expect(o.result?.columns[1]?.masked).toBe(true);
    expectNoSecrets(o);
  });

  it('leaves reads that use it only as a result alone', async () => {
    for (const sql of ['SELECT id, email FROM customers', 'SELECT id, name FROM customers WHERE id = 1', 'SELECT char_length(email) AS l FROM customers']) {
      const o = await analyst.run({ target: 'maria', sql });
      expect(o.status, `${sql}: ${JSON.stringify(o.error)}`).toBe('succeeded');
      expectNoSecrets(o);
    }
  });
});

describe('MariaDB: a computed field over the masked column', () => {
  it('is masked whole, its nulls included (a CASE can choose null by a condition on the value)', async () => {
    const o = await analyst.run({ target: 'maria', sql: "SELECT id, CASE WHEN email LIKE 'a%' THEN 1 END AS z FROM customers" });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expect(o.result?.rows.map((r) => r[1])).toEqual(['[MASKED:derived]', '[MASKED:derived]', '[MASKED:derived]']);
  });

  it('leaves UNION ALL alone (it compares nothing)', async () => {
    const o = await analyst.run({ target: 'maria', sql: "SELECT email FROM customers WHERE id = 1 UNION ALL SELECT 'x'" });
    expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
    expectNoSecrets(o);
  });
});

describe('MariaDB: a keyword the parser reads as a name', () => {
  it.each(['SELECT id, binary email FROM customers', 'SELECT id, BINARY  email AS e FROM customers WHERE id = 1'])('is refused and nothing comes back: %s', async (sql) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.status === 'denied' || o.status === 'failed').toBe(true);
    expect(o.result).toBeUndefined();
    expectNoSecrets(o);
  });
});
