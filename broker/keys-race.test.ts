/**
 * Brokers (and `writ up` beside `writ token`) that share a key directory start together: they
 * must all end up with the one grant key and the one development issuer that were created
 * first, read whole, and the public files beside them must match.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { raceProcesses } from '../test/helpers/index.ts';
import { loadDevIssuer } from './dev-issuer.ts';
import { loadOrCreateGrantKey } from './keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'writ-grant-race-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ROUNDS = 15;

function idsByRound(lines: string[][], round: number): Set<string | undefined> {
  return new Set(lines.map((l) => l.find((x) => x.startsWith(`${round} `))));
}

describe('broker keys shared by processes starting at once', () => {
  it('every creator of one grant key file gets the same whole key, and the public file matches it', async () => {
    const modulePath = new URL('./keys.ts', import.meta.url).pathname;
    const body = `const k = mod.loadOrCreateGrantKey(dir + '/grant-' + round + '/grant-key.pem'); console.log(round + ' ' + k.signer.kid);`;
    const lines = await raceProcesses({ modulePath, dir, body, procs: 6, rounds: ROUNDS, roundMs: 60, startAt: Date.now() + 4_000 });
    expect(lines.flat().filter((l) => l.startsWith('error'))).toEqual([]);
    for (let round = 0; round < ROUNDS; round++) {
      const ids = idsByRound(lines, round);
      expect(ids.size, `round ${round}: ${[...ids].join(', ')}`).toBe(1);
      const file = join(dir, `grant-${round}`, 'grant-key.pem');
      const k = loadOrCreateGrantKey(file);
      expect([...ids][0]).toBe(`${round} ${k.signer.kid}`);
      expect(readFileSync(file.replace(/\.pem$/, '.pub.pem'), 'utf8')).toBe(k.publicKeyPem);
      expect(readdirSync(join(dir, `grant-${round}`)).sort()).toEqual(['grant-key.pem', 'grant-key.pub.pem']);
    }
  }, 60_000);

  it('every loader of one development issuer gets the same whole key', async () => {
    const modulePath = new URL('./dev-issuer.ts', import.meta.url).pathname;
    const body = `const d = await mod.loadDevIssuer(dir + '/dev-' + round, true); console.log(round + ' ' + d.privateJwk.kid + ':' + d.jwks.keys[0].x);`;
    const lines = await raceProcesses({ modulePath, dir, body, procs: 6, rounds: ROUNDS, roundMs: 80, startAt: Date.now() + 4_000 });
    expect(lines.flat().filter((l) => l.startsWith('error'))).toEqual([]);
    for (let round = 0; round < ROUNDS; round++) {
      const ids = idsByRound(lines, round);
      expect(ids.size, `round ${round}: ${[...ids].join(', ')}`).toBe(1);
      const d = await loadDevIssuer(join(dir, `dev-${round}`), false);
      expect([...ids][0]).toBe(`${round} ${d.privateJwk.kid}:${d.jwks.keys[0]!.x}`);
      expect(d.jwks.keys[0]).not.toHaveProperty('d');
      expect(JSON.parse(readFileSync(join(dir, `dev-${round}`, 'jwks.json'), 'utf8'))).toEqual(d.jwks);
    }
  }, 60_000);
});
