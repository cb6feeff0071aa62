/**
 * Services that share a key directory start together (a broker and its replica, the local
 * stack): they must all end up with the one audit key that was created first, read whole, and
 * all of their keys registered. Real processes race here, since one process cannot race itself.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { raceProcesses } from '../test/helpers/index.ts';
import { loadKeyRegistry, loadOrCreateAuditKey } from './keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'writ-keys-race-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEYS = new URL('./keys.ts', import.meta.url).pathname;
/** Processes racing; rounds, each on fresh files, all processes starting a round at the same instant. */
const PROCS = 6;
const ROUNDS = 25;
const ROUND_MS = 60;

/** Runs PROCS children of `body` (given `mod` = keys.ts, `round`, `dir`) over ROUNDS rounds. */
function race(body: string, startAt: number): Promise<string[][]> {
  return raceProcesses({ modulePath: KEYS, dir, body, procs: PROCS, rounds: ROUNDS, roundMs: ROUND_MS, startAt });
}

describe('audit keys shared by processes starting at once', () => {
  it('every creator of one key file gets the same whole key, and its public half matches', async () => {
    // Loading tsx takes a while: the rounds start once every child is surely up.
    const lines = await race(`const k = mod.loadOrCreateAuditKey(dir + '/create-' + round + '/audit-broker.pem'); console.log(round + ' ' + k.keyId);`, Date.now() + 4_000);
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
    const kid = mod.addKeyToRegistry(dir + '/registry-' + round + '.yaml', { publicKeyPem: kp.publicKey.export({ type: 'spki', format: 'pem' }).toString(), kind: 'worker' });
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
