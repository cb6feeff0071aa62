/**
 * The line the SSH worker sends runs under bash whatever the remote login shell is: the
 * classifier read it with bash's grammar. Checked with a real dash and a real bash.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { remoteLine } from './session.ts';

const run = (shell: string, line: string) => execFileSync(shell, ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('remoteLine', () => {
  it('runs the approved text under bash when the login shell is dash', () => {
    // dash has no $'…' quoting: run directly, it reads this as two commands.
    const text = `printf '%s|' $'a\\tb' "x y"; echo $'\\x41'`;
    expect(run('bash', text)).toBe('a\tb|x y|A\n');
    expect(run('dash', text)).not.toBe('a\tb|x y|A\n');
    expect(run('dash', remoteLine(text))).toBe('a\tb|x y|A\n');
    expect(run('bash', remoteLine(text))).toBe('a\tb|x y|A\n');
  });

  it("keeps quotes and newlines, and bash has the PID the probe reported (the session's ID)", () => {
    const text = `echo "it's" 'a "b"'\necho $$`;
    for (const shell of ['dash', 'bash']) {
      const r = spawnSync(shell, ['-c', remoteLine(text)], { encoding: 'utf8' });
      const lines = r.stdout.trim().split('\n');
      expect(lines[0]).toBe(`it's a "b"`);
      expect(r.stderr).toBe(`writ-sid ${lines[1]}\n`);
    }
  });
});
