/**
 * `writ broker` and `writ worker`, the way deployments run replicas, each serve their own
 * observability endpoint when the config sets `observability.port`: ready once running, and
 * a worker's /metrics count the runs it did for the stack's broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './fixture.ts';

const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
const TSX = import.meta.resolve('tsx');

let s: Stack;
let home: string;
const children: ChildProcess[] = [];

/** Starts `writ <kind>` and resolves with the port its endpoint logged (pino JSON on stderr). */
function service(kind: 'broker' | 'worker', configFile: string): Promise<number> {
  const child = spawn(process.execPath, ['--import', TSX, CLI, kind, '--config', configFile], {
    env: { ...process.env, NATS_URL: s.nats.url, WRIT_HOME: home, WRIT_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      for (const line of err.split('\n')) {
        if (!line.includes('observability endpoint')) continue;
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    child.once('close', (code) => reject(new Error(`writ ${kind} exited ${code}:\n${err}`)));
  });
}

async function readyz(port: number): Promise<{ status: number; checks: Record<string, string> }> {
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    const body = (await r.json()) as { checks: Record<string, string> };
    // "starting" until the service runs: wait for that, never for a fixed time.
    if (body.checks.process !== 'starting') return { status: r.status, checks: body.checks };
    await new Promise((res) => setTimeout(res, 50));
  }
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'writ-obs-cli-'));
  // The stack's own worker is not started: the `writ worker` child runs the intents.
  s = await startStack({ worker: false });
  writeFileSync(s.configFile, JSON.stringify({ ...(JSON.parse(JSON.stringify(s.config)) as object), observability: { port: 0 }, log: { level: 'info' } }));
}, 120_000);

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode !== null) continue;
    const exited = new Promise((r) => c.once('close', r));
    c.kill('SIGTERM');
    await exited;
  }
  await s?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe('writ broker and writ worker', () => {
  it('each serve /readyz and /metrics on their own port', async () => {
    const [brokerPort, workerPort] = await Promise.all([service('broker', s.configFile), service('worker', s.configFile)]);
    expect(brokerPort).not.toBe(workerPort);
    const b = await readyz(brokerPort);
    expect(b.status).toBe(200);
    expect(Object.keys(b.checks).sort()).toEqual(['nats:broker', 'process', 'service:broker', 'streams:broker']);
    const w = await readyz(workerPort);
    expect(w.status).toBe(200);
    expect(w.checks).toMatchObject({ 'service:worker': 'ok', 'nats:worker': 'ok', 'streams:worker': 'ok', 'target:db': 'ok' });
    const o = await s.client(await s.token('alice', ['analysts'])).run({ target: 'db', sql: 'SELECT 1' });
    expect(o.status).toBe('succeeded');
    const metrics = await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text();
    expect(metrics).toMatch(/^writ_worker_executions_total\{target="db",outcome="succeeded"\} 1$/m);
  }, 120_000);
});
