/**
 * A safe default locally: `writ up` runs its nats-server with deploy/nats/accounts.conf and
 * per-role passwords in the data directory (0600). A process without them is refused; the
 * CLI finds the URL and its role's password in the data directory by itself.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const CLI = join(REPO, 'cmd', 'cli.ts');
// Absolute, so the CLI can run from a folder outside the repository.
const TSX = import.meta.resolve('tsx');
const ROLES = ['broker', 'worker', 'agent', 'approver', 'auditor', 'operator'];

let dir: string;
let dataDir: string;
let configFile: string;
let up: ChildProcess;
let url: string;
const env = (): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, WRIT_DATA_DIR: dataDir, WRIT_LOG_LEVEL: 'silent' };
  // Nothing but the data directory tells the CLI where NATS is and how to log in.
  for (const k of Object.keys(e)) if (k === 'NATS_URL' || k.startsWith('WRIT_NATS_') || k === 'WRIT_CONFIG' || k === 'WRIT_TOKEN') delete e[k];
  return e;
};

async function writ(args: string[], extra: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(process.execPath, ['--import', TSX, CLI, ...args], { cwd: dir, env: { ...env(), ...extra }, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

async function startUp(): Promise<void> {
  up = spawn(process.execPath, ['--import', TSX, CLI, 'up', '--config', configFile], { cwd: dir, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  up.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`writ up did not come up in 60 s:\n${out}`)), 60_000);
    // 'close', not 'exit': the output a failing start printed is then all read.
    up.once('close', (c) => reject(new Error(`writ up exited ${c}:\n${out}`)));
    up.stdout!.on('data', () => {
      if (out.includes('Writ is up.')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-up-auth-'));
  dataDir = join(dir, 'data');
  // The shipped local config, with its key and issuer folders moved into the temp dir.
  const cfg = parseYaml(readFileSync(join(REPO, 'deploy/local/writ.yaml'), 'utf8')) as Record<string, any>;
  cfg.identity.devIssuer.dir = join(dataDir, 'dev-issuer');
  cfg.grants.keyFile = join(dataDir, 'grant-key.pem');
  cfg.audit.keyRegistry = join(dataDir, 'audit-keys.yaml');
  cfg.policyFile = join(REPO, 'deploy/local/policy.yaml');
  configFile = join(dir, 'writ.yaml');
  writeFileSync(configFile, JSON.stringify(cfg));
  // One retry of the start alone, reported: under a loaded parallel suite the nats-server child
  // has been seen to exit at start; every assertion below runs against the stack that came up.
  try {
    await startUp();
  } catch (e) {
    process.stderr.write(`writ-up-auth: first start failed, retrying once: ${(e as Error).message}\n`);
    await startUp();
  }
  url = readFileSync(join(dataDir, 'nats.url'), 'utf8').trim();
}, 150_000);

afterAll(async () => {
  if (up && up.exitCode === null) {
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (up.exitCode === null) up.kill('SIGKILL');
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('writ up is not open', () => {
  it('refuses a connection without credentials, and one with a wrong password', async () => {
    await expect(connect({ servers: url, maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization Violation/i);
    await expect(connect({ servers: url, user: 'operator', pass: 'guess', maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization Violation/i);
  });

  it('keeps each role password in the data directory, readable by its owner only', () => {
    for (const r of ROLES) {
      const st = statSync(join(dataDir, 'nats', 'auth', `${r}.password`));
      expect(st.mode & 0o777).toBe(0o600);
    }
    expect(statSync(join(dataDir, 'nats', 'auth')).mode & 0o077).toBe(0);
  });

  it('runs the README commands unchanged: token, exec, audit replay find NATS and their credentials in the data directory', async () => {
    const tok = await writ(['token', '--config', configFile, '--sub', 'alice', '--groups', 'analysts']);
    expect(tok.code).toBe(0);
    const ex = await writ(['exec', '--target', 'demo', '--sql', 'SELECT name, email AS e FROM customers', '--session', 'first-run', '--json'], { WRIT_TOKEN: tok.stdout.trim() });
    expect(ex.stderr).toBe('');
    expect(ex.code).toBe(0);
    expect(JSON.parse(ex.stdout)).toMatchObject({ sessionId: 'first-run', status: 'succeeded' });
    const replay = await writ(['audit', 'replay', '--session', 'first-run']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('exec.finished');
  });

  it('gives the CLI an agent login that cannot delete the audit stream (the local stack runs the shipped roles)', async () => {
    const pass = readFileSync(join(dataDir, 'nats', 'auth', 'agent.password'), 'utf8').trim();
    const nc = await connect({ servers: url, user: 'agent', pass, inboxPrefix: '_INBOX.agent' });
    try {
      const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 2000 });
      await expect(jsm.streams.delete('WRIT_AUDIT')).rejects.toThrow(/Permissions Violation/i);
    } finally {
      await nc.close();
    }
  });
});
