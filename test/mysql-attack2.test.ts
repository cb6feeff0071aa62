/**
 * A second attack on the MariaDB worker (MysqlExecutor.run) as the author of an allowed intent's
 * SQL, against a real private mariadbd: the PostgreSQL worker's defect classes looked for here
 * (rowsAffected over a batch, CREATE TABLE AS, writes the count does not see, a watchdog's cut
 * reported as success, side channels of masked values) and what the existing MySQL suites do not
 * cover (non-transactional tables, views over triggers, mixed-case names, lexical edges, warnings
 * and counters across intents). One connection per pool, so consecutive intents share it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../classify/index.ts';
import type { AccessMode, GrantClaims, Limits, Order } from '../schemas/index.ts';
import { toWritError, type WritError } from '../schemas/index.ts';
import { errorContextOf, type ExecOutput, type RowsOutput } from '../workers/executor.ts';
import { MysqlExecutor } from '../workers/mysql/index.ts';
import { createTestMariadb, uniqueName, type TestMariadb } from './helpers/index.ts';

let m: TestMariadb;
let ex: MysqlExecutor;
/** A read credential given every privilege on the database by mistake: only the read-only session stands. */
let sloppy: MysqlExecutor;
const sloppyUser = uniqueName('writ_sloppy2');
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
    // A non-transactional table: what a statement changes in it stays, whatever the transaction does.
    'CREATE TABLE mi (id int PRIMARY KEY, v varchar(20)) ENGINE=MyISAM',
    "INSERT INTO mi SELECT seq, 'orig' FROM seq_1_to_10",
    // A table with a trigger that writes elsewhere, and a view over it.
    'CREATE TABLE audited (id int PRIMARY KEY, v int NOT NULL)',
    'INSERT INTO audited SELECT seq, 0 FROM seq_1_to_3',
    'CREATE TABLE audit_log (id int AUTO_INCREMENT PRIMARY KEY, aid int)',
    'CREATE TRIGGER audited_au AFTER UPDATE ON audited FOR EACH ROW INSERT INTO audit_log (aid) SELECT NEW.id FROM seq_1_to_10',
    'CREATE VIEW v_audited AS SELECT id, v FROM audited',
    'CREATE TABLE audited2 (id int PRIMARY KEY, v int NOT NULL)',
    'INSERT INTO audited2 SELECT seq, 0 FROM seq_1_to_3',
    'CREATE TABLE audit_log2 (id int AUTO_INCREMENT PRIMARY KEY, aid int)',
    'CREATE TRIGGER audited2_au AFTER UPDATE ON audited2 FOR EACH ROW INSERT INTO audit_log2 (aid) SELECT NEW.id FROM seq_1_to_10',
    // A cascading parent under a mixed-case name (table names are case-sensitive on Linux), and a view over a lower-case one.
    'CREATE TABLE Parent2 (id int PRIMARY KEY) ENGINE=InnoDB',
    'CREATE TABLE child2 (id int PRIMARY KEY, pid int, FOREIGN KEY (pid) REFERENCES Parent2 (id) ON DELETE CASCADE) ENGINE=InnoDB',
    'INSERT INTO Parent2 VALUES (1), (2)',
    'INSERT INTO child2 SELECT seq, 1 FROM seq_1_to_50',
    'CREATE TABLE parent3 (id int PRIMARY KEY) ENGINE=InnoDB',
    'CREATE TABLE child3 (id int PRIMARY KEY, pid int, FOREIGN KEY (pid) REFERENCES parent3 (id) ON DELETE CASCADE) ENGINE=InnoDB',
    'INSERT INTO parent3 VALUES (1), (2)',
    'INSERT INTO child3 SELECT seq, 1 FROM seq_1_to_50',
    'CREATE VIEW v_parent3 AS SELECT id FROM parent3',
    // A view over the MyISAM table, and an InnoDB table whose trigger writes a MyISAM one.
    'CREATE VIEW v_mi AS SELECT id, v FROM mi',
    'CREATE TABLE inno (id int PRIMARY KEY, v int NOT NULL) ENGINE=InnoDB',
    'INSERT INTO inno SELECT seq, 0 FROM seq_1_to_3',
    'CREATE TABLE mi_log (id int AUTO_INCREMENT PRIMARY KEY, aid int) ENGINE=MyISAM',
    'CREATE TRIGGER inno_au AFTER UPDATE ON inno FOR EACH ROW INSERT INTO mi_log (aid) VALUES (NEW.id)',
    // The write user may see every trigger (docs: give it the TRIGGER privilege); the read user sees audited's only.
    `GRANT CREATE, TRIGGER, CREATE TEMPORARY TABLES ON \`${m.database}\`.* TO '${m.users.write.user}'@'127.0.0.1'`,
    `GRANT TRIGGER ON \`${m.database}\`.audited TO '${m.users.read.user}'@'127.0.0.1'`,
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

