/**
 * Services that share a key directory start together (a broker and its replica, the local
 * stack): they must all end up with the one audit key that was created first, read whole, and
 * all of their keys registered. Real processes race here, since one process cannot race itself.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKeyRegistry, loadOrCreateAuditKey } from './keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'writ-keys-race-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEYS = new URL('./keys.ts', import.meta.url).pathname;
/** Processes racing; rounds, each on fresh files, all processes starting a round at the same instant. */
const PROCS = 6;
const ROUNDS = 25;
const ROUND_MS = 60;

/** Runs PROCS children of `body` (ESM, given `keys`, `round`, `dir`); resolves with each child's stdout lines. */
async function race(body: string, startAt: number): Promise<string[][]> {
  const script = join(dir, `child-${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(
    script,
    `import * as keys from ${JSON.stringify(KEYS)};
const dir = ${JSON.stringify(dir)};
const startAt = ${startAt};
for (let round = 0; round < ${ROUNDS}; round++) {
  const at = startAt + round * ${ROUND_MS};
  while (Date.now() < at) {}
  try {
    ${body}
  } catch (e) {
    console.log('error ' + round + ' ' + (e as Error).message.split('\\n')[0]);
  }
}
`,
  );
  return Promise.all(
    Array.from({ length: PROCS }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      return new Promise<string[]>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(out.trim().split('\n')) : reject(new Error(`child exited ${code}: ${err.slice(0, 2000)}`)))));
    }),
  );
}

describe('audit keys shared by processes starting at once', () => {
  it('every creator of one key file gets the same whole key, and its public half matches', async () => {
    // Loading tsx takes a while: the rounds start once every child is surely up.
    const lines = await race(`const k = keys.loadOrCreateAuditKey(dir + '/create-' + round + '/audit-broker.pem'); console.log(round + ' ' + k.keyId);`, Date.now() + 4_000);
    expect(lines.flat().filter((l) => l.startsWith('error'))).toEqual([]);
    for (let round = 0; round < ROUNDS; round++) {
      const ids = new Set(lines.map((l) => l.find((x) => x.startsWith(`${round} `))));
      expect(ids.size, `round ${round}: ${[...ids].join(', ')}`).toBe(1);
      const file = join(dir, `create-${round}`, 'audit-broker.pem');
      const k = loadOrCreateAuditKey(file);
      expect([...ids][0]).toBe(`${round} ${k.keyId}`);
      expect(readFileSync(file.replace(/\.pem$/, '.pub.pem'), 'utf8')).toBe(k.publicKeyPem);
      // No temporary file is left behind.
      expect(readdirSync(join(dir, `create-${round}`)).sort()).toEqual(['audit-broker.pem', 'audit-broker.pub.pem']);
    }
  }, 60_000);

  it('keys registered at once by several processes are all in the registry', async () => {
    const lines = await race(
      `const kp = (await import('node:crypto')).generateKeyPairSync('ed25519');
    const kid = keys.addKeyToRegistry(dir + '/registry-' + round + '.yaml', { publicKeyPem: kp.publicKey.export({ type: 'spki', format: 'pem' }).toString(), kind: 'worker' });
    console.log(round + ' ' + kid);`,
      Date.now() + 4_000,
    );
    expect(lines.flat().filter((l) => l.startsWith('error'))).toEqual([]);
    for (let round = 0; round < ROUNDS; round++) {
      const added = lines.map((l) => l.find((x) => x.startsWith(`${round} `))!.split(' ')[1]);
      const file = join(dir, `registry-${round}.yaml`);
      expect([...loadKeyRegistry(file).keys()].sort(), `round ${round}`).toEqual(added.sort());
      expect(existsSync(`${file}.lock`)).toBe(false);
    }
  }, 60_000);

  it('a key file that is not a private key is refused with WRIT_CONFIG_INVALID and left alone', () => {
    const file = join(dir, 'broken', 'audit-worker.pem');
    rmSync(join(dir, 'broken'), { recursive: true, force: true });
    loadOrCreateAuditKey(file);
    writeFileSync(file, '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2Vw\n');
    expect(() => loadOrCreateAuditKey(file)).toThrow(expect.objectContaining({ code: 'WRIT_CONFIG_INVALID' }));
    expect(readFileSync(file, 'utf8')).toBe('-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2Vw\n');
  });
});
