/**
 * The MariaDB worker (MysqlExecutor.run) under attack, against a real private mariadbd: the SQL
 * text is the attacker's, the grant's limits are not. Read mode first (row limit, wire bound,
 * time limit, the read-only boundary, a clean connection for the next intent after answers,
 * errors, timeouts and cuts, values mysql2 cannot parse), then write mode (rowsAffected, the
 * time limit's rollback, session state a writer leaves). One connection per pool (poolSize 1),
 * so consecutive intents share it.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../classify/index.ts';
import type { AccessMode, Limits } from '../schemas/index.ts';
import { toWritError } from '../schemas/index.ts';
import type { ExecOutput, RowsOutput } from '../workers/executor.ts';
import { MysqlExecutor } from '../workers/mysql/index.ts';
import { createTestMariadb, failureOf, runSql, uniqueName, type TestMariadb } from './helpers/index.ts';

let m: TestMariadb;
let ex: MysqlExecutor;
/** A read credential that was given every privilege on the database by mistake: only the read-only session stands. */
let sloppy: MysqlExecutor;
const sloppyUser = uniqueName('writ_sloppy');
const sloppyPassword = 'sloppy-pw-' + Math.random().toString(36).slice(2);

type Cred = { user: { value: string }; password: { value: string } };
function executor(credentials: { read?: Cred; write?: Cred }, poolSize = 1): MysqlExecutor {
  return new MysqlExecutor([{ target: 'maria', host: m.host, port: m.port, database: m.database, poolSize, credentials }] as ConstructorParameters<typeof MysqlExecutor>[0]);
}
const cred = (u: { user: string; password: string }): Cred => ({ user: { value: u.user }, password: { value: u.password } });

beforeAll(async () => {
  await initClassifiers();
  m = await createTestMariadb();
  await m.admin([
    'CREATE TABLE customers (id int PRIMARY KEY, name varchar(100) NOT NULL, email varchar(100) NOT NULL UNIQUE, plan varchar(20) NOT NULL)',
    "INSERT INTO customers VALUES (1, 'Alice Example', 'alice@example.com', 'pro'), (2, 'Bob Example', 'bob@example.org', 'free'), (3, 'Carol Example', 'carol@example.net', 'team')",
    'CREATE TABLE events (id int AUTO_INCREMENT PRIMARY KEY, note varchar(100))',
    "INSERT INTO events (note) SELECT concat('row-', seq) FROM seq_1_to_20",
    'CREATE TABLE parent (id int PRIMARY KEY) ENGINE=InnoDB',
    'CREATE TABLE child (id int PRIMARY KEY, pid int, FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE) ENGINE=InnoDB',
    'INSERT INTO parent VALUES (1), (2)',
    'INSERT INTO child SELECT seq, 1 FROM seq_1_to_50',
    'CREATE SEQUENCE sq START WITH 1000',
    // A procedure that ends the caller's transaction and lifts the read-only flag (what a careless DBA might ship).
    'CREATE PROCEDURE escape_ro() SQL SECURITY INVOKER BEGIN COMMIT; SET SESSION tx_read_only = 0; END',
    `GRANT CREATE TEMPORARY TABLES, LOCK TABLES ON \`${m.database}\`.* TO '${m.users.write.user}'@'127.0.0.1'`,
    `CREATE USER '${sloppyUser}'@'127.0.0.1' IDENTIFIED BY '${sloppyPassword}'`,
    `GRANT ALL ON \`${m.database}\`.* TO '${sloppyUser}'@'127.0.0.1'`,
  ]);
  ex = executor({ read: cred(m.users.read), write: cred(m.users.write) });
  sloppy = executor({ read: cred({ user: sloppyUser, password: sloppyPassword }) });
}, 120_000);
afterAll(async () => {
  await ex?.close();
  await sloppy?.close();
  await m?.admin([`DROP USER IF EXISTS '${sloppyUser}'@'127.0.0.1'`]).catch(() => undefined);
  await m?.drop();
});

const run = (sql: string, limits: Limits = {}, mode: AccessMode = 'read', e: MysqlExecutor = ex): Promise<ExecOutput> => runSql(e, sql, { mode, limits, target: 'maria', kind: 'mysql' });

