/**
 * The PostgreSQL worker under attack, against a real server (issue 10 items 7–10, issue 11
 * item 1): the batch cannot leave the worker's transaction or its limits, connections come
 * back clean, one intent cannot exhaust the worker's memory, and a dropped connection ends
 * the intent (with an unknown commit fate when COMMIT was in flight), never the process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initClassifiers } from '../classify/index.ts';
import type { GrantClaims, Limits, Order } from '../schemas/index.ts';
import { toWritError } from '../schemas/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import type { ExecOutput } from '../workers/executor.ts';
import { createTestDatabase, signalBackend, type TestDatabase } from './helpers/index.ts';

let db: TestDatabase;
let admin: pg.Client;
let ex: PostgresExecutor;
/** One connection per mode, so consecutive intents share it. */
let ex1: PostgresExecutor;

function target(poolSize: number) {
  return [
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
  ] as ConstructorParameters<typeof PostgresExecutor>[0];
}

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(`
    CREATE TABLE t (id int);
    CREATE TABLE secrets (id int, password text);
    INSERT INTO secrets VALUES (1, 'hunter2 topsecretpw');
    GRANT SELECT ON secrets TO PUBLIC;
    CREATE TABLE slow (id int);
    CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
    CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON slow DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
  `);
  ex = new PostgresExecutor(target(4));
  ex1 = new PostgresExecutor(target(1));
});
afterAll(async () => {
  await ex?.close();
  await ex1?.close();
  await admin?.end();
  await db?.drop();
});

function run(e: PostgresExecutor, sql: string, mode: 'read' | 'write', limits: Limits = {}): Promise<ExecOutput> {
  const claims = {
    gid: 'g',
    iid: 'i',
    sid: 's',
    tgt: 'db',
    kind: 'postgres',
    mode,
    sha256: '0'.repeat(64),
    iat: Math.floor(Date.now() / 1000),
    exp: Math.floor(Date.now() / 1000) + 600,
    limits,
    policyVersion: 'v',
    sub: 'x',
  } as GrantClaims;
  const order = { command: { kind: 'sql', sql } } as Order;
  return e.run({ order, claims, signal: new AbortController().signal, streamMasker: () => ({ push: () => '', end: () => '' }) });
}

async function fails(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    return toWritError(e);
  }
  throw new Error('expected a failure');
}

