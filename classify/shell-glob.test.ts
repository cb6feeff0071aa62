/**
 * Unquoted globs are marked (ShellCommand.globArgs, ShellRedirection.glob): dash, and bash before 5.2,
 * expand `.?`, `.*` and `.[.]` to `..`, so a path holding one is uncertain for path patterns. The oracle
 * is the real shells: whatever they expand to something else must be marked.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyShell, EXPANSION_MARK, initClassifiers } from './index.ts';
import { title } from './testing.ts';

beforeAll(async () => {
  await initClassifiers();
});

const dir = mkdtempSync(join(tmpdir(), 'writ-shell-glob-'));
for (const f of ['a', 'b', 'ab', '.h', 'd/x', 'd/.y']) {
  mkdirSync(join(dir, f, '..'), { recursive: true });
  writeFileSync(join(dir, f), '');
}
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const shells = [
  // bash before 5.2 matched `.` and `..` with `.?`/`.*`: globskipdots off behaves the same.
  { name: 'bash', argv: (s: string) => ['bash', '-c', `shopt -u globskipdots 2>/dev/null; ${s}`] },
  { name: 'dash', argv: (s: string) => ['dash', '-c', s] },
].filter((sh) => spawnSync(sh.name, ['-c', 'exit 0']).status === 0);

/** What a shell passes to printf for this word (one line per resulting argument). */
function expand(sh: (typeof shells)[number], word: string): string {
  const [bin, ...args] = sh.argv(`printf '%s\\n' ${word}`);
  return spawnSync(bin as string, args, { cwd: dir, encoding: 'utf8' }).stdout;
}

const GLOBS = [
  '*',
  '?',
  'a*',
  '*b',
  '[ab]',
  '[!a]',
  '[^a]',
  '.?',
  '.*',
  '.[.]',
  '.[!a]',
  '.[^h]',
  'd/*',
  'd/.?',
  'd/.*',
  './.?/d',
  '.?/',
  '*/x',
  'd/[x]',
  '"."?',
  "'.'*",
  ".'.'?",
  ".['.']",
  '[a-b]',
  '[[:alpha:]]',
  '**',
  '*/',
  '.??',
  'd/.?/d',
  '.?/.?/etc',
  '?b',
  'a?',
  '[a]b',
  '.["."]',
];
const QUOTED = ["'*'", '"*"', '\\*', '\\?', "'.?'", '".?"', '.\\?', ".'?'", "$'.?'", "'[ab]'", '\\[ab]', "'.*'", '.\\*', '"d/*"', '[ab\\]'];

describe('unquoted globs are marked in arguments', () => {
  it.each(GLOBS.map((g) => [title(g), g] as const))('%s', (_, g) => {
    const f = classifyShell(`printf '%s\\n' ${g}`);
    expect(f.error).toBeUndefined();
    expect(f.commands[0]?.globArgs).toEqual([1]);
  });

  it.each([...GLOBS, ...QUOTED].map((g) => [title(g), g] as const))('a word a shell expands is marked: %s', (_, g) => {
    const f = classifyShell(`printf '%s\\n' ${g}`);
    const arg = f.commands[0]?.args[1] ?? '';
    for (const sh of shells) {
      if (sh.name === 'dash' && g.startsWith('$')) continue; // dash has no $'...'
      if (expand(sh, g) !== `${arg}\n`) expect(f.commands[0]?.globArgs, `${sh.name} expands it`).toEqual([1]);
    }
  });

  it.each(QUOTED.map((g) => [title(g), g] as const))('a quoted or escaped glob is not marked: %s', (_, g) => {
    const f = classifyShell(`printf '%s\\n' ${g}`);
    expect(f.commands[0]?.globArgs).toEqual([]);
    for (const sh of shells) if (!(sh.name === 'dash' && g.startsWith('$'))) expect(expand(sh, g)).toBe(`${f.commands[0]?.args[1]}\n`);
  });

  it('dash expands .? to .. (why a glob is uncertain for path patterns)', () => {
    if (!shells.some((s) => s.name === 'dash')) return;
    expect(
      expand(
        shells.find((s) => s.name === 'dash')!,
        'd/.?/a',
      ),
    ).toBe('d/../a\n');
  });

  it('gives indexes into the args of the unwrapped command', () => {
    const f = classifyShell("sudo -u root cat /etc/x '*' /var/log/.?/.?/etc/shadow; find . -exec cat {} d/* \\;");
    expect(f.commands.map((c) => [c.program, c.globArgs])).toEqual([
      ['cat', [2]],
      ['find', [4]],
      ['cat', [1]],
    ]);
  });

  it('marks unquoted expansions, whose values are globbed too', () => {
    const f = classifyShell('p=".?/.?/etc/shadow"; cat $p "$p" /x/${p}');
    expect(f.commands[0]?.args.map((a) => a.includes(EXPANSION_MARK))).toEqual([true, true, true]);
    expect(f.commands[0]?.globArgs).toEqual([0, 2]);
  });

  it('marks globs in declaration and unset words', () => {
    expect(classifyShell('export X=1 a*').commands[0]?.globArgs).toEqual([1]);
  });
});

describe('unquoted globs are marked in redirection targets', () => {
  it.each([
    ['cat < /var/log/.?/x', true],
    ['cat < .[.]/x', true],
    ['echo > /tmp/*.log', true],
    ['echo 2>> "/tmp/*.log"', false],
    ["cat < '/var/log/.?/x'", false],
    ['cat < \\*', false],
    ['cat < $f', true],
    ['cat < "$f"', false],
    ['cat < /etc/hosts', false],
  ] as const)('%s', (cmd, glob) => {
    const r = classifyShell(cmd).redirections;
    expect(r.map((x) => x.glob)).toEqual([glob]);
  });

  it('here-documents and here-strings are not paths', () => {
    const f = classifyShell("cat <<'*'\nx\n*\ngrep a <<< *");
    expect(f.redirections.map((r) => r.glob)).toEqual([false, false]);
  });
});
