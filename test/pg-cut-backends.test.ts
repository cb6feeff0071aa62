/**
 * A statement the worker drops mid-result (the wire watch cuts a row past its cap, or the socket
 * fails) is ended on the server, and the run holds its place until it is. PostgreSQL notices a
 * closed socket only when it next writes to it: a statement still computing ran on to its time
 * limit, outside the worker's count, so bursts of such intents ran dozens of statements at once
 * under `limits.concurrency` 2. The outcome says the byte limit cut the result, not the row limit.
 * A worker that stops with statements still running ends them too, or they ran on after it.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
let admin: pg.Client;

beforeAll(async () => {
  s = await startStack({
    config: {
      limits: { concurrency: 2 },
      policy: { rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read', limits: { seconds: 60, bytes: 10_000 } }] },
    },
  });
  admin = new pg.Client({ connectionString: s.db.adminUrl });
  await admin.connect();
});
afterAll(async () => {
  await admin?.end();
  await s?.stop();
});

/** Row 1 is one value past the wire's cap for one message (2 × bytes + 64 KiB); row 2 is seconds of work. */
const CUT_THEN_WORK = "SELECT CASE WHEN g = 1 THEN repeat('x', 200000) END AS a, (SELECT count(*) FROM generate_series(1, (g - 1) * 60000000)) AS b FROM generate_series(1, 2) g";

async function running(): Promise<number> {
  const r = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%(g - 1) * 60000000%' AND pid <> pg_backend_pid()");
  return r.rows[0]!.n;
}

describe('a statement dropped mid-result', () => {
  it('is ended on the server before its run frees its place: never more than limits.concurrency run, none is left running', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    let most = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        most = Math.max(most, await running());
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    let runs: Awaited<ReturnType<typeof c.run>>[];
    try {
      runs = await Promise.all(Array.from({ length: 8 }, () => c.run({ target: 'db', sql: CUT_THEN_WORK }, { timeoutMs: 30_000 })));
    } finally {
      watching = false;
      await watch;
    }
    // Every run ended with its result cut by the byte limit, and nothing of it runs on.
    for (const o of runs) {
      expect(o.status).toBe('succeeded');
      expect(o.result).toMatchObject({ truncated: true, truncatedBy: 'bytes' });
    }
    expect(await running()).toBe(0);
    expect(most).toBeLessThanOrEqual(2);
  });
});

describe('a worker stopping while statements run', () => {
  it('ends them on the server before it is stopped', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const LONG = 'SELECT count(*) FROM generate_series(1, 30000) a, generate_series(1, 30000) b';
    const longRunning = async () => {
      const r = await admin.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT count(*) FROM generate_series(1, 30000) a%' AND pid <> pg_backend_pid()",
      );
      return r.rows[0]!.n;
    };
    const runs = [0, 1].map(() => c.run({ target: 'db', sql: LONG }, { timeoutMs: 70_000 }).catch((e: unknown) => e));
    for (let i = 0; i < 100 && (await longRunning()) < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await longRunning()).toBe(2);
    // A drain deadline far shorter than the statements: what still runs then is aborted and ended.
    await s.worker.stop(500);
    expect(s.worker.state).toBe('STOPPED');
    // A terminated backend leaves pg_stat_activity when it has exited: moments, not the 60 s limit.
    for (let i = 0; i < 30 && (await longRunning()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await longRunning()).toBe(0);
    void runs;
  });
});
