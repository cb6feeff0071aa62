import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { runTestFile } from './index.ts';

const FILE = join(import.meta.dirname, 'testdata/realistic.tests.yaml');

describe('decisions corpus under a realistic policy (testdata/realistic.yaml)', () => {
  it('holds at least 150 SQL statements and 80 shell commands, evasions included', async () => {
    const doc = parseYaml(await readFile(FILE, 'utf8'), { maxAliasCount: 10_000 }) as { cases: { sql?: string; command?: string; expect: { effect: string } }[] };
    const sql = doc.cases.filter((c) => c.sql !== undefined);
    const shell = doc.cases.filter((c) => c.command !== undefined);
    expect(sql.length).toBeGreaterThanOrEqual(150);
    expect(shell.length).toBeGreaterThanOrEqual(80);
    for (const effect of ['allow', 'deny', 'require_approval']) {
      expect(
        sql.some((c) => c.expect.effect === effect),
        `SQL ${effect}`,
      ).toBe(true);
      expect(
        shell.some((c) => c.expect.effect === effect),
        `shell ${effect}`,
      ).toBe(true);
    }
  });

  it('decides every case as expected', async () => {
    const { results } = await runTestFile(FILE);
    const failed = results.filter((r) => !r.pass).map((r) => `${r.name}\n  ${r.failures.join('\n  ')}`);
    expect(failed).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(230);
  });
});
