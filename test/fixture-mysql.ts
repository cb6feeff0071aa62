/**
 * A Writ stack whose target `maria` is a throwaway MariaDB database (test/helpers/mariadb.ts)
 * behind a MySQL worker, with the customers/events schema of fixture.ts and the e-mail
 * column masked.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigInput } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';
import { createTestMariadb, type TestMariadb } from './helpers/index.ts';

export const MARIA_SCHEMA = [
  'CREATE TABLE customers (id int PRIMARY KEY, name varchar(100) NOT NULL, email varchar(100) NOT NULL UNIQUE, plan varchar(20) NOT NULL)',
  "INSERT INTO customers VALUES (1, 'Alice Example', 'alice@example.com', 'pro'), (2, 'Bob Example', 'bob@example.org', 'free'), (3, 'Carol Example', 'carol@example.net', 'team')",
  'CREATE TABLE events (id int AUTO_INCREMENT PRIMARY KEY, note varchar(100))',
  'CREATE VIEW customer_contacts AS SELECT id, name, email AS contact FROM customers',
  'CREATE VIEW contacts_again AS SELECT * FROM customer_contacts',
];

export interface MariaStack {
  s: Stack;
  m: TestMariadb;
  stop(): Promise<void>;
}

/**
 * `rules` replace the default ones (analysts read, dba write with rowsAffected 1 and 2 s);
 * `policyYaml`, given the database, replaces the whole policy with a policy file's text.
 * `setup` statements run after the schema, as the server's admin.
 */
export async function startMariaStack(
  opts: { rules?: NonNullable<NonNullable<ConfigInput['policy']>['rules']>; poolSize?: number; policyYaml?: (m: TestMariadb) => string; setup?: (m: TestMariadb) => string[] } = {},
): Promise<MariaStack> {
  const m = await createTestMariadb();
  await m.admin([...MARIA_SCHEMA, ...(opts.setup?.(m) ?? [])]);
  let policyFile: string | undefined;
  if (opts.policyYaml) {
    policyFile = join(mkdtempSync(join(tmpdir(), 'writ-maria-policy-')), 'policy.yaml');
    writeFileSync(policyFile, opts.policyYaml(m));
  }
  const s = await startStack({
    config: {
      targets: [{ name: 'maria', kind: 'mysql', tags: ['test'], description: 'the test MariaDB' }],
      ...(policyFile
        ? { policyFile }
        : {
            policy: {
              rules: opts.rules ?? [
                { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['maria'], mode: 'read', limits: { rows: 50 } },
                { id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['maria'], mode: 'write', limits: { rowsAffected: 1, seconds: 2 } },
              ],
              masking: { columns: [{ column: `${m.database}.customers.email` }], detectors: [] },
            },
          }),
      workers: {
        mysql: [
          {
            target: 'maria',
            host: m.host,
            port: m.port,
            database: m.database,
            poolSize: opts.poolSize ?? 1,
            credentials: {
              read: { user: { value: m.users.read.user }, password: { value: m.users.read.password } },
              write: { user: { value: m.users.write.user }, password: { value: m.users.write.password } },
            },
          },
        ],
      },
    },
  });
  return {
    s,
    m,
    async stop() {
      await s.stop();
      await m.drop();
    },
  };
}