function run(sql: string, limits: Limits = {}, mode: AccessMode = 'read', e: MysqlExecutor = ex, mask?: unknown): Promise<ExecOutput> {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    gid: 'g',
    iid: 'i',
    sid: 's',
    tgt: 'maria',
    kind: 'mysql',
    mode,
    sha256: '0'.repeat(64),
    iat: now,
    exp: now + 600,
    limits,
    policyVersion: 'v',
    sub: 'x',
    ...(mask !== undefined ? { mask } : {}),
  } as GrantClaims;
  return e.run({ order: { command: { kind: 'sql', sql } } as Order, claims, signal: new AbortController().signal, streamMasker: () => ({ push: () => '', end: () => '' }) });
}

async function rows(sql: string, limits: Limits = {}, mode: AccessMode = 'read', e: MysqlExecutor = ex, mask?: unknown): Promise<RowsOutput> {
  const r = await run(sql, limits, mode, e, mask);
  if (r.type !== 'rows') throw new Error('rows expected');
  return r;
}
const write = (sql: string, limits: Limits = {}) => rows(sql, limits, 'write');

/** The intent's outcome: its error code, or 'ok'. */
const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => toWritError(e).code,
  );

async function fails(p: Promise<unknown>): Promise<WritError> {
  try {
    await p;
  } catch (e) {
    return toWritError(e);
  }
  throw new Error('expected a failure');
}

/** One value from the target, as root. */
async function adminValue(sql: string): Promise<unknown> {
  const [r] = (await m.admin([sql])) as Array<Array<Record<string, unknown>>>;
  return Object.values(r![0]!)[0];
}

const maskEmail = () => ({ columns: [{ column: `${m.database}.customers.email` }], detectors: [] });

describe('a read grant never writes', () => {
  it('holds: a non-transactional (MyISAM) table refuses writes in the read-only session, single and batch', async () => {
    for (const sql of ["UPDATE mi SET v = 'ro'", "INSERT INTO mi VALUES (99, 'ro')", 'SELECT 1; DELETE FROM mi WHERE id = 1', "REPLACE INTO mi VALUES (1, 'ro')"]) {
      expect((await fails(run(sql, {}, 'read', sloppy))).details, sql).toMatchObject({ sqlstate: '25006' });
    }
    expect(await adminValue("SELECT count(*) FROM mi WHERE v = 'orig'")).toBe(10);
  });

  it('holds: transaction characteristics, roles, XA, ANALYZE/OPTIMIZE and RETURNING forms fail closed before anything runs', async () => {
    for (const sql of [
      'SET SESSION TRANSACTION READ WRITE',
      'SET TRANSACTION READ WRITE',
      'SET ROLE NONE',
      'SET DEFAULT ROLE NONE',
      "XA START 'x'",
      'ANALYZE TABLE customers PERSISTENT FOR ALL',
      'OPTIMIZE TABLE events',
      'SELECT email FROM customers PROCEDURE ANALYSE()',
      'DELETE FROM events WHERE id = 1 RETURNING note',
      'SET @a = 1, @@global.max_statement_time = 0',
    ]) {
      expect(await outcome(run(sql, {}, 'read', sloppy)), sql).toMatch(/^WRIT_(SQL_UNPARSEABLE|SQL_UNKNOWN|UNSUPPORTED)$/);
    }
    expect((await rows('SELECT @@tx_read_only, @@max_statement_time', {}, 'read', sloppy)).rows).toEqual([[1, 30]]);
  });
});

