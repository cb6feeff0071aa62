/**
 * A human's approver token votes once (issue 13, item 1: the harvest-and-replay). Someone who
 * reads a vote message (here: a plain subscriber to every vote subject, as a holder of a
 * broker's or the operator's NATS credentials could be) takes the token out of it and casts a
 * new vote of their own with it, on another intent, with a new decision id, the right command
 * hash and a fresh time. The broker refuses it (WRIT_VOTE_TOKEN_SPENT), audits it, and nothing
 * runs: one approver cannot complete a 2-of-2 alone with a colleague's captured vote. The token
 * is spent by its issuer and jti (or its signed part), never by its exact text, so a re-encoded
 * signature does not make it new; and the spent tokens outlive any token that could still verify.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { provision } from '../broker/index.ts';
import { inboxIdOfToken, newId, replySubjectFor } from '../client/index.ts';
import { approverTokenLifeSec, names, sha256Hex } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
const enc = new TextEncoder();
const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);

beforeAll(async () => {
  s = await startStack({
    config: {
      policy: { rules: [{ id: 'two', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 2, timeoutSec: 120 } }] },
    },
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

async function pending(note: string) {
  const agent = s.client(await s.token('agent-t', ['agents']));
  const sql = `INSERT INTO events (note) VALUES ('${note}')`;
  const p = await agent.run({ target: 'db', sql });
  expect(p.status).toBe('pending');
  return { agent, id: p.intentId, sessionId: p.sessionId, sha: sha256Hex(sql) };
}

/** Everything published on the vote subjects, as a spy with read access to them sees it. */
async function spy(): Promise<{ votes: Record<string, unknown>[]; stop: () => void }> {
  const votes: Record<string, unknown>[] = [];
  const sub = s.nc.subscribe(s.names.approvalDecisionAll(), { callback: (_e, m) => void votes.push(m.json<Record<string, unknown>>()) });
  await s.nc.flush();
  return { votes, stop: () => sub.unsubscribe() };
}

/** A new vote of the spy's own making, with a token taken from a captured one: new decision id, fresh time, the intent's hash. */
const newVote = (token: string, intentId: string, commandSha256: string) => ({
  v: 1,
  type: 'approval.decision',
  intentId,
  verdict: 'approve',
  token,
  decisionId: newId('d'),
  at: Date.now(),
  commandSha256,
});

/** Publishes a vote message exactly as given and returns the broker's answer on the token holder's inbox. */
async function cast(vote: ReturnType<typeof newVote>): Promise<{ accepted: boolean; status?: string; code?: string }> {
  const inbox = replySubjectFor(inboxIdOfToken(vote.token), '_INBOX');
  const sub = s.nc.subscribe(inbox, { max: 1, timeout: 10_000 });
  const answer = (async () => {
    for await (const m of sub) {
      const a = m.json<{ accepted: boolean; status?: string; code?: string }>();
      return a.accepted ? { accepted: true, status: a.status } : { accepted: false, code: a.code };
    }
    throw new Error('no answer');
  })();
  s.nc.publish(s.names.approvalDecision(vote.intentId), enc.encode(JSON.stringify({ ...vote, replyTo: inbox })));
  return answer;
}

async function refused(sessionId: string, code: string): Promise<Record<string, unknown>[]> {
  return (await readSession({ nc: s.nc, names: s.names, sessionId })).filter((e) => e.type === 'approval.refused' && e.payload?.code === code).map((e) => e.payload as Record<string, unknown>);
}

it('refuses a new vote cast with the token of a captured vote, on another intent: one approver cannot complete 2-of-2 alone', async () => {
  const a = await pending('harvest-a');
  const b = await pending('harvest-b');
  const watch = await spy();
  // carol approves A with her own token, as the CLI does; the spy reads the message.
  expect(await s.client(await s.approverToken('carol', ['approvers'])).decide(a.id, 'approve')).toBe('pending');
  watch.stop();
  const captured = watch.votes.find((v) => v.intentId === a.id);
  expect(captured?.token).toEqual(expect.any(String));
  // mallory, an approver, votes on B herself, then adds "carol's" vote with the harvested token.
  expect(await s.client(await s.approverToken('mallory', ['approvers'])).decide(b.id, 'approve')).toBe('pending');
  const replay = newVote(String(captured!.token), b.id, b.sha);
  expect(await cast(replay)).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  // …and on A again, under a new decision id: still spent.
  expect(await cast(newVote(String(captured!.token), a.id, a.sha))).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  expect(await b.agent.status(b.id)).toBe('pending');
  expect(await a.agent.status(a.id)).toBe('pending');
  expect(await rows('harvest-b')).toBe(0);
  // Audited, by the voter the token names, under the unattributed session (refused before the record was read).
  expect((await refused('_unattributed', 'WRIT_VOTE_TOKEN_SPENT')).filter((x) => x.decisionId === replay.decisionId)).toEqual([
    expect.objectContaining({ by: 'carol', intentId: b.id, verdict: 'approve' }),
  ]);
  // carol herself, with a fresh token, still decides B.
  expect(await s.client(await s.approverToken('carol', ['approvers'])).decide(b.id, 'approve')).toBe('dispatched');
  expect((await b.agent.wait(b.id)).status).toBe('succeeded');
});

