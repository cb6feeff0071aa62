/**
 * A vote is bound to one intent and the command it approves, and counts once. Votes are
 * published here as raw messages, the way someone holding a captured vote message would:
 * a hash of another command, the same message again, its token in a new vote on another
 * intent (the harvest-and-replay), the same decision id with another token, again after a
 * broker restart (a replica that never saw it), and an old message. Each is refused with its
 * own code and audited; nothing runs.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { createBroker, type Broker } from '../broker/index.ts';
import { inboxIdOfToken, newId, replySubjectFor } from '../client/index.ts';
import { createLogger } from '../lib/index.ts';
import { sha256Hex } from '../schemas/index.ts';
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

type Answer = { accepted: boolean; status?: string; code?: string };

/** Publishes a decision message exactly as given and returns the broker's answer on the voter's inbox. */
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
  const agent = s.client(await s.token('agent-v', ['agents']));
  const sql = `INSERT INTO events (note) VALUES ('${note}')`;
  const p = await agent.run({ target: 'db', sql });
  expect(p.status).toBe('pending');
  return { agent, id: p.intentId, sessionId: p.sessionId, sha: sha256Hex(sql) };
}

const vote = (token: string, intentId: string, commandSha256: string, o: Record<string, unknown> = {}) => ({
  v: 1,
  type: 'approval.decision',
  intentId,
  verdict: 'approve',
  token,
  decisionId: newId('d'),
  at: Date.now(),
  commandSha256,
  ...o,
});

async function refusals(sessionId: string) {
  return (await readSession({ nc: s.nc, names: s.names, sessionId })).filter((e) => e.type === 'approval.refused').map((e) => e.payload);
}

it('refuses a vote for another command than the one pending (WRIT_VOTE_MISMATCH), audited; the right hash counts', async () => {
  const p = await pending('vote-mismatch');
  const carol = () => s.approverToken('carol', ['approvers']);
  expect(await publishRaw(vote(await carol(), p.id, sha256Hex("INSERT INTO events (note) VALUES ('something else')")))).toMatchObject({ accepted: false, code: 'WRIT_VOTE_MISMATCH' });
  // The SDK, given the hash the approver saw, is refused the same way.
  await expect(s.client(await carol()).decide(p.id, 'approve', { commandSha256: '0'.repeat(64) })).rejects.toMatchObject({ code: 'WRIT_VOTE_MISMATCH' });
  expect(await p.agent.status(p.id)).toBe('pending');
  expect(await refusals(p.sessionId)).toEqual(expect.arrayContaining([expect.objectContaining({ by: 'carol', code: 'WRIT_VOTE_MISMATCH' })]));
  expect(await publishRaw(vote(await carol(), p.id, p.sha))).toMatchObject({ accepted: true, status: 'pending' });
});

it('counts a decision message once: the same message again, or moved to another intent, is refused; so is its decision id under another token', async () => {
  const a = await pending('vote-replay-a');
  const b = await pending('vote-replay-b');
  const carol = await s.approverToken('carol', ['approvers']);
  const captured = vote(carol, a.id, a.sha);
  expect(await publishRaw(captured)).toMatchObject({ accepted: true, status: 'pending' });
  expect(await publishRaw(captured)).toMatchObject({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  // The same token and decision id moved to another intent (with that intent's hash).
  expect(await publishRaw({ ...captured, intentId: b.id, commandSha256: b.sha })).toMatchObject({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  // The decision id is used once too, whatever token comes with it.
  expect(await publishRaw({ ...captured, token: await s.approverToken('erin', ['approvers']), intentId: b.id, commandSha256: b.sha })).toMatchObject({ accepted: false, code: 'WRIT_VOTE_REPLAYED' });
  // Refused and audited, and neither intent moved.
  expect(await a.agent.status(a.id)).toBe('pending');
  expect(await b.agent.status(b.id)).toBe('pending');
  const unattributed = (await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' })).filter((e) => e.type === 'approval.refused').map((e) => e.payload);
  expect(unattributed.filter((x) => x?.code === 'WRIT_VOTE_TOKEN_SPENT' && x.decisionId === captured.decisionId)).toHaveLength(2);
  expect(unattributed.filter((x) => x?.code === 'WRIT_VOTE_REPLAYED' && x.decisionId === captured.decisionId)).toHaveLength(1);
  expect(await rows('vote-replay-a')).toBe(0);
});

it('refuses a replay on a broker that never saw the vote (another replica, a restart): the record keeps its decision id', async () => {
  const p = await pending('vote-replay-restart');
  const carol = await s.approverToken('carol', ['approvers']);
  const captured = vote(carol, p.id, p.sha);
  expect(await publishRaw(captured)).toMatchObject({ accepted: true, status: 'pending' });
  await s.broker.stop();
  const fresh: Broker = await createBroker({ nc: s.nc, config: s.config, log: createLogger({ name: 'b2', level: 'silent' }) });
  await fresh.start();
  s.broker = fresh;
  // The token is spent in the shared bucket; the decision id is in the record.
  expect(await publishRaw(captured)).toMatchObject({ accepted: false, code: 'WRIT_VOTE_TOKEN_SPENT' });
  expect(await publishRaw({ ...captured, token: await s.approverToken('carol', ['approvers']) })).toMatchObject({ accepted: false, code: 'WRIT_VOTE_REPLAYED' });
  expect(await p.agent.status(p.id)).toBe('pending');
  expect(await refusals(p.sessionId)).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'WRIT_VOTE_REPLAYED', decisionId: captured.decisionId })]));
  // A second human's own vote still completes it.
  expect(await s.client(await s.approverToken('erin', ['approvers'])).decide(p.id, 'approve')).toBe('dispatched');
  expect((await p.agent.wait(p.id)).status).toBe('succeeded');
  expect(await rows('vote-replay-restart')).toBe(1);
});

it('refuses a vote cast outside the clock skew (WRIT_VOTE_STALE), audited', async () => {
  const p = await pending('vote-stale');
  const carol = () => s.approverToken('carol', ['approvers']);
  expect(await publishRaw(vote(await carol(), p.id, p.sha, { at: Date.now() - 10 * 60_000 }))).toMatchObject({ accepted: false, code: 'WRIT_VOTE_STALE' });
  expect(await publishRaw(vote(await carol(), p.id, p.sha, { at: Date.now() + 10 * 60_000 }))).toMatchObject({ accepted: false, code: 'WRIT_VOTE_STALE' });
  expect(await p.agent.status(p.id)).toBe('pending');
  const unattributed = (await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' })).filter((e) => e.type === 'approval.refused').map((e) => e.payload);
  expect(unattributed.filter((x) => x?.code === 'WRIT_VOTE_STALE' && x.intentId === p.id)).toHaveLength(2);
});