describe('the server reads the text as the classifier did', () => {
  it('holds: `--` before a control character is a comment to both; a lone CR does not end a comment for either', async () => {
    const ctl = await rows('SELECT 1 AS a --\u0001, 2 AS b');
    expect(ctl.fields.map((f) => f.name)).toEqual(['a']);
    const cr = await rows('SELECT 1 AS a -- x\r, 2 AS b');
    expect(cr.fields.map((f) => f.name)).toEqual(['a']);
    const hash = await rows('SELECT 1 AS a #\r, 2 AS b\n, 3 AS c');
    expect(hash.fields.map((f) => f.name)).toEqual(['a', 'c']);
  });

  it('holds: U+00A0 after `--` is refused (not a blank to the server), and so is a bare `--` before a letter', async () => {
    for (const sql of ['SELECT 1 --\u00a0, email FROM customers', 'SELECT 1 --x', "SELECT 1 /*M!100000 , 'x' */", 'SELECT 1 /*+ MAX_EXECUTION_TIME(0) */']) {
      expect(await outcome(run(sql)), sql).toBe('WRIT_SQL_UNPARSEABLE');
    }
  });

  it("holds: a global ANSI_QUOTES/NO_BACKSLASH_ESCAPES mode does not reach the worker's statements or its catalogue queries", async () => {
    const [before] = (await m.admin(['SELECT @@GLOBAL.sql_mode AS mode'])) as Array<Array<{ mode: string }>>;
    await m.admin(["SET GLOBAL sql_mode = 'ANSI,NO_BACKSLASH_ESCAPES'"]);
    try {
      // A fresh pool: its connections (and the catalogue's) start under the global mode.
      const fresh = executor({ read: cred(m.users.read), write: cred(m.users.write) });
      try {
        const r = await rows("SELECT 'a\\' , plan FROM customers -- '", {}, 'read', fresh, maskEmail());
        expect(r.rows).toEqual([["a' , plan FROM customers -- "]]);
        expect((await rows('SELECT "id" || "x" AS v', {}, 'read', fresh)).rows).toEqual([[0]]);
        // The catalogue's rowsAffected probe still finds the cascade.
        expect(await outcome(rows('DELETE FROM parent3 WHERE id = 2', { rowsAffected: 1 }, 'write', fresh))).toBe('WRIT_UNSUPPORTED');
      } finally {
        await fresh.close();
      }
    } finally {
      await m.admin([`SET GLOBAL sql_mode = '${before![0]!.mode}'`]);
    }
  });
});

describe('the rowsAffected limit of a write', () => {
  it('holds: a trigger on the written table is refused, before anything runs', async () => {
    expect(await outcome(write('UPDATE audited SET v = v + 1 WHERE id = 1', { rowsAffected: 5 }))).toBe('WRIT_UNSUPPORTED');
    expect(await adminValue('SELECT count(*) FROM audit_log')).toBe(0);
  });

  it('X8: …also when the write user has the TRIGGER privilege, as the docs ask (the probe runs as the read user, who lacks it)', async () => {
    const o = await outcome(write('UPDATE audited2 SET v = v + 1 WHERE id = 1', { rowsAffected: 5 }));
    const logged = await adminValue('SELECT count(*) FROM audit_log2');
    expect({ o, logged }).toEqual({ o: 'WRIT_UNSUPPORTED', logged: 0 });
  });

  it('X1: holds for the batch, not for each statement alone (two UPDATEs of 3 rows under a limit of 3 committed 6)', async () => {
    const o = await outcome(write("UPDATE events SET note = 'sum-1' WHERE id <= 3; UPDATE events SET note = 'sum-2' WHERE id BETWEEN 4 AND 6", { rowsAffected: 3 }));
    const changed = await adminValue("SELECT count(*) FROM events WHERE note LIKE 'sum-%'");
    expect({ o, changed }).toEqual({ o: 'WRIT_ROW_LIMIT', changed: 0 });
  });

  it('X2: holds for CREATE TABLE … AS SELECT, which runs alone with no count checked (1000 rows under a limit of 10)', async () => {
    const o = await outcome(write('CREATE TABLE ctas_x AS SELECT seq FROM seq_1_to_1000', { rowsAffected: 10 }));
    const made = await adminValue(`SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${m.database}' AND TABLE_NAME = 'ctas_x'`);
    expect({ refused: o !== 'ok', made }).toEqual({ refused: true, made: 0 });
  });

  it('X3: holds for a write through a view to a table with a trigger (3 rows counted, 30 more written by the trigger)', async () => {
    const o = await outcome(write('UPDATE v_audited SET v = v + 1', { rowsAffected: 3 }));
    const logged = await adminValue('SELECT count(*) FROM audit_log');
    expect({ o, logged }).toEqual({ o: 'WRIT_UNSUPPORTED', logged: 0 });
  });

  it('X3: …and a DELETE through a view of a cascading parent (1 row counted, 50 children deleted)', async () => {
    const o = await outcome(write('DELETE FROM v_parent3 WHERE id = 1', { rowsAffected: 1 }));
    const children = await adminValue('SELECT count(*) FROM child3');
    expect({ o, children }).toEqual({ o: 'WRIT_UNSUPPORTED', children: 50 });
  });

  it('holds: a cascading parent whose name has capitals is found (information_schema compares names without case)', async () => {
    const o = await outcome(write('DELETE FROM Parent2 WHERE id = 1', { rowsAffected: 1 }));
    const children = await adminValue('SELECT count(*) FROM child2');
    expect({ o, children }).toEqual({ o: 'WRIT_UNSUPPORTED', children: 50 });
  });

  it('X5: a write past the limit to a non-transactional table is not kept (MyISAM: "rolled back" while all 10 rows stayed changed)', async () => {
    const err = await fails(write("UPDATE mi SET v = 'over'", { rowsAffected: 1 }));
    const kept = await adminValue("SELECT count(*) FROM mi WHERE v = 'over'");
    // Refused before anything runs: nothing could undo it.
    expect({ code: err.code, kept }).toEqual({ code: 'WRIT_UNSUPPORTED', kept: 0 });
  });

  it('X5: …nor is a failed batch’s write to it (reported rolled back, kept)', async () => {
    const err = await fails(write("UPDATE mi SET v = 'failed-batch' WHERE id = 1; SELECT nope FROM mi"));
    const kept = await adminValue("SELECT count(*) FROM mi WHERE v = 'failed-batch'");
    expect({ code: err.code, kept }).toEqual({ code: 'WRIT_UNSUPPORTED', kept: 0 });
  });
});

