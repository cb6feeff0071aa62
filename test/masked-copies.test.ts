/**
 * "What is masked does not come back", against values that outlive the statement that read
 * them, on a real PostgreSQL behind the whole path (broker, worker, masking), sent as an agent
 * sends them. Two classes: values a batch's session carries from one statement to the next
 * (or to a later intent), and masked values copied through storage by a write grant
 * (WRIT_MASKED_COPY; docs/policy.md "Masked values and writes").
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { SCHEMA_SQL, startStack, type Stack } from './fixture.ts';

/** No detector runs: only the column rules protect these. */
const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net', 'hunter2 topsecretpw'];
const MASKING = '{ columns: [{ column: "public.customers.email" }, { column: "public.secrets.password" }], detectors: [] }';

let s: Stack;
let analyst: WritClient;
let ops: WritClient;
let migrations: WritClient;
let sessions: WritClient;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-masked-copies-'));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    `
version: masked-copies
defaults:
  masking: ${MASKING}
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] }, sql: { functions: ["*", remember, pw_of] } }
  - id: ops-write
    effect: allow
    mode: write
    match: { principal: { groups: [ops] }, sql: { functions: ["*", set_config, setval, pg_notify, pg_advisory_lock, pg_sleep, remember], selectInto: any, modifyingCte: any } }
  # remember() is a user function: the classifier cannot tell it from a set-returning one, so its
  # argument counts as a filter (WRIT_MASKED_FILTER). The session tests are about what the
  # session carries, not filters, so they run under a rule that allows filters.
  - id: sessions-read
    effect: allow
    mode: read
    masking: { columns: [{ column: "public.customers.email" }, { column: "public.secrets.password" }], detectors: [], filterMasked: true }
    match: { principal: { groups: [sessions] }, sql: { functions: ["*", remember] } }
  - id: migrations
    effect: allow
    mode: write
    masking: { columns: [{ column: "public.customers.email" }, { column: "public.secrets.password" }], detectors: [], copyMasked: true }
    match: { principal: { groups: [migrations] }, sql: { functions: ["*", set_config] } }
