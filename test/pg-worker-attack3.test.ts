/**
 * Third attack on the PostgreSQL worker (PostgresExecutor.run), against a real server, where
 * test/pg-worker-attack.test.ts, test/pg-read-attack.test.ts and test/pg-worker-attack2.test.ts do
 * not reach: ways around the defences those suites test. Name resolution the batch changes
 * (search_path, temp views, LATERAL column aliases) against the masked-filter, masked-copy and
 * error-scrubbing checks; what the rowsAffected count misses (deferred triggers) or adds (the
 * server's pending statistics of earlier transactions); role-level state a write leaves for every
 * later connection; a read grant that ends other intents' backends; the heap a result takes
 * against the wire's cap. Only what held is here; the defects this attack found (F1-F9: search_path,
 * LATERAL aliases and temp views past the masked-filter, masked-copy and error checks; errors as
 * a filter; deferred triggers past rowsAffected; earlier transactions' pending statistics counted
 * against the next intent; role defaults and the role's password set by a write; a read grant
 * terminating other intents' backends; a JSON row taking 20x the wire cap in heap) are reported,
 * not committed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initClassifiers } from '../classify/index.ts';
import type { GrantClaims, Limits, Order } from '../schemas/index.ts';
import { toWritError, type WritError } from '../schemas/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import type { ExecOutput, RowsOutput } from '../workers/executor.ts';
import { createTestDatabase, type TestDatabase } from './helpers/index.ts';

let db: TestDatabase;
let admin: pg.Client;
/** One connection per mode: consecutive intents share it. */
let ex: PostgresExecutor;

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  const ro = db.roles.read.user;
  const rw = db.roles.write.user;
  await admin.query(`
    -- PostgreSQL grants TEMP on a database to PUBLIC by default; the helper revokes it.
    GRANT TEMP ON DATABASE ${db.database} TO ${rw};
    CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO ${ro}, ${rw};
    CREATE TABLE app.customers (id int, pw text);
    INSERT INTO app.customers VALUES (1, 'hunter2');
    GRANT SELECT ON app.customers TO ${ro}, ${rw};
    CREATE TABLE secrets (id int, password text);
    INSERT INTO secrets VALUES (1, 'hunter2');
    GRANT SELECT ON secrets TO ${ro}, ${rw};
    CREATE TABLE notes (id int, body text);
    GRANT SELECT, INSERT ON notes TO ${ro}, ${rw};
    CREATE TABLE t (id int, ts timestamp DEFAULT '2024-12-25 10:00');
    CREATE SEQUENCE sq;
    GRANT USAGE, SELECT, UPDATE ON SEQUENCE sq TO ${rw};
    CREATE TABLE audit (x int);
    CREATE TABLE dt (id int);
    CREATE FUNCTION fan() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN INSERT INTO audit SELECT generate_series(1, 50); RETURN NULL; END $$;
    CREATE CONSTRAINT TRIGGER fan AFTER INSERT ON dt DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fan();
  `);
  ex = executor(1);
});
afterAll(async () => {
  await ex?.close();
  await admin?.end();
  await db?.drop();
});

function executor(poolSize: number): PostgresExecutor {
  return new PostgresExecutor([
    {
      target: 'db',
      host: db.host,
      port: db.port,
      database: db.database,
      poolSize,
      credentials: {
        read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } },
        write: { user: { value: db.roles.write.user }, password: { value: db.roles.write.password } },
      },
    },
  ] as ConstructorParameters<typeof PostgresExecutor>[0]);
}

type Mode = 'read' | 'write';
const MASK = { columns: [{ column: 'public.secrets.password' }], detectors: [] };

function run(sql: string, mode: Mode, limits: Limits = {}, mask?: unknown, e: PostgresExecutor = ex): Promise<ExecOutput> {
  const now = Math.floor(Date.now() / 1000);
  const claims = { gid: 'g', iid: 'i', sid: 's', tgt: 'db', kind: 'postgres', mode, sha256: '0'.repeat(64), iat: now, exp: now + 600, limits, policyVersion: 'v', sub: 'x' } as GrantClaims;
  if (mask !== undefined) (claims as { mask?: unknown }).mask = mask;
  return e.run({ order: { command: { kind: 'sql', sql } } as Order, claims, signal: new AbortController().signal, streamMasker: () => ({ push: () => '', end: () => '' }) });
}

async function rows(sql: string, mode: Mode = 'read', limits: Limits = {}, mask?: unknown, e: PostgresExecutor = ex): Promise<RowsOutput> {
  const r = await run(sql, mode, limits, mask, e);
  if (r.type !== 'rows') throw new Error('rows expected');
  return r;
}

async function fails(p: Promise<unknown>): Promise<WritError> {
  try {
    await p;
  } catch (e) {
    return toWritError(e);
  }
  throw new Error('expected a failure');
}

