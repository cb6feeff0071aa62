/**
 * `writ --help` starts as fast as node itself: cmd/cli.ts statically imports only Node's own
 * modules, commander (no dependencies of its own) and dependency-free files of this repository;
 * NATS, zod, jose, pino and the services
 * load in main() once a command runs (cmd/cli-deps.ts). A package import added to that static
 * graph shows here, by name. Its wall time is measured by `npm run bench -- cli`, not asserted.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
/** The argument parser writes the help itself; it has no dependencies. */
const ALLOWED = new Set(['commander']);

/** Static, value-level imports and re-exports of a source file (`import type` loads nothing). */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  return out;
}

/** Every package (not `node:`) the static graph from `entry` reaches, with the file that imports it. */
function packagesReached(entry: string): string[] {
  const seen = new Set<string>();
  const found: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) visit(join(dirname(file), spec));
      else if (!spec.startsWith('node:') && !ALLOWED.has(spec)) found.push(`${spec} (from ${relative(ROOT, file)})`);
    }
  };
  visit(entry);
  return found;
}

describe('writ --help', () => {
  it('reaches no package through the static imports of cmd/cli.ts', () => {
    expect(packagesReached(join(ROOT, 'cmd', 'cli.ts'))).toEqual([]);
  });

  it('would see a package imported further down the graph', () => {
    expect(packagesReached(join(ROOT, 'cmd', 'cli-deps.ts')).join('\n')).toMatch(/@nats-io\/transport-node|zod|jose/);
  });
});
