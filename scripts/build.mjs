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

// The `writ` command is one bundle with its chunks (dist/cmd/cli.js, dist/cmd/chunks/). A short
// command's wall time is mostly module loading: each of the hundreds of files is resolved, read
// and compiled, and every CommonJS package imported from ESM (the NATS client, commander) is
// also scanned by Node's export lexer. Bundling the sources and the small pure-JS packages on
// the command's path cuts that to a few files (`npm run bench -- cli`). Packages with native
// parts, WebAssembly, worker files or their own file layout (pg, ssh2, tree-sitter, libpg-query,
// pino, …) stay external and load from node_modules, as from the unbundled dist/. What the
// command loads only for some subcommands (`writ up`'s services) stays in separate chunks,
// loaded on first use. The rest of dist/ (the MCP and approver entries, tests of the package)
// stays as tsc wrote it.
const BUNDLED = [/^zod(\/|$)/, /^@nats-io\//, /^commander(\/|$)/, /^lru-cache(\/|$)/, /^tweetnacl(\/|$)/, /^@opentelemetry\/api(\/|$)/, /^jose(\/|$)/, /^yaml(\/|$)/];
const { build } = await import('esbuild');
rmSync(join(dist, 'cmd', 'chunks'), { recursive: true, force: true }); // chunk names change with their content
await build({
  entryPoints: [join(root, 'cmd', 'cli.ts')],
  outdir: join(dist, 'cmd'),
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Whitespace only: names stay, so stack traces still read.
  minifyWhitespace: true,
  legalComments: 'none',
  logLevel: 'warning',
  // Bundled CommonJS calls require() for Node's built-ins; ESM has none of its own.
  banner: { js: "import { createRequire as __writRequire } from 'node:module'; const require = __writRequire(import.meta.url);" },
  plugins: [
    {
      name: 'bundle-only-listed-packages',
      setup(b) {
        b.onResolve({ filter: /^[^./]/ }, (a) => (a.kind === 'entry-point' || a.path.startsWith('node:') || BUNDLED.some((re) => re.test(a.path)) ? undefined : { path: a.path, external: true }));
      },
    },
  ],
});
// The audit verifier starts its worker threads from files beside its own module, which in the
// bundle is a chunk.
for (const f of ['verify-worker.mjs', 'block-check.mjs']) copyFileSync(join(root, 'audit', f), join(dist, 'cmd', 'chunks', f));