/** What an intent ended as, comparable whole: its rows, or its error code and sqlstate. */
const outcome = (p: Promise<ExecOutput>) =>
  p.then(
    (r) => (r.type === 'rows' ? { rows: r.rows } : { stream: true }),
    (e: unknown) => ({ error: toWritError(e).code, sqlstate: toWritError(e).details?.sqlstate }),
  );

const count = async (table: string) => Number((await admin.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);

describe('masking when the batch changes how names resolve', () => {
  it('holds: filters through joins, ordinals, named windows, SRFs, subquery, CTE and FROM aliases are refused', async () => {
    const cases = [
      "SELECT 1 FROM secrets NATURAL JOIN (VALUES (1, 'hunter2')) v(id, password)",
      "SELECT 1 FROM secrets JOIN (VALUES ('hunter2')) v(password) USING (password)",
      'SELECT id, password FROM secrets ORDER BY 2',
      'SELECT password FROM secrets GROUP BY 1',
      'SELECT id, rank() OVER w FROM secrets WINDOW w AS (ORDER BY password)',
      'SELECT generate_series(1, ascii(password)) FROM secrets',
      "SELECT 1 FROM (SELECT password AS x FROM secrets) q WHERE x LIKE 'h%'",
      "WITH c(x) AS (SELECT password FROM secrets) SELECT 1 FROM c WHERE x LIKE 'h%'",
      "SELECT 1 FROM secrets s JOIN LATERAL (SELECT s.password AS x) v ON v.x LIKE 'h%'",
      "SELECT 1 FROM secrets s, unnest(ARRAY[s.password]) u(x) WHERE x LIKE 'h%'",
      "SELECT 1 FROM secrets AS s(i, p) WHERE p LIKE 'h%'",
      'SELECT id FROM secrets ORDER BY password COLLATE "C"',
      "SELECT id FROM secrets s WHERE s::text LIKE '%h%'",
    ];
    for (const sql of cases) {
      const err = await fails(run(sql, 'read', {}, MASK));
      expect([sql, ['WRIT_MASKED_FILTER', 'WRIT_SQL_UNKNOWN'].includes(err.code)]).toEqual([sql, true]);
    }
  });

  it('holds: a temp view cannot be made under a read grant, and a write cannot copy through one or through a temp table', async () => {
    expect((await fails(run("CREATE TEMP VIEW v AS SELECT id, password AS p FROM secrets; SELECT id FROM v WHERE p LIKE 'h%'", 'read', {}, MASK))).details).toMatchObject({ sqlstate: '25006' });
    await admin.query('TRUNCATE notes');
    for (const sql of [
      'CREATE TEMP VIEW v AS SELECT id, password AS p FROM secrets; INSERT INTO notes SELECT id, p FROM v',
      "CREATE TEMP TABLE v AS SELECT id, password AS p FROM secrets; SELECT id FROM v WHERE p LIKE 'h%'",
    ]) {
      expect((await fails(run(sql, 'write', { rowsAffected: 5 }, MASK))).code).toBe('WRIT_MASKED_COPY');
    }
    expect(await count('notes')).toBe(0);
  });

  it("holds: numeric literals PostgreSQL 16+ reads (0x10, 1_000) and the classifier's parser accepts fail on this server, never read otherwise", async () => {
    for (const sql of ['SELECT 0x10 AS v', 'SELECT 1_000 AS v', 'SELECT 0o17 AS v, 0b101 AS w']) {
      const o = await outcome(run(sql, 'read'));
      expect([sql, o]).toEqual([sql, { error: 'WRIT_EXEC_FAILED', sqlstate: '42601' }]);
    }
  });
});

describe('the rowsAffected limit', () => {
  it('holds: setval inside an INSERT is refused under a limit, so no sequence moves past it (or survives its rollback)', async () => {
    for (const sql of ["INSERT INTO t (id) SELECT 1 WHERE setval('sq', 424242) IS NULL", "INSERT INTO t (id) SELECT setval('sq', 777) FROM generate_series(1, 150)"]) {
      expect((await fails(run(sql, 'write', { rowsAffected: 100 }))).code).toBe('WRIT_UNSUPPORTED');
    }
    expect((await admin.query('SELECT last_value::int AS v FROM sq')).rows[0].v).toBe(1);
  });
});

describe('what an intent leaves for other intents', () => {
  it('holds: a session DateStyle does not reach the next intent on the connection', async () => {
    expect((await rows("SET DateStyle = 'German'; SELECT current_setting('DateStyle')")).rows).toEqual([['German, DMY']]);
    expect((await rows("SELECT current_setting('DateStyle'), '2024-12-25 10:00'::timestamp IS NOT NULL")).rows).toEqual([['ISO, MDY', true]]);
  });
});

describe("one intent's memory", () => {});
