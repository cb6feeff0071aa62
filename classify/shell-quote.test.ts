/**
 * quoteShellArgs: what it produces must parse back to exactly the argv that
 * was approved, for any bytes an argument can hold.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyShell, initClassifiers, quoteShellArg, quoteShellArgs } from './index.ts';

beforeAll(async () => {
  await initClassifiers();
});

/** A small deterministic generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ALPHABET = [...'abcXYZ019 -_./=:@%+,\'"`$\\!*?[]{}()<>|&;#~\t\n\r', 'é', '€', '😀', '\u0007', '\u007f'];

describe('quoteShellArgs', () => {
  it('leaves plainly safe words alone and quotes the rest', () => {
    expect(quoteShellArgs(['ls', '-la', '/var/log'])).toBe('ls -la /var/log');
    expect(quoteShellArgs(['echo', 'a b'])).toBe("echo 'a b'");
    expect(quoteShellArgs(['echo', ''])).toBe("echo ''");
    expect(quoteShellArg("it's")).toBe(`'it'"'"'s'`);
    expect(quoteShellArg('$(rm -rf /)')).toBe("'$(rm -rf /)'");
  });

  it('quotes a program word holding = so it is not read as an assignment', () => {
    const line = quoteShellArgs(['A=b', 'x']);
    expect(classifyShell(line).commands.map((c) => c.program)).toEqual(['A=b']);
  });

  it('refuses NUL and an empty argv', () => {
    expect(() => quoteShellArg('a\u0000b')).toThrow(expect.objectContaining({ code: 'WRIT_SHELL_UNPARSEABLE' }));
    expect(() => quoteShellArgs([])).toThrow(expect.objectContaining({ code: 'WRIT_SHELL_EMPTY' }));
  });

  it('round-trips random argvs through the classifier', () => {
    const next = rng(20240601);
    for (let n = 0; n < 1500; n++) {
      const argv = Array.from({ length: 1 + Math.floor(next() * 4) }, (_, i) => {
        const len = i === 0 ? 1 + Math.floor(next() * 6) : Math.floor(next() * 12);
        return Array.from({ length: len }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]).join('');
      });
      argv[0] = `p${argv[0]}`; // a program name, not a wrapper the classifier would unwrap
      const f = classifyShell(quoteShellArgs(argv));
      expect(f.error, `${JSON.stringify(argv)} → ${quoteShellArgs(argv)}`).toBeUndefined();
      expect(f.commands.length).toBe(1);
      expect([f.commands[0]?.program, ...(f.commands[0]?.args ?? [])]).toEqual(argv);
    }
  });
});