describe('what a write reaches through views and triggers', () => {
  it('refuses a write through a view over a table that cannot roll back, before anything runs', async () => {
    for (const sql of ["UPDATE v_mi SET v = 'viaview' WHERE id = 1; SELECT 1 FROM nonexistent_table", "UPDATE v_mi SET v = 'viaview' WHERE id = 1"]) {
      expect([sql, await outcome(write(sql))]).toEqual([sql, 'WRIT_UNSUPPORTED']);
    }
    expect(await adminValue("SELECT count(*) FROM mi WHERE v = 'viaview'")).toBe(0);
  });

  it('refuses a write whose trigger writes a table that cannot roll back', async () => {
    const before = await adminValue('SELECT count(*) FROM mi_log');
    expect(await outcome(write('UPDATE inno SET v = v + 1; SELECT 1 FROM nonexistent_table'))).toBe('WRIT_UNSUPPORTED');
    expect(await adminValue('SELECT count(*) FROM mi_log')).toBe(before);
    expect(Number(await adminValue('SELECT sum(v) FROM inno'))).toBe(0);
  });

  it('refuses a trigger an intent would leave behind (it copied a masked column for every later UPDATE)', async () => {
    expect(await outcome(write('CREATE TRIGGER cp BEFORE UPDATE ON customers FOR EACH ROW SET NEW.name = NEW.email'))).toBe('WRIT_UNSUPPORTED');
    expect(Number(await adminValue(`SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '${m.database}' AND TRIGGER_NAME = 'cp'`))).toBe(0);
  });

  it('still runs a write through a view over InnoDB tables', async () => {
    expect(await outcome(write('UPDATE v_audited SET v = v WHERE id = 0'))).toBe('ok');
  });
});

