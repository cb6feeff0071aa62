/** Auditors, and only they, recover the exact command text behind the masked one. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { auditorKeyPair, readSession, revealCommand } from './index.ts';
import { startStack, type Stack } from '../test/fixture.ts';

const GH = `ghp_${'a1B2c3D4e5'.repeat(3)}abcdef`;
let s: Stack;
let keyFile: string;
let otherKeyFile: string;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-auditor-'));
  const mk = (f: string) => {
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    writeFileSync(join(dir, f), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    return publicKey.export({ format: 'jwk' }).x!;
  };
  const pub = mk('auditor.pem');
  mk('other.pem');
  keyFile = join(dir, 'auditor.pem');
  otherKeyFile = join(dir, 'other.pem');
  s = await startStack({ config: { audit: { flushMs: 1, auditorPublicKey: pub } } });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

it('keeps the exact text sealed to the auditor key: masked for readers, recoverable with the key only', async () => {
  const sql = `SELECT '${GH}' AS t`;
  const o = await s.client(await s.token('alice', ['analysts'])).run({ target: 'db', sql });
  const events = await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId });
  const received = events.find((e) => e.type === 'intent.received' && e.intentId === o.intentId)!;
  // The log itself never shows the secret.
  expect(JSON.stringify(events)).not.toContain(GH);
  expect(revealCommand(received, auditorKeyPair(keyFile))).toEqual({ kind: 'sql', sql });
  expect(() => revealCommand(received, auditorKeyPair(otherKeyFile))).toThrow();
  // Moved to another intent, it does not open.
  expect(() => revealCommand({ ...received, intentId: 'i_someone_else_1' }, auditorKeyPair(keyFile))).toThrow();
});