`,
  );
  s = await startStack({
    schemaSql: `${SCHEMA_SQL}
      CREATE TABLE secrets (id int PRIMARY KEY, password text NOT NULL);
      INSERT INTO secrets VALUES (1, 'hunter2 topsecretpw'), (2, 'Qz7xKpLw');
      CREATE TABLE scratch (id int, note text);
      -- A user function that keeps its argument in the session (a named, "unknown" function).
      CREATE FUNCTION remember(v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config('writ.kept', v, false) $$;
      -- An operator's function that reads the masked column itself.
      CREATE FUNCTION pw_of(i int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT password FROM secrets WHERE id = i $$;`,
    config: { policyFile },
  });
  const rw = s.db.roles.write.user;
  // A write grant with DDL: CREATE TABLE AS, SELECT INTO, temp tables and setval are possible to it
  // (the worker's search_path starts with pg_catalog, so new relations are named public.x).
  await s.admin.query(`GRANT CREATE ON SCHEMA public TO ${rw}; GRANT TEMP ON DATABASE ${s.db.database} TO ${rw}; GRANT UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${rw}`);
  analyst = s.client(await s.token('alice', ['analysts']));
  ops = s.client(await s.token('olga', ['ops']));
  migrations = s.client(await s.token('mia', ['migrations']));
  sessions = s.client(await s.token('sam', ['sessions']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

function expectNoSecrets(value: unknown) {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

async function notes(): Promise<unknown[][]> {
  return (await s.admin.query({ text: 'SELECT note FROM events ORDER BY id', rowMode: 'array' })).rows as unknown[][];
}

describe('values a batch carries from one statement to the next stay masked', () => {
  it('through a setting a named function keeps, read back by current_setting', async () => {
    const o = await sessions.run({ target: 'db', sql: "SELECT remember(email) AS r FROM customers WHERE id = 1; SELECT current_setting('writ.kept') AS v" });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.columns[0]).toMatchObject({ name: 'v', masked: true });
    expectNoSecrets(o);
  });

  it('through set_config under a grant that may copy masked values', async () => {
    const o = await migrations.run({ target: 'db', sql: "SELECT set_config('x.y', (SELECT email FROM customers WHERE id = 2), false) AS a; SELECT current_setting('x.y') AS v" });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.columns[0]).toMatchObject({ name: 'v', masked: true });
    expectNoSecrets(o);
  });

  it('through a cursor and a prepared statement', async () => {
    for (const sql of ['DECLARE c CURSOR FOR SELECT email FROM customers; FETCH ALL FROM c', 'PREPARE p AS SELECT email, upper(email) AS u FROM customers; EXECUTE p']) {
      const o = await analyst.run({ target: 'db', sql });
      expect(o.error, JSON.stringify(o.error)).toBeUndefined();
      expect(o.result!.rows.length).toBe(3);
      expect(o.result!.columns.every((c) => c.masked)).toBe(true);
      expectNoSecrets(o);
    }
  });

  it('leave a later statement that reads only unmasked columns as it is', async () => {
    const o = await analyst.run({ target: 'db', sql: 'SELECT email FROM customers; SELECT name FROM customers WHERE id = 1' });
    expect(o.result!.rows).toEqual([['Alice Example']]);
    expect(o.result!.columns[0]).toMatchObject({ name: 'name', masked: false });
  });
});

describe('session state does not reach a later intent', () => {
  // The worker resets every connection (DISCARD ALL) before it rejoins the pool.
  it('a setting made by one intent is gone for the next', async () => {
    const set = await migrations.run({ target: 'db', sql: "SELECT set_config('x.kept', email, false) AS a FROM customers WHERE id = 1" });
    expect(set.error, JSON.stringify(set.error)).toBeUndefined();
    for (let i = 0; i < 3; i++) {
      for (const c of [analyst, migrations]) {
        const o = await c.run({ target: 'db', sql: "SELECT current_setting('x.kept', true) AS v" });
        expect(o.error, JSON.stringify(o.error)).toBeUndefined();
        expect([[''], [null]]).toContainEqual(o.result!.rows[0]);
      }
    }
  });

  it('a temp table and a prepared statement are gone for the next', async () => {
    const made = await migrations.run({ target: 'db', sql: 'PREPARE kept AS SELECT email FROM customers' });
    expect(made.error, JSON.stringify(made.error)).toBeUndefined();
    const o = await migrations.run({ target: 'db', sql: 'EXECUTE kept' });
    // The classifier refuses an EXECUTE without its PREPARE in the same text; the server would not know it either.
    expect(o.status).not.toBe('succeeded');
    expectNoSecrets(o);
  });
});

describe('masked values are not copied through storage by a write grant', () => {
  const copies: Array<[string, string]> = [
    ['INSERT … SELECT', 'INSERT INTO events (note) SELECT email FROM customers'],
    ['INSERT … VALUES with a subquery', 'INSERT INTO events (note) VALUES ((SELECT email FROM customers WHERE id = 1))'],
    ['INSERT … SELECT of a derived value', "INSERT INTO events (note) SELECT reverse(password) || '!' FROM secrets"],
    ['INSERT … SELECT of a whole row', 'INSERT INTO events (note) SELECT c::text FROM customers c'],
    ['UPDATE … SET from a subquery', 'UPDATE events SET note = (SELECT password FROM secrets WHERE id = 1) WHERE id > 0'],
    ['UPDATE … FROM', 'UPDATE scratch SET note = c.email FROM customers c WHERE c.id = scratch.id'],
    ['MERGE', 'MERGE INTO events e USING customers c ON e.id = c.id + 100 WHEN NOT MATCHED THEN INSERT (note) VALUES (c.email)'],
    ['a modifying CTE', 'WITH x AS (INSERT INTO events (note) SELECT email FROM customers RETURNING note) SELECT note FROM x'],
    ['CREATE TABLE AS', 'CREATE TABLE public.copied AS SELECT email FROM customers'],
    ['SELECT INTO', 'SELECT email INTO public.copied2 FROM customers'],
    ['CREATE TEMP TABLE AS, read back', 'CREATE TEMP TABLE tt AS SELECT email FROM customers; SELECT * FROM tt'],
    ['a sequence (setval)', "SELECT setval('events_id_seq', length(email)) FROM customers WHERE id = 1; SELECT last_value FROM events_id_seq"],
    ['a NOTIFY payload', "SELECT pg_notify('ch', email) FROM customers"],
    ['an advisory lock id', 'SELECT pg_advisory_lock(hashtext(email)) FROM customers WHERE id = 1'],
    ['set_config, then INSERT of current_setting', "SELECT set_config('x.y', email, false) FROM customers WHERE id = 1; INSERT INTO events (note) VALUES (current_setting('x.y'))"],
    ['a function keeping it, then INSERT', "SELECT remember(email) FROM customers WHERE id = 1; INSERT INTO events (note) VALUES (current_setting('writ.kept'))"],
    ['a read, then an INSERT in the same batch', "SELECT email FROM customers WHERE id = 1; INSERT INTO events (note) VALUES ('x')"],
    ['COPY … TO a file', "COPY (SELECT email FROM customers) TO '/tmp/writ-masked-copy.txt'"],
    ['a filter on a masked column', "UPDATE customers SET plan = 'pro' WHERE email = 'alice@example.com'"],
  ];
  it.each(copies)('refused: %s', async (_, sql) => {
    const before = await notes();
    const o = await ops.run({ target: 'db', sql });
    expect(o.status).toBe('failed');
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_COPY');
    expectNoSecrets(o);
    expect(await notes()).toEqual(before);
    const read = await analyst.run({ target: 'db', sql: 'SELECT note FROM events; SELECT note FROM scratch' });
    expectNoSecrets(read);
  });

  it('refused: a DO block, whose reads cannot be seen', async () => {
    const o = await ops.run({ target: 'db', sql: 'DO $$ BEGIN INSERT INTO events (note) SELECT email FROM customers; END $$' });
    expect(o.error?.code, JSON.stringify(o.error)).toMatch(/^WRIT_(MASKED_COPY|POLICY_DENIED|UNSUPPORTED)$/);
    expectNoSecrets(await analyst.run({ target: 'db', sql: 'SELECT note FROM events' }));
  });

  const allowed: Array<[string, string]> = [
    ['a write reading no masked column', 'INSERT INTO events (note) SELECT name FROM customers WHERE id = 1'],
    ['a reviewed side-effecting built-in, no masked read', "INSERT INTO events (note) SELECT 'slept' FROM pg_sleep(0)"],
    ['a filter on an unmasked key', "UPDATE customers SET plan = 'team' WHERE id = 2"],
    ['a masked column rewritten into itself', 'UPDATE customers SET email = lower(email) WHERE id = 3'],
    ['a view over the masked column (masked by its base columns)', 'CREATE VIEW public.contacts AS SELECT id, email AS contact FROM customers'],
  ];
  it.each(allowed)('allowed: %s', async (_, sql) => {
    const o = await ops.run({ target: 'db', sql });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.status).toBe('succeeded');
  });

  // A DELETE stores nothing, but which rows it removed is seen afterwards: a filter (docs/policy.md "Masked values outside the result").
  it('refused as a filter: a delete filtered by a masked column', async () => {
    const before = await notes();
    const o = await ops.run({ target: 'db', sql: 'DELETE FROM events WHERE note = (SELECT email FROM customers WHERE id = 1)' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
    expect(await notes()).toEqual(before);
  });

  it('the view made above masks what it shows', async () => {
    await s.admin.query(`GRANT SELECT ON public.contacts TO ${s.db.roles.read.user}`);
    const o = await analyst.run({ target: 'db', sql: 'SELECT contact FROM contacts' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.columns[0]).toMatchObject({ name: 'contact', masked: true });
    expectNoSecrets(o);
  });

  it('allowed where the rule says copyMasked: true', async () => {
    const o = await migrations.run({ target: 'db', sql: 'INSERT INTO scratch (id, note) SELECT id, email FROM customers WHERE id = 1' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect((await s.admin.query('SELECT note FROM scratch WHERE id = 1')).rows).toEqual([{ note: 'alice@example.com' }]);
    await s.admin.query('DELETE FROM scratch');
  });

  it('RETURNING of a masked column is masked', async () => {
    const ins = await ops.run({ target: 'db', sql: "INSERT INTO customers (name, email) VALUES ('Dan', 'dan@example.io') RETURNING email, id, upper(email) AS u" });
    expect(ins.error, JSON.stringify(ins.error)).toBeUndefined();
    expect(ins.result!.columns.map((c) => c.masked)).toEqual([true, false, true]);
    expect(JSON.stringify(ins)).not.toMatch(/dan@example\.io/i);
    const del = await ops.run({ target: 'db', sql: 'DELETE FROM secrets WHERE id = 1 RETURNING *' });
    expect(del.error, JSON.stringify(del.error)).toBeUndefined();
    expect(del.result!.columns.map((c) => c.masked)).toEqual([false, true]);
    expectNoSecrets(del);
  });
});

describe('a named function whose output cannot be traced, in a filter', () => {
  it('refuses the statement when it filters anywhere (a yes or no per row on the masked value)', async () => {
    for (const sql of [
      "SELECT id FROM secrets WHERE pw_of(id) LIKE 'h%'",
      "SELECT 1 AS one WHERE pw_of(1) LIKE 'h%'",
      "WITH x AS (SELECT pw_of(id) AS p FROM secrets) SELECT 1 AS one FROM x WHERE p LIKE 'h%'",
      'SELECT id FROM secrets ORDER BY pw_of(id)',
    ]) {
      const o = await analyst.run({ target: 'db', sql });
      expect(o.error?.code, sql).toBe('WRIT_MASKED_FILTER');
    }
  });

  it('holds: its output alone comes back masked', async () => {
    const o = await analyst.run({ target: 'db', sql: 'SELECT pw_of(1) AS p' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.columns[0]).toMatchObject({ name: 'p', masked: true });
    expectNoSecrets(o);
  });
});
