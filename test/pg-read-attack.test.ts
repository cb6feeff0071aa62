/**
 * A single read statement (PostgresExecutor.run → #runSingleRead → runOneShot) under attack,
 * against a real server: the SQL text is the attacker's, the grant's limits are not. The row
 * limit, the wire's bound, the time limit, a clean connection for the next intent after
 * answers, errors, timeouts and cuts, and the result's shape. One connection (poolSize 1), so
 * consecutive intents share it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initClassifiers } from '../classify/index.ts';
import type { Limits } from '../schemas/index.ts';
import { toWritError, type WritError } from '../schemas/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import type { ExecOutput, RowsOutput } from '../workers/executor.ts';
import { createTestDatabase, failureOf, pgTarget, runSql, signalBackend, type TestDatabase } from './helpers/index.ts';

let db: TestDatabase;
let admin: pg.Client;
let ex: PostgresExecutor;

const executor = (poolSize: number) => new PostgresExecutor(pgTarget(db, poolSize, ['read']) as ConstructorParameters<typeof PostgresExecutor>[0]);

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(`
    CREATE TABLE lk (id int);
    CREATE TABLE hidden (id int);
    REVOKE ALL ON hidden FROM ${db.roles.read.user};
    CREATE FUNCTION dba_leave_state() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('work_mem', '99kB', false); PERFORM pg_advisory_lock(44); EXECUTE 'LISTEN ch2'; END$$;
    CREATE PROCEDURE dba_escape_password() LANGUAGE plpgsql AS $$BEGIN COMMIT; SET TRANSACTION READ WRITE; ALTER ROLE CURRENT_USER PASSWORD 'chosen-by-the-agent'; END$$;
    CREATE PROCEDURE dba_escape_settings() LANGUAGE plpgsql AS $$BEGIN COMMIT; SET TRANSACTION READ WRITE; ALTER ROLE CURRENT_USER SET work_mem = '77kB'; END$$;
  `);
  ex = executor(1);
});
afterAll(async () => {
  await ex?.close();
  await admin?.end();
  await db?.drop();
});

const run = (sql: string, limits: Limits = {}, e: PostgresExecutor = ex): Promise<ExecOutput> => runSql(e, sql, { limits });

async function rows(sql: string, limits: Limits = {}): Promise<RowsOutput> {
  const r = await run(sql, limits);
  if (r.type !== 'rows') throw new Error('rows expected');
  return r;
}

const fails = failureOf;

/** Runs `sql` and, once the server shows it running, signals its backend as an operator would. */
async function signalled(fn: 'pg_cancel_backend' | 'pg_terminate_backend', sql: string): Promise<WritError> {
  let settled = false;
  const running = fails(run(sql)).finally(() => (settled = true));
  await signalBackend(admin, fn, sql, () => settled);
  return running;
}

const pid = async () => (await rows('SELECT pg_backend_pid()')).rows[0]![0] as number;
const advisoryLocks = () => admin.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
/** The DataRow bytes one text column of `n` ASCII bytes takes on the wire: type, length, count, value length, value. */
const wireRow = (n: number) => 1 + 4 + 2 + 4 + n;

describe('the row limit of a single read', () => {
  it('says truncated only when more rows than the limit exist, and never returns more', async () => {
    const exact = await rows('SELECT g FROM generate_series(1, 7) g', { rows: 7 });
    expect([exact.rows.length, exact.rowCount, exact.truncated, exact.command]).toEqual([7, 7, false, 'SELECT']);
    const oneMore = await rows('SELECT g FROM generate_series(1, 8) g', { rows: 7 });
    expect([oneMore.rows.length, oneMore.rowCount, oneMore.truncated, oneMore.command]).toEqual([7, 7, true, 'SELECT']);
    const none = await rows('SELECT g FROM generate_series(1, 0) g', { rows: 1 });
    expect([none.rows.length, none.rowCount, none.truncated, none.fields.map((f) => f.name)]).toEqual([0, 0, false, ['g']]);
  });

  it('holds for rows without columns and for utility statements that return rows', async () => {
    const empty = await rows('SELECT FROM generate_series(1, 50)', { rows: 3 });
    expect([empty.rows, empty.truncated, empty.fields]).toEqual([[[], [], []], true, []]);
    const values = await rows('VALUES (1), (2), (3)', { rows: 2 });
    expect([values.rows, values.truncated]).toEqual([[[1], [2]], true]);
    const explain = await rows('EXPLAIN (VERBOSE) SELECT g FROM generate_series(1, 3) g WHERE g > 1 ORDER BY g', { rows: 1 });
    expect([explain.rows.length, explain.truncated]).toEqual([1, true]);
    const show = await rows('SHOW work_mem', { rows: 1 });
    expect([show.rows.length, show.truncated, show.command]).toEqual([1, false, 'SHOW']);
  });

  it('stops rows that would fail past the limit before they are computed', async () => {
    // Row 11 divides by zero: the server stops at the limit + 1 and never reaches it.
    const r = await rows('SELECT 1 / (g - 11) FROM generate_series(1, 20) g', { rows: 5 });
    expect([r.rows.length, r.truncated]).toEqual([5, true]);
  });
});

