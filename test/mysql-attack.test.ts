/**
 * Attacks on a MariaDB target that an earlier round let through, each against a real private
 * mariadbd (test/helpers) behind the whole path (broker, worker, masking): the statement is
 * sent as an agent would send it, and the masked e-mails must not come back.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';

const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net'];
let stack: MariaStack;
let analyst: WritClient;
let ops: WritClient;

beforeAll(async () => {
  stack = await startMariaStack({
    poolSize: 2,
    rules: [
      { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['maria'], mode: 'read', limits: { rows: 50 } },
      // No rowsAffected: the worker refuses SELECT … INTO under that limit (its row count is not reported).
      { id: 'ops-write', effect: 'allow', groups: ['ops'], targets: ['maria'], mode: 'write', limits: { rows: 50 } },
    ],
  });
  analyst = stack.s.client(await stack.s.token('alice', ['analysts']));
  ops = stack.s.client(await stack.s.token('olga', ['ops']));
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

function expectNoSecrets(value: unknown) {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

describe('values carried from one statement of a batch to the next', () => {
  // The session keeps user variables between the statements of a batch: a field of a later
  // statement may hold what an earlier one read, though it names no table itself.
  const reads: Array<[string, string]> = [
    ['a user variable assigned in a select list', 'SELECT @x := email FROM customers ORDER BY id; SELECT @x AS v'],
    ['a user variable read in an expression', "SELECT name, @x := email AS y FROM customers WHERE id = 2; SELECT concat(@x, '') AS v"],
    ['a user variable assigned from a scalar subquery', 'SELECT @x := (SELECT email FROM customers WHERE id = 3) AS y; SELECT @x AS v'],
  ];
  it.each(reads)('stay masked through %s', async (_, sql) => {
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.rows.length).toBe(1);
    expect(o.result!.columns[0]).toMatchObject({ name: 'v', masked: true });
    expectNoSecrets(o);
  });

  it('stay masked through SELECT … INTO @x under a write grant', async () => {
    const o = await ops.run({ target: 'maria', sql: 'SELECT email INTO @x FROM customers WHERE id = 2; SELECT @x AS v' });
    expect(o.error, JSON.stringify(o.error)).toBeUndefined();
    expect(o.result!.columns[0]).toMatchObject({ name: 'v', masked: true });
    expectNoSecrets(o);
  });

  it('leave a later statement that reads only its own unmasked columns as it is', async () => {
    // (Read by key: a scan of the unique e-mail index would assign in e-mail order, which mysql-masked-order.test.ts refuses.)
    const o = await analyst.run({ target: 'maria', sql: 'SELECT @x := email FROM customers WHERE id = 2; SELECT name FROM customers WHERE id = 1' });
    expect(o.result!.rows).toEqual([['Alice Example']]);
    expect(o.result!.columns[0]).toMatchObject({ name: 'name', masked: false });
  });
});

describe("other sessions of the worker's database user", () => {
  // Every principal of a mode runs as that mode's one database user, and MariaDB shows a user
  // the statements its other sessions are running: another principal's text, literals included.
  const spellings = [
    'SELECT info FROM information_schema.PROCESSLIST',
    'SHOW PROCESSLIST',
    'SELECT x.i FROM (SELECT `INFO` AS i FROM INFORMATION_SCHEMA.processlist) x',
    'WITH p AS (SELECT * FROM information_schema.processlist) SELECT * FROM p',
  ];
  it.each(spellings)('are not shown: %s', async (sql) => {
    const m = stack.m;
    // Another principal's statement, running on the pool's user while the attacker asks.
    const victim = await mysql.createConnection({ host: m.host, port: m.port, user: m.users.read.user, password: m.users.read.password, database: m.database });
    try {
      const running = victim.query("SELECT sleep(2), id FROM customers WHERE email = 'alice@example.com'");
      await new Promise((r) => setTimeout(r, 300));
      const o = await analyst.run({ target: 'maria', sql });
      expect(o.status).toBe('failed');
      expect(o.error?.code).toBe('WRIT_UNSUPPORTED');
      expectNoSecrets(o);
      await running;
    } finally {
      await victim.end();
    }
  });
});
