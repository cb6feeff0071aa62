/**
 * Second attack on the PostgreSQL worker (PostgresExecutor.run), against a real server, where
 * test/pg-worker-attack.test.ts and test/pg-read-attack.test.ts do not reach: read grants in
 * the batch path, write batches and their rowsAffected limit, the batch path's row, byte and
 * time limits, and what one intent's session can leave for the next on a shared connection
 * (poolSize 1), in both the single-statement and the batch path. Only what held is here: the
 * defects this attack found (a read batch made read-write by SET TRANSACTION, large objects and
 * NOTIFY under a read grant, parse-changing settings, rowsAffected gaps, cancels a statement
 * catches) were reported with tests that fail until the worker is fixed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initClassifiers } from '../classify/index.ts';
import type { GrantClaims, Limits, Order } from '../schemas/index.ts';
import { toWritError, type WritError } from '../schemas/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import type { ExecOutput, RowsOutput } from '../workers/executor.ts';
import { createTestDatabase, uniqueName, type TestDatabase } from './helpers/index.ts';

let db: TestDatabase;
let admin: pg.Client;
/** One connection per mode: consecutive intents share it. */
let ex: PostgresExecutor;
/** A role the read role is a member of (SET ROLE target). */
const memberRole = uniqueName('writ_member');

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  const rw = db.roles.write.user;
  await admin.query(`
    CREATE TABLE t (id int);
    CREATE TABLE secrets (id int, password text);
    INSERT INTO secrets VALUES (1, 'hunter2');
    GRANT SELECT ON secrets TO ${db.roles.read.user}, ${rw};
    CREATE SEQUENCE s;
    GRANT USAGE, SELECT ON SEQUENCE s TO ${rw};
    CREATE ROLE ${memberRole} NOLOGIN;
    GRANT ${memberRole} TO ${db.roles.read.user};
    GRANT TEMP ON DATABASE ${db.database} TO ${rw};
  `);
  ex = executor(1);
});
afterAll(async () => {
  await ex?.close();
  await admin?.end();
  await db?.drop();
  if (db) {
    const c = new pg.Client({ connectionString: db.adminUrl.replace(/\/[^/]*$/, '/postgres') });
    await c.connect();
    await c.query(`DROP ROLE IF EXISTS ${memberRole}`).catch(() => undefined);
    await c.end();
  }
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

const count = async (table: string) => Number((await admin.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);
const one = async (sql: string, params: unknown[] = []) => (await admin.query(sql, params)).rows[0] as Record<string, unknown>;
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

describe('a read grant never writes, in the batch path either', () => {
  it('holds: a read-write switch after the snapshot, inside a DO block, through pg_settings, or under a member role is refused by the server', async () => {
    const settings = () => one('SELECT count(*)::int AS n FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1', [db.roles.read.user]).then((r) => r.n);
    await admin.query(`ALTER ROLE ${db.roles.read.user} RESET ALL`);
    const write = "ALTER ROLE CURRENT_USER SET work_mem = '66kB'";
    const cases: Array<[string, string]> = [
      ["SELECT set_config('transaction_read_only', 'off', false)", '25001'],
      [`SELECT 1; SET TRANSACTION READ WRITE; ${write}`, '25001'],
      [`DO $$BEGIN SET TRANSACTION READ WRITE; EXECUTE $x$${write}$x$; END$$`, '25001'],
      [`UPDATE pg_settings SET setting = 'off' WHERE name = 'transaction_read_only'; ${write}`, '25006'],
      [`SET ROLE ${memberRole}; ${write}`, '25006'],
      [`SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; ${write}`, '25006'],
    ];
    for (const [sql, state] of cases) {
      const err = await fails(run(sql, 'read'));
      expect([sql, err.details?.sqlstate]).toEqual([sql, state]);
    }
    expect(await settings()).toBe(0);
  });

  it('holds: COPY to a server file, SET SESSION AUTHORIZATION and a prepared INSERT are refused to the read role', async () => {
    await admin.query('TRUNCATE t');
    const cases: Array<[string, string]> = [
      ["COPY secrets TO '/tmp/writ-copy-attack'", '42501'],
      [`SET SESSION AUTHORIZATION ${memberRole}`, '42501'],
      ['PREPARE w AS INSERT INTO t VALUES (1); EXECUTE w', '25006'],
    ];
    for (const [sql, state] of cases) {
      const err = await fails(run(sql, 'read'));
      expect([sql, err.details?.sqlstate]).toEqual([sql, state]);
    }
    expect(await count('t')).toBe(0);
  });
});

describe('the rowsAffected limit of a write batch', () => {
  it('holds: EXECUTE of a prepared INSERT and MERGE are counted; a prepared modifying CTE is refused; nothing is committed', async () => {
    await admin.query('TRUNCATE t');
    const e1 = await fails(run('PREPARE p AS INSERT INTO t SELECT generate_series(1, 150); EXECUTE p', 'write', { rowsAffected: 100 }));
    expect([e1.code, e1.details]).toEqual(['WRIT_ROW_LIMIT', { rowsAffected: 150, limit: 100 }]);
    const e2 = await fails(run('MERGE INTO t USING (SELECT generate_series(1, 150) AS id) s ON false WHEN NOT MATCHED THEN INSERT VALUES (s.id)', 'write', { rowsAffected: 100 }));
    expect([e2.code, e2.details]).toEqual(['WRIT_ROW_LIMIT', { rowsAffected: 150, limit: 100 }]);
    const e3 = await fails(run('PREPARE q AS WITH d AS (INSERT INTO t SELECT generate_series(1, 150) RETURNING 1) SELECT count(*) FROM d; EXECUTE q', 'write', { rowsAffected: 100 }));
    expect(e3.code).toBe('WRIT_UNSUPPORTED');
    expect(await count('t')).toBe(0);
  });

  it("holds: the batch cannot leave the worker's transaction through DO, and a self-terminated or deferred-failing batch commits nothing", async () => {
    await admin.query(`TRUNCATE t; CREATE TABLE u (id int UNIQUE DEFERRABLE INITIALLY DEFERRED); GRANT SELECT, INSERT ON u TO ${db.roles.write.user}`);
    const e1 = await fails(run('INSERT INTO t VALUES (1); DO $$BEGIN COMMIT; END$$; INSERT INTO t VALUES (2)', 'write'));
    expect(e1.details).toMatchObject({ sqlstate: '2D000' });
    const e2 = await fails(run('INSERT INTO t VALUES (3); SELECT pg_terminate_backend(pg_backend_pid())', 'write'));
    expect([e2.code, e2.details, e2.message]).toEqual(['WRIT_EXEC_FAILED', { sqlstate: '57P01' }, expect.stringMatching(/nothing was committed/)]);
    // The unique violation comes at COMMIT: a failure, never a success, and the server rolled it back.
    const e3 = await fails(run('INSERT INTO t VALUES (4); INSERT INTO u VALUES (1), (1)', 'write'));
    expect([e3.code, e3.details, e3.message]).toEqual(['WRIT_EXEC_FAILED', { sqlstate: '23505' }, expect.stringMatching(/rolled it back/)]);
    expect(await count('t')).toBe(0);
    expect(await count('u')).toBe(0);
    expect((await rows('SELECT 1', 'write')).rows).toEqual([[1]]);
  });
});

describe('row, byte and time limits in the batch path', () => {
  it('holds: the row limit is exact, and the byte budget stops medium rows', async () => {
    const exact = await rows('SELECT 1; SELECT g FROM generate_series(1, 7) g', 'read', { rows: 7 });
    expect([exact.rows.length, exact.truncated]).toEqual([7, false]);
    const over = await rows('SELECT 1; SELECT g FROM generate_series(1, 8) g', 'read', { rows: 7 });
    expect([over.rows.length, over.rowCount, over.truncated]).toEqual([7, 7, true]);
    const big = await rows("SELECT 1; SELECT repeat('y', 300000) FROM generate_series(1, 200)", 'read', { bytes: 1024 * 1024, rows: 1000 });
    expect(big.truncated).toBe(true);
    expect(big.rows.length).toBeGreaterThan(0);
    expect(big.rows.length).toBeLessThan(12);
  });

  it('holds: notices are capped in number, and one past the message cap fails the intent wherever it comes', async () => {
    const r = await rows("DO $$BEGIN FOR i IN 1..5000 LOOP RAISE NOTICE 'n %', i; END LOOP; END$$", 'read');
    expect(r.notices.length).toBe(20);
    for (const sql of ["SELECT 1; DO $$BEGIN RAISE NOTICE '%', repeat('x', 300000); END$$", "DO $$BEGIN RAISE NOTICE '%', repeat('x', 300000); END$$; SELECT 1"]) {
      expect((await fails(run(sql, 'read', { bytes: 1000 }))).code).toBe('WRIT_EXEC_FAILED');
    }
    expect((await rows('SELECT 5')).rows).toEqual([[5]]);
  });

  it('holds: a self-cancel in a batch is a failure with its sqlstate, not the time limit', async () => {
    for (const sql of ['SELECT pg_cancel_backend(pg_backend_pid()), pg_sleep(1); SELECT 1', 'SELECT 1; SELECT pg_cancel_backend(pg_backend_pid()), pg_sleep(1)']) {
      const err = await fails(run(sql, 'read'));
      expect([err.code, err.details]).toEqual(['WRIT_EXEC_FAILED', { sqlstate: '57014' }]);
    }
  });

  it('holds: statements each under the limit end, together, at the watchdog (limit + 2 s grace), and a write batch commits nothing', async () => {
    await admin.query('TRUNCATE t');
    const sleeps = Array.from({ length: 8 }, () => 'SELECT pg_sleep(0.6)').join('; ');
    let t0 = Date.now();
    expect((await fails(run(sleeps, 'read', { seconds: 1 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(4000);
    t0 = Date.now();
    expect((await fails(run(`INSERT INTO t VALUES (1); ${sleeps}`, 'write', { seconds: 1 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(await count('t')).toBe(0);
  });
});

describe('the next intent on the connection gets it clean', () => {
  const login = () => rows('SELECT current_user, session_user').then((r) => r.rows[0]);

  it('holds: SET ROLE (batch) and set_config role (single) do not reach the next intent', async () => {
    const me = [db.roles.read.user, db.roles.read.user];
    expect((await rows(`SET ROLE ${memberRole}; SELECT current_user`)).rows).toEqual([[memberRole]]);
    expect(await login()).toEqual(me);
    expect((await rows(`SELECT set_config('role', '${memberRole}', false)`)).rows).toEqual([[memberRole]]);
    expect(await login()).toEqual(me);
    await run(`SET ROLE ${memberRole}; SELECT 1 / 0`, 'read').catch(() => undefined);
    expect(await login()).toEqual(me);
  });

  it('holds: read-write session characteristics do not reach the next single read', async () => {
    for (const sql of ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', "SELECT set_config('default_transaction_read_only', 'off', false)"]) {
      await run(sql, 'read');
      expect((await rows("SELECT current_setting('transaction_read_only'), current_setting('default_transaction_read_only')")).rows).toEqual([['on', 'on']]);
    }
  });

  it('holds: prepared statements, advisory locks and the random seed of a failed or timed-out batch are gone', async () => {
    await run('PREPARE p9 AS SELECT 1; SELECT pg_advisory_lock(99); SELECT 1 / 0', 'read').catch(() => undefined);
    await run('PREPARE p8 AS SELECT 1; SELECT pg_advisory_lock(98); SELECT pg_sleep(3)', 'read', { seconds: 0.3 }).catch(() => undefined);
    expect((await rows('PREPARE p9 AS SELECT 2; PREPARE p8 AS SELECT 3; EXECUTE p9')).rows).toEqual([[2]]);
    expect((await one("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid IN (98, 99)")).n).toBe(0);
    const seeded = (await rows('SELECT setseed(0.42); SELECT random()')).rows[0]![0];
    await run('SELECT setseed(0.42); SELECT 1 / 0', 'read').catch(() => undefined);
    expect((await rows('SELECT random()')).rows[0]![0]).not.toBe(seeded);
  });

  it("holds: a sequence's currval and a temp table do not reach the next write intent", async () => {
    expect((await rows("SELECT nextval('s')", 'write')).rows.length).toBe(1);
    expect((await fails(run("SELECT currval('s')", 'write'))).details).toMatchObject({ sqlstate: '55000' });
    await run('CREATE TEMP TABLE tt AS SELECT 1 AS x', 'write');
    expect((await fails(run('SELECT * FROM pg_temp.tt', 'write'))).details).toMatchObject({ sqlstate: '42P01' });
  });

  it('holds: a client_encoding changed by set_config does not reach the next intent', async () => {
    expect((await rows("SELECT set_config('client_encoding', 'LATIN1', false)")).rows).toEqual([['LATIN1']]);
    expect((await rows("SELECT 'é', current_setting('client_encoding')")).rows).toEqual([['é', 'UTF8']]);
  });

  it('holds: a cursor WITH HOLD is refused before it runs, so none outlives the intent', async () => {
    expect((await fails(run('DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'read'))).code).toBe('WRIT_SQL_UNKNOWN');
    expect((await rows('DECLARE c CURSOR FOR SELECT 41; FETCH 1 FROM c')).rows).toEqual([[41]]);
  });

  it('holds: a batch cut at the wire leaves nothing: its connection is replaced and its session lock released', async () => {
    const pid = async () => (await rows('SELECT pg_backend_pid()')).rows[0]![0];
    const before = await pid();
    const r = await rows("SELECT pg_advisory_lock(97); SELECT repeat('x', 500000)", 'read', { bytes: 1000 });
    expect([r.rows.length, r.truncated]).toEqual([0, true]);
    expect(await pid()).not.toBe(before);
    let locks = 1;
    for (let i = 0; i < 40 && locks > 0; i++) {
      locks = Number((await one("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 97")).n);
      if (locks > 0) await sleep(50);
    }
    expect(locks).toBe(0);
  });

  it('holds: the pool of one still serves quickly after all of the above', async () => {
    const t0 = Date.now();
    expect((await rows('SELECT 7')).rows).toEqual([[7]]);
    expect((await rows('SELECT 8', 'write')).rows).toEqual([[8]]);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