const count = async (table: string) => Number((await admin.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);

describe("the batch cannot leave the worker's transaction (item 9)", () => {
  const control = [
    'COMMIT',
    'ROLLBACK',
    'END',
    'ABORT',
    'COMMIT AND CHAIN',
    "PREPARE TRANSACTION 'x'",
    'SAVEPOINT a',
    'RELEASE SAVEPOINT a',
    'ROLLBACK TO SAVEPOINT a',
    'BEGIN',
    'START TRANSACTION',
    "COMMIT PREPARED 'x'",
    'ROLLBACK AND CHAIN',
  ];
  for (const tc of control) {
    it(`refuses ${tc} inside a write batch before anything runs`, async () => {
      const err = await fails(run(ex, `INSERT INTO t VALUES (1); ${tc}; INSERT INTO t SELECT g FROM generate_series(1,150) g`, 'write', { rowsAffected: 100 }));
      expect(err.code).toBe('WRIT_UNSUPPORTED');
      expect(await count('t')).toBe(0);
    });
  }

  it("refuses the issue's leading COMMIT; INSERT of 150 rows under rowsAffected 100, and nothing is committed", async () => {
    const err = await fails(run(ex, 'COMMIT; INSERT INTO t SELECT g FROM generate_series(1,150) g', 'write', { rowsAffected: 100 }));
    expect(err.code).toBe('WRIT_UNSUPPORTED');
    expect(err.message).not.toMatch(/rolled back/);
    expect(await count('t')).toBe(0);
  });

  it("refuses the issue's COMMIT; SELECT count(*) … at once, in a read batch and alone", async () => {
    const t0 = Date.now();
    expect((await fails(run(ex, 'COMMIT; SELECT count(*) FROM generate_series(1,250000000)', 'read', { seconds: 2 }))).code).toBe('WRIT_UNSUPPORTED');
    expect((await fails(run(ex, 'COMMIT', 'read'))).code).toBe('WRIT_UNSUPPORTED');
    expect(Date.now() - t0).toBeLessThan(6000);
  });

  it('says rolled back only after a ROLLBACK that happened', async () => {
    const err = await fails(run(ex, 'INSERT INTO t SELECT g FROM generate_series(1,150) g', 'write', { rowsAffected: 100 }));
    expect(err.code).toBe('WRIT_ROW_LIMIT');
    expect(err.message).toMatch(/it was rolled back/);
    expect(await count('t')).toBe(0);
  });

  it('does not let a cut RETURNING hide how many rows a write affected', async () => {
    const err = await fails(run(ex, 'INSERT INTO t SELECT g FROM generate_series(1,150) g RETURNING id', 'write', { rowsAffected: 100, rows: 10 }));
    expect(err.code).toBe('WRIT_ROW_LIMIT');
    expect(await count('t')).toBe(0);
  });

  it('refuses writes whose count the server does not report under a rowsAffected limit', async () => {
    for (const sql of ['WITH d AS (INSERT INTO t SELECT g FROM generate_series(1,150) g RETURNING 1) SELECT count(*) FROM d', 'EXPLAIN ANALYZE INSERT INTO t SELECT g FROM generate_series(1,150) g']) {
      expect((await fails(run(ex, sql, 'write', { rowsAffected: 100 }))).code, sql).toBe('WRIT_UNSUPPORTED');
    }
    expect(await count('t')).toBe(0);
  });

  it('keeps the time limit: statement_timeout is a startup setting and cannot be changed by the batch', async () => {
    const r = await run(ex, 'SHOW statement_timeout', 'read');
    expect(r.type === 'rows' && r.rows[0]![0]).toBe('30s');
    for (const sql of ['SET statement_timeout = 0; SELECT pg_sleep(3)', 'RESET statement_timeout; SELECT 1', 'RESET ALL; SELECT 1', 'SET LOCAL statement_timeout = 0; SELECT 1']) {
      expect((await fails(run(ex, sql, 'read', { seconds: 1 }))).code, sql).toBe('WRIT_UNSUPPORTED');
    }
    const t0 = Date.now();
    expect((await fails(run(ex, 'SELECT pg_sleep(30)', 'read', { seconds: 0.5 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect((await fails(run(ex, 'SELECT 1; SELECT pg_sleep(30)', 'read', { seconds: 0.5 }))).code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("cancels from the worker's side when a function lifts statement_timeout", async () => {
    const t0 = Date.now();
    const err = await fails(run(ex, "SELECT set_config('statement_timeout', '0', true); SELECT pg_sleep(40)", 'read', { seconds: 1 }));
    expect(err.code).toBe('WRIT_EXEC_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});

describe('connections come back clean (items 7 and 8)', () => {
  it('pins search_path as a startup setting', async () => {
    const r = await run(ex1, 'SHOW search_path', 'read');
    expect(r.type === 'rows' && r.rows[0]![0]).toBe('pg_catalog,public');
  });

  it('resets every connection with DISCARD ALL before the next intent gets it', async () => {
    // Without the reset the second of each would fail with "already exists".
    await run(ex1, 'PREPARE p AS SELECT 42', 'read');
    await run(ex1, 'PREPARE p AS SELECT 43', 'read');
    await run(ex1, 'LISTEN chan', 'read');
    const ch = await run(ex1, 'SELECT count(*)::int FROM pg_listening_channels()', 'read');
    expect(ch.type === 'rows' && ch.rows[0]![0]).toBe(0);
    await run(ex1, 'CREATE TEMP TABLE tt (x int)', 'read').catch(() => undefined); // the read role may not; either way nothing stays
    await run(ex1, "SET work_mem = '77kB'", 'read');
    const wm = await run(ex1, 'SHOW work_mem', 'read');
    expect(wm.type === 'rows' && wm.rows[0]![0]).not.toBe('77kB');
    // Refused by name now; set_config's change is reset all the same.
    expect((await fails(run(ex1, "SET search_path = 'evil'", 'read'))).code).toBe('WRIT_UNSUPPORTED');
    await run(ex1, "SELECT set_config('search_path', 'evil', false)", 'read');
    const sp = await run(ex1, 'SHOW search_path', 'read');
    expect(sp.type === 'rows' && sp.rows[0]![0]).toBe('pg_catalog,public');
    await run(ex1, 'SELECT pg_advisory_lock(7)', 'read');
    // The reset runs after the intent's answer; the next intent on this one-connection pool waits for it.
    await run(ex1, 'SELECT 1', 'read');
    const locks = await admin.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 7");
    expect(locks.rows[0].n).toBe(0);
  });
});

describe("one intent cannot exhaust the worker's memory (item 10)", () => {
  // The bound is the process's RSS peak, which GC timing moves (Node 24 once peaked at 175 MiB
  // here): 256 MiB still tells a cut at the wire from three 200 MB values read whole (600 MB+).
  it("stops the issue's repeat('x', 200000000) × 3 at the wire, within 256 MiB", async () => {
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    try {
      const r = await run(ex, "SELECT repeat('x', 200000000) FROM generate_series(1,3)", 'read', { bytes: 1024 * 1024 });
      expect(r.type === 'rows' && r.truncated).toBe(true);
      expect(r.type === 'rows' && r.rows.length).toBe(0);
    } finally {
      clearInterval(timer);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(peak - before).toBeLessThan(256 * 1024 * 1024);
    // The pool recovers: the next intent runs.
    const ok = await run(ex, 'SELECT 1', 'read');
    expect(ok.type === 'rows' && ok.rows).toEqual([[1]]);
  });

  it('stops many medium rows at the byte budget, and says truncated', async () => {
    const r = await run(ex, "SELECT repeat('y', 300000) FROM generate_series(1,200)", 'read', { bytes: 1024 * 1024, rows: 1000 });
    expect(r.type === 'rows' && r.truncated).toBe(true);
    expect(r.type === 'rows' && r.rows.length).toBeGreaterThan(0);
    expect(r.type === 'rows' && r.rows.length).toBeLessThan(12);
  });

  it('returns a whole result that fits, in few round trips', async () => {
    const r = await run(ex, 'SELECT g FROM generate_series(1,5000) g', 'read', { bytes: 1024 * 1024, rows: 10_000 });
    expect(r.type === 'rows' && r.rows.length).toBe(5000);
    expect(r.type === 'rows' && r.truncated).toBe(false);
    const capped = await run(ex, 'SELECT g FROM generate_series(1,5000) g', 'read', { rows: 1000 });
    expect(capped.type === 'rows' && capped.rows.length).toBe(1000);
    expect(capped.type === 'rows' && capped.truncated).toBe(true);
  });

  it('fails a write batch whose rows pass the wire cap, with nothing committed', async () => {
    const err = await fails(run(ex, "INSERT INTO t VALUES (1); SELECT repeat('x', 5000000)", 'write', { bytes: 1024 * 1024 }));
    expect(err.code).toBe('WRIT_RESULT_TOO_LARGE');
    expect(err.message).toMatch(/nothing was committed/);
    expect(await count('t')).toBe(0);
  });
});

describe('a dropped connection ends the intent, not the worker (issue 11 item 1)', () => {
  const terminateWhen = (pattern: string) => signalBackend(admin, 'pg_terminate_backend', pattern);

  it('fails an intent whose backend is terminated mid-statement, and the next one runs', async () => {
    const p = fails(run(ex, 'SELECT pg_sleep(30)', 'read'));
    await terminateWhen('%pg_sleep(30)%');
    const err = await p;
    expect(err.code).toBe('WRIT_EXEC_FAILED');
    const w = fails(run(ex, 'INSERT INTO t VALUES (5); SELECT pg_sleep(30)', 'write'));
    await terminateWhen('%pg_sleep(30)%');
    expect((await w).code).toBe('WRIT_EXEC_FAILED');
    expect(await count('t')).toBe(0);
    const ok = await run(ex, 'SELECT 2', 'read');
    expect(ok.type === 'rows' && ok.rows).toEqual([[2]]);
  });

  it("says the commit's fate is unknown when the backend is terminated during COMMIT", async () => {
    const p = fails(run(ex, 'INSERT INTO slow VALUES (1)', 'write'));
    await terminateWhen('COMMIT');
    const err = await p;
    expect(err.code).toBe('WRIT_COMMIT_UNKNOWN');
    expect(err.message).toMatch(/may or may not have been committed/);
    expect(err.message).not.toMatch(/rolled back|no effect|nothing was committed/);
    const ok = await run(ex, 'SELECT 3', 'read');
    expect(ok.type === 'rows' && ok.rows).toEqual([[3]]);
  });
});

describe('statements whose SQL the classifier cannot see into (item 13, worker side)', () => {
  // ts_stat and query_to_xml run SQL given as text: once their computed fields were marked opaque
  // and masked whole; now they are refused, since what that SQL does (a notification under a read
  // grant) is as unseen as what it reads.
  for (const sql of ["SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', password) FROM secrets')", "SELECT query_to_xml('SELECT password FROM secrets', true, true, '') AS x"]) {
    it(`refuses ${sql.slice(0, 40)}… before it runs`, async () => {
      const err = await run(ex, sql, 'read').then(
        () => undefined,
        (e: unknown) => toWritError(e),
      );
      expect(err?.code).toBe('WRIT_UNSUPPORTED');
    });
  }
});
