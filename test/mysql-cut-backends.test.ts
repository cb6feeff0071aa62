/**
 * A MySQL-family statement the worker drops mid-result (the byte watch cuts a row past its cap)
 * is ended on the server (KILL of its thread) before its run frees its place: the server notices
 * a closed socket only when it next writes to it, so a statement still computing ran on past the
 * intent, outside the worker's count of what runs (the PostgreSQL worker's twin:
 * test/pg-cut-backends.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';

let t: MariaStack;

beforeAll(async () => {
  t = await startMariaStack({
    poolSize: 4,
    rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['maria'], mode: 'read', limits: { rows: 50, bytes: 10_000, seconds: 20 } }],
    setup: () => ['CREATE TABLE nums (n int)', 'INSERT INTO nums WITH RECURSIVE c AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 400) SELECT n FROM c'],
  });
});
afterAll(async () => {
  await t?.stop();
});

/** Row 1 is one value past the watch's cap; row 2 is seconds of work (a count over a cross join). */
const CUT_THEN_WORK =
  "SELECT CASE WHEN g.n = 1 THEN REPEAT('x', 200000) END AS a, (SELECT COUNT(*) FROM nums x, nums y, nums z WHERE g.n > 1 AND x.n + y.n + z.n > 3) AS b FROM (SELECT 1 AS n UNION ALL SELECT 2) g";

async function running(): Promise<number> {
  const [rows] = (await t.m.admin(["SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE '%nums x, nums y%' AND INFO NOT LIKE '%PROCESSLIST%'"])) as Array<Array<{ n: number }>>;
  return Number(rows![0]!.n);
}

describe('a MySQL statement dropped mid-result', () => {
  it('is ended on the server before its run ends: none is left running', async () => {
    const c = t.s.client(await t.s.token('alice', ['analysts']));
    const runs = await Promise.all(Array.from({ length: 4 }, () => c.run({ target: 'maria', sql: CUT_THEN_WORK }, { timeoutMs: 30_000 })));
    for (const o of runs) {
      expect(o.status).toBe('succeeded');
      expect(o.result).toMatchObject({ truncated: true, truncatedBy: 'bytes' });
    }
    expect(await running()).toBe(0);
  });
});

describe('a MySQL worker stopping while statements run', () => {
  it('ends them on the server before it is stopped', async () => {
    const c = t.s.client(await t.s.token('alice', ['analysts']));
    const LONG = 'SELECT COUNT(*) AS n FROM nums p, nums q, nums r, nums u';
    const longRunning = async () => {
      const [rows] = (await t.m.admin(["SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT COUNT(*) AS n FROM nums p%'"])) as Array<Array<{ n: number }>>;
      return Number(rows![0]!.n);
    };
    const runs = [0, 1].map(() => c.run({ target: 'maria', sql: LONG }, { timeoutMs: 60_000 }).catch((e: unknown) => e));
    for (let i = 0; i < 100 && (await longRunning()) < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await longRunning()).toBe(2);
    await t.s.worker.stop(500);
    for (let i = 0; i < 30 && (await longRunning()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await longRunning()).toBe(0);
    void runs;
  });
});
