/**
 * Policy names on a real MariaDB target, end to end (broker, worker, masking; a private
 * mariadbd from test/helpers): a rule that names `<db>.customers` applies its masking and its
 * denials whichever way the statement names the table (unqualified, qualified, quoted, through
 * an alias, a derived table or a CTE), so a broader rule further down never takes such a read.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../client/index.ts';
import { startStack, type Stack } from './fixture.ts';
import { MARIA_SCHEMA } from './fixture-mysql.ts';
import { createTestMariadb, type TestMariadb } from './helpers/index.ts';

const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net'];
let s: Stack | undefined;
let m: TestMariadb | undefined;
let dir: string;
let analyst: WritClient;

beforeAll(async () => {
  m = await createTestMariadb();
  await m.admin(MARIA_SCHEMA);
  dir = mkdtempSync(join(tmpdir(), 'writ-mysql-names-'));
  const policyFile = join(dir, 'policy.yaml');
  // The first matching grant decides: reads of customers get its masking; anything else is read unmasked.
  writeFileSync(
    policyFile,
    `
version: mysql-names-e2e
rules:
  - id: no-plan
    effect: deny
    match: { sql: { columns: ["${m.database}.customers.plan"] } }
  - id: customers-masked
    effect: allow
    mode: read
    masking: { columns: [{ column: "${m.database}.customers.email" }], detectors: [] }
    match: { principal: { groups: [analysts] }, sql: { kinds: [select], tablesRead: ["${m.database}.customers"] } }
  - id: read-the-rest
    effect: allow
    mode: read
    masking: { detectors: [] }
    match: { principal: { groups: [analysts] }, sql: { kinds: [select] } }
`,
  );
  s = await startStack({
    config: {
      // No database on the target: the broker takes the worker entry's.
      targets: [{ name: 'maria', kind: 'mysql', tags: ['test'] }],
      policyFile,
      workers: {
        mysql: [
          {
            target: 'maria',
            host: m.host,
            port: m.port,
            database: m.database,
            poolSize: 1,
            credentials: { read: { user: { value: m.users.read.user }, password: { value: m.users.read.password } } },
          },
        ],
      },
    },
  });
  analyst = s.client(await s.token('alice', ['analysts']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
  await m?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a MariaDB target whose rules name db.customers', () => {
  it('masks the e-mail column however the statement names the table', async () => {
    const db = m!.database;
    const spellings = [
      'SELECT id, email FROM customers ORDER BY id',
      `SELECT id, email FROM ${db}.customers ORDER BY id`,
      `SELECT id, email FROM \`${db}\`.\`customers\` ORDER BY id`,
      'SELECT c.id, c.EMAIL AS contact FROM customers c ORDER BY c.id',
      'SELECT id, x FROM (SELECT id, email AS x FROM customers) d ORDER BY id',
      'WITH c AS (SELECT id, email FROM customers) SELECT id, email FROM c ORDER BY id',
      'SELECT id, email FROM customers WHERE id IN (SELECT id FROM customers) ORDER BY id',
    ];
    for (const sql of spellings) {
      const o = await analyst.run({ target: 'maria', sql });
      expect(o.error, `${sql}: ${JSON.stringify(o.error)}`).toBeUndefined();
      expect(o.result!.rowCount, sql).toBe(3);
      const text = JSON.stringify(o.result!.rows);
      for (const secret of SECRETS) expect(text, sql).not.toContain(secret);
      expect(o.result!.columns[1], sql).toMatchObject({ masked: true });
      expect(o.decision?.rules ?? [], sql).toContain('customers-masked');
    }
    // The control: another table is read through the broad rule.
    const other = await analyst.run({ target: 'maria', sql: 'SELECT id, note FROM events' });
    expect(other.status).toBe('succeeded');
  }, 120_000);

  it('denies the plan column however the statement names the table', async () => {
    const db = m!.database;
    for (const sql of ['SELECT plan FROM customers', `SELECT PLAN FROM \`${db}\`.customers`, 'SELECT x FROM (SELECT plan AS x FROM customers) d']) {
      const o = await analyst.run({ target: 'maria', sql });
      expect(o.status, sql).toBe('denied');
      expect(JSON.stringify(o.error ?? o.decision), sql).toContain('no-plan');
    }
  }, 60_000);
});
