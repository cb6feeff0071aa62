/**
 * `writ` output through a real pipe read by a slow consumer. A CLI that calls
 * `process.exit()` before stdout drains loses everything past the pipe's buffer (64 KiB):
 * `writ exec --json … | jq` got 65,536 bytes, `writ policy eval` 3,448 of 20,000 lines.
 *
 * The test holds its end of the pipe unread until the child has either exited (the bug:
 * whatever was not yet in the pipe is gone) or stopped using CPU (the fix: it waits for the
 * reader), and only then reads everything.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { exportJsonl } from '../audit/index.ts';
import { startStack, type Stack } from './fixture.ts';

const REPO = join(import.meta.dirname, '..');
const CLI = join(REPO, 'cmd', 'cli.ts');

function writ(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO, env: { ...process.env, WRIT_LOG_LEVEL: 'silent', ...env } });
}

/** utime + stime of a live process, in clock ticks; undefined once it is gone. */
function cpuTicks(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/**
 * Reads the child's whole stdout, but only after it exited or sat idle for `idleMs`
 * (nothing left to compute: it is waiting for this reader). Resolves with the output,
 * the exit code and stderr.
 */
async function readWhenDone(child: ChildProcessWithoutNullStreams, idleMs = 1500): Promise<{ out: Buffer; code: number | null; err: string }> {
  const chunks: Buffer[] = [];
  let err = '';
  // A 'data' listener keeps Node from discarding unread output when the child exits; pause holds it unread.
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stdout.pause();
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<number | null>((r) => child.on('close', r));
  let exited = false;
  child.on('exit', () => (exited = true));
  let last = -1;
  let idleSince = Date.now();
  while (!exited) {
    await new Promise((r) => setTimeout(r, 100));
    const t = cpuTicks(child.pid!);
    if (t === undefined) break;
    if (t !== last) {
      last = t;
      idleSince = Date.now();
    } else if (Date.now() - idleSince >= idleMs) break;
  }
  child.stdout.resume();
  const code = await closed;
  return { out: Buffer.concat(chunks), code, err };
}

describe('CLI output through a pipe', () => {
  it('writ policy eval prints every one of 20,000 lines into a slow pipe', async () => {
    const line = (i: number) => JSON.stringify({ id: i, principal: { sub: 'a', groups: ['analysts'] }, target: 'demo', sql: 'SELECT 1' });
    const child = writ(['policy', 'eval', '--policy', join(REPO, 'deploy/local/policy.yaml')]);
    child.stdin.end(Array.from({ length: 20_000 }, (_, i) => `${line(i)}\n`).join(''));
    const r = await readWhenDone(child);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.toString().trimEnd().split('\n');
    expect(lines).toHaveLength(20_000);
    expect((JSON.parse(lines[19_999]!) as { id: number }).id).toBe(19_999);
  }, 180_000);

  it('a reader that closes the pipe early ends the command quietly, without a crash', async () => {
    const child = writ(['policy', 'eval', '--policy', join(REPO, 'deploy/local/policy.yaml')]);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const closed = new Promise<number | null>((r) => child.on('close', r));
    child.stdout.once('data', () => child.stdout.destroy());
    child.stdin.on('error', () => undefined);
    child.stdin.end(Array.from({ length: 20_000 }, (_, i) => `${JSON.stringify({ id: i, principal: { sub: 'a', groups: ['analysts'] }, target: 'demo', sql: 'SELECT 1' })}\n`).join(''));
    expect(await closed).toBe(141);
    expect(err).not.toContain('EPIPE');
  }, 180_000);

  describe('against a real stack', () => {
    let s: Stack;
    let env: NodeJS.ProcessEnv;
    beforeAll(async () => {
      s = await startStack();
      const configFile = join(s.dir, 'cli.yaml');
      writeFileSync(configFile, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: s.config.identity.devIssuer.dir } } }));
      env = { NATS_URL: s.nats.url, WRIT_PREFIX: s.names.prefix, WRIT_CONFIG: configFile, WRIT_TOKEN: await s.token('pipe-reader', ['analysts']) };
    });
    afterAll(async () => {
      await s?.stop();
    });

    it('writ exec --json delivers a result far over 64 KiB whole into a slow pipe', async () => {
      const child = writ(['exec', '--target', 'db', '--json', '--sql', "SELECT g AS n, repeat('x', 1000) AS pad FROM generate_series(1, 300) g"], env);
      const r = await readWhenDone(child);
      expect(r.code, r.err).toBe(0);
      expect(r.out.length).toBeGreaterThan(256 * 1024);
      const o = JSON.parse(r.out.toString()) as { status: string; result: { rows: unknown[][]; truncated: boolean } };
      expect(o.status).toBe('succeeded');
      expect(o.result.truncated).toBe(false);
      expect(o.result.rows).toHaveLength(300);
      expect(o.result.rows[299]).toEqual([300, 'x'.repeat(1000)]);
    }, 120_000);

    it('writ audit export delivers every event of a log far over 64 KiB into a slow pipe', async () => {
      const c = s.client(env.WRIT_TOKEN!, 'pipe-export');
      for (let i = 0; i < 6; i++) await Promise.all(Array.from({ length: 20 }, (_, j) => c.run({ target: 'db', sql: `SELECT ${i * 20 + j} AS n, name FROM customers` })));
      const exportNow = async () => {
        let text = '';
        await exportJsonl({ js: jetstream(s.nc), names: s.names }, { write: (x: string) => void (text += x) });
        return text;
      };
      // Workers may append their last events just after the outcome: wait until the log is still.
      let expected = await exportNow();
      for (let prev = ''; prev !== expected;) {
        prev = expected;
        await new Promise((res) => setTimeout(res, 300));
        expected = await exportNow();
      }
      expect(expected.length).toBeGreaterThan(128 * 1024);
      const r = await readWhenDone(writ(['audit', 'export'], env));
      expect(r.code, r.err).toBe(0);
      expect(r.out.length).toBe(Buffer.byteLength(expected));
      expect(r.out.toString() === expected).toBe(true);
    }, 120_000);
  });
});
