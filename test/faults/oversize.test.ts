/**
 * Oversize replies never crash a broker. An `explain` of about 900 KB of SQL makes an answer
 * larger than the server's max_payload; the broker answers with a coded error and keeps
 * serving, in the same process. (An explain is held to limits.maxIntentBytes, 256 KB by default:
 * this stack raises it so that one reply can still outgrow the server.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startStack, type Stack } from '../fixture.ts';
import { inboxIdOfToken, replySubjectFor } from '../../client/index.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ config: { limits: { maxIntentBytes: 1_000_000 } } });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

async function api(op: string, body: Record<string, unknown> & { token: string }) {
  // The broker answers only a reply subject under the token's own inbox.
  const reply = replySubjectFor(inboxIdOfToken(body.token));
  const r = await s.nc.request(s.names.api(op as never), JSON.stringify({ v: 1, type: op, ...body }), { timeout: 20_000, noMux: true, reply });
  return r.json<{ type: string; error?: { code: string; details?: { bytes: number; max: number } } }>();
}

it('answers an explain whose reply would exceed max_payload with WRIT_REPLY_TOO_LARGE, and keeps serving', async () => {
  const token = await s.token('alice', ['analysts']);
  // Many statements, each under the per-statement limit, whose facts together exceed max_payload.
  const stmt = (k: number) => `SELECT ${Array.from({ length: 5_000 }, (_, i) => `c${k}_${i}`).join(', ')} FROM customers`;
  const sql = Array.from({ length: 18 }, (_, k) => stmt(k)).join(';\n');
  expect(sql.length).toBeGreaterThan(800_000);
  const big = await api('explain', { token, target: 'db', command: { kind: 'sql', sql } });
  expect(big.type).toBe('error');
  expect(big.error?.code).toBe('WRIT_REPLY_TOO_LARGE');
  expect(big.error!.details!.bytes).toBeGreaterThan(big.error!.details!.max);
  // The same broker still answers, and still runs intents.
  const targets = await api('targets', { token });
  expect(targets.type).toBe('targets');
  const o = await s.client(token).run({ target: 'db', sql: 'SELECT 1 AS one' });
  expect(o.status).toBe('succeeded');
}, 60_000);

it('cuts a result larger than the server carries to fit, says why, and keeps the write committed', async () => {
  const dba = s.client(await s.token('dora', ['dba']));
  // About 2.5 MB of rows, under the default 4 MiB byte limit but over the 1 MiB max_payload.
  const o = await dba.run(
    { target: 'db', sql: "INSERT INTO events (note) SELECT repeat('n', 10) FROM generate_series(1, 3); SELECT g, repeat('x', 2500) AS pad FROM generate_series(1, 1000) g" },
    { timeoutMs: 30_000 },
  );
  expect(o.error, JSON.stringify(o.error)).toBeUndefined();
  expect(o.status).toBe('succeeded');
  expect(o.result!.truncated).toBe(true);
  expect(o.result!.truncatedBy).toBe('transport');
  expect(o.result!.rows.length).toBeGreaterThan(100);
  expect(o.result!.rows.length).toBeLessThan(1000);
  const n = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'nnnnnnnnnn'");
  expect(n.rows[0].n).toBe(3);
}, 60_000);
