import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { lintPolicy, runPolicyCli } from './index.ts';

const DIR = join(import.meta.dirname, '../../deploy/policies');

async function cli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runPolicyCli(argv, { stdin: Readable.from([]), stdout: (s) => (out += s), stderr: (s) => (out += s) });
  return { code, out };
}

describe('the example policies in deploy/policies', () => {
  it('pass `writ policy test` on their tests files', async () => {
    const r = await cli(['test', DIR]);
    expect(r.out).toMatch(/^\d+ passed, 0 failed\n$/m);
    expect(r.code).toBe(0);
    expect(Number(/^(\d+) passed/m.exec(r.out)?.[1])).toBeGreaterThanOrEqual(50);
  });

  it('pass `writ policy check --strict` with no findings', async () => {
    const files = (await readdir(DIR)).filter((f) => f.endsWith('.yaml') && !f.endsWith('.tests.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const f of files) {
      expect(lintPolicy(await readFile(join(DIR, f), 'utf8'), { source: f }).findings, f).toEqual([]);
      expect((await cli(['check', '--strict', join(DIR, f)])).code, f).toBe(0);
    }
  });
});
