/**
 * The local stack as `writ up` builds it (cmd/stack.ts: its own nats-server with the shipped
 * per-role permissions, a broker and a worker each on its own role's connection) serves one
 * observability endpoint for the process: /readyz checks both connections, their streams and the
 * worker's target, and the sampled consumer lag works under each role's NATS permissions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { LocalStack } from '../cmd/stack.ts';
import { createTestDatabase, type TestDatabase } from './helpers/index.ts';

let dir: string;
let db: TestDatabase;
let stack: LocalStack;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-obs-up-'));
  // The data directory is read when cmd/paths.ts loads: set it first, and start a nats-server child.
  process.env.WRIT_HOME = join(dir, 'home');
  delete process.env.NATS_URL;
  db = await createTestDatabase();
  const configFile = join(dir, 'writ.yaml');
  writeFileSync(
    configFile,
    stringify({
      identity: { devIssuer: { enabled: true, dir: '$WRIT_HOME/dev-issuer', audience: 'writ' } },
      grants: { keyFile: '$WRIT_HOME/grant-key.pem', ttlSec: 60 },
      audit: { keyRegistry: '$WRIT_HOME/audit-keys.yaml', autoRegisterKeys: true },
      targets: [{ name: 'db', kind: 'postgres' }],
      workers: {
        postgres: [{ target: 'db', host: db.host, port: db.port, database: db.database, credentials: { read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } } } }],
      },
      observability: { port: 0, sampleIntervalMs: 100 },
      log: { level: 'silent' },
    }),
  );
  process.env.WRIT_LOG_LEVEL = 'silent';
  const { startLocalStack } = await import('../cmd/stack.ts');
  stack = await startLocalStack(configFile);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("writ up's observability endpoint", () => {
  it('is ready with both role connections, their streams and the target checked', async () => {
    const port = stack.observability.port!;
    expect(port).toBeGreaterThan(0);
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    const body = (await r.json()) as { ready: boolean; checks: Record<string, string> };
    expect(body.checks).toEqual({
      process: 'ok',
      'service:broker': 'ok',
      'nats:broker': 'ok',
      'streams:broker': 'ok',
      'service:worker': 'ok',
      'nats:worker': 'ok',
      'streams:worker': 'ok',
      'target:db': 'ok',
    });
    expect(r.status).toBe(200);
  });

  it("samples the worker's consumers and the broker's intake under their own permissions", async () => {
    const port = stack.observability.port!;
    // The broker consumes no stream (intents are core requests): its intake backlog is a gauge of its own.
    const want = ['writ_broker_intake_backlog', 'consumer="writ-worker-postgres-db"', 'connection="broker"', 'connection="worker"'];
    let text = '';
    // Sampled every 100 ms: wait for the first samples of both, never for a fixed time.
    while (!want.every((w) => text.includes(w))) {
      text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      if (!want.every((w) => text.includes(w))) await new Promise((res) => setTimeout(res, 50));
    }
    expect(text).toMatch(/^writ_broker_intake_backlog 0$/m);
    expect(text).not.toMatch(/WRIT_INTENTS/);
    expect(text).toMatch(/^writ_consumer_pending_messages\{stream="WRIT_EXEC",consumer="writ-worker-postgres-db"\} 0$/m);
    expect(text).toMatch(/^writ_nats_connected\{connection="worker"\} 1$/m);
  });
});
