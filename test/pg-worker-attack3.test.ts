/**
 * Third attack on the PostgreSQL worker (PostgresExecutor.run), against a real server, where
 * test/pg-worker-attack.test.ts, test/pg-read-attack.test.ts and test/pg-worker-attack2.test.ts do
 * not reach: ways around the defences those suites test. Name resolution the batch changes
 * (search_path, temp views, LATERAL column aliases) against the masked-filter, masked-copy and
 * error-scrubbing checks; what the rowsAffected count misses (deferred triggers) or adds (the
 * server's pending statistics of earlier transactions); role-level state a write leaves for every
 * later connection; a read grant that ends other intents' backends; the heap a result takes
 * against the wire's cap. "holds" tests held from the start.
 *
 * F1, F2, F4-F9 are the defects this attack found, fixed; each fails without its fix. Left as
 * known, not tested here: whether a statement fails is one bit about a masked value it computes on
 * (F3, the failed-or-not channel docs/threat-model.md accepts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initClassifiers } from '../classify/index.ts';
import type { Limits } from '../schemas/index.ts';
import { toWritError } from '../schemas/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import { errorContextOf, type ExecOutput, type RowsOutput } from '../workers/executor.ts';
import { createTestDatabase, failureOf, pgTarget, runSql, type TestDatabase } from './helpers/index.ts';

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

const executor = (poolSize: number) => new PostgresExecutor(pgTarget(db, poolSize) as ConstructorParameters<typeof PostgresExecutor>[0]);

async function withFresh<T>(f: (e: PostgresExecutor) => Promise<T>): Promise<T> {
  const e = executor(1);
  try {
    return await f(e);
  } finally {
    await e.close();
  }
}

type Mode = 'read' | 'write';
const MASK = { columns: [{ column: 'public.secrets.password' }], detectors: [] };
const APP_MASK = { columns: [{ column: 'app.customers.pw' }], detectors: [] };

const run = (sql: string, mode: Mode, limits: Limits = {}, mask?: unknown, e: PostgresExecutor = ex): Promise<ExecOutput> => runSql(e, sql, { mode, limits, mask });

async function rows(sql: string, mode: Mode = 'read', limits: Limits = {}, mask?: unknown, e: PostgresExecutor = ex): Promise<RowsOutput> {
  const r = await run(sql, mode, limits, mask, e);
  if (r.type !== 'rows') throw new Error('rows expected');
  return r;
}

const fails = failureOf;

/** What an intent ended as, comparable whole: its rows, or its error code and sqlstate. */
const outcome = (p: Promise<ExecOutput>) =>
  p.then(
    (r) => (r.type === 'rows' ? { rows: r.rows } : { stream: true }),
    (e: unknown) => ({ error: toWritError(e).code, sqlstate: toWritError(e).details?.sqlstate }),
  );