describe('the time limit', () => {
  it('holds: a batch the watchdog killed is a timeout, never a success that commits', async () => {
    const sql = `${'SELECT SLEEP(0.9); '.repeat(4)}INSERT INTO events (note) VALUES ('after-kill')`;
    const o = await outcome(write(sql, { seconds: 1 }));
    const committed = await adminValue("SELECT count(*) FROM events WHERE note = 'after-kill'");
    expect({ o, committed }).toEqual({ o: 'WRIT_EXEC_TIMEOUT', committed: 0 });
  }, 20_000);

  it("holds: the limit is the batch's: statements each well under it, together past it, commit nothing (no watchdog needed)", async () => {
    // 5 × 0.3 s under a 1 s limit: each statement is under the server's limit and the whole ends
    // before the watchdog (limit + 2 s) fires; the worker's own deadline between statements stops it.
    const sql = `${'SELECT SLEEP(0.3); '.repeat(5)}INSERT INTO events (note) VALUES ('past-deadline')`;
    const o = await outcome(write(sql, { seconds: 1 }));
    const committed = await adminValue("SELECT count(*) FROM events WHERE note = 'past-deadline'");
    expect({ o, committed }).toEqual({ o: 'WRIT_EXEC_TIMEOUT', committed: 0 });
  });

  it('says a statement that commits on its own and ran past its limit kept its change, never "stopped" alone', async () => {
    // MariaDB ends BENCHMARK quietly at max_statement_time; CREATE … AS SELECT then completes and commits.
    const err = await run('CREATE TABLE bm AS SELECT BENCHMARK(300000000, md5(1)) AS b', { seconds: 0.3 }, 'write').then(
      () => undefined,
      (e: unknown) => toWritError(e),
    );
    const exists = Number(await adminValue(`SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${m.database}' AND TABLE_NAME = 'bm'`));
    expect(err?.code).toBe('WRIT_EXEC_TIMEOUT');
    expect(err?.message).toMatch(exists ? /its change was kept/ : /may have been kept/);
  });

  it('holds: a single statement that sleeps past the limit is a timeout and the pool still serves', async () => {
    expect(await outcome(write("INSERT INTO events (note) SELECT 'slept' FROM seq_1_to_1 WHERE SLEEP(2) = 0", { seconds: 0.3 }))).toBe('WRIT_EXEC_TIMEOUT');
    expect(await adminValue("SELECT count(*) FROM events WHERE note = 'slept'")).toBe(0);
    expect((await rows('SELECT 5')).rows).toEqual([[5]]);
  });
});

describe('masked values and what the worker controls', () => {
  it('holds: warnings that quote a value are gone for the next intent, and within a batch SHOW WARNINGS is masked by what the batch read', async () => {
    const sources = async (sql: string) => (await rows(sql, {}, 'read', ex, maskEmail())).fields.map((f) => f.origin === null && (f.sources ?? []).includes(`${m.database}.customers.email`));
    const inBatch = await outcome(rows('SELECT CAST(email AS INT) AS n FROM customers; SHOW WARNINGS', {}, 'read', ex, maskEmail()));
    if (inBatch === 'ok') expect(await sources('SELECT CAST(email AS INT) AS n FROM customers; SHOW WARNINGS')).not.toContain(false);
    else expect(inBatch).toMatch(/^WRIT_SQL_/);
    await rows('SELECT CAST(email AS INT) AS n FROM customers', {}, 'read', ex, maskEmail());
    expect((await rows('SELECT @@warning_count, @@error_count, ROW_COUNT()')).rows).toEqual([[0, 0, 0]]);
  });

  it('holds: an error in a batch that read the masked column through a view carries the view’s base columns for scrubbing', async () => {
    await m.admin(['CREATE OR REPLACE VIEW v_contacts AS SELECT id, email AS contact FROM customers']);
    const raw = await run('SELECT contact FROM v_contacts; SELECT (SELECT seq FROM seq_1_to_2)', {}, 'read', ex, maskEmail()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(toWritError(raw).code).toBe('WRIT_EXEC_FAILED');
    expect(errorContextOf(raw)).toMatchObject({ serverText: true, sources: expect.arrayContaining([`${m.database}.customers.email`]) });
  });
});

describe('the next intent on the connection gets it clean', () => {
  it('holds: a temporary table shadowing a view, and GET_LOCK held by a failed read, do not reach the next intent', async () => {
    await write('CREATE TEMPORARY TABLE v_audited (id int, v int)');
    expect((await write('SELECT count(*) FROM v_audited')).rows).toEqual([[3]]);
    expect(await outcome(run("SELECT GET_LOCK('leak2', 0), nope"))).toBe('WRIT_EXEC_FAILED');
    expect(await outcome(run("SELECT GET_LOCK('leak3', 0); SELECT nope"))).toBe('WRIT_EXEC_FAILED');
    expect(await adminValue("SELECT IS_USED_LOCK('leak3') IS NULL")).toBe(1);
    expect((await rows('SELECT @@tx_read_only, @@sql_select_limit, @@max_statement_time')).rows).toEqual([[1, 1001, 30]]);
  });
});
