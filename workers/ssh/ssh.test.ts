// The SSH executor against a real OpenSSH sshd on a random loopback port.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, SshWorkerTargetSchema, WritError, type AccessMode, type GrantClaims, type Order } from '../../schemas/index.ts';
import { freePort, startSshd, uniqueName, type SshdHandle } from '../../test/helpers/index.ts';
import type { ExecContext, StreamOutput } from '../executor.ts';
import { LineMasker, MaskingSpecSchema } from '../../masking/index.ts';
import { SshExecutor } from './index.ts';

let sshd: SshdHandle;
let dir: string;
/** A second client key, authorized with `environment="WRIT_CRED=write"` so a run can tell which key logged in. */
let writeKeyPath: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-ssh-test-'));
  writeKeyPath = join(dir, 'write_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'writ-write', '-f', writeKeyPath]);
  const extraKeys = join(dir, 'extra_authorized_keys');
  writeFileSync(extraKeys, `environment="WRIT_CRED=write" ${readFileSync(`${writeKeyPath}.pub`, 'utf8')}`);
  sshd = await startSshd({
    extraConfig: ['PermitUserEnvironment yes', `AuthorizedKeysCommand /bin/cat ${extraKeys}`, 'AuthorizedKeysCommandUser root'].join('\n'),
  });
});

afterAll(async () => {
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type TargetInput = Parameters<typeof SshWorkerTargetSchema.parse>[0];

function target(over: Partial<Record<string, unknown>> = {}) {
  return SshWorkerTargetSchema.parse({
    target: 'box',
    host: sshd.host,
    port: sshd.port,
    hostKeys: { fingerprints: [sshd.hostKeyFingerprint] },
    credentials: { read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath } },
    ...over,
  } as TargetInput);
}

interface CtxOptions {
  mode?: AccessMode;
  seconds?: number;
  bytes?: number;
  signal?: AbortSignal;
}

/** An order and its claims built by hand: the runtime's signature check is not involved at this level. */
function ctx(command: string, o: CtxOptions = {}): ExecContext {
  const now = Math.floor(Date.now() / 1000);
  const order: Order = {
    v: 1,
    type: 'order',
    intentId: 'intent-0001',
    sessionId: 'session-0001',
    target: 'box',
    command: { kind: 'shell', command },
    grant: 'not-checked-here',
    stateRevision: 1,
  };
  const claims: GrantClaims = {
    gid: uniqueName('grant'),
    iid: order.intentId,
    sid: order.sessionId,
    tgt: 'box',
    kind: 'ssh',
    mode: o.mode ?? 'read',
    sha256: sha256Hex(command),
    iat: now,
    exp: now + 60,
    limits: { ...(o.seconds !== undefined ? { seconds: o.seconds } : {}), ...(o.bytes !== undefined ? { bytes: o.bytes } : {}) },
    policyVersion: 'test',
    sub: 'agent-1',
  };
  const spec = MaskingSpecSchema.parse({});
  return { order, claims, signal: o.signal ?? new AbortController().signal, streamMasker: () => new LineMasker(spec) };
}

async function run(ex: SshExecutor, command: string, o: CtxOptions = {}): Promise<StreamOutput> {
  const out = await ex.run(ctx(command, o));
  if (out.type !== 'stream') throw new Error('expected stream output');
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof WritError) return e.code;
    throw e;
  }
  throw new Error('expected a WritError');
}