const count = async (table: string) => Number((await admin.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** An error that quotes the masked value must say it may come from the masked column (the runtime then withholds its text). */
function errorTraced(e: unknown, column: string): boolean {
  if (!/hunter2/.test(String((e as Error | null)?.message))) return true;
  const ctx = errorContextOf(e);
  return ctx?.opaque === true || ctx?.sources.includes(column) === true;
}

describe('masking when the batch changes how names resolve', () => {
  it('F1: SET search_path makes a filter on a masked column of another schema invisible to the masked-filter check', async () => {
    // The classifier resolves `customers` as public.customers (the pinned path); the server, after the SET, as app.customers.
    const ask = (prefix: string) => outcome(run(`SET search_path = app; SELECT id FROM customers WHERE pw LIKE '${prefix}%'`, 'read', {}, APP_MASK));
    // Refused, or the same answer whatever the masked value starts with.
    expect(await ask('h')).toEqual(await ask('z'));
  });

  it('F1: …and an error quoting the masked value is not traced to it, so the runtime shows its text', async () => {
    const e = await run('SET search_path = app; SELECT pw::int FROM customers', 'read', {}, APP_MASK).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).not.toBeNull();
    expect(errorTraced(e, 'app.customers.pw')).toBe(true);
  });

  it('F1: …and a write copies the masked value into a plain column, where every later read gets it in the clear', async () => {
    await admin.query('TRUNCATE notes');
    await run('SET search_path = app; INSERT INTO public.notes SELECT id, pw FROM customers', 'write', { rowsAffected: 5 }, APP_MASK).catch(() => undefined);
    expect((await admin.query("SELECT count(*)::int AS n FROM notes WHERE body = 'hunter2'")).rows[0].n).toBe(0);
  });

  it('F2: a LATERAL column alias hides a filter on a masked column', async () => {
    for (const from of ['secrets s CROSS JOIN LATERAL (VALUES (s.password)) v(x)', 'secrets s, LATERAL (SELECT s.password) v(x)']) {
      const ask = (prefix: string) => outcome(run(`SELECT 1 AS hit FROM ${from} WHERE x LIKE '${prefix}%'`, 'read', {}, MASK));
      expect([from, await ask('h')]).toEqual([from, await ask('z')]);
    }
  });

  it('F9: a temp view made by the batch hides a filter on a masked column (write grant, TEMP privilege)', async () => {
    const ask = (prefix: string) => outcome(run(`CREATE TEMP VIEW v AS SELECT id, password AS p FROM secrets; SELECT id FROM v WHERE p LIKE '${prefix}%'`, 'write', {}, MASK));
    expect(await ask('h')).toEqual(await ask('z'));
  });

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
      // Refused before anything runs: as a masked copy, or as DDL a rowsAffected limit cannot count.
      expect(['WRIT_MASKED_COPY', 'WRIT_UNSUPPORTED']).toContain((await fails(run(sql, 'write', { rowsAffected: 5 }, MASK))).code);
      expect((await fails(run(sql, 'write', {}, MASK))).code).toBe('WRIT_MASKED_COPY');
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
  it('F4: holds for rows a deferred constraint trigger writes at COMMIT, after the count', async () => {
    await admin.query('TRUNCATE audit, dt');
    await withFresh((e) => run('INSERT INTO dt VALUES (1)', 'write', { rowsAffected: 1 }, undefined, e).catch(() => undefined));
    expect(await count('audit')).toBe(0);
  });

  it("F5: counts only this intent's transaction: the previous intent's rows (pending statistics) fail the next one", async () => {
    await withFresh(async (e) => {
      expect((await rows('INSERT INTO t (id) SELECT generate_series(1, 50)', 'write', { rowsAffected: 100 }, undefined, e)).command).toBe('INSERT');
      // Another principal's intent on the same pooled connection, within the server's stats flush interval.
      const next = await outcome(run('INSERT INTO t (id) VALUES (0)', 'write', { rowsAffected: 1 }, undefined, e));
      expect(next).toEqual({ rows: [] });
    });
  });

  it('holds: setval inside an INSERT is refused under a limit, so no sequence moves past it (or survives its rollback)', async () => {
    for (const sql of ["INSERT INTO t (id) SELECT 1 WHERE setval('sq', 424242) IS NULL", "INSERT INTO t (id) SELECT setval('sq', 777) FROM generate_series(1, 150)"]) {
      expect((await fails(run(sql, 'write', { rowsAffected: 100 }))).code).toBe('WRIT_UNSUPPORTED');
    }
    expect((await admin.query('SELECT last_value::int AS v FROM sq')).rows[0].v).toBe(1);
  });
});

describe('what an intent leaves for other intents', () => {
  it('F6: a write under rowsAffected 0 sets role defaults every later connection gets (results then read as null)', async () => {
    const roleSettings = async () =>
      Number((await admin.query('SELECT count(*)::int AS n FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1', [db.roles.write.user])).rows[0].n);
    await admin.query('INSERT INTO t (id) VALUES (424)');
    try {
      await withFresh((e) => run("ALTER ROLE CURRENT_USER SET DateStyle = 'German'", 'write', { rowsAffected: 0 }, undefined, e).catch(() => undefined));
      const later = await withFresh((e) => outcome(run('SELECT ts FROM t WHERE id = 424', 'write', {}, undefined, e)));
      // A timestamp the pg client cannot parse comes back as null and is reported as a success.
      expect(later).not.toEqual({ rows: [[null]] });
      expect(await roleSettings()).toBe(0);
    } finally {
      await admin.query(`ALTER ROLE ${db.roles.write.user} RESET ALL`);
      await admin.query('DELETE FROM t WHERE id = 424');
    }
  });

  it("F6: …and the write role's password, the worker's own credential, is the agent's to choose", async () => {
    const pw = async () => (await admin.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [db.roles.write.user])).rows[0].rolpassword as string;
    const before = await pw();
    try {
      await withFresh((e) => run("ALTER ROLE CURRENT_USER PASSWORD 'chosen-by-the-agent'", 'write', { rowsAffected: 0 }, undefined, e).catch(() => undefined));
      expect(await pw()).toBe(before);
    } finally {
      await admin.query(`ALTER ROLE ${db.roles.write.user} PASSWORD '${db.roles.write.password}'`);
    }
  });

  it("F7: a read grant cannot end another intent's backend (same database role)", async () => {
    const e2 = executor(2);
    try {
      const victim = outcome(run("SELECT pg_sleep(1.5), 'victim' AS who", 'read', {}, undefined, e2));
      await sleep(300);
      const others =
        'SELECT pg_stat_get_backend_pid(i) AS p FROM pg_stat_get_backend_idset() i WHERE pg_stat_get_backend_userid(i) = current_user::regrole AND pg_stat_get_backend_pid(i) <> pg_backend_pid() OFFSET 0';
      await run(`SELECT count(*) FILTER (WHERE pg_terminate_backend(p)) FROM (${others}) x`, 'read', {}, undefined, e2).catch(() => undefined);
      // The victim is another principal's read; the killer's grant was only to read.
      expect(await victim).not.toHaveProperty('error');
    } finally {
      await e2.close();
    }
  });

  it('holds: a session DateStyle does not reach the next intent on the connection', async () => {
    expect((await rows("SET DateStyle = 'German'; SELECT current_setting('DateStyle')")).rows).toEqual([['German, DMY']]);
    expect((await rows("SELECT current_setting('DateStyle'), '2024-12-25 10:00'::timestamp IS NOT NULL")).rows).toEqual([['ISO, MDY', true]]);
  });
});

describe("one intent's memory", () => {
  it('F8: a JSON row under the wire cap (default 4 MiB budget) does not take 20x its size in heap', async () => {
    const before = process.memoryUsage().heapUsed;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 2);
    let r: RowsOutput | null = null;
    try {
      r = await rows("SELECT ('[' || repeat('{},', 2700000) || '{}]')::json AS j");
    } finally {
      clearInterval(timer);
    }
    peak = Math.max(peak, process.memoryUsage().heapUsed);
    expect(r.rows.length).toBeLessThanOrEqual(1);
    // The bound the first attack suite holds the worker to for one intent's result.
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
  });
});