describe("the wire's bound on a single read", () => {
  it('cuts many small rows at budget + one message (+ the socket chunk being parsed), and the next intent gets a new connection', async () => {
    const before = await pid();
    const bytes = 1_000_000;
    const r = await rows('SELECT g FROM generate_series(1, 5000000) g', { rows: 10_000_000, bytes });
    expect(r.truncated).toBe(true);
    expect(r.rows.length).toBeGreaterThan(0);
    const onWire = r.rows.reduce((n, row) => n + wireRow(String(row[0]).length), 0);
    expect(onWire).toBeLessThanOrEqual(bytes + (2 * bytes + 65_536) + 65_536);
    expect(await pid()).not.toBe(before);
    expect((await rows('SELECT 1')).rows).toEqual([[1]]);
  });

  it('cuts a single message past its cap before it is read, whatever the message', async () => {
    const r = await rows("SELECT repeat('x', 50000000)", { bytes: 100_000 });
    expect([r.rows.length, r.truncated]).toEqual([0, true]);
    expect((await rows('SELECT 2')).rows).toEqual([[2]]);
  });
});

describe('the time limit of a single read', () => {
  it('ends a statement that waits on a lock while it is parsed, and the connection is reused clean', async () => {
    const before = await pid();
    await admin.query('BEGIN');
    try {
      await admin.query('LOCK TABLE lk IN ACCESS EXCLUSIVE MODE');
      const t0 = Date.now();
      expect((await fails(run('SELECT * FROM lk', { seconds: 1 }))).code).toBe('WRIT_EXEC_TIMEOUT');
      expect(Date.now() - t0).toBeLessThan(10_000); // without the limit it waits on the lock until the test gives up
    } finally {
      await admin.query('ROLLBACK');
    }
    const after = await rows("SELECT pg_backend_pid(), current_setting('statement_timeout')");
    expect(after.rows).toEqual([[before, '30s']]);
  });

  it("keeps the worker's own per-intent statement_timeout from reaching the next intent, after an answer, an error and a timeout", async () => {
    expect((await rows("SELECT current_setting('statement_timeout')", { seconds: 120 })).rows).toEqual([['2min']]);
    expect((await rows("SELECT current_setting('statement_timeout')")).rows).toEqual([['30s']]);
    expect((await fails(run('SELECT 1 / (random() * 0)::int', { seconds: 120 }))).details).toMatchObject({ sqlstate: '22012' });
    expect((await rows("SELECT current_setting('statement_timeout')")).rows).toEqual([['30s']]);
    expect((await fails(run('SELECT pg_sleep(5)', { seconds: 0.3 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect((await rows("SELECT current_setting('statement_timeout')")).rows).toEqual([['30s']]);
  });

  it('keeps the time limit when the statement lifts statement_timeout for its session', async () => {
    const t0 = Date.now();
    const err = await fails(run("SELECT set_config('statement_timeout', '0', false), pg_sleep(40)", { seconds: 1 }));
    expect(err.code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect((await rows("SELECT current_setting('statement_timeout')")).rows).toEqual([['30s']]);
  });
});

describe('the next intent on the connection gets it clean', () => {
  it('waits for the reset even when it is already queued while the previous intent answers', async () => {
    const p1 = run("SELECT set_config('work_mem', '77kB', false), pg_advisory_lock(41), pg_backend_pid()");
    const p2 = run("SELECT current_setting('work_mem'), (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), pg_backend_pid()");
    const [a, b] = (await Promise.all([p1, p2])) as [RowsOutput, RowsOutput];
    expect(a.rows[0]![1]).toBe('');
    expect(b.rows[0]).toEqual(['4MB', 0, a.rows[0]![2]]);
  });

  it('releases a session advisory lock taken before an error and before a timeout', async () => {
    const e1 = fails(run('SELECT pg_advisory_lock(42), 1 / (random() * 0)::int'));
    const after1 = run("SELECT (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())");
    expect((await e1).details).toMatchObject({ sqlstate: '22012' });
    expect(((await after1) as RowsOutput).rows).toEqual([[0]]);
    expect((await fails(run('SELECT pg_advisory_lock(43), pg_sleep(5)', { seconds: 0.3 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    await run('SELECT 1');
    expect((await advisoryLocks()).rows[0].n).toBe(0);
  });

  it("drops prepared statements, listens and settings a statement leaves in its session, a function's included", async () => {
    await run('PREPARE p1 AS SELECT 1');
    await run('PREPARE p1 AS SELECT 2'); // "already exists" without the reset
    await run('LISTEN ch1');
    await run('SELECT dba_leave_state()');
    await run('PREPARE p1 AS SELECT 3');
    const r = await rows("SELECT current_setting('work_mem'), (SELECT count(*)::int FROM pg_listening_channels())");
    expect(r.rows).toEqual([['4MB', 0]]);
    expect((await advisoryLocks()).rows[0].n).toBe(0);
  });
});

describe('the one-statement, read-only boundary of a single read', () => {
  for (const sql of ['BEGIN', 'begin work', 'START TRANSACTION READ WRITE', '/* x */ BEGIN ISOLATION LEVEL SERIALIZABLE', 'COMMIT AND CHAIN', 'ABORT', 'SAVEPOINT s']) {
    it(`refuses ${sql} before anything runs, and the connection stays idle`, async () => {
      expect((await fails(run(sql))).code).toBe('WRIT_UNSUPPORTED');
      expect((await rows('SELECT 1')).rows).toEqual([[1]]);
    });
  }

  it('refuses a NUL in the text (the server would read only the part before it)', async () => {
    expect((await fails(run('SELECT g FROM generate_series(1, 3) g\u0000 WHERE g = 2'))).code).toBe('WRIT_SQL_UNPARSEABLE');
  });

  it('runs what the server parses as one statement as one: a nested comment hides no second statement', async () => {
    const t0 = Date.now();
    expect((await rows('SELECT 1 /* /* */ ; SELECT pg_sleep(30) */')).rows).toEqual([[1]]);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('refuses writes in the read-only transaction, with the sqlstate', async () => {
    // Role DDL is refused by the worker before anything runs; a write the worker lets through, by the server.
    expect((await fails(run("ALTER ROLE CURRENT_USER SET work_mem = '77kB'"))).code).toBe('WRIT_UNSUPPORTED');
    const err = await fails(run('CREATE TABLE made_by_a_read (id int)'));
    expect(err.details).toMatchObject({ sqlstate: '25006' });
    expect((await admin.query('SELECT count(*)::int AS n FROM pg_db_role_setting')).rows[0].n).toBe(0);
  });
});

describe('errors of a single read', () => {
  it('carry their sqlstate: bad input, unknown function, privilege, an error after rows were sent', async () => {
    expect((await fails(run("SELECT 'x'::int"))).details).toMatchObject({ sqlstate: '22P02' });
    expect((await fails(run('SELECT no_such_function(1)'))).details).toMatchObject({ sqlstate: '42883' });
    expect((await fails(run('SELECT * FROM hidden'))).details).toMatchObject({ sqlstate: '42501' });
    const late = await fails(run('SELECT 1 / (g - 11) FROM generate_series(1, 20) g', { rows: 100 }));
    expect([late.code, late.details]).toEqual(['WRIT_EXEC_FAILED', { sqlstate: '22012' }]);
  });

  it('end the intent, not the pool, when its backend is terminated from outside', async () => {
    const before = await pid();
    // The statement cannot signal backends itself (the worker refuses it); an operator can.
    expect((await fails(run('SELECT pg_terminate_backend(pg_backend_pid())'))).code).toBe('WRIT_UNSUPPORTED');
    const err = await signalled('pg_terminate_backend', 'SELECT pg_sleep(30.01)');
    expect(err.details).toMatchObject({ sqlstate: '57P01' });
    expect(await pid()).not.toBe(before);
  });

  it('leave a pool of one serving after a run of errors, timeouts, cuts and terminations', async () => {
    const attacks: Array<[string, Limits]> = [
      ['SELECT 1 / 0', {}],
      ['SELECT pg_sleep(3)', { seconds: 0.2 }],
      ["SELECT repeat('y', 300000) FROM generate_series(1, 50)", { bytes: 100_000 }],
      ['SELECT pg_terminate_backend(pg_backend_pid())', {}],
      ["SELECT x FROM (VALUES (1, repeat('a', 65527)), (2, 'bb')) v(i, x) ORDER BY i", { rows: 1, bytes: 1 }],
      ['SELEC', {}],
    ];
    for (let i = 0; i < 3; i++) for (const [sql, limits] of attacks) await run(sql, limits).catch(() => undefined);
    const t0 = Date.now();
    expect((await rows('SELECT 3')).rows).toEqual([[3]]);
    expect(Date.now() - t0).toBeLessThan(4000); // not after a stuck connection's watchdog (5 s past its limit)
  });
});

describe('defects the attack found, fixed', () => {
  it("D1: keeps a read grant read-only: a procedure's COMMIT cannot end a transaction of its own and open a read-write one, and an intent's own DO block is refused", async () => {
    const pw = () => admin.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [db.roles.read.user]).then((r) => r.rows[0].rolpassword as string);
    const settings = () =>
      admin.query('SELECT count(*)::int AS n FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1', [db.roles.read.user]).then((r) => r.rows[0].n as number);
    const before = await pw();
    // An intent's own DO block is refused before it runs; a DBA's procedure that commits inside is
    // held by the worker's transaction (2D000).
    const own = await fails(run("DO $$BEGIN COMMIT; SET TRANSACTION READ WRITE; ALTER ROLE CURRENT_USER PASSWORD 'chosen-by-the-agent'; END$$"));
    expect(own.code).toBe('WRIT_UNSUPPORTED');
    const err = await fails(run('CALL dba_escape_password()'));
    expect(err.details).toMatchObject({ sqlstate: '2D000' });
    await fails(run('CALL dba_escape_settings()'));
    expect(await pw()).toBe(before);
    expect(await settings()).toBe(0);
  });

  it('D2: fails an intent whose row pg cannot read (client_encoding changed), and the worker goes on', async () => {
    const viaFunction = await fails(run(`SELECT set_config('client_encoding', 'SJIS', false), '"\u30bd"'::json`, { seconds: 5 }));
    expect(viaFunction.code).toBe('WRIT_EXEC_FAILED');
    expect(viaFunction.message).not.toMatch(/\u30bd|JSON/);
    // The same inside a batch (pg-cursor's row handler).
    const inBatch = await fails(run(`SELECT 1; SELECT set_config('client_encoding', 'SJIS', false), '"\u30bd"'::json`, { seconds: 5 }));
    expect(inBatch.code).toBe('WRIT_EXEC_FAILED');
    expect((await fails(run("SET client_encoding = 'SJIS'"))).code).toBe('WRIT_UNSUPPORTED');
    expect((await rows("SELECT '\u30bd'")).rows).toEqual([['\u30bd']]);
  });

  it('D3: never returns more rows than the limit, even when the row past it is in the chunk that trips the cut', async () => {
    const r = await rows("SELECT x FROM (VALUES (1, repeat('a', 65527)), (2, 'bb')) v(i, x) ORDER BY i", { rows: 1, bytes: 1 });
    expect(r.rows.length).toBeLessThanOrEqual(1);
    expect(r.rowCount).toBeLessThanOrEqual(1);
    expect(r.truncated).toBe(true);
  });

  it("D4: keeps the pool serving under a row limit past the protocol's 32-bit count", async () => {
    const own = executor(1);
    try {
      for (const limit of [2 ** 31, 2 ** 32]) {
        const first = await run('SELECT g FROM generate_series(1, 10) g', { rows: limit }, own).then(
          (r) => (r as RowsOutput).rows.length,
          (e: unknown) => toWritError(e).code,
        );
        const next = await Promise.race([run('SELECT 1', {}, own).then((r) => (r as RowsOutput).rows), new Promise((res) => setTimeout(() => res('hung'), 5000))]);
        expect({ limit, first, next }).toEqual({ limit, first: 10, next: [[1]] });
      }
    } finally {
      await own.close();
    }
  });

  it('D5: gives the next intent a random() seed the previous one did not choose', async () => {
    const seeded = (await rows('SELECT setseed(0.42), random()')).rows[0]![1];
    await rows('SELECT setseed(0.42)');
    expect((await rows('SELECT random()')).rows[0]![0]).not.toBe(seeded);
  });

  it('D6: reports an error larger than the message cap as a failure, never as an empty success', async () => {
    const err = await fails(run("SELECT repeat('x', 300000)::int", { bytes: 1000 }));
    expect(err.code).toBe('WRIT_EXEC_FAILED');
    expect((await rows('SELECT 4')).rows).toEqual([[4]]);
  });

  it('D7: reports a statement cancelled by someone else as failed with its sqlstate, not as past the time limit', async () => {
    const err = await signalled('pg_cancel_backend', 'SELECT pg_sleep(30.02)');
    expect([err.code, err.details]).toEqual(['WRIT_EXEC_FAILED', { sqlstate: '57014' }]);
    // A real timeout is still one.
    expect((await fails(run('SELECT pg_sleep(2)', { seconds: 0.2 }))).code).toBe('WRIT_EXEC_TIMEOUT');
  });

  it('D8: never turns a time limit under a millisecond into no server timeout', async () => {
    const t0 = Date.now();
    expect((await fails(run('SELECT pg_sleep(20)', { seconds: 0.0004 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("D9: runs a statement under a time limit past setTimeout's 2^31 ms (about 25 days), which fired the watchdog at once", async () => {
    expect((await rows('SELECT 1', { seconds: 2_200_000 })).rows).toEqual([[1]]);
    expect((await rows("SELECT current_setting('statement_timeout')", { seconds: 2_200_000 })).rows).toEqual([['2147483647ms']]);
  });
});
