/**
 * The `writ` command line as users and later tools call it: `token`, `exec --json` and
 * `audit replay`, run as child processes against a real stack.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './fixture.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
let s: Stack;
let env: NodeJS.ProcessEnv;
let configFile: string;

beforeAll(async () => {
  s = await startStack();
  configFile = join(s.dir, 'cli.yaml');
  writeFileSync(configFile, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: s.config.identity.devIssuer.dir } } }));
  env = { ...process.env, NATS_URL: s.nats.url, WRIT_PREFIX: s.names.prefix, WRIT_CONFIG: configFile, WRIT_LOG_LEVEL: 'silent' };
});
afterAll(async () => {
  await s?.stop();
});

async function writ(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...env, ...extraEnv }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('writ CLI', () => {
  it('mints a token, runs exec --json with the documented shape, and replays the session', async () => {
    const tok = await writ(['token', '--sub', 'cli-user', '--groups', 'analysts', '--ttl', '5m']);
    expect(tok.code).toBe(0);
    const token = tok.stdout.trim();
    expect(token.split('.')).toHaveLength(3);

    const ok = await writ(['exec', '--target', 'db', '--sql', 'SELECT id, email AS contact FROM customers ORDER BY id LIMIT 2', '--session', 'cli-session-1', '--json'], { WRIT_TOKEN: token });
    expect(ok.code).toBe(0);
    const o = JSON.parse(ok.stdout) as Record<string, any>;
    expect(Object.keys(o).slice(0, 3)).toEqual(['intentId', 'sessionId', 'status']);
    expect(o.sessionId).toBe('cli-session-1');
    expect(o.status).toBe('succeeded');
    expect(o.result.columns).toEqual([{ name: 'id', masked: false }, expect.objectContaining({ name: 'contact', masked: true })]);
    expect(o.result.rowCount).toBe(2);
    expect(o.result.truncated).toBe(false);
    expect(ok.stdout).not.toContain('@example.com');

    const denied = await writ(['exec', '--target', 'db', '--sql', 'DROP TABLE customers', '--session', 'cli-session-1', '--json'], { WRIT_TOKEN: token });
    expect(denied.code).toBe(1);
    const d = JSON.parse(denied.stdout) as Record<string, any>;
    expect(d.status).toBe('denied');
    expect(d.error.code).toBe('WRIT_POLICY_DENIED');
    expect(d.result).toBeUndefined();

    const replay = await writ(['audit', 'replay', '--session', 'cli-session-1']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('DROP TABLE customers');
    expect(replay.stdout).toContain('intent.denied');
  });

  it('prints result values with escape sequences and bidi overrides made visible', async () => {
    const tok = (await writ(['token', '--sub', 'cli-user', '--groups', 'analysts', '--ttl', '5m'])).stdout.trim();
    // PostgreSQL's E'' string turns these escapes into the real characters.
    const sql = "SELECT E'OK\\u001b[2K\\rBROKEN\\u202Egnp.exe' AS x";
    const plain = await writ(['exec', '--target', 'db', '--sql', sql, '--session', 'cli-session-2'], { WRIT_TOKEN: tok });
    expect(plain.code, plain.stderr).toBe(0);
    for (const raw of ['\u001b', '\u202e', '\r']) expect(plain.stdout).not.toContain(raw);
    expect(plain.stdout).toContain('\\u001b[2K');
    const json = await writ(['exec', '--target', 'db', '--sql', sql, '--session', 'cli-session-2', '--json'], { WRIT_TOKEN: tok });
    expect(json.stdout).not.toContain('\u202e');
    // Valid JSON still, and it decodes to the real characters the database returned.
    const value = (JSON.parse(json.stdout) as { result: { rows: string[][] } }).result.rows[0]![0]!;
    expect(value).toContain('\u001b[2K');
    expect(value).toContain('\u202e');
  });

  it('refuses exec without a token, with a stable code', async () => {
    const r = await writ(['exec', '--target', 'db', '--sql', 'SELECT 1'], { WRIT_TOKEN: '' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('WRIT_TOKEN_MISSING');
  });
});