it('spends a token on a refused vote too: a vote refused for its hash leaves no token to reuse', async () => {
  const a = await pending('harvest-refused-a');
  const b = await pending('harvest-refused-b');
  const erin = await s.approverToken('erin', ['approvers']);
  expect(await cast(newVote(erin, a.id, '0'.repeat(64)))).toEqual({ accepted: false, code: 'WRIT_VOTE_MISMATCH' });
  expect(await cast(newVote(erin, b.id, b.sha))).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  // So does a refusal before the record is read (a stale vote).
  const dora = await s.approverToken('dora', ['approvers']);
  expect(await cast({ ...newVote(dora, a.id, a.sha), at: Date.now() - 3_600_000 })).toEqual({ accepted: false, code: 'WRIT_VOTE_STALE' });
  expect(await cast(newVote(dora, b.id, b.sha))).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  expect(await b.agent.status(b.id)).toBe('pending');
});

/** The same token with its signature's last base64url character changed in its unused bits: another string, the same signature. */
function reencoded(token: string): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const v = A.indexOf(token.at(-1)!);
  // An Ed25519 signature is 64 bytes: its 86th character carries 2 bits and 4 spare ones.
  return token.slice(0, -1) + A[(v & 0b110000) | ((v + 1) & 0b001111)];
}

it('spends a token by its issuer and jti, or its signed part when it has no jti, never by its text: a re-encoded signature is the same token', async () => {
  const a = await pending('reencoded-a');
  const b = await pending('reencoded-b');
  const carol = await s.approverToken('carol', ['approvers']);
  expect(await cast(newVote(carol, a.id, a.sha))).toEqual({ accepted: true, status: 'pending' });
  const again = reencoded(carol);
  expect(again).not.toBe(carol);
  expect(await cast(newVote(again, b.id, b.sha))).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  // A provider that sets no jti: its tokens are spent by their signed part (header and payload).
  const key = await importJWK(s.dev.privateJwk, 'EdDSA');
  const now = Math.floor(Date.now() / 1000);
  const noJti = await new SignJWT({ groups: ['approvers'] })
    .setProtectedHeader({ alg: 'EdDSA', kid: s.dev.privateJwk.kid! })
    .setIssuer(s.dev.issuer)
    .setSubject('nora')
    .setAudience(s.config.identity.devIssuer.approverAudience)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(key);
  expect(await cast(newVote(noJti, a.id, a.sha))).toEqual({ accepted: true, status: 'dispatched' });
  expect(await cast(newVote(reencoded(noJti), b.id, b.sha))).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  expect(await cast(newVote(noJti, b.id, b.sha))).toEqual({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  expect(await b.agent.status(b.id)).toBe('pending');
});

it('remembers spent tokens at least as long as an approver token can verify, and stores no token', async () => {
  const kv = await new Kvm(s.nc).open(s.names.buckets.voteTokens);
  const { streamInfo } = await kv.status();
  expect(streamInfo.config.max_age).toBeGreaterThanOrEqual(approverTokenLifeSec(s.config) * 1e9);
  // The dev issuer's tokens live up to a day: the bucket keeps its entries a day and twice its skew.
  expect(approverTokenLifeSec(s.config)).toBe(24 * 3600 + 60);
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  expect(keys.length).toBeGreaterThan(0);
  for (const k of keys) {
    const text = new TextDecoder().decode((await kv.get(k))!.value);
    expect(text).not.toMatch(/eyJ/);
    expect(Object.keys(JSON.parse(text) as object).sort()).toEqual(['at', 'decisionId', 'intentId']);
  }
  // A bucket left with a shorter age (an older config) is raised to it at the next start.
  const other = names(`vt${process.pid % 10_000}`);
  await new Kvm(s.nc).create(other.buckets.voteTokens, { history: 1, ttl: 60_000 });
  await provision(s.nc, await jetstreamManager(s.nc), other, s.config);
  const raised = await (await new Kvm(s.nc).open(other.buckets.voteTokens)).status();
  expect(raised.streamInfo.config.max_age).toBe(approverTokenLifeSec(s.config) * 1e9);
});

it('spends only verified tokens: a copy with a forged signature is refused and burns nothing', async () => {
  const a = await pending('unverifiable');
  const carol = await s.approverToken('carol', ['approvers']);
  const forged = newVote(`${carol.split('.').slice(0, 2).join('.')}.${'A'.repeat(86)}`, a.id, a.sha);
  s.nc.publish(s.names.approvalDecision(a.id), enc.encode(JSON.stringify(forged)));
  await s.nc.flush();
  await expect.poll(async () => (await refused('_unattributed', 'WRIT_TOKEN_INVALID')).some((x) => x.intentId === a.id)).toBe(true);
  expect(await cast(newVote(carol, a.id, a.sha))).toEqual({ accepted: true, status: 'pending' });
});
