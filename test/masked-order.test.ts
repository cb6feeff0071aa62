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
      CLUSTER clustered USING clustered_email;`,
    config: {
      policy: {
        rules: [
          { id: 'readers', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read', limits: { rows: 10000 } },
          { id: 'limited', effect: 'allow', groups: ['limited'], targets: ['db'], mode: 'read', limits: { rows: 100 } },
          { id: 'writers', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write' },
        ],
        masking: { columns: [{ column: 'public.accounts.email' }, { column: 'public.clustered.email' }], detectors: [] },
      },
    },
  });
  // The visibility map an index-only scan needs, and statistics that make it the cheapest plan.
  await s.admin.query('VACUUM ANALYZE accounts');
  await s.admin.query('ANALYZE clustered');
  reader = s.client(await s.token('alice', ['analysts']));
  limited = s.client(await s.token('lim', ['limited']));
  writer = s.client(await s.token('dba1', ['dba']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

const canonical = (rows: unknown[][]) => [...rows].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

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
