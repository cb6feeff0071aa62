/**
 * Masking that does not leak, through the whole path against a real PostgreSQL: a
 * sensitive column stays masked however the statement reaches it.
 */
import { jetstream } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { loadOrCreateGrantKey } from '../broker/index.ts';
import { newId, type WritClient } from '../client/index.ts';
import { sha256Hex, type GrantClaims, type Order } from '../schemas/index.ts';
import { SCHEMA_SQL, startStack, type Stack } from './fixture.ts';

let s: Stack;
let c: WritClient;
const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net', '078-05-1120', '219-09-9999'];
/** Values no detector recognises: only the column rule protects them. */
const PASSWORDS = ['hunter2 topsecretpw', '{"k": "Qz7xKpLw"}'];

beforeAll(async () => {
  s = await startStack({
    schemaSql: `${SCHEMA_SQL}
      CREATE VIEW customer_contacts AS SELECT id, name, email AS contact FROM customers;
      CREATE VIEW contacts_again AS SELECT * FROM customer_contacts;
      CREATE TABLE secrets (id int PRIMARY KEY, password text NOT NULL);
      INSERT INTO secrets VALUES (1, '${PASSWORDS[0]}'), (2, '${PASSWORDS[1]}');
      CREATE VIEW secret_view AS SELECT id, password AS pw FROM secrets;`,
    config: {
      policy: {
        rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' }],
        masking: {
          columns: [{ column: 'public.customers.email' }, { column: 'public.customers.ssn', strategy: 'partial' }, { column: 'public.secrets.password' }],
          detectors: ['email', 'ssn'],
        },
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
  it('counts every row of a result fetched in several batches, and does not call it truncated', async () => {
    const o = await c.run({ target: 'db', sql: 'SELECT g FROM generate_series(1, 1000) g' });
    expect(o.status).toBe('succeeded');
    expect(o.result!.rows).toHaveLength(1000);
    expect(o.result!.rowCount).toBe(1000);
    expect(o.result!.truncated).toBe(false);
  });

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
    // Not even the condition ('invalid input syntax') is told: its class is a bit of the value.
    expect(o.error!.message).toMatch(/withheld because the statement touches a masked column/);
    expect(o.error!.details).toBeUndefined();
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

describe('database errors of statements that touch a masked column keep no server detail, not even the SQLSTATE (issue 10 item 11; the error class is a bit of the value)', () => {
  const cases = [
    'SELECT password::int FROM secrets',
    'SELECT password::json FROM secrets',
    'SELECT password::uuid FROM secrets',
    'SELECT password::date FROM secrets',
    'SELECT password::numeric FROM secrets',
    'SELECT id FROM secrets WHERE password::int = 1',
    'SELECT pw::int FROM secret_view',
    'SELECT s::text::int FROM secrets s',
    "SELECT to_number(password, '999') FROM secrets",
    'WITH x AS (SELECT password AS p FROM secrets) SELECT p::inet FROM x',
  ];
  for (const sql of cases) {
    it(`withholds the server's text for ${sql}`, async () => {
      const o = await c.run({ target: 'db', sql });
      expect(o.status === 'failed' || o.status === 'denied').toBe(true);
      const text = JSON.stringify(o);
      for (const p of PASSWORDS) for (const part of p.split(/\W+/).filter((x) => x.length >= 4)) expect(text).not.toContain(part);
      // A masked column in WHERE is refused before it runs (no server text at all); its details name the column, not a value.
      if (o.status === 'failed' && o.error!.code !== 'WRIT_MASKED_FILTER') {
        expect(o.error!.details).toBeUndefined();
        expect(o.error!.message).not.toMatch(/SQLSTATE|[0-9A-Z]{5}\)/);
      }
    });
  }

  it("keeps the server's text when the statement touches no masked column", async () => {
    const o = await c.run({ target: 'db', sql: "SELECT 'abc'::int" });
    expect(o.error!.message).toContain('invalid input syntax for type integer');
  });
});

describe('values derived from a partial-masked column are redacted whole (issue 10 item 12)', () => {
  for (const sql of [
    'SELECT reverse(ssn) AS x FROM customers',
    'SELECT substr(ssn, 1, 3) AS x FROM customers',
    'SELECT length(ssn) AS x FROM customers',
    'SELECT ascii(substr(ssn, 5, 1)) AS x FROM customers',
  ]) {
    it(`redacts ${sql}`, async () => {
      const r = await query(`${sql} WHERE id = 1`);
      expect(r.rows).toEqual([['[MASKED:derived]']]);
      expect(r.columns[0]!.reasons).toEqual(['derived:public.customers.ssn']);
    });
  }
});

describe('a grant without a masking spec runs nothing (issue 10 item 14)', () => {
  it('refuses an order whose grant carries no mask, and withholds the rows', async () => {
    const sql = 'SELECT email FROM customers';
    const { signer } = loadOrCreateGrantKey(s.config.grants.keyFile);
    const id = newId();
    const sessionId = newId('s');
    const now = Math.floor(Date.now() / 1000);
    const claims: GrantClaims = {
      gid: id,
      iid: id,
      sid: sessionId,
      tgt: 'db',
      kind: 'postgres',
      mode: 'read',
      sha256: sha256Hex(sql),
      iat: now - 5,
      exp: now + 60,
      limits: { rows: 10, seconds: 5 },
      policyVersion: 'test',
      sub: 'test',
    };
    const order: Order = { v: 1, type: 'order', intentId: id, sessionId, target: 'db', command: { kind: 'sql', sql }, grant: signer.sign(claims), stateRevision: 1 };
    await jetstream(s.nc).publish(s.names.exec('postgres', 'db'), new TextEncoder().encode(JSON.stringify(order)));
    let finished: { payload?: unknown } | undefined;
    for (let i = 0; i < 200 && !finished; i++) {
      finished = (await readSession({ nc: s.nc, names: s.names, sessionId })).find((e) => e.type === 'exec.finished');
      if (!finished) await new Promise((res) => setTimeout(res, 50));
    }
    const p = finished!.payload as { status: string; error?: { code: string }; rowCount?: number };
    expect(p.status).toBe('failed');
    expect(p.error?.code).toBe('WRIT_MASKING_FAILED');
    expect(p.rowCount).toBeUndefined();
  });
});

describe('a derived value over a masked column keeps no null (an attack round chose null by a condition on the value)', () => {
  it('masks the nulls of a computed field too', async () => {
    const r = await query("SELECT id, CASE WHEN email LIKE 'a%' THEN 1 END AS z, nullif(email, 'bob@example.org') AS n FROM customers");
    expect(r.rows.map((row) => [row[1], row[2]])).toEqual([
      ['[MASKED:derived]', '[MASKED:derived]'],
      ['[MASKED:derived]', '[MASKED:derived]'],
      ['[MASKED:derived]', '[MASKED:derived]'],
    ]);
  });
});