async function rows(sql: string, limits: Limits = {}, mode: AccessMode = 'read', e: MysqlExecutor = ex): Promise<RowsOutput> {
  const r = await run(sql, limits, mode, e);
  if (r.type !== 'rows') throw new Error('rows expected');
  return r;
}
const write = (sql: string, limits: Limits = {}) => rows(sql, limits, 'write');

const fails = failureOf;

/** One value from the target, as root. */
async function adminValue(sql: string): Promise<unknown> {
  const [r] = (await m.admin([sql])) as Array<Array<Record<string, unknown>>>;
  return Object.values(r![0]!)[0];
}
/** A root connection of its own (for locks held across the worker's intents). */
const rootConnection = () => mysql.createConnection({ socketPath: m.server.socketPath, user: 'root', database: m.database });

const connId = async (mode: AccessMode = 'read') => Number((await rows('SELECT CONNECTION_ID()', {}, mode)).rows[0]![0]);
const SETTINGS = 'SELECT @@max_statement_time, @@sql_select_limit, @@tx_read_only, @@sql_mode, @@character_set_client, @@character_set_results, @@time_zone, CONNECTION_ID()';
const PINNED_MODE = 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION';
/** The bytes one row of one text column of `n` ASCII bytes (n < 251) takes on the wire: header, length, value. */
const wireRow = (n: number) => 4 + 1 + n;

