/**
 * A single read statement runs in one round trip (workers/postgres/cursor.ts runOneShot):
 * the statement and the connection's reset go out in one socket write, and the connection
 * still comes back clean after an answer, an error and a cut, against a real server.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../classify/index.ts';
import type { Limits } from '../schemas/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import type { ExecOutput } from '../workers/executor.ts';
import { createTestDatabase, failureOf, pgTarget, runSql, type TestDatabase } from './helpers/index.ts';

let db: TestDatabase;
/** One connection, so consecutive intents share it. */
let ex: PostgresExecutor;

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  ex = new PostgresExecutor(pgTarget(db, 1, ['read']) as ConstructorParameters<typeof PostgresExecutor>[0]);
});
afterAll(async () => {
  await ex?.close();
  await db?.drop();
});

const run = (sql: string, limits: Limits = {}): Promise<ExecOutput> => runSql(ex, sql, { limits });

const rowsOf = (r: ExecOutput) => (r.type === 'rows' ? r.rows : null);

/** Socket writes to the database's port while `fn` runs (net.Socket's one write path, for write and writev). */
async function writesDuring(fn: () => Promise<unknown>): Promise<number> {
  const proto = net.Socket.prototype as unknown as { _writeGeneric: (...a: unknown[]) => unknown };
  const original = proto._writeGeneric;
  let n = 0;
  proto._writeGeneric = function (this: net.Socket, ...a: unknown[]) {
    if (this.remotePort === db.port) n++;
    return original.apply(this, a);
  };
  try {
    await fn();
  } finally {
    proto._writeGeneric = original;
  }
  return n;
}

describe('a single read statement', () => {
  it('goes out with the reset in one socket write (four before: the portal, its Close, Sync, DISCARD ALL)', async () => {
    const pid = rowsOf(await run('SELECT pg_backend_pid()'))![0]![0];
    // The reset is answered after the intent; the next intent on this one-connection pool waits for it.
    const n = await writesDuring(async () => {
      expect(rowsOf(await run('SELECT 41 + 1'))).toEqual([[42]]);
      await new Promise((r) => setTimeout(r, 50));
    });
    expect(n).toBe(1);
    expect(rowsOf(await run('SELECT pg_backend_pid()'))![0]![0]).toBe(pid);
  });

  it('leaves no session state behind, after an answer and after an error', async () => {
    await run("SELECT set_config('writ.t', 'kept', false)");
    // RESET leaves a custom setting once defined empty, never at its value.
    expect(rowsOf(await run("SELECT coalesce(current_setting('writ.t', true), '')"))).toEqual([['']]);
    const pid = rowsOf(await run('SELECT pg_backend_pid()'))![0]![0];
    const err = await failureOf(run("SELECT set_config('writ.t', 'kept', false), 1 / 0"));
    expect(err?.code).toBe('WRIT_EXEC_FAILED');
    expect(err?.details).toMatchObject({ sqlstate: '22012' });
    // The same connection, reset: the error did not cost it.
    expect(rowsOf(await run("SELECT coalesce(current_setting('writ.t', true), ''), pg_backend_pid()"))).toEqual([['', pid]]);
  });

  it('stops at the row limit and says truncated, with the count of what came back', async () => {
    const r = await run('SELECT g FROM generate_series(1, 50) g', { rows: 10 });
    expect(r.type === 'rows' && r.rows.length).toBe(10);
    expect(r.type === 'rows' && r.truncated).toBe(true);
    expect(r.type === 'rows' && r.rowCount).toBe(10);
    const whole = await run('SELECT g FROM generate_series(1, 10) g', { rows: 10 });
    expect(whole.type === 'rows' && [whole.truncated, whole.rowCount, whole.command]).toEqual([false, 10, 'SELECT']);
  });

  it('is cut at the wire past the byte budget, and the next intent gets a new connection', async () => {
    const pid = rowsOf(await run('SELECT pg_backend_pid()'))![0]![0];
    const r = await run("SELECT repeat('z', 100000) FROM generate_series(1, 100)", { bytes: 200_000 });
    expect(r.type === 'rows' && r.truncated).toBe(true);
    expect(r.type === 'rows' && r.rows.length).toBeLessThan(100);
    expect(rowsOf(await run('SELECT pg_backend_pid()'))![0]![0]).not.toBe(pid);
  });
});
