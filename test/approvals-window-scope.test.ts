/**
 * What an approver is shown a window will allow is what the window enforces. The broker
 * computes one scope (broker/approvals.ts windowScopeOf) and puts it in the approval request,
 * the approver's pending view and the agent's pending outcome; the window record holds that
 * scope; and intents run in the window exactly when the scope covers them. The CLI prints the
 * scope and grants a window only after an explicit yes: without one, nothing changes.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { windowAllows, windowKey, type WindowRecord } from '../broker/approvals.ts';
import { mintDevToken } from '../broker/index.ts';
import { ApprovalRequestSchema, type WindowScope } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
let s: Stack;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  s = await startStack({
    config: {
      policy: {
        rules: [
          { id: 'ask-window', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120, windowMaxSec: 1800 } },
        ],
      },
    },
  });
  const configFile = join(s.dir, 'cli.yaml');
  writeFileSync(configFile, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: s.config.identity.devIssuer.dir } } }));
  env = { ...process.env, NATS_URL: s.nats.url, WRIT_PREFIX: s.names.prefix, WRIT_CONFIG: configFile, WRIT_LOG_LEVEL: 'silent' };
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

async function writ(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  try {
    // stdin is not a terminal here: the CLI cannot ask, so only --yes confirms.
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...env, ...extraEnv }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const agentFor = async (actFor: string) => s.client(await mintDevToken(s.dev, { sub: 'agent-w', groups: ['agents'], audience: 'writ', ttlSec: 600, actFor }));

async function windowRecord(): Promise<WindowRecord | undefined> {
  const kv = await new Kvm(s.nc).open(s.names.buckets.windows);
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  for (const k of keys) {
    const e = await kv.get(k);
    if (e?.operation === 'PUT') return e.json<WindowRecord>();
  }
  return undefined;
}

it('shows one scope everywhere, grants nothing without confirmation, and enforces exactly what it showed', async () => {
  const agent = await agentFor('alice');
  const p = await agent.run({ target: 'db', sql: "UPDATE customers SET plan = 'pro' WHERE id = 2" });
  expect(p.status).toBe('pending');

  // The request the bots read, the approver's pending view and the agent's pending outcome carry one scope.
  const jsm = await jetstreamManager(s.nc);
  const req = ApprovalRequestSchema.parse((await jsm.streams.getMessage(s.names.streams.approvals, { last_by_subj: s.names.approvalRequest('db') }))!.json());
  const scope = req.windowScope as WindowScope;
  expect(scope).toEqual({
    rule: 'ask-window',
    target: 'db',
    requester: { iss: expect.any(String), sub: 'agent-w' },
    actFor: 'alice',
    policyVersion: expect.any(String),
    shapes: ['update:public.customers'],
    maxSec: 1800,
  });
  const carol = await s.approverToken('carol', ['approvers']);
  const listed = (await s.client(carol).pending()).find((x) => x.intentId === p.intentId)!;
  expect(listed.windowScope).toEqual(scope);
  expect(listed.commandSha256).toBe(req.commandSha256);
  expect(p.error?.details?.windowScope).toEqual(scope);

  // The CLI prints the scope and, without an explicit yes, sends nothing.
  const refused = await writ(['approve', p.intentId, '--window', '1h'], { WRIT_TOKEN: carol });
  expect(refused.code).not.toBe(0);
  for (const line of [
    /requester +agent-w/,
    /acting for +alice/,
    /target +db/,
    /rule +ask-window/,
    new RegExp(`policy version ${scope.policyVersion}`),
    /update:public\.customers/,
    /for 1800s \(you asked 3600s; the rule allows at most 1800s\)/,
  ]) {
    expect(refused.stderr).toMatch(line);
  }
  expect(refused.stderr).toContain('not confirmed: nothing was sent');
  expect(await agent.status(p.intentId)).toBe('pending');
  expect(await windowRecord()).toBeUndefined();

  const ok = await writ(['approve', p.intentId, '--window', '1h', '--yes'], { WRIT_TOKEN: carol });
  expect(ok.code, ok.stderr).toBe(0);
  expect(ok.stdout).toContain(`${p.intentId}: dispatched`);
  expect((await agent.wait(p.intentId)).status).toBe('succeeded');

  // The window holds the scope shown, field by field.
  const w = (await windowRecord())!;
  expect(w.id).toBe(windowKey({ iss: scope.requester.iss, sub: 'agent-w', groups: [] }, 'db', 'ask-window'));
  expect({ rule: w.rule, target: w.target, requester: { iss: w.iss, sub: w.sub }, actFor: w.actFor ?? null, policyVersion: w.policyVersion, shapes: w.shapes }).toEqual({
    rule: scope.rule,
    target: scope.target,
    requester: scope.requester,
    actFor: scope.actFor,
    policyVersion: scope.policyVersion,
    shapes: scope.shapes,
  });
  expect(w.expiresAt - w.createdAt).toBe(1800 * 1000);

  // Enforced as shown: the same shape runs without asking; another shape, or another human, asks again.
  expect((await agent.run({ target: 'db', sql: "UPDATE customers SET plan = 'team' WHERE id = 3" })).status).toBe('succeeded');
  expect((await agent.run({ target: 'db', sql: 'DELETE FROM customers WHERE id > 0' })).status).toBe('pending');
  expect((await agent.run({ target: 'db', sql: "UPDATE events SET note = 'x' WHERE id = 1" })).status).toBe('pending');
  expect((await (await agentFor('bob')).run({ target: 'db', sql: "UPDATE customers SET plan = 'free' WHERE id = 3" })).status).toBe('pending');
  expect(Number((await s.admin.query('SELECT count(*)::int AS n FROM customers')).rows[0].n)).toBe(3);
});

it('windowAllows, the one check behind activeWindow, agrees with the scope it is given', () => {
  const scope: WindowScope = { rule: 'r', target: 'db', requester: { iss: 'i', sub: 'a' }, actFor: null, policyVersion: 'v1', shapes: ['update:public.customers'], maxSec: 60 };
  const facts = (kind: string, table: string) => ({ kind: 'sql', facts: { statements: [{ kind, tablesWritten: [table] }] } }) as never;
  const p = { iss: 'i', sub: 'a', groups: [] };
  expect(windowAllows(scope, p, 'db', 'r', { facts: facts('update', 'public.customers'), policyVersion: 'v1' })).toBe(true);
  expect(windowAllows(scope, p, 'db', 'r', { facts: facts('delete', 'public.customers'), policyVersion: 'v1' })).toBe(false);
  expect(windowAllows(scope, p, 'db', 'r', { facts: facts('update', 'public.customers'), policyVersion: 'v2' })).toBe(false);
  expect(windowAllows(scope, { ...p, actFor: 'alice' }, 'db', 'r', { facts: facts('update', 'public.customers'), policyVersion: 'v1' })).toBe(false);
  expect(windowAllows(scope, { ...p, iss: 'other' }, 'db', 'r', { facts: facts('update', 'public.customers'), policyVersion: 'v1' })).toBe(false);
});
