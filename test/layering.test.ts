/**
 * The import graph keeps its layers: libraries import only libraries; a service imports
 * libraries (the audit writer and reader among them) and never another service; only cmd/
 * may import every service. Tests, benchmarks and examples are outside the graph.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const LIBRARIES = new Set(['schemas', 'lib', 'classify', 'masking', 'client']);
const SERVICES = new Set(['broker', 'workers', 'approver', 'audit']);
/** What each layer may import besides its own folder. */
function allowed(from: string, to: string): boolean {
  if (from === to) return true;
  if (from === 'cmd') return LIBRARIES.has(to) || SERVICES.has(to);
  if (LIBRARIES.has(from)) return LIBRARIES.has(to) && !(to === 'client' && from !== 'client');
  // The audit writer and reader are shared by the services as a library.
  if (SERVICES.has(from)) return LIBRARIES.has(to) || to === 'audit';
  return true;
}

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (/\.(ts|mts|mjs)$/.test(name) && !/\.test\.ts$/.test(name) && !name.endsWith('.d.mts')) yield p;
  }
}

function edges(): Array<{ file: string; from: string; to: string; spec: string }> {
  const out = [];
  for (const top of [...LIBRARIES, ...SERVICES, 'cmd']) {
    for (const file of sources(join(ROOT, top))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
        const target = normalize(join(dirname(file), m[1]!));
        const to = relative(ROOT, target).split('/')[0]!;
        out.push({ file: relative(ROOT, file), from: top, to, spec: m[1]! });
      }
    }
  }
  return out;
}

describe('the layering', () => {
  it('has no import that breaks it', () => {
    const all = edges();
    expect(all.length).toBeGreaterThan(100);
    const bad = all.filter((e) => !allowed(e.from, e.to)).map((e) => `${e.file} imports ${e.spec} (${e.from} → ${e.to})`);
    expect(bad).toEqual([]);
  });

  it('would notice a service importing another service', () => {
    expect(allowed('workers', 'broker')).toBe(false);
    expect(allowed('broker', 'workers')).toBe(false);
    expect(allowed('classify', 'broker')).toBe(false);
    expect(allowed('broker', 'classify')).toBe(true);
    expect(allowed('cmd', 'broker')).toBe(true);
  });
});
