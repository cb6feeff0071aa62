/**
 * Trusted bots sign their votes with their own key and are matched by issuer AND subject.
 * Someone holding the bot's Writ token (harvested from a message, a log, a config) cannot
 * vote on anyone's behalf: not without a signature, not with another key, not by moving a
 * signed vote to another intent, human or verdict, not by replaying it, and not as another
 * issuer's bot of the same name. The old bare-subject config is refused by name.
 */
import { sign } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { botSigningKey, generateBotKey, publishDecision } from '../approver/index.ts';
import { readSession } from '../audit/index.ts';
import { DEV_ISSUER } from '../broker/index.ts';
import { inboxIdOfToken, newId, replySubjectFor } from '../client/index.ts';
import { parseConfig, sha256Hex, voteSigningBytes, type ApprovalDecision } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
const enc = new TextEncoder();
const BOT = generateBotKey();
const OTHER = generateBotKey();
const ELSEWHERE = generateBotKey();
const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);

beforeAll(async () => {
  s = await startStack({
    config: {
      approvals: {
        trustedBots: [
          { iss: DEV_ISSUER, sub: 'slack-bot', publicKey: BOT.publicKey },
          // A bot of another issuer: a dev-issuer token with this subject is not it.
          { iss: 'https://idp.elsewhere.example', sub: 'other-bot', publicKey: ELSEWHERE.publicKey },
        ],
      },
      policy: { rules: [{ id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } }] },
    },
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

type Answer = { accepted: boolean; status?: string; code?: string };

async function publishRaw(msg: Record<string, unknown>): Promise<Answer> {
  const inbox = replySubjectFor(inboxIdOfToken(String(msg.token)), '_INBOX');
  const sub = s.nc.subscribe(inbox, { max: 1, timeout: 10_000 });
  const answer = (async () => {
    for await (const m of sub) return m.json<Answer>();
    throw new Error('no answer');
  })();
  s.nc.publish(s.names.approvalDecision(String(msg.intentId)), enc.encode(JSON.stringify({ ...msg, replyTo: inbox })));
  return answer;
}

async function pending(note: string) {
  const agent = s.client(await s.token('agent-b', ['agents']));
  const sql = `INSERT INTO events (note) VALUES ('${note}')`;
  const p = await agent.run({ target: 'db', sql });
  expect(p.status).toBe('pending');
  return { agent, id: p.intentId, sessionId: p.sessionId, sha: sha256Hex(sql) };
}

const carol = { sub: 'carol', groups: ['approvers'], via: 'slack' };

/** A bot vote as the bot would build it, signed with `key` (or unsigned). */
function botVote(token: string, intentId: string, sha: string, key: string | undefined, o: Partial<ApprovalDecision> = {}): Record<string, unknown> {
  const unsigned = { v: 1 as const, type: 'approval.decision' as const, intentId, commandSha256: sha, verdict: 'approve' as const, onBehalfOf: carol, decisionId: newId('d'), at: Date.now(), ...o };
  return { ...unsigned, token, ...(key ? { sig: sign(null, voteSigningBytes(unsigned), botSigningKey(key)).toString('base64url') } : {}) };
}

it('refuses a bot token without a signature, with another key, or voting as itself; nothing runs', async () => {
  const p = await pending('bot-unsigned');
  const token = await s.approverToken('slack-bot', ['approvers']);
  expect(await publishRaw(botVote(token, p.id, p.sha, undefined))).toMatchObject({ accepted: false, code: 'WRIT_VOTE_SIGNATURE' });
  expect(await publishRaw(botVote(token, p.id, p.sha, OTHER.privateKeyPem))).toMatchObject({ accepted: false, code: 'WRIT_VOTE_SIGNATURE' });
  // Invented humans: the harvest-and-replay attack of the issue, now unsigned or signed wrongly.
  expect(await publishRaw(botVote(token, p.id, p.sha, undefined, { onBehalfOf: { sub: 'mallory', groups: ['approvers'], via: 'slack' } }))).toMatchObject({
    accepted: false,
    code: 'WRIT_VOTE_SIGNATURE',
  });
  // The bot's token is in the approvers group, yet it never votes as itself.
  const { onBehalfOf: _o, ...asItself } = botVote(token, p.id, p.sha, undefined) as Record<string, unknown>;
  expect(await publishRaw(asItself)).toMatchObject({ accepted: false, code: 'WRIT_APPROVER_NOT_ALLOWED' });
  expect(await p.agent.status(p.id)).toBe('pending');
  expect(await rows('bot-unsigned')).toBe(0);
  const refused = (await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' })).filter((e) => e.type === 'approval.refused' && e.payload?.intentId === p.id);
  expect(refused.map((e) => e.payload?.code)).toEqual(['WRIT_VOTE_SIGNATURE', 'WRIT_VOTE_SIGNATURE', 'WRIT_VOTE_SIGNATURE', 'WRIT_APPROVER_NOT_ALLOWED']);
});

it('refuses a signed vote moved to another intent, human, verdict or window; the signed vote itself counts once', async () => {
  const a = await pending('bot-signed-a');
  const b = await pending('bot-signed-b');
  const token = await s.approverToken('slack-bot', ['approvers']);
  const signed = botVote(token, a.id, a.sha, BOT.privateKeyPem);
  // The signature over intent A, sent for intent B (with B's hash, as the attacker would).
  expect(await publishRaw({ ...signed, intentId: b.id, commandSha256: b.sha, decisionId: newId('d') })).toMatchObject({ accepted: false, code: 'WRIT_VOTE_SIGNATURE' });
  for (const change of [{ onBehalfOf: { sub: 'mallory', groups: ['approvers'], via: 'slack' } }, { verdict: 'reject', reason: 'no' }, { windowSec: 3600 }]) {
    expect(await publishRaw({ ...signed, ...change, decisionId: newId('d') })).toMatchObject({ accepted: false, code: 'WRIT_VOTE_SIGNATURE' });
  }
  expect(await a.agent.status(a.id)).toBe('pending');
  expect(await b.agent.status(b.id)).toBe('pending');
  expect(await publishRaw(signed)).toMatchObject({ accepted: true, status: 'dispatched' });
  expect((await a.agent.wait(a.id)).status).toBe('succeeded');
  expect(await rows('bot-signed-a')).toBe(1);
  // Replayed as is, after it counted: refused.
  expect(await publishRaw(signed)).toMatchObject({ accepted: false, code: 'WRIT_VOTE_REPLAYED' });
  const votes = (await readSession({ nc: s.nc, names: s.names, sessionId: a.sessionId })).filter((e) => e.type === 'approval.vote');
  expect(votes.map((e) => e.payload)).toEqual([expect.objectContaining({ by: 'carol', via: 'slack:slack-bot', counted: true })]);
});

it('matches a bot by issuer and subject: the same subject from another issuer is not the trusted bot, even signed with its key', async () => {
  const p = await pending('bot-other-issuer');
  // A dev-issuer token whose subject names a bot trusted only from another issuer.
  const token = await s.approverToken('other-bot', ['approvers']);
  expect(await publishRaw(botVote(token, p.id, p.sha, ELSEWHERE.privateKeyPem))).toMatchObject({ accepted: false, code: 'WRIT_APPROVER_NOT_ALLOWED' });
  expect(await p.agent.status(p.id)).toBe('pending');
});

it('votes through publishDecision (what the Slack bot uses), signed with the bot key', async () => {
  const p = await pending('bot-publish');
  const token = await s.approverToken('slack-bot', ['approvers']);
  const answer = await publishDecision({ nc: s.nc, names: s.names, intentId: p.id, commandSha256: p.sha, verdict: 'approve', token, signingKey: botSigningKey(BOT.privateKeyPem), onBehalfOf: carol });
  expect(answer).toEqual({ accepted: true, status: 'dispatched' });
  expect((await p.agent.wait(p.id)).status).toBe('succeeded');
});

it('refuses the earlier bare-subject trustedBots entry by name (it names no key), and a key that is not one', () => {
  expect(() => parseConfig({ approvals: { trustedBots: ['slack-bot'] } })).toThrow(/approvals\.trustedBots\[0\]: "slack-bot": a trusted bot is now \{ iss, sub, publicKey \}/);
  expect(() => parseConfig({ approvals: { trustedBots: [{ iss: DEV_ISSUER, sub: 'slack-bot' }] } })).toThrow(/approvals\.trustedBots\[0\]\.publicKey/);
  expect(() => parseConfig({ approvals: { trustedBots: [{ iss: DEV_ISSUER, sub: 'slack-bot', publicKey: 'short' }] } })).toThrow(/approvals\.trustedBots\[0\]\.publicKey: a raw Ed25519 public key/);
});
