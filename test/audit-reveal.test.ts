/**
 * `writ audit reveal`, end to end: an intent whose exact text holds a secret and terminal
 * escapes runs through the stack; the log shows only the masked text; the real `writ` command,
 * as an auditor with the private key file, prints the exact text (escapes made visible) with
 * its digest checked against the chain. Another key reveals nothing and exits non-zero; no key
 * file is a usage error.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { eventHash, readSession, runAuditCli } from '../audit/index.ts';
import { sha256Hex } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
const GH = `ghp_${'a1B2c3D4e5'.repeat(3)}abcdef`;
let s: Stack;
let env: NodeJS.ProcessEnv;
let keyFile: string;
let otherKeyFile: string;

beforeAll(async () => {
  const mk = (f: string) => {
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    return { file: f, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), pub: publicKey.export({ format: 'jwk' }).x! };
  };
  const auditor = mk('auditor.pem');
  const other = mk('other.pem');
  s = await startStack({ config: { audit: { flushMs: 1, auditorPublicKey: auditor.pub } } });
  keyFile = join(s.dir, auditor.file);
  otherKeyFile = join(s.dir, other.file);
  writeFileSync(keyFile, auditor.pem, { mode: 0o600 });
  writeFileSync(otherKeyFile, other.pem, { mode: 0o600 });
  const configFile = join(s.dir, 'cli.yaml');
  writeFileSync(configFile, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: s.config.identity.devIssuer.dir } } }));
  env = { ...process.env, NATS_URL: s.nats.url, WRIT_PREFIX: s.names.prefix, WRIT_CONFIG: configFile, WRIT_LOG_LEVEL: 'silent' };
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

async function writ(args: string[]) {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { env, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

it('prints the exact text to the holder of the auditor key, escaped and checked against the chain; nothing to anyone else', async () => {
  const sql = `SELECT '${GH}' AS t, E'\\x1b[2J' AS cls /* \u001b]0;owned\u0007 \u202Egnp */`;
  const o = await s.client(await s.token('alice', ['analysts'])).run({ target: 'db', sql, sessionId: 's_reveal_session_1' });
  expect(o.status).toBe('succeeded');
  // The log itself keeps only the masked text.
  expect(JSON.stringify(await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId }))).not.toContain(GH);

  const shown = await writ(['audit', 'reveal', '--session', o.sessionId, '--intent', o.intentId, '--key', keyFile]);
  expect(shown.code, shown.stderr).toBe(0);
  expect(shown.stdout).toContain(`intent ${o.intentId}`);
  expect(shown.stdout).toContain(`sha256 ${sha256Hex(sql)} (matches the chain)`);
  expect(shown.stdout).toContain(GH);
  for (const raw of ['\u001b', '\u0007', '\u202e']) expect(shown.stdout).not.toContain(raw);
  expect(shown.stdout).toContain('\\u001b]0;owned\\u0007 \\u202egnp');
  // --json decodes to the exact text.
  const json = await writ(['audit', 'reveal', '--session', o.sessionId, '--key', keyFile, '--json']);
  expect(json.code).toBe(0);
  const lines = json.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { intentId: string; ok: boolean; text: string; sha256: string });
  expect(lines).toEqual([expect.objectContaining({ intentId: o.intentId, ok: true, text: sql, sha256: sha256Hex(sql) })]);

  // The command itself escapes what it prints, whoever calls it (not only the writ CLI's own output).
  const direct: string[] = [];
  expect(await runAuditCli(['reveal', '--session', o.sessionId, '--key', keyFile], { nc: s.nc, names: s.names, stdout: (x) => direct.push(x) })).toBe(0);
  for (const raw of ['\u001b', '\u0007', '\u202e']) expect(direct.join('')).not.toContain(raw);
  expect(direct.join('')).toContain(GH);

  // Another auditor key opens nothing, and says so.
  const wrong = await writ(['audit', 'reveal', '--session', o.sessionId, '--key', otherKeyFile]);
  expect(wrong.code).toBe(1);
  expect(wrong.stdout).toContain('NOT REVEALED');
  expect(wrong.stdout).not.toContain(GH);
  // No key file: a usage error, and nothing is read from anywhere else.
  const noKey = await writ(['audit', 'reveal', '--session', o.sessionId]);
  expect(noKey.code).toBe(2);
  expect(noKey.stdout + noKey.stderr).toContain('reveal needs --key FILE');
});

it('reveals nothing after a broken link: the digest is trusted only as far as the chain holding it is intact', async () => {
  // A block whose first event does not link to the start of a chain, written into a fresh session
  // (this test's connection may write the audit stream; services and auditors may not). The
  // broker then chains the intent's events onto it, so its sealed text sits behind the break.
  const sessionId = 's_reveal_broken_1';
  const body = { v: 1 as const, id: 'e_forged_0001', sessionId, type: 'note', at: Date.now(), actor: { kind: 'system' as const, id: 'forger' }, prev: 'f'.repeat(64) };
  const block = { v: 1, type: 'audit.block', events: [{ ...body, hash: eventHash(body as never) }] };
  await jetstream(s.nc).publish(s.names.audit(sessionId), JSON.stringify(block));
  const o = await s.client(await s.token('alice', ['analysts'])).run({ target: 'db', sql: `SELECT '${GH}' AS behind_the_break`, sessionId });
  expect(o.status).toBe('succeeded');
  const out: string[] = [];
  const code = await runAuditCli(['reveal', '--session', sessionId, '--key', keyFile], { nc: s.nc, names: s.names, stdout: (x) => out.push(x) });
  expect(code).toBe(1);
  expect(out.join('')).toContain('NOT REVEALED: the chain is broken at or before this event');
  expect(out.join('')).not.toContain(GH);
  // A session with nothing sealed in it is a usage error, not an empty success.
  const none: string[] = [];
  expect(await runAuditCli(['reveal', '--session', 's_never_used_session', '--key', keyFile], { nc: s.nc, names: s.names, stdout: (x) => none.push(x) })).toBe(2);
  expect(none.join('')).toContain('no sealed command in session s_never_used_session');
});
