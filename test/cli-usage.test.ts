/**
 * The command line people meet first: per-command help, usage errors that exit 2 and say what
 * was wrong, a suggestion for a misspelt command, and values the client can check (ids, target
 * names) refused at once, before any connection (NATS_URL points at a closed port: a request
 * that got that far would fail differently, with exit 1).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
const TSX = import.meta.resolve('tsx');

async function writ(args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, NATS_URL: 'nats://127.0.0.1:1', WRIT_TOKEN: 'not-a-token', WRIT_LOG_LEVEL: 'silent' };
  delete env.WRIT_CONFIG;
  try {
    const r = await run(process.execPath, ['--import', TSX, CLI, ...args], { env, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('writ usage', () => {
  it("prints every command with --help, and one command's options with COMMAND --help, exit 0", async () => {
    const all = await writ(['--help']);
    expect(all.code).toBe(0);
    for (const c of ['up', 'token', 'exec', 'status', 'wait', 'mcp', 'policy', 'audit', 'pending', 'approve', 'deny', 'grants', 'revoke']) expect(all.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    const exec = await writ(['exec', '--help']);
    expect(exec).toMatchObject({ code: 0, stderr: '' });
    expect(exec.stdout).toContain('Usage: writ exec [options]');
    expect(exec.stdout).toMatch(/--target <name>/);
    const help = await writ(['help', 'wait']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: writ wait [options] <intent-id>');
  });

  it('suggests the command meant by a misspelt one, exit 2', async () => {
    const r = await writ(['exce', '--target', 'db']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'exce'");
    expect(r.stderr).toContain('Did you mean exec?');
  });

  it('answers an unknown option, a missing option or argument with a usage error, exit 2', async () => {
    for (const [args, msg] of [
      [['exec', '--target', 'db', '--sql', 'SELECT 1', '--sesion', 's_12345678'], "unknown option '--sesion'"],
      [['exec', '--sql', 'SELECT 1'], "required option '--target <name>' not specified"],
      [['exec', '--target', 'db', '--sql', 'SELECT 1', '--command', 'ls'], 'exactly one of --sql and --command'],
      [['wait'], "missing required argument 'intent-id'"],
      [['deny', 'i_12345678'], "required option '--reason <text>' not specified"],
    ] as const) {
      const r = await writ([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(msg);
    }
  });

  it('refuses malformed session and intent ids and target names at once, before connecting, exit 2', async () => {
    for (const [args, what] of [
      [['exec', '--target', 'db', '--sql', 'SELECT 1', '--session', 'a.b'], '--session "a.b"'],
      [['exec', '--target', 'db', '--sql', 'SELECT 1', '--id', 'i_*'], '--id "i_*"'],
      [['exec', '--target', 'db.>', '--sql', 'SELECT 1'], '--target "db.>"'],
      [['status', 'short'], 'intent id "short"'],
      [['wait', 'i.12345678'], 'intent id "i.12345678"'],
      [['approve', 'x'], 'intent id "x"'],
    ] as const) {
      const r = await writ([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(what);
    }
    // A well-formed request gets as far as the connection, which fails otherwise (exit 1).
    const ok = await writ(['status', 'i_12345678']);
    expect(ok.code).toBe(1);
  });
});
