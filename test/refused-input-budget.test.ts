/**
 * Refused input from a verified sender was audited one event per message: one principal's flood
 * with its own valid token (requests answered elsewhere, intents naming another's session,
 * explains opening a new session each) grew the audit log by megabytes a second and the sessions
 * bucket by a session per request (an attack helper's finding). Each principal's refused input
 * is now stored within a budget of its own and counted past it; an explain opens no session; and
 * ids starting with `_` (the services' own sessions) are refused.
 */
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { newId } from '../client/index.ts';
import { generateSealKeyPair, inboxIdOfToken } from '../lib/seal.ts';
import { startStack, type Stack } from './fixture.ts';
import { startFlood } from './helpers/flood.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

it("stores one principal's refused intents within its own budget, and another's still one by one", async () => {
  const sessionId = 's_budget_owned_by_alice';
  const alice = s.client(await s.token('alice', ['analysts']), sessionId);
  expect((await alice.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
  const token = await s.token('budget-flooder', ['analysts']);
  const flooder = s.client(token);
  expect((await flooder.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
  const replyKey = generateSealKeyPair().publicKey;
  // Well-formed intents with the flooder's own valid token, each naming alice's session.
  const bodies = Array.from({ length: 500 }, (_, i) =>
    JSON.stringify({ v: 1, type: 'intent', id: `budget-${i}-xxxx`, sessionId, target: 'db', token, replyKey, submittedAt: Date.now(), command: { kind: 'sql', sql: 'SELECT 1' } }),
  );
  const started = Date.now();
  const flood = startFlood(s.nats.url, s.names.intent('db'), bodies, { batch: 50, pauseMs: 10 });
  await new Promise((r) => setTimeout(r, 3000));
  const sent = await flood.stop();
  const seconds = (Date.now() - started) / 1000;
  // Another principal's refused intent during the same second is still stored one by one.
  const mallory = s.client(await s.token('budget-mallory', ['analysts']), sessionId);
  const m = await mallory.run({ target: 'db', sql: 'SELECT 2' });
  expect(m.error?.code).toBe('WRIT_SESSION_FORBIDDEN');
  let events: Awaited<ReturnType<typeof readSession>> = [];
  for (let i = 0; i < 50; i++) {
    events = await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' });
    if (events.some((e) => e.type === 'session.refused' && JSON.stringify(e.payload).includes('budget-mallory'))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const flooders = events.filter((e) => e.type === 'session.refused' && JSON.stringify(e.payload).includes('budget-flooder')).length;
  expect(sent).toBeGreaterThan(2000);
  // A burst of 200 and 20 a second (audit.unattributedPerSec's default), not one per intent.
  expect(flooders).toBeGreaterThan(0);
  expect(flooders).toBeLessThanOrEqual(200 + Math.ceil(20 * (seconds + 2)));
  expect(events.some((e) => e.type === 'session.refused' && JSON.stringify(e.payload).includes('budget-mallory'))).toBe(true);
}, 60_000);

it("opens no session for an explain, and audits it into the asker's session only when that exists", async () => {
  const kv = await new Kvm(s.nc).open(s.names.buckets.sessions);
  const fresh = `s_${newId().slice(2)}`;
  const bob = s.client(await s.token('bob-explain', ['analysts']), fresh);
  const e1 = await bob.explain({ target: 'db', sql: 'SELECT 1' });
  expect(e1.decision.effect).toBe('allow');
  expect(await kv.get(fresh)).toBeNull();
  const explained = (await readSession({ nc: s.nc, names: s.names, sessionId: '_explain' })).filter((e) => e.type === 'policy.explained' && JSON.stringify(e.payload).includes(fresh));
  expect(explained.length).toBe(1);
  // Once the session is bob's (his first intent opened it), explains go into it.
  expect((await bob.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
  await bob.explain({ target: 'db', sql: 'SELECT 2' });
  let mine: string[] = [];
  for (let i = 0; i < 50 && !mine.includes('policy.explained'); i++) {
    if (i) await new Promise((r) => setTimeout(r, 100));
    mine = (await readSession({ nc: s.nc, names: s.names, sessionId: fresh })).map((e) => e.type);
  }
  expect(mine).toContain('policy.explained');
});

it("refuses ids that start with _, which name the services' own sessions", async () => {
  const token = await s.token('squatter', ['analysts']);
  const squatter = s.client(token, '_unattributed');
  const o = await squatter.run({ target: 'db', sql: 'SELECT 1' });
  expect([o.status, o.error?.code]).toEqual(['denied', 'WRIT_BAD_REQUEST']);
  // An explain into `_explain` does not parse, and is not answered (its token is never read); the
  // request as the SDK would send it, on the squatter's own inbox, with a short wait.
  const asked = s.nc.request(s.names.api('explain'), JSON.stringify({ v: 1, type: 'explain', token, target: 'db', command: { kind: 'sql', sql: 'SELECT 1' }, sessionId: '_explain' }), {
    timeout: 1_500,
    reply: `_INBOX.${inboxIdOfToken(token)}.explain`,
    noMux: true,
  });
  await expect(asked).rejects.toThrow();
  const kv = await new Kvm(s.nc).open(s.names.buckets.sessions);
  expect(await kv.get('_unattributed')).toBeNull();
  const ok = s.client(token);
  const r = await ok.run({ target: 'db', sql: 'SELECT 1', intentId: '_i_reserved_id' });
  expect([r.status, r.error?.code]).toEqual(['denied', 'WRIT_BAD_REQUEST']);
});

it("stores an approver's refused votes within its own budget: a spent token sent again and again, answered elsewhere", async () => {
  const token = await s.approverToken('budget-voter', ['approvers']);
  const bodies = Array.from({ length: 500 }, (_, i) =>
    JSON.stringify({
      v: 1,
      type: 'approval.decision',
      intentId: 'i_no_such_intent_1',
      verdict: 'approve',
      token,
      decisionId: `vote-flood-${i}-xxxx`,
      at: Date.now(),
      commandSha256: 'a'.repeat(64),
      replyTo: '_INBOX.someone-else.x',
    }),
  );
  const started = Date.now();
  const flood = startFlood(s.nats.url, s.names.approvalDecision('i_no_such_intent_1'), bodies, { batch: 50, pauseMs: 10 });
  await new Promise((r) => setTimeout(r, 2000));
  const sent = await flood.stop();
  const seconds = (Date.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 500));
  const events = (await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' })).filter((e) => JSON.stringify(e.payload).includes('budget-voter'));
  expect(sent).toBeGreaterThan(1000);
  const replies = events.filter((e) => e.type === 'reply.refused').length;
  expect(replies).toBeGreaterThan(0);
  expect(replies).toBeLessThanOrEqual(200 + Math.ceil(20 * (seconds + 2)));
}, 60_000);
