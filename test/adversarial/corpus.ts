/**
 * The adversarial corpus: attack inputs by class, each file against one shipped policy, with
 * controls that must stay allowed. Read by the policy suite (through `writ policy eval`) and
 * by the live suites.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';

const CORPUS_DIR = join(import.meta.dirname, 'corpus');
export const REPO = join(import.meta.dirname, '..', '..');

const CorpusFileSchema = z.strictObject({
  /** Policy file, relative to the repository root. */
  policy: z.string(),
  principal: z.strictObject({ sub: z.string(), groups: z.array(z.string()) }),
  target: z.string(),
  /** Inputs that must stay allowed, so a policy that denies everything is noticed. */
  controls: z.array(z.string()).default([]),
  /** Class name → inputs that must be denied. */
  attacks: z.record(z.string(), z.array(z.string()).min(1)),
});
export type CorpusFile = z.output<typeof CorpusFileSchema> & { file: string; kind: 'sql' | 'shell' };

export function loadCorpus(): CorpusFile[] {
  return readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ ...CorpusFileSchema.parse(parse(readFileSync(join(CORPUS_DIR, f), 'utf8'))), file: f, kind: f.startsWith('sql-') ? ('sql' as const) : ('shell' as const) }));
}
