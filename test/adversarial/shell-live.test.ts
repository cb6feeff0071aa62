/**
 * Hidden code in allowed-looking shell lines never runs, through the live stack: the shipped
 * ops-diagnostics policy, the SSH worker and a real sshd on loopback. Each attack carries a
 * canary (`touch FILE`). First it is run with the local bash, which proves the payload is
 * live; then it is sent through Writ, which must deny it, and the canary must not appear.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../../client/index.ts';
import { startSshd, type SshdHandle } from '../helpers/index.ts';
import { startStack, type Stack } from '../fixture.ts';
import { REPO } from './corpus.ts';

/** `C` stands for the canary path. */
const ATTACKS: Record<string, string[]> = {
  'arithmetic-subscript': [
    "uptime; [[ 'a[$(touch C)]' -eq 1 ]]",
    "uptime; [[ 1 -le 'a[$(touch C)]' ]]",
    "uptime; (( 'a[$(touch C)]' ))",
    "uptime; x='a[$(touch C)]'; [[ $x -eq 0 ]]",
    "for x in 'a[$(touch C)]'; do uptime; (( x )); done",
    "uptime; [[ -v 'a[$(touch C)]' ]]",
    "uptime; x='a[$(touch C)]'; ls /var/log${PATH:x:0}",
  ],
  'prompt-expansion': ["TZ='$(touch C)'; date -d ${TZ@P}"],
};

let s: Stack;
let sshd: SshdHandle;
let agent: WritClient;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-canary-'));
  sshd = await startSshd();
  s = await startStack({
    config: {
      targets: [
        { name: 'db', kind: 'postgres', tags: [] },
        { name: 'web-1', kind: 'ssh', tags: ['prod', 'web'] },
      ],
      policyFile: join(REPO, 'deploy/policies/ops-diagnostics.yaml'),
    },
    workersSsh: [
      {
        target: 'web-1',
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
  agent = s.client(await s.token('mallory', ['ops']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('runs an allowed diagnostic on the host (the path is live)', async () => {
  const o = await agent.run({ target: 'web-1', command: 'uptime' }, { timeoutMs: 30_000 });
  expect(o.status, JSON.stringify(o.error)).toBe('succeeded');
  expect(o.result!.stdout).toMatch(/load average/);
});

let n = 0;
for (const [cls, attacks] of Object.entries(ATTACKS)) {
  describe(cls, () => {
    for (const attack of attacks) {
      it(attack, async () => {
        const local = join(dir, `local-${n}`);
        const remote = join(dir, `remote-${n++}`);
        try {
          execFileSync('/bin/bash', ['-c', attack.replaceAll('C', local)], { stdio: 'ignore', timeout: 10_000 });
        } catch {
          // The payload only has to run; the line's own exit status does not matter.
        }
        expect(existsSync(local), 'the payload runs under bash').toBe(true);
        const o = await agent.run({ target: 'web-1', command: attack.replaceAll('C', remote) }, { timeoutMs: 30_000 });
        expect(o.status).toBe('denied');
        expect(existsSync(remote)).toBe(false);
      });
    }
  });
}
