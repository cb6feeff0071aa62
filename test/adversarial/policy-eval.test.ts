/**
 * Every attack in the corpus is denied by the shipped policy it names, through the real
 * `writ policy eval` command (one process per corpus file, one JSON line per input), and
 * every control is still allowed.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCorpus, REPO, type CorpusFile } from './corpus.ts';

const CLI = join(REPO, 'cmd', 'cli.ts');

async function evaluate(c: CorpusFile, inputs: string[]): Promise<Array<{ id: number; effect: string; reasons: string[] }>> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'policy', 'eval', '--policy', join(REPO, c.policy)], { cwd: REPO, env: { ...process.env, WRIT_LOG_LEVEL: 'silent' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  for (const [id, text] of inputs.entries()) {
    child.stdin.write(`${JSON.stringify({ id, principal: c.principal, target: c.target, ...(c.kind === 'sql' ? { sql: text } : { command: text }) })}\n`);
  }
  child.stdin.end();
  const code = await new Promise<number | null>((r) => child.on('close', r));
  expect(code, err).toBe(0);
  return out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: number; effect: string; reasons: string[] });
}

for (const c of loadCorpus()) {
  describe(`${c.file} against ${c.policy}`, () => {
    const attacks = Object.entries(c.attacks).flatMap(([cls, inputs]) => inputs.map((text) => ({ cls, text })));
    const all = [...c.controls.map((text) => ({ cls: 'control', text })), ...attacks];
    let results: Awaited<ReturnType<typeof evaluate>>;

    it('evaluates every input', async () => {
      results = await evaluate(
        c,
        all.map((x) => x.text),
      );
      expect(results).toHaveLength(all.length);
    }, 60_000);

    it('still allows the controls', () => {
      const wrong = c.controls.map((text, i) => ({ text, r: results[i]! })).filter((x) => x.r.effect !== 'allow');
      expect(wrong.map((x) => `${x.text} → ${x.r.effect}: ${x.r.reasons.join('; ')}`)).toEqual([]);
    });

    it('denies every attack, by class', () => {
      const wrong = attacks.map((a, i) => ({ ...a, r: results[c.controls.length + i]! })).filter((x) => x.r.effect !== 'deny');
      expect(wrong.map((x) => `[${x.cls}] ${x.text} → ${x.r.effect}`)).toEqual([]);
    });
  });
}
