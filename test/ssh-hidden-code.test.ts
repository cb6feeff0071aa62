/**
 * Shell text whose code the classifier did not see, found by a report-only attack on the SSH
 * path (each test fails without its fix): a command substitution inside the pattern of
 * ${x#…} ${x%…} ${x^…} ${x,…}, and what xargs puts into a command from its input. Decided with the
 * shipped policies, and run on a real sshd where they still allow it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyShell, initClassifiers } from '../classify/index.ts';
import { RulePolicy } from '../broker/rules/engine.ts';
import { toPolicyInput } from '../broker/rules/intent.ts';
import { sha256Hex, SshWorkerTargetSchema, type GrantClaims, type Order } from '../schemas/index.ts';
import { LineMasker, MaskingSpecSchema } from '../masking/index.ts';
import type { ExecContext, StreamOutput } from '../workers/executor.ts';
import { SshExecutor } from '../workers/ssh/index.ts';
import { startSshd, uniqueName, type SshdHandle } from './helpers/index.ts';

let sshd: SshdHandle;
let ops: RulePolicy;
let realistic: RulePolicy;

beforeAll(async () => {
  await initClassifiers();
  ops = RulePolicy.fromText(readFileSync('deploy/policies/ops-diagnostics.yaml', 'utf8'), 'ops-diagnostics.yaml');
  realistic = RulePolicy.fromText(readFileSync('broker/rules/testdata/realistic.yaml', 'utf8'), 'realistic.yaml');
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
});

const decide = (p: RulePolicy, command: string, groups: string[], tgt: string) => p.decide(toPolicyInput({ principal: { sub: 'agent-1', groups }, target: tgt, command }, p.targets)).effect;

/** Runs on the real sshd as the worker would; a refusal by the worker's own classification counts as not run. */
async function runs(command: string): Promise<StreamOutput | 'refused'> {
  const now = Math.floor(Date.now() / 1000);
  const order: Order = { v: 1, type: 'order', intentId: 'intent-0001', sessionId: 'session-0001', target: 'box', command: { kind: 'shell', command }, grant: 'x', stateRevision: 1 };
  const claims = {
    gid: uniqueName('grant'),
    iid: order.intentId,
    sid: order.sessionId,
    tgt: 'box',
    kind: 'ssh',
    mode: 'read',
    sha256: sha256Hex(command),
    iat: now,
    exp: now + 60,
    limits: {},
    policyVersion: 'test',
    sub: 'agent-1',
  } as GrantClaims;
  const ctx: ExecContext = { order, claims, signal: new AbortController().signal, streamMasker: () => new LineMasker(MaskingSpecSchema.parse({})) };
  const target = SshWorkerTargetSchema.parse({
    target: 'box',
    host: sshd.host,
    port: sshd.port,
    hostKeys: { fingerprints: [sshd.hostKeyFingerprint] },
    credentials: { read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath } },
  });
  const ex = new SshExecutor([target]);
  try {
    return (await ex.run(ctx)) as StreamOutput;
  } catch {
    return 'refused';
  } finally {
    await ex.close();
  }
}

describe("a command substitution in an expansion's pattern", () => {
  const forms = (m: string) => [
    `case \${HOME#$(touch ${m})} in *) uptime;; esac`,
    `[[ \${HOME%%$(touch ${m})} ]] && uptime`,
    `case x in \${HOME%\`touch ${m}\`}) uptime;; esac`,
    `case \${HOME^^<(touch ${m})} in *) uptime;; esac`,
    `case \${HOME,$(touch ${m})} in *) uptime;; esac`,
  ];

  it('is code the classifier cannot see: refused, never allowed, never run', async () => {
    for (const cmd of forms(join(tmpdir(), uniqueName('writ-pwn')))) {
      expect([cmd, classifyShell(cmd).error?.code]).toEqual([cmd, 'WRIT_SHELL_UNKNOWN']);
      expect([cmd, decide(ops, cmd, ['ops'], 'web-1')]).not.toEqual([cmd, 'allow']);
    }
    const m = join(tmpdir(), uniqueName('writ-pwn'));
    const echo = `echo \${HOME#$(touch ${m})}`;
    expect(decide(realistic, echo, ['engineers'], 'build-box')).not.toBe('allow');
    for (const cmd of [...forms(m), echo]) expect(await runs(cmd)).toBe('refused');
    expect(existsSync(m)).toBe(false);
  });

  it('leaves plain patterns alone', () => {
    for (const cmd of ['echo ${HOME#/root}', 'echo ${HOME%%/*}', 'echo ${x:-$(date)}']) expect([cmd, classifyShell(cmd).error]).toEqual([cmd, undefined]);
  });
});

describe('what xargs puts into a command', () => {
  it('is no literal: `-I X` in a path does not pass a path rule (X = .. read /etc/passwd)', async () => {
    for (const cmd of [
      'ls -a /var/log | xargs -I X cat /var/log/X/X/etc/passwd',
      'ls -a /var/log | xargs -iX cat /var/log/X/X/etc/passwd',
      'ls -a /var/log | xargs --replace=X cat /var/log/X/X/etc/passwd',
    ]) {
      expect([cmd, decide(ops, cmd, ['ops'], 'web-1')]).not.toEqual([cmd, 'allow']);
    }
    // Without -I the input lines are appended: the command has an argument the text does not show.
    const args = classifyShell('echo -exec touch M ";" | xargs find /tmp -maxdepth 0').commands.find((c) => c.program === 'find')?.args ?? [];
    expect(args.some((a) => a.includes('\u0000'))).toBe(true);
  });
});
