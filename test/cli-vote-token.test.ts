/**
 * Each human vote goes with a fresh token (the broker spends a human's approver token on its
 * vote): `writ approve`/`deny` never vote with the token they were given, nor with the one the
 * pending list was read with. With a development-issuer token the local issuer signs a fresh
 * copy; with a `writ login` the refresh token gets a new access token (new jti) per vote; any
 * other token votes once and is then refused with WRIT_VOTE_TOKEN_SPENT.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { voteTokenKey } from '../broker/approvals.ts';
import { IdentityVerifier } from '../broker/index.ts';
import { deviceLogin, freshLoginToken, loginToken } from '../cmd/login.ts';
import { parseConfig, sha256Hex } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';
import { startOidcProvider, type OidcHandle } from './helpers/oidc.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');

describe('writ approve / deny', () => {
  let s: Stack;
  let env: NodeJS.ProcessEnv;
  let elsewhere: string;

  beforeAll(async () => {
    s = await startStack({
      config: { policy: { rules: [{ id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } }] } },
    });
    const configFile = join(s.dir, 'cli.json');
    writeFileSync(configFile, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: s.config.identity.devIssuer.dir } } }));
    // A machine without the issuer's key: the given token is all the CLI has.
    elsewhere = join(s.dir, 'cli-elsewhere.json');
    writeFileSync(elsewhere, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: join(s.dir, 'no-such-issuer') } } }));
    env = { ...process.env, NATS_URL: s.nats.url, WRIT_PREFIX: s.names.prefix, WRIT_CONFIG: configFile, WRIT_LOG_LEVEL: 'silent' };
  }, 60_000);
  afterAll(async () => {
    await s?.stop();
  });

  async function writ(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
    try {
      const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...env, ...extraEnv }, timeout: 30_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  }

  async function pending(note: string) {
    const agent = s.client(await s.token('agent-c', ['agents']));
    const sql = `INSERT INTO events (note) VALUES ('${note}')`;
    const p = await agent.run({ target: 'db', sql });
    expect(p.status).toBe('pending');
    return { agent, id: p.intentId, sha: sha256Hex(sql) };
  }

  it('votes with a fresh development-issuer token each time: one WRIT_TOKEN approves and denies several intents', async () => {
    const carol = await s.approverToken('carol', ['approvers']);
    const a = await pending('cli-fresh-a');
    const b = await pending('cli-fresh-b');
    const c = await pending('cli-fresh-c');
    for (const p of [a, b]) {
      const r = await writ(['approve', p.id], { WRIT_TOKEN: carol });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${p.id}: dispatched`);
    }
    const d = await writ(['deny', c.id, '--reason', 'not now'], { WRIT_TOKEN: carol });
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toContain(`${c.id}: rejected`);
    expect((await a.agent.wait(a.id)).status).toBe('succeeded');
    expect((await b.agent.wait(b.id)).status).toBe('succeeded');
    // The given token itself never voted: it still can, once.
    const e = await pending('cli-fresh-e');
    expect(await s.client(carol).decide(e.id, 'approve', { commandSha256: e.sha })).toBe('dispatched');
  }, 60_000);

  it('votes once with a token it cannot renew; the second vote is refused with WRIT_VOTE_TOKEN_SPENT', async () => {
    const erin = await s.approverToken('erin', ['approvers']);
    const a = await pending('cli-once-a');
    const b = await pending('cli-once-b');
    const first = await writ(['approve', a.id], { WRIT_TOKEN: erin, WRIT_CONFIG: elsewhere });
    expect(first.code, first.stderr).toBe(0);
    const second = await writ(['approve', b.id], { WRIT_TOKEN: erin, WRIT_CONFIG: elsewhere });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('WRIT_VOTE_TOKEN_SPENT');
    expect(await b.agent.status(b.id)).toBe('pending');
  }, 60_000);
});

describe('writ login: a fresh access token per vote', () => {
  let op: OidcHandle;
  let dir: string;

  beforeAll(async () => {
    op = await startOidcProvider({ accounts: { bob: { groups: ['approvers'] } } });
    dir = mkdtempSync(join(tmpdir(), 'writ-vote-login-'));
  });
  afterAll(async () => {
    await op?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refreshes on every call, each token with its own jti, all of them bob's approver tokens", async () => {
    const file = join(dir, 'login.json');
    let approval: Promise<void> | undefined;
    const stored = await deviceLogin(
      { issuer: op.issuer, clientId: op.humanClientId, resource: op.approverAudience },
      {
        file,
        say: (l) => {
          const code = /enter the code (\S+)/.exec(l)?.[1];
          if (code) approval = op.approveDevice(code, 'bob');
        },
      },
    );
    await approval;
    // The ordinary read (writ pending) keeps the stored, still valid token.
    expect(await loginToken({ file })).toBe(stored.accessToken);
    const one = (await freshLoginToken({ file }))!;
    const two = (await freshLoginToken({ file }))!;
    expect(new Set([stored.accessToken, one, two]).size).toBe(3);
    const v = IdentityVerifier.fromConfig(
      parseConfig({
        identity: { issuers: [{ issuer: op.issuer, discovery: true, audience: op.agentAudience, approverAudience: op.approverAudience, algorithms: ['ES256'] }] },
      }),
    );
    for (const t of [one, two]) {
      expect((await v.verifyApprover(t)).principal).toMatchObject({ iss: op.issuer, sub: 'bob' });
      expect(decodeJwt(t).jti).toEqual(expect.any(String));
    }
    // Spent under different keys: the second vote is not refused for the first one's token.
    expect(voteTokenKey(op.issuer, one)).not.toBe(voteTokenKey(op.issuer, two));
    expect(voteTokenKey(op.issuer, stored.accessToken)).not.toBe(voteTokenKey(op.issuer, one));
  }, 30_000);
});