describe('the row limit of a read', () => {
  it('says truncated only when more rows than the limit exist, and never returns more', async () => {
    const exact = await rows('SELECT seq FROM seq_1_to_7', { rows: 7 });
    expect([exact.rows.length, exact.rowCount, exact.truncated, exact.command]).toEqual([7, 7, false, 'SELECT']);
    const oneMore = await rows('SELECT seq FROM seq_1_to_8', { rows: 7 });
    expect([oneMore.rows.length, oneMore.rowCount, oneMore.truncated]).toEqual([7, 7, true]);
    const none = await rows('SELECT seq FROM seq_1_to_10 WHERE seq > 10', { rows: 1 });
    expect([none.rows, none.truncated, none.fields.map((f) => f.name)]).toEqual([[], false, ['seq']]);
  });

  it("holds when the statement's own LIMIT overrides sql_select_limit, and through UNION and a CTE", async () => {
    for (const sql of [
      'SELECT seq FROM seq_1_to_100000 LIMIT 50000',
      'SELECT seq FROM seq_1_to_5 UNION ALL SELECT seq FROM seq_1_to_5',
      'WITH c AS (SELECT seq FROM seq_1_to_100) SELECT * FROM c LIMIT 99',
    ]) {
      const r = await rows(sql, { rows: 3 });
      expect([r.rows, r.truncated], sql).toEqual([[[1], [2], [3]], true]);
    }
  });

  it('stops rows that would fail past the limit before the server computes them', async () => {
    // Row 6 raises "Subquery returns more than 1 row": sql_select_limit (limit + 1) stops the server at row 4.
    const r = await rows('SELECT (SELECT s.seq FROM seq_1_to_9 s WHERE s.seq <= t.seq AND t.seq > 5) AS v FROM seq_1_to_20 t', { rows: 3 });
    expect([r.rows.length, r.truncated]).toEqual([3, true]);
  });

  it('keeps a pool of one serving under row limits past 32 bits (2^31, 2^32, 2^53 - 1)', async () => {
    for (const limit of [2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const r = await rows('SELECT seq FROM seq_1_to_10', { rows: limit });
      expect([limit, r.rows.length, r.truncated]).toEqual([limit, 10, false]);
    }
    expect((await rows('SELECT 1')).rows).toEqual([[1]]);
  });
});

describe("the wire's bound on a read", () => {
  it('cuts many small rows at budget + the wire cap, keeps a prefix, and the next intent gets a new connection', async () => {
    const before = await connId();
    const bytes = 200_000;
    const r = await rows('SELECT seq FROM seq_1_to_5000000', { rows: 10_000_000, bytes });
    expect(r.truncated).toBe(true);
    expect(r.rows.length).toBeGreaterThan(0);
    expect(r.rows.slice(0, 3)).toEqual([[1], [2], [3]]);
    const kept = r.rows.reduce((n, row) => n + wireRow(String(row[0]).length), 0);
    expect(kept).toBeLessThanOrEqual(bytes + 64);
    expect(await connId()).not.toBe(before);
  });

  it('cuts one value far past the cap before it is read whole', async () => {
    const before = await connId();
    const r = await rows("SELECT REPEAT('x', 10000000) AS big", { bytes: 100_000 });
    expect([r.rows.length, r.truncated, r.fields.map((f) => f.name)]).toEqual([0, true, ['big']]);
    expect(await connId()).not.toBe(before);
    expect((await rows('SELECT 2')).rows).toEqual([[2]]);
  });

  it('fails a write batch cut mid-answer without committing it', async () => {
    const err = await fails(write("INSERT INTO events (note) VALUES ('cut-batch'); SELECT REPEAT('y', 1000000)", { bytes: 1000 }));
    expect(err.code).toBe('WRIT_RESULT_TOO_LARGE');
    expect(await adminValue("SELECT count(*) FROM events WHERE note = 'cut-batch'")).toBe(0);
  });
});

describe('the time limit', () => {
  it('ends a read that waits on a metadata lock, and the connection is reused with its own settings', async () => {
    const before = await connId();
    const root = await rootConnection();
    try {
      await root.query('LOCK TABLES customers WRITE');
      const t0 = Date.now();
      expect((await fails(run('SELECT * FROM customers', { seconds: 0.5 }))).code).toBe('WRIT_EXEC_TIMEOUT');
      expect(Date.now() - t0).toBeLessThan(10_000); // without the limit it waits on the lock until the test gives up
    } finally {
      await root.end();
    }
    const after = await rows(SETTINGS);
    expect(after.rows[0]).toEqual([30, 1001, 1, PINNED_MODE, 'utf8mb4', 'utf8mb4', 'SYSTEM', before]);
  });

  it('ends a heavy read at the limit, and a write waiting on a row lock is rolled back at the limit', async () => {
    const t0 = Date.now();
    expect((await fails(run('SELECT count(*) FROM seq_1_to_1000000000 a WHERE a.seq % 7 = 3', { seconds: 0.3 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(10_000); // a billion rows take minutes
    const root = await rootConnection();
    try {
      await root.query('START TRANSACTION');
      await root.query('SELECT * FROM customers WHERE id = 1 FOR UPDATE');
      const err = await fails(write("INSERT INTO events (note) VALUES ('before-lock'); UPDATE customers SET plan = 'locked' WHERE id = 1", { seconds: 0.5 }));
      expect([err.code, err.message]).toEqual(['WRIT_EXEC_TIMEOUT', expect.stringMatching(/rolled back/)]);
    } finally {
      await root.query('ROLLBACK');
      await root.end();
    }
    expect(await adminValue("SELECT count(*) FROM events WHERE note = 'before-lock'")).toBe(0);
  });

  it("pins every intent's own limits: another intent's seconds, rows and mode never reach the next", async () => {
    expect((await rows(SETTINGS, { seconds: 120, rows: 4 })).rows[0]!.slice(0, 3)).toEqual([120, 5, 1]);
    expect((await rows(SETTINGS, {}, 'write')).rows[0]!.slice(0, 3)).toEqual([30, 1001, 0]);
    expect((await fails(run('SELECT count(*) FROM seq_1_to_1000000000 a WHERE a.seq % 7 = 3', { seconds: 0.2, rows: 1 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect((await rows(SETTINGS)).rows[0]!.slice(0, 4)).toEqual([30, 1001, 1, PINNED_MODE]);
  });
});

describe('the next intent on the connection gets it clean', () => {
  it('drops user variables, named locks, LAST_INSERT_ID and a sequence’s LASTVAL after an answer, an error and a timeout', async () => {
    await write("SELECT @carry := 'a', GET_LOCK('carry-1', 0), LAST_INSERT_ID(42), NEXTVAL(sq)");
    expect((await write("SELECT @carry, IS_USED_LOCK('carry-1') IS NULL, LAST_INSERT_ID(), LASTVAL(sq)")).rows).toEqual([[null, 1, 0, null]]);
    expect((await fails(write("SELECT @carry := 'b', GET_LOCK('carry-2', 0), (SELECT seq FROM seq_1_to_2)"))).details).toMatchObject({ errno: 1242 });
    expect((await write("SELECT @carry, IS_USED_LOCK('carry-2') IS NULL")).rows).toEqual([[null, 1]]);
    expect((await fails(write("SELECT @carry := 'c', GET_LOCK('carry-3', 0), SLEEP(3)", { seconds: 0.3 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect((await write("SELECT @carry, IS_USED_LOCK('carry-3') IS NULL")).rows).toEqual([[null, 1]]);
    expect(await adminValue("SELECT IS_USED_LOCK('carry-1') IS NULL AND IS_USED_LOCK('carry-2') IS NULL AND IS_USED_LOCK('carry-3') IS NULL")).toBe(1);
  });

  it('waits for the reset even when the next intent is already queued while the previous one answers', async () => {
    const p1 = write("SELECT @queued := 'x', GET_LOCK('queued', 0), CONNECTION_ID()");
    const p2 = write("SELECT @queued, IS_USED_LOCK('queued') IS NULL, CONNECTION_ID()");
    const [a, b] = await Promise.all([p1, p2]);
    expect(b.rows[0]).toEqual([null, 1, a.rows[0]![2]]);
  });

  it('drops a temporary table that shadowed a base table, and table locks', async () => {
    await write('CREATE TEMPORARY TABLE customers (id int)');
    expect((await write('SELECT count(*) FROM customers')).rows).toEqual([[3]]);
    await write('LOCK TABLES events WRITE');
    const root = await rootConnection();
    try {
      await root.query('SET SESSION max_statement_time = 2');
      const [r] = (await root.query('SELECT count(*) AS n FROM events')) as unknown as [Array<{ n: number }>];
      expect(Number(r[0]!.n)).toBeGreaterThan(0);
    } finally {
      await root.end();
    }
  });

  it('gives the next intent a RAND() sequence the previous one cannot predict (it can within its own)', async () => {
    const M = 0x3fffffff;
    // MariaDB's my_rnd: seed1 = (3 seed1 + seed2) mod M; seed2 = (seed1 + seed2 + 33) mod M; returns seed1 / M.
    const next = (r1: number, r2: number) => {
      const a = Math.round(r1 * M);
      const b = Math.round(r2 * M);
      const s2 = (((b - 3 * a) % M) + M) % M;
      return ((3 * b + ((b + s2 + 33) % M)) % M) / M;
    };
    const own = (await rows('SELECT RAND() FROM seq_1_to_3')).rows.map((r) => r[0] as number);
    expect(next(own[0]!, own[1]!)).toBe(own[2]);
    const [r1, r2] = (await rows('SELECT RAND(), RAND()')).rows[0] as [number, number];
    expect((await rows('SELECT RAND()')).rows[0]![0]).not.toBe(next(r1, r2));
  });

  it('resets session status counters (what the last intent read is not in SESSION_STATUS)', async () => {
    const status = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME IN ('ROWS_SENT', 'HANDLER_READ_RND_NEXT', 'BYTES_SENT', 'COM_SELECT') ORDER BY VARIABLE_NAME";
    await rows('SELECT seq FROM seq_1_to_3');
    const small = (await rows(status)).rows;
    await rows('SELECT * FROM customers, events');
    expect((await rows(status)).rows).toEqual(small);
  });
});

describe('the read-only boundary', () => {
  it('refuses what would change the limits or the session, before anything runs', async () => {
    const unsupported = [
      'SET SESSION max_statement_time = 0',
      'SET @@session.sql_select_limit = 100000',
      "SET @a = 1, time_zone = '+05:00'",
      'SET tx_read_only = 0',
      'SET autocommit = 0',
      "SET PASSWORD = PASSWORD('chosen-by-the-agent')",
      'START TRANSACTION READ WRITE',
      'COMMIT',
      "SELECT * FROM customers INTO OUTFILE '/tmp/writ-out'",
      'SELECT info FROM information_schema.PROCESSLIST',
    ];
    for (const sql of unsupported) expect((await fails(run(sql))).code, sql).toBe('WRIT_UNSUPPORTED');
    const unclassified = [
      'SET STATEMENT max_statement_time = 0 FOR SELECT 1',
      "EXECUTE IMMEDIATE 'COMMIT'",
      "PREPARE s FROM 'SELECT 1'",
      'KILL QUERY CONNECTION_ID()',
      'HANDLER customers OPEN',
      'BEGIN NOT ATOMIC SELECT 1; END',
      'SET NAMES sjis',
      "ALTER USER CURRENT_USER() IDENTIFIED BY 'x'",
      'SELECT 1 /*M!100000 , SLEEP(5) */',
      'SELECT 1 \u0000, SLEEP(5)',
    ];
    for (const sql of unclassified) expect((await fails(run(sql))).code, sql).toMatch(/^WRIT_SQL_(UNKNOWN|UNPARSEABLE)$/);
    expect((await rows(SETTINGS)).rows[0]!.slice(0, 3)).toEqual([30, 1001, 1]);
  });

  it('holds with a read credential that was given every privilege: writes, DDL, locks, grants, sequences', async () => {
    const attempts = [
      "INSERT INTO events (note) VALUES ('ro')",
      "UPDATE customers SET plan = 'ro'",
      'CREATE TABLE ro_t (a int)',
      'CREATE TABLE ro_t2 AS SELECT 1 AS a',
      'DROP TABLE events',
      'ALTER TABLE customers ADD COLUMN ro int',
      'TRUNCATE TABLE events',
      'CREATE TEMPORARY TABLE ro_tmp (a int)',
      'LOCK TABLES customers WRITE',
      `GRANT SELECT ON customers TO '${sloppyUser}'@'127.0.0.1'`,
      'SELECT NEXTVAL(sq)',
      'SELECT * FROM customers FOR UPDATE',
      "SET @a = 1; INSERT INTO events (note) VALUES ('ro')",
    ];
    for (const sql of attempts) expect((await fails(run(sql, {}, 'read', sloppy))).details, sql).toMatchObject({ sqlstate: '25006' });
    // A procedure that COMMITs the worker's transaction and lifts tx_read_only: the write after it never runs.
    const err = await fails(run("CALL escape_ro(); INSERT INTO events (note) VALUES ('ro')", {}, 'read', sloppy));
    expect([err.code, err.details]).toEqual(['WRIT_EXEC_FAILED', { statement: 1, transaction: 'left' }]);
    expect(await adminValue("SELECT count(*) FROM events WHERE note = 'ro'")).toBe(0);
    expect(await adminValue("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_NAME LIKE 'ro\\_%'")).toBe(0);
    expect(await adminValue("SELECT count(*) FROM customers WHERE plan = 'ro'")).toBe(0);
    expect((await rows('SELECT @@tx_read_only', {}, 'read', sloppy)).rows).toEqual([[1]]);
  });
});

describe('errors and values mysql2 cannot parse', () => {
  it('carry the server’s sqlstate and errno, also when the error follows rows already sent', async () => {
    expect((await fails(run('SELECT nope FROM customers'))).details).toEqual({ sqlstate: '42S22', errno: 1054 });
    expect((await fails(run('SELECT * FROM mysql.user'))).details).toEqual({ sqlstate: '42000', errno: 1142 });
    const late = await fails(run('SELECT (SELECT s.seq FROM seq_1_to_3 s WHERE s.seq <= t.seq) FROM seq_1_to_10 t', { rows: 100 }));
    expect([late.code, late.details]).toEqual(['WRIT_EXEC_FAILED', { sqlstate: '21000', errno: 1242 }]);
  });

  it('fails an intent whose JSON value mysql2 cannot parse, without quoting it, and the connection goes on', async () => {
    const before = await connId();
    const err = await fails(run(`SELECT JSON_EXTRACT('["alice@example.com\\\\x"]', '$[0]') AS j`));
    expect(err.code).toBe('WRIT_EXEC_FAILED');
    expect(err.message).not.toContain('alice');
    expect(await connId()).toBe(before);
  });

  it('decodes values of every character set and type it is sent', async () => {
    for (const cs of ['geostd8', 'keybcs2', 'swe7', 'dec8', 'armscii8', 'utf32', 'ucs2', 'cp932', 'eucjpms', 'tis620']) {
      expect((await rows(`SELECT CONVERT('a' USING ${cs}) AS v`)).rows, cs).toEqual([['a']]);
    }
    const r = await rows("SELECT 'a' COLLATE utf8mb4_uca1400_ai_ci, ST_GeomFromText('POINT(1 2)'), CAST(18446744073709551615 AS UNSIGNED), CAST('2020-00-00' AS DATE), TIME('838:59:59'), b'101'");
    expect(r.rows[0]).toEqual(['a', { x: 1, y: 2 }, '18446744073709551615', '2020-00-00', '838:59:59', Buffer.from([5])]);
  });

  it('leave a pool of one serving after a run of errors, timeouts, cuts and unparseable values', async () => {
    const attacks: Array<[string, Limits, AccessMode]> = [
      ['SELECT nope', {}, 'read'],
      ['SELECT count(*) FROM seq_1_to_1000000000 a WHERE a.seq % 7 = 3', { seconds: 0.2 }, 'read'],
      ["SELECT REPEAT('y', 300000) FROM seq_1_to_50", { bytes: 100_000 }, 'read'],
      [`SELECT JSON_EXTRACT('["\\\\x"]', '$[0]')`, {}, 'read'],
      ["SELECT GET_LOCK('pool', 0), SLEEP(2)", { seconds: 0.2 }, 'write'],
      ["INSERT INTO events (note) VALUES ('pool'); SELECT REPEAT('z', 300000)", { bytes: 1000 }, 'write'],
      ['SELEC', {}, 'read'],
    ];
    for (let i = 0; i < 2; i++) for (const [sql, limits, mode] of attacks) await run(sql, limits, mode).catch(() => undefined);
    const t0 = Date.now();
    expect((await rows('SELECT 3')).rows).toEqual([[3]]);
    expect((await write('SELECT 4')).rows).toEqual([[4]]);
    expect(Date.now() - t0).toBeLessThan(4000); // not after a stuck connection's watchdog
    expect(await adminValue("SELECT count(*) FROM events WHERE note = 'pool'")).toBe(0);
  });
});

describe('the rowsAffected limit of a write', () => {
  it('counts every row a multi-table UPDATE or DELETE, an upsert or a REPLACE touches, and rolls back past it', async () => {
    const cases: Array<[string, number, number]> = [
      ["UPDATE customers c, events e SET c.plan = 'multi', e.note = 'multi'", 5, 23],
      ["UPDATE customers c JOIN events e ON e.id = c.id SET e.note = 'multi'", 2, 3],
      ['DELETE c, e FROM customers c JOIN events e ON e.id = c.id WHERE c.id > 0', 3, 6],
      ["INSERT INTO events (id, note) VALUES (1, 'a') ON DUPLICATE KEY UPDATE note = 'multi'", 1, 2],
      ["REPLACE INTO customers VALUES (2, 'B', 'bob@example.org', 'multi')", 1, 2],
      ['UPDATE events SET note = note', 1, 20],
    ];
    for (const [sql, limit, affected] of cases) {
      const err = await fails(write(sql, { rowsAffected: limit }));
      expect([err.code, err.details], sql).toEqual(['WRIT_ROW_LIMIT', { rowsAffected: affected, limit }]);
    }
    expect(
      await adminValue(
        "SELECT (SELECT count(*) FROM customers WHERE plan = 'multi') + (SELECT count(*) FROM events WHERE note = 'multi') + 23 - (SELECT count(*) FROM customers) - (SELECT count(*) FROM events)",
      ),
    ).toBe(0);
  });

  it('refuses what its row count cannot report under rowsAffected, before anything runs', async () => {
    for (const sql of ['CALL escape_ro()', 'TRUNCATE TABLE events', 'SELECT NEXTVAL(sq)']) expect((await fails(write(sql, { rowsAffected: 10 }))).code, sql).toBe('WRIT_UNSUPPORTED');
  });
});

describe('defects the attack found, fixed', () => {
  it('F1: does not hand the previous intent’s FOUND_ROWS() to the next intent on the connection', async () => {
    await rows('SELECT SQL_CALC_FOUND_ROWS seq FROM seq_1_to_777 LIMIT 1');
    expect((await rows('SELECT FOUND_ROWS()')).rows[0]![0]).not.toBe(777);
    await rows('SELECT seq FROM seq_1_to_777 WHERE seq < 5');
    expect((await rows('SELECT FOUND_ROWS()')).rows[0]![0]).not.toBe(4);
  });

  it('F2: never turns a time limit under half a millisecond into no server limit (a write ran 1.2 s and committed)', async () => {
    const t0 = Date.now();
    const err = await fails(write("UPDATE events SET note = 'tiny-limit' WHERE id = 1 AND SLEEP(20) = 0", { seconds: 0.0004 }));
    expect(err.code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await adminValue("SELECT count(*) FROM events WHERE note = 'tiny-limit'")).toBe(0);
  });

  it("F3: runs a statement under a time limit past setTimeout's 2^31 ms (about 24.9 days)", async () => {
    expect((await rows('SELECT 1', { seconds: 2_200_000 })).rows).toEqual([[1]]);
  });

  it('F4: never reports an answer cut before its column definitions were read as an empty success', async () => {
    const cols = Array.from({ length: 1500 }, (_, i) => `${i} AS c${String(i).padStart(4, '0')}${'x'.repeat(200)}`).join(', ');
    const single = await run(`SELECT ${cols}`, { bytes: 1 }).then(
      (r) => ({ ok: (r as RowsOutput).fields.length }),
      (e: unknown) => ({ code: toWritError(e).code }),
    );
    expect(single).toEqual({ code: 'WRIT_RESULT_TOO_LARGE' });
    const batch = await run(`SELECT 1; SELECT ${cols}`, { bytes: 1 }).then(
      (r) => ({ ok: (r as RowsOutput).fields.length }),
      (e: unknown) => ({ code: toWritError(e).code }),
    );
    expect(batch).toEqual({ code: 'WRIT_RESULT_TOO_LARGE' });
  });

  it('F5: reports a statement the time limit stopped as a timeout, also when the function it stopped returns quietly', async () => {
    expect((await fails(write('SELECT BENCHMARK(10000000000, 1)', { seconds: 0.5 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    const root = await rootConnection();
    try {
      await root.query("SELECT GET_LOCK('held-by-root', 0)");
      expect((await fails(write("SELECT GET_LOCK('held-by-root', 10)", { seconds: 0.5 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    } finally {
      await root.end();
    }
  });

  it('F7: keeps JSON objects within the byte budget like strings of the same size', async () => {
    const bytes = 10_000;
    const asText = await rows("SELECT REPEAT('x', 5000) AS j FROM seq_1_to_50", { bytes });
    const asJson = await rows("SELECT JSON_OBJECT('k', REPEAT('x', 5000)) AS j FROM seq_1_to_50", { bytes });
    expect(JSON.stringify(asText.rows).length).toBeLessThan(3 * bytes);
    expect(JSON.stringify(asJson.rows).length).toBeLessThan(3 * bytes);
  });

  it('F8: answers a JSON object with a "toString" key instead of failing it as a lost connection', async () => {
    expect((await rows("SELECT JSON_OBJECT('toString', 1) AS j")).rows).toEqual([[{ toString: 1 }]]);
  });
  it('F6: holds rowsAffected against rows a cascading foreign key deletes', async () => {
    const err = await fails(write('DELETE FROM parent WHERE id = 1', { rowsAffected: 1 }));
    expect(err.code).toBe('WRIT_UNSUPPORTED');
    expect(err.message).toMatch(/parent/);
    expect(await adminValue('SELECT count(*) FROM child')).toBe(50);
  });
});
