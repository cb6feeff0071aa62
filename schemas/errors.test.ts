import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, WritError } from './errors.ts';

const root = join(import.meta.dirname, '..');
const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');

function sources(dir: string, out: string[] = []): string[] {
  for (const f of readdirSync(dir)) {
    if (f === 'node_modules' || f.startsWith('.')) continue;
    const p = join(dir, f);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (f.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('error catalogue', () => {
  it('documents every code of the catalogue in docs/errors.md', () => {
    const missing = Object.keys(ErrorCodes).filter((c) => !doc.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });

  it('has in the catalogue every WRIT_ code that the code base uses', () => {
    const used = new Set<string>();
    for (const f of sources(root)) for (const m of readFileSync(f, 'utf8').matchAll(/['"`](WRIT_[A-Z_]*[A-Z])['"`]/g)) used.add(m[1]!);
    // Names that are not error codes: environment variables (documented once, in
    // docs/configuration.md) and stream names (the prefix upper-cased).
    const env = new Set((readFileSync(join(root, 'docs/configuration.md'), 'utf8').match(/WRIT_[A-Z_]*[A-Z]/g) ?? []).filter((n) => !(n in ErrorCodes)));
    const streams = new Set(['WRIT_INTENTS', 'WRIT_EXEC', 'WRIT_RESULTS', 'WRIT_AUDIT', 'WRIT_APPROVALS']);
    const unknown = [...used].filter((c) => !(c in ErrorCodes) && !env.has(c) && !streams.has(c));
    expect(unknown).toEqual([]);
  });

  it('keeps the cause out of the wire form', () => {
    const e = new WritError('WRIT_EXEC_FAILED', 'safe text', { cause: new Error('password=hunter2') });
    expect(JSON.stringify(e.toReply())).not.toContain('hunter2');
    expect(e.toReply()).toEqual({ code: 'WRIT_EXEC_FAILED', message: 'safe text' });
  });
});
