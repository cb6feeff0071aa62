/**
 * "What is masked does not come back" on a real MariaDB behind the whole path (broker, worker,
 * masking): masked values copied through storage by a write grant are refused
 * (WRIT_MASKED_COPY), user variables and temp tables do not reach a later intent.
 * docs/policy.md "Masked values and writes".
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
let ops: WritClient;
let migrations: WritClient;

beforeAll(async () => {
  stack = await startMariaStack({
    // One connection: consecutive intents share it, so what one leaves behind the next would see.
    poolSize: 1,
    // A write grant with DDL: CREATE TABLE AS and temporary tables are possible to it.
    setup: (db) => ['CREATE TABLE scratch (id int, note varchar(100))', `GRANT CREATE, DROP, CREATE TEMPORARY TABLES ON \`${db.database}\`.* TO '${db.users.write.user}'@'${db.host}'`],
    policyYaml: (db) => {
      const masking = `columns: [{ column: "${db.database}.customers.email" }], detectors: []`;
      return `
version: mysql-masked-copies
defaults:
  masking: { ${masking} }
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] } }
  - id: ops-write
    effect: allow
    mode: write
    match: { principal: { groups: [ops] }, sql: { selectInto: any } }
  - id: migrations
    effect: allow
    mode: write
    masking: { ${masking}, copyMasked: true }
    match: { principal: { groups: [migrations] } }
`;
    },
  });
  ({ s, m } = stack);
  analyst = s.client(await s.token('alice', ['analysts']));
  ops = s.client(await s.token('olga', ['ops']));
  migrations = s.client(await s.token('mia', ['migrations']));
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

function expectNoSecrets(value: unknown) {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

async function readNotes(): Promise<unknown> {
  const o = await analyst.run({ target: 'maria', sql: 'SELECT note FROM events; SELECT note FROM scratch' });
  expect(o.error, JSON.stringify(o.error)).toBeUndefined();
  return o;
}

describe('masked values are not copied through storage by a write grant', () => {
  const copies: Array<[string, string]> = [
    ['INSERT … SELECT', 'INSERT INTO events (note) SELECT email FROM customers'],
    ['INSERT … VALUES with a subquery', 'INSERT INTO events (note) VALUES ((SELECT email FROM customers WHERE id = 1))'],
    ['INSERT … SELECT of a derived value', "INSERT INTO events (note) SELECT concat(reverse(email), '!') FROM customers"],
    ['REPLACE … SELECT', 'REPLACE INTO events (id, note) SELECT 50, email FROM customers WHERE id = 3'],
    ['UPDATE … SET from a subquery', 'UPDATE events SET note = (SELECT email FROM customers WHERE id = 2) WHERE id > 0'],
    ['UPDATE … JOIN', 'UPDATE scratch s JOIN customers c ON c.id = 1 SET s.note = c.email'],
    ['a view of the masked column', 'INSERT INTO events (note) SELECT contact FROM customer_contacts'],
    ['CREATE TABLE AS', 'CREATE TABLE copied AS SELECT email FROM customers'],
    ['a user variable, then INSERT', 'SELECT @x := email FROM customers WHERE id = 1; INSERT INTO events (note) VALUES (@x)'],
    ['SELECT … INTO @x, then UPDATE', 'SELECT email INTO @x FROM customers WHERE id = 2; UPDATE scratch SET note = @x'],
    ['a filter on a masked column', "UPDATE customers SET plan = 'pro' WHERE email = 'alice@example.com'"],
  ];
  it.each(copies)('refused: %s', async (_, sql) => {
    const o = await ops.run({ target: 'maria', sql });
    expect(o.status).toBe('failed');
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_COPY');
    expectNoSecrets(o);
    expectNoSecrets(await readNotes());
  });

  const allowed: Array<[string, string]> = [
    ['a write reading no masked column', 'INSERT INTO events (note) SELECT name FROM customers WHERE id = 1'],
    ['a filter on an unmasked key', "UPDATE customers SET plan = 'team' WHERE id = 2"],
    ['a masked column rewritten into itself', 'UPDATE customers SET email = lower(email) WHERE id = 3'],
    ['a user variable kept in the session, read back masked', 'SELECT email INTO @x FROM customers WHERE id = 2; SELECT @x AS v'],
  ];
  it.each(allowed)('allowed: %s', async (_, sql) => {
    const o = await ops.run({ target: 'maria', sql });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.status).toBe('succeeded');
    expectNoSecrets(o);
  });

  it('refused: a delete filtered by a masked column (which rows go tells its value: WRIT_MASKED_FILTER)', async () => {
    const o = await ops.run({ target: 'maria', sql: 'DELETE FROM events WHERE note = (SELECT email FROM customers WHERE id = 1)' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_MASKED_FILTER');
  });

  it('allowed where the rule says copyMasked: true', async () => {
    const o = await migrations.run({ target: 'maria', sql: 'INSERT INTO scratch (id, note) SELECT id, email FROM customers WHERE id = 1' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    await m.admin(['DELETE FROM scratch']);
  });
});

describe('session state does not reach a later intent', () => {
  // The worker resets the connection (COM_RESET_CONNECTION) before it serves the next intent.
  it('a user variable set by one intent is gone for the next', async () => {
    const set = await migrations.run({ target: 'maria', sql: 'SELECT @kept := email AS k FROM customers WHERE id = 1' });
    expect(set.error, JSON.stringify(set.error)).toBeUndefined();
    for (const c of [analyst, ops, migrations]) {
      const o = await c.run({ target: 'maria', sql: 'SELECT @kept AS v' });
      expect(o.error, JSON.stringify(o.error)).toBeUndefined();
      expect(o.result!.rows).toEqual([[null]]);
    }
  });

  it('a temporary table made by one intent is gone for the next', async () => {
    const made = await migrations.run({ target: 'maria', sql: 'CREATE TEMPORARY TABLE kept AS SELECT email FROM customers' });
    expect(made.error, JSON.stringify(made.error)).toBeUndefined();
    const o = await migrations.run({ target: 'maria', sql: 'SELECT * FROM kept' });
    expect(o.status).toBe('failed');
    expectNoSecrets(o);
  });
});
