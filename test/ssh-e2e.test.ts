/**
 * A shell intent end to end: agent → broker (shell grammar, policy) → SSH worker → a real
 * OpenSSH sshd with a pinned host key → masked output → audit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { startSshd, type SshdHandle } from './helpers/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
let sshd: SshdHandle;

beforeAll(async () => {
  sshd = await startSshd();
  s = await startStack({
    config: {
      targets: [
        { name: 'db', kind: 'postgres', tags: [] },
        { name: 'host', kind: 'ssh', tags: ['test'] },
      ],
      policy: {
        rules: [
          { id: 'ops-shell', effect: 'allow', groups: ['ops'], targets: ['host'], mode: 'write', limits: { seconds: 20 } },
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
        ],
        masking: { detectors: ['github_token', 'email'] },
      },
    },
    workersSsh: [
      {
        target: 'host',
        host: sshd.host,
        port: sshd.port,
        hostKeys: { fingerprints: [sshd.hostKeyFingerprint] },
        credentials: {
          read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath },
          write: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath },
        },
      },
    ],
  });
}, 120_000);
afterAll(async () => {
  await s?.stop();
  await sshd?.stop();
});

describe('a shell intent', () => {
  it('runs on the pinned host and comes back masked, with its exit code', async () => {
    const c = s.client(await s.token('olga', ['ops']));
    const token = `ghp_${'a1B2c3D4e5'.repeat(3)}abcdef`;
    const o = await c.run({ target: 'host', command: `echo hello from writ; echo "key ${token}"; echo oops >&2; exit 3` }, { timeoutMs: 60_000 });
    expect(o.error).toBeUndefined();
    expect(o.status).toBe('succeeded');
    expect(o.result!.exitCode).toBe(3);
    expect(o.result!.stdout).toContain('hello from writ');
    expect(o.result!.stdout).not.toContain(token);
    expect(o.result!.stderr).toContain('oops');
    expect(o.result!.columns.find((col) => col.name === 'stdout')!.masked).toBe(true);
    const events = await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId });
    expect(JSON.stringify(events)).not.toContain(token);
  }, 60_000);

  it('is refused for a principal without a shell rule, and what the grammar cannot parse is refused', async () => {
    const analyst = s.client(await s.token('alice', ['analysts']));
    const no = await analyst.run({ target: 'host', command: 'id' });
    expect(no.status).toBe('denied');
    expect(no.error!.code).toBe('WRIT_POLICY_DENIED');
    const ops = s.client(await s.token('olga', ['ops']));
    const bad = await ops.run({ target: 'host', command: 'echo "unterminated' });
    expect(bad.status).toBe('denied');
    expect(bad.error!.code).toBe('WRIT_SHELL_UNPARSEABLE');
    const sqlOnShell = await ops.run({ target: 'host', sql: 'SELECT 1' });
    expect(sqlOnShell.status).toBe('denied');
  }, 60_000);
});