const marker = () => join(tmpdir(), uniqueName('writ-marker'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A long command that leaves evidence: `started` once it runs, a uniquely named `sleep` while
 * it runs, and `finished` only if it survives. Files go to /tmp, writable by any login user.
 */
function probe() {
  const started = marker();
  const finished = marker();
  const sleepArg = `6.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
  return {
    command: `touch ${started}; sleep ${sleepArg}; touch ${finished}`,
    async expectKilled() {
      expect(existsSync(started)).toBe(true); // it was running when it was killed
      expect(running(`sleep ${sleepArg}`)).toBe(false);
      await sleep(2_000);
      expect(existsSync(finished)).toBe(false);
      rmSync(started, { force: true });
    },
  };
}

function running(pattern: string): boolean {
  try {
    execFileSync('pgrep', ['-f', pattern], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A local non-root user with a shell whose account is not locked (sshd refuses locked ones
 * when PAM is off), if there is one: sshd honours `signal` only for such sessions.
 */
const otherUser = (() => {
  let shadow: string;
  try {
    shadow = readFileSync('/etc/shadow', 'utf8');
  } catch {
    return undefined;
  }
  const locked = new Set(
    shadow
      .split('\n')
      .map((l) => l.split(':'))
      .filter((f) => f[1]?.startsWith('!'))
      .map((f) => f[0]),
  );
  return readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => Number(f[2]) >= 100 && Number(f[2]) < 65534 && /\/(ba|da|z)?sh$/.test(f[6] ?? '') && !locked.has(f[0]))?.[0];
})();

describe('SshExecutor against sshd', () => {
  it('returns stdout, stderr and the exit code', async () => {
    const ex = new SshExecutor([target()]);
    const out = await run(ex, `sh -c 'echo hi; echo err >&2; exit 3'`);
    expect(out).toEqual({ type: 'stream', stdout: 'hi\n', stderr: 'err\n', exitCode: 3, signal: null, truncated: false });
    await ex.close();
  });

  it('ends what the command left running in the background when the run ends', async () => {
    const ex = new SshExecutor([target()]);
    const arg = `7.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
    const finished = marker();
    // Its output redirected, the job holds no channel open: the shell exits at once and the channel closes.
    const out = await run(ex, `(sleep ${arg}; touch ${finished}) >/dev/null 2>&1 & echo started`);
    expect([out.stdout, out.stderr, out.exitCode]).toEqual(['started\n', '', 0]);
    expect(running(`sleep ${arg}`)).toBe(false);
    await sleep(1_000);
    expect(running(`sleep ${arg}`)).toBe(false);
    expect(existsSync(finished)).toBe(false);
    await ex.close();
  });

  it('ends a background job that keeps re-launching itself', async () => {
    const ex = new SshExecutor([target()]);
    const mark = marker();
    // Each instance touches the marker, starts the next one and exits: the chain changes PIDs all the
    // time. (The race this guards, a relaunch between pkill's listing and its kill, is too narrow to
    // hit on demand here; this checks that the chain ends.)
    const out = await run(ex, `f() { touch ${mark}; sleep 0.02; f >/dev/null 2>&1 & }; f >/dev/null 2>&1 & sleep 0.2; echo started`);
    expect(out.stdout).toBe('started\n');
    await sleep(300);
    rmSync(mark, { force: true });
    await sleep(1_000);
    expect(existsSync(mark)).toBe(false);
    await ex.close();
  });

  it('runs a plain command as its re-quoted argv', async () => {
    const ex = new SshExecutor([target()]);
    const out = await run(ex, `printf '%s|' "a  b" 'c'"'"'d' $'e\\tf'`);
    expect(out.stdout).toBe("a  b|c'd|e\tf|");
    expect(out.exitCode).toBe(0);
    await ex.close();
  });

  it('reports the signal that killed the command', async () => {
    const ex = new SshExecutor([target()]);
    const out = await run(ex, 'kill -9 $$');
    expect(out.exitCode).toBeNull();
    expect(out.signal).toBe('SIGKILL');
    await ex.close();
  });

  it('refuses a changed host key from known_hosts and runs nothing', async () => {
    const other = join(dir, uniqueName('other'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const [type, blob] = readFileSync(`${other}.pub`, 'utf8').trim().split(/\s+/);
    const knownHosts = join(dir, uniqueName('known_hosts'));
    writeFileSync(knownHosts, `[${sshd.host}]:${sshd.port} ${type} ${blob}\n`);
    const ex = new SshExecutor([target({ hostKeys: { knownHostsFile: knownHosts } })]);
    const m = marker();
    await expect(codeOf(ex.run(ctx(`touch ${m}`)))).resolves.toBe('WRIT_HOST_KEY_MISMATCH');
    await sleep(300);
    expect(existsSync(m)).toBe(false);
    await ex.close();
  });

  it('refuses a host whose key matches no pinned fingerprint and runs nothing', async () => {
    const ex = new SshExecutor([target({ hostKeys: { fingerprints: [`SHA256:${'A'.repeat(43)}`] } })]);
    const m = marker();
    const err = await ex.run(ctx(`touch ${m}`)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WritError);
    expect((err as WritError).code).toBe('WRIT_HOST_KEY_MISMATCH');
    expect((err as WritError).retryable).toBe(false);
    expect((err as WritError).message).toContain(sshd.hostKeyFingerprint);
    await sleep(300);
    expect(existsSync(m)).toBe(false);
    await ex.close();
  });

  it('accepts the pinned key from a hashed known_hosts file', async () => {
    const knownHosts = join(dir, uniqueName('known_hosts'));
    writeFileSync(knownHosts, `${sshd.knownHostsLine}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', knownHosts], { stdio: 'ignore' });
    expect(readFileSync(knownHosts, 'utf8')).toMatch(/^\|1\|/);
    const ex = new SshExecutor([target({ hostKeys: { knownHostsFile: knownHosts } })]);
    expect((await run(ex, 'echo pinned')).stdout).toBe('pinned\n');
    await ex.close();
  });

  it('kills the remote command at the time limit', async () => {
    const ex = new SshExecutor([target()]);
    const p = probe();
    const started = Date.now();
    const err = await ex.run(ctx(p.command, { seconds: 3 })).catch((e: unknown) => e);
    expect((err as WritError).code).toBe('WRIT_EXEC_TIMEOUT');
    expect((err as WritError).details?.killConfirmed).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(15_000);
    await p.expectKilled();
    await ex.close();
  });

  it('kills the remote command when the run is aborted', async () => {
    const ex = new SshExecutor([target()]);
    const p = probe();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 3_000);
    await expect(codeOf(ex.run(ctx(p.command, { signal: ac.signal })))).resolves.toBe('WRIT_EXEC_FAILED');
    await p.expectKilled();
    await ex.close();
  });

  it.skipIf(otherUser === undefined)('kills a non-root session through the signal request alone', async () => {
    const ex = new SshExecutor([target({ credentials: { read: { user: { value: otherUser }, privateKeyFile: writeKeyPath } } })]);
    const p = probe();
    const before = readFileSync(sshd.logFile, 'utf8').length;
    await expect(codeOf(ex.run(ctx(p.command, { seconds: 3 })))).resolves.toBe('WRIT_EXEC_TIMEOUT');
    await p.expectKilled();
    // sshd logs this error when it refuses the request (root logins); the fallback would then have done the kill.
    expect(readFileSync(sshd.logFile, 'utf8').slice(before)).not.toContain('session signalling requires privilege separation');
    await ex.close();
  });

  it('truncates output over the byte limit and lets the command finish', async () => {
    const ex = new SshExecutor([target({ maxOutputBytes: 1_000 })]);
    const m = marker();
    const out = await run(ex, `yes 123456789 | head -n 50000; yes e | head -n 10 >&2; touch ${m}`);
    expect(out.truncated).toBe(true);
    expect(out.stdout.length).toBeLessThanOrEqual(1_000);
    expect(out.stdout).toBe('123456789\n'.repeat(100));
    expect(out.stderr).toBe('e\n'.repeat(10));
    expect(out.exitCode).toBe(0);
    expect(existsSync(m)).toBe(true);
    rmSync(m, { force: true });
    await ex.close();
  });

  it("applies the grant's byte limit when it is lower, and drops a partial last line", async () => {
    const ex = new SshExecutor([target()]);
    const out = await run(ex, `printf 'line one\\nsecond line is long'`, { bytes: 15 });
    expect(out).toMatchObject({ stdout: 'line one\n', truncated: true, exitCode: 0 });
  });

  it('masks secrets split across output chunks', async () => {
    const ex = new SshExecutor([target()]);
    const token = 'ghp_' + 'abcdefghijklmnopqrstuvwxyz0123456789';
    const aws = 'AKIA' + 'IOSFODNN7EXAMPLE';
    const command =
      `printf 'token=ghp_'; sleep 0.2; printf 'abcdefghij'; sleep 0.2; printf 'klmnopqrstuvwxyz0123456789\\n'; ` + `printf 'key AKIA' >&2; sleep 0.2; printf 'IOSFODNN7EXAMPLE done\\n' >&2`;
    // The real masking engine, counting the chunks it is fed, to show the secrets did arrive in pieces.
    const c = ctx(command);
    const chunks: number[] = [];
    const spec = MaskingSpecSchema.parse({});
    c.streamMasker = () => {
      const m = new LineMasker(spec);
      const i = chunks.push(0) - 1;
      return { push: (b) => (chunks[i]!++, m.push(b)), end: () => m.end() };
    };
    const out = (await ex.run(c)) as StreamOutput;
    expect(chunks[0]).toBeGreaterThanOrEqual(3);
    expect(chunks[1]).toBeGreaterThanOrEqual(2);
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toMatch(/^token=/);
    expect(out.stdout).not.toContain(token);
    expect(out.stdout).not.toContain('abcdefghij');
    expect(out.stderr).toMatch(/^key .* done\n$/);
    expect(out.stderr).not.toContain(aws);
    expect(out.stderr).not.toContain('IOSFODNN7EXAMPLE');
    await ex.close();
  });

  it("chooses the credential by the grant's mode", async () => {
    const ex = new SshExecutor([
      target({
        credentials: {
          read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath },
          write: { user: { value: sshd.user }, privateKeyFile: writeKeyPath },
        },
      }),
    ]);
    const probe = 'echo "cred=${WRIT_CRED:-read}"';
    expect((await run(ex, probe, { mode: 'read' })).stdout).toBe('cred=read\n');
    expect((await run(ex, probe, { mode: 'write' })).stdout).toBe('cred=write\n');
    await ex.close();
  });

  it('refuses a mode it holds no credential for, without connecting', async () => {
    const ex = new SshExecutor([target()]);
    const m = marker();
    await expect(codeOf(ex.run(ctx(`touch ${m}`, { mode: 'write' })))).resolves.toBe('WRIT_GRANT_MISMATCH');
    expect(existsSync(m)).toBe(false);
    await ex.close();
  });

  it('refuses a text the classifier cannot see through', async () => {
    const ex = new SshExecutor([target()]);
    await expect(codeOf(ex.run(ctx('eval "$X"')))).resolves.toBe('WRIT_SHELL_UNKNOWN');
    await expect(codeOf(ex.run(ctx('   ')))).resolves.toBe('WRIT_SHELL_EMPTY');
    await ex.close();
  });

  it('reports an unreachable target as retryable WRIT_TARGET_UNAVAILABLE', async () => {
    const ex = new SshExecutor([target({ port: await freePort() })]);
    const err = await ex.run(ctx('true')).catch((e: unknown) => e);
    expect((err as WritError).code).toBe('WRIT_TARGET_UNAVAILABLE');
    expect((err as WritError).retryable).toBe(true);
    await ex.close();
  });

  it('reports a refused login as WRIT_TARGET_UNAVAILABLE', async () => {
    const ex = new SshExecutor([target({ credentials: { read: { user: { value: 'nobody' }, privateKeyFile: sshd.clientKeyPath } } })]);
    await expect(codeOf(ex.run(ctx('true')))).resolves.toBe('WRIT_TARGET_UNAVAILABLE');
    await ex.close();
  });
});

describe('SshExecutor configuration', () => {
  it('refuses at construction a known_hosts file with no entry for the host', () => {
    const knownHosts = join(dir, uniqueName('known_hosts'));
    writeFileSync(knownHosts, `[${sshd.host}]:1 ${sshd.hostPublicKey}\n`);
    expect(() => new SshExecutor([target({ hostKeys: { knownHostsFile: knownHosts } })])).toThrow(/no host key is pinned/);
  });

  it('refuses at construction an unreadable or encrypted key without its passphrase', () => {
    const enc = join(dir, uniqueName('enc'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'sesame', '-f', enc]);
    const bad = () => new SshExecutor([target({ credentials: { read: { user: { value: 'x' }, privateKeyFile: enc } } })]);
    expect(bad).toThrow(/credentials\.read\.privateKeyFile/);
    const good = new SshExecutor([target({ credentials: { read: { user: { value: 'x' }, privateKeyFile: enc, passphrase: { value: 'sesame' } } } })]);
    expect(good.targets).toEqual(['box']);
    expect(() => new SshExecutor([target({ credentials: { read: { user: { value: 'x' }, privateKeyFile: join(dir, 'missing') } } })])).toThrow(/cannot read/);
  });
});
