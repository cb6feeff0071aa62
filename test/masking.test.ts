/**
 * Masking that does not leak, through the whole path against a real PostgreSQL: a
 * sensitive column stays masked however the statement reaches it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { SCHEMA_SQL, startStack, type Stack } from './fixture.ts';

let s: Stack;
let c: WritClient;
const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net', '078-05-1120', '219-09-9999'];

beforeAll(async () => {
  s = await startStack({
    schemaSql: `${SCHEMA_SQL}
      CREATE VIEW customer_contacts AS SELECT id, name, email AS contact FROM customers;
      CREATE VIEW contacts_again AS SELECT * FROM customer_contacts;`,
    config: {
      policy: {
        rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' }],
        masking: { columns: [{ column: 'public.customers.email' }, { column: 'public.customers.ssn', strategy: 'partial' }], detectors: ['email', 'ssn'] },
      },
    },
  });
  c = s.client(await s.token('alice', ['analysts']));
});
afterAll(async () => {
  await s?.stop();
});

async function query(sql: string) {
  const o = await c.run({ target: 'db', sql });
  expect(o.error, `${sql}: ${JSON.stringify(o.error)}`).toBeUndefined();
  expect(o.status).toBe('succeeded');
  return o.result!;
}

function expectNoSecrets(value: unknown) {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
  // Nor a base64 of one.
  for (const secret of SECRETS) expect(text).not.toContain(Buffer.from(secret).toString('base64').slice(0, 12));
}

describe('a sensitive column stays masked however the statement reaches it', () => {
  const cases: Array<[string, string]> = [
    ['an alias', 'SELECT email AS e FROM customers'],
    ['SELECT *', 'SELECT * FROM customers'],
    ['a view over the column', 'SELECT contact FROM customer_contacts'],
    ['a view over a view', 'SELECT * FROM contacts_again'],
    ['a CTE', 'WITH x AS (SELECT email AS m FROM customers) SELECT m FROM x'],
    ['a subquery', 'SELECT q.k FROM (SELECT email AS k FROM customers) q'],
    ['a whole-row reference', 'SELECT c FROM customers c'],
    ['row_to_json', 'SELECT row_to_json(c) AS j FROM customers c'],
    ['json_agg', 'SELECT json_agg(email) AS j FROM customers'],
    ['to_jsonb of the row', 'SELECT to_jsonb(c.*) FROM customers c'],
    ['concatenation', "SELECT name || ':' || email AS x FROM customers"],
    ['encode to base64', "SELECT encode(convert_to(email, 'UTF8'), 'base64') AS b FROM customers"],
    ['reverse', 'SELECT reverse(email) AS r FROM customers'],
    ['split_part', "SELECT split_part(email, '@', 1) AS u, split_part(email, '@', 2) AS d FROM customers"],
    ['a UNION', "SELECT email FROM customers UNION ALL SELECT 'x'"],
    ['CASE', "SELECT CASE WHEN id > 0 THEN ssn ELSE '' END AS s FROM customers"],
    ['string_agg of the partial-masked column', "SELECT string_agg(ssn, ',') AS s FROM customers"],
  ];
  for (const [what, sql] of cases) {
    it(`masks through ${what}`, async () => {
      const r = await query(sql);
      expect(r.rows.length).toBeGreaterThan(0);
      expectNoSecrets(r.rows);
      expect(r.columns.some((col) => col.masked)).toBe(true);
    });
  }

  it('leaves columns that are not sensitive readable', async () => {
    const r = await query('SELECT id, name, plan FROM customers ORDER BY id');
    expect(r.columns.every((col) => !col.masked)).toBe(true);
    expect(r.rows[0]).toEqual([1, 'Alice Example', 'pro']);
  });

  it('names why each field was masked', async () => {
    const r = await query('SELECT name, email AS e, ssn FROM customers ORDER BY id');
    expect(r.columns[1]).toEqual({ name: 'e', masked: true, reasons: ['column:public.customers.email'] });
    expect(r.columns[2]!.reasons).toEqual(['column:public.customers.ssn']);
    // partial keeps the last four digits only.
    expect(r.rows[0]![2]).toMatch(/1120$/);
    expect(r.rows[0]![2]).not.toContain('078');
  });
});

describe('result limits', () => {
  it('cuts a result at the byte limit and says so', async () => {
    const small = await startStack({
      config: { policy: { rules: [{ id: 'r', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read', limits: { bytes: 4096, rows: 10_000 } }] } },
    });
    try {
      const cl = small.client(await small.token('alice', ['analysts']));
      const o = await cl.run({ target: 'db', sql: "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 500) g" });
      expect(o.status).toBe('succeeded');
      expect(o.result!.truncated).toBe(true);
      expect(o.result!.rows.length).toBeGreaterThan(0);
      expect(o.result!.rows.length).toBeLessThan(500);
      expect(Buffer.byteLength(JSON.stringify(o.result!.rows))).toBeLessThanOrEqual(4096);
      expect(o.result!.rowCount).toBe(o.result!.rows.length);
    } finally {
      await small.stop();
    }
  });
});

describe('values leaked through errors and streams', () => {
  it('masks a value quoted by a failed cast', async () => {
    const o = await c.run({ target: 'db', sql: 'SELECT ssn::int FROM customers WHERE id = 1' });
    expect(o.status).toBe('failed');
    expect(o.error!.code).toBe('WRIT_EXEC_FAILED');
    expect(o.error!.message).toContain('invalid input syntax');
    expect(o.error!.message).not.toContain('078-05-1120');
    const o2 = await c.run({ target: 'db', sql: 'SELECT email::int FROM customers WHERE id = 1' });
    expect(o2.error!.message).not.toContain('alice@example.com');
  });

  it('refuses COPY … TO STDOUT rather than stream unmasked data', async () => {
    const o = await c.run({ target: 'db', sql: 'COPY (SELECT email FROM customers) TO STDOUT' });
    expect(o.status === 'denied' || o.status === 'failed').toBe(true);
    expectNoSecrets(o);
  });
});
