/**
 * Peak memory of the PostgreSQL worker on a result far larger than its byte limit: the
 * issue's `SELECT repeat('x', 200000000) FROM generate_series(1,3)` under a 1 MiB limit
 * (before the wire caps it took a worker from 193 MB to 1.24 GB), and a result of many
 * 300 KB rows. The executor runs in this process; RSS is sampled every 2 ms while the query
 * runs. Goal: the peak stays within 64 MiB of the idle RSS.
 *
 * `npx tsx bench/pg-memory.ts` runs it alone; bench/index.ts runs it with the others.
 */
import { pathToFileURL } from 'node:url';
import { initClassifiers } from '../classify/index.ts';
import type { GrantClaims, Order } from '../schemas/index.ts';
import { createTestDatabase } from '../test/helpers/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';

const MiB = 1024 * 1024;
const QUERIES = ["SELECT repeat('x', 200000000) FROM generate_series(1,3)", "SELECT repeat('y', 300000) FROM generate_series(1,2000)"];

export async function benchPgMemory(): Promise<string> {
  await initClassifiers();
  const db = await createTestDatabase();
  const ex = new PostgresExecutor([
    {
      target: 'db',
      host: db.host,
      port: db.port,
      database: db.database,
      poolSize: 2,
      credentials: { read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } } },
    },
  ] as ConstructorParameters<typeof PostgresExecutor>[0]);
  const run = (sql: string) =>
    ex.run({
      order: { command: { kind: 'sql', sql } } as Order,
      claims: { tgt: 'db', mode: 'read', limits: { bytes: MiB, rows: 1000, seconds: 60 } } as GrantClaims,
      signal: new AbortController().signal,
      streamMasker: () => ({ push: () => '', end: () => '' }),
    });
  const lines: string[] = [];
  try {
    await run('SELECT 1'); // connections, classifier and origin caches warm
    for (const sql of QUERIES) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((r) => setTimeout(r, 100));
      const idle = process.memoryUsage().rss;
      let peak = idle;
      const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 2);
      const t0 = performance.now();
      const out = await run(sql);
      const ms = performance.now() - t0;
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      const rows = out.type === 'rows' ? out.rows.length : 0;
      const delta = (peak - idle) / MiB;
      lines.push(
        `${sql}\n  idle RSS ${(idle / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB (+${delta.toFixed(1)} MiB, goal ≤ 64: ${delta <= 64 ? 'met' : 'NOT met'}); ${rows} rows, truncated ${out.type === 'rows' && out.truncated}, ${ms.toFixed(0)} ms`,
      );
    }
  } finally {
    await ex.close();
    await db.drop();
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await benchPgMemory());
  process.exit(0);
}
