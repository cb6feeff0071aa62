/**
 * What `npm pack` makes is a package that installs and runs: the tarball goes into an empty
 * directory with `npm install` (dependencies from npm's cache, which `npm ci` filled; the
 * registry for anything missing) and its `writ` bin, the compiled CLI, prints the usage.
 * The pack runs in a copy of the package's sources, so cleaning and rebuilding its dist/ never
 * touches the checkout's, which other tests run.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { files: string[]; bin: Record<string, string> };
/** What the build reads: the runtime folders of tsconfig.build.json, the configs, the build script. */
const BUILD_INPUTS = [
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'scripts',
  'README.md',
  'LICENSE',
  'deploy',
  'schemas',
  'lib',
  'classify',
  'masking',
  'broker',
  'workers',
  'approver',
  'audit',
  'client',
  'cmd',
];

let dir: string;
let installed: string;
let packed: string[];
const env = () => {
  const e: NodeJS.ProcessEnv = { ...process.env, WRIT_HOME: join(dir, 'home'), npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
  // Nothing of the checkout's: no config, no server, no token.
  for (const k of Object.keys(e)) if (k === 'NATS_URL' || k === 'WRIT_CONFIG' || k === 'WRIT_TOKEN' || k === 'WRIT_DATA_DIR' || k.startsWith('WRIT_NATS_')) delete e[k];
  return e;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-pack-'));
  const src = join(dir, 'src');
  mkdirSync(src);
  for (const p of BUILD_INPUTS) cpSync(join(REPO, p), join(src, p), { recursive: true, filter: (f) => !f.includes('/node_modules') });
  // The build's tools (tsc) from the checkout; the package itself never sees this folder.
  symlinkSync(join(REPO, 'node_modules'), join(src, 'node_modules'), 'dir');
  const out = join(dir, 'out');
  mkdirSync(out);
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', out], { cwd: src, env: env(), timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
  // npm prints the lifecycle scripts' output before the JSON.
  const report = JSON.parse(stdout.slice(stdout.indexOf('\n[') + 1)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = report[0]!.files.map((f) => f.path);
  installed = join(dir, 'app');
  mkdirSync(installed);
  writeFileSync(join(installed, 'package.json'), '{ "name": "empty", "private": true }\n');
  await run('npm', ['install', '--prefer-offline', '--no-package-lock', join(out, report[0]!.filename)], { cwd: installed, env: env(), timeout: 180_000 });
}, 300_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('installs into an empty directory and runs `writ --help` from its bin, the compiled CLI', async () => {
    const { stdout, stderr } = await run(join(installed, 'node_modules', '.bin', 'writ'), ['--help'], { cwd: installed, env: env(), timeout: 30_000 });
    expect(stderr).toBe('');
    expect(stdout).toContain('writ — privileged-access broker for automation agents');
    expect(stdout).toMatch(/^ {2}exec \[options\]/m);
    expect(pkg.bin.writ).toBe('dist/cmd/cli.js');
  });

  it('runs the classifier from the installed package (its WASM parsers resolve from there)', async () => {
    // The shipped policy's own test cases classify SQL and shell text.
    const root = join(installed, 'node_modules', 'writ');
    const { stdout } = await run(join(installed, 'node_modules', '.bin', 'writ'), ['policy', 'test', join(root, 'deploy/local/policy.tests.yaml')], { cwd: installed, env: env(), timeout: 60_000 });
    expect(stdout).toMatch(/^\d+ passed, 0 failed$/m);
  });

  it('holds what runs and nothing else: compiled JavaScript, the shipped deploy files, no sources or tests', () => {
    expect(packed).toContain('dist/cmd/cli.js');
    expect(packed).toContain('dist/cmd/mcp/main.js');
    expect(packed).toContain('dist/audit/verify-worker.mjs');
    expect(packed).toContain('deploy/local/writ.yaml');
    expect(packed).toContain('deploy/nats/accounts.conf');
    expect(packed.filter((p) => p.endsWith('.ts') || p.includes('.test.') || p.startsWith('test/') || p.startsWith('bench/'))).toEqual([]);
    expect(packed.filter((p) => !p.startsWith('dist/') && !p.startsWith('deploy/')).sort()).toEqual(['LICENSE', 'README.md', 'package.json']);
    // No TypeScript loader at run time.
    const deps = JSON.parse(readFileSync(join(installed, 'node_modules', 'writ', 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(deps.dependencies)).not.toContain('tsx');
    expect(readdirSync(join(installed, 'node_modules'))).not.toContain('tsx');
  });
});
