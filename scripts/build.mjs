#!/usr/bin/env node
// `npm run build`: the runtime as plain JavaScript in dist/. tsc transpiles (tsconfig.build.json);
// the .mjs modules the audit verifier loads by path into worker threads are copied beside their
// callers. `--clean` first removes dist/; `--clean-only` (npm's `prepack`, before `prepare` builds)
// only removes it, so a pack never ships the output of a deleted source.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
/** The folders that run: the same list as tsconfig.build.json's `include`. */
const SOURCES = ['schemas', 'lib', 'classify', 'masking', 'broker', 'workers', 'approver', 'audit', 'client', 'cmd'];

if (process.argv.includes('--clean') || process.argv.includes('--clean-only')) rmSync(dist, { recursive: true, force: true });
if (process.argv.includes('--clean-only')) process.exit(0);

// Type errors are the typecheck gate's (`npm run typecheck`, in CI): the build only transpiles
// (every file is an isolated module), so a fresh clone's `npm install` is quick.
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--noCheck'], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

function* mjsFiles(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* mjsFiles(p);
    else if (e.name.endsWith('.mjs')) yield p;
  }
}
for (const top of SOURCES) {
  for (const file of mjsFiles(join(root, top))) {
    const to = join(dist, relative(root, file));
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(file, to);
  }
}
