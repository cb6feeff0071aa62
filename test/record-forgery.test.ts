/**
 * Workers can write the intents bucket (each run's end is a compare-and-set there), so a
 * worker's login can plant or edit records. The broker trusts no part of a record it did not
 * sign: not a `dispatched` state it re-sends an order from, not a vote it counts. And one human
 * counts once, whichever of the identities they vote through comes first.
 */
import { Kvm, type KV } from '@nats-io/kv';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mintDevToken } from '../broker/index.ts';
import { createRecord, getRecord, updateRecord } from '../lib/index.ts';
import { sha256Hex, type IntentRecord } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
let intents: KV;

beforeAll(async () => {
  s = await startStack({
    config: {
      policy: {
        rules: [{ id: 'two', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 2, timeoutSec: 120 } }],
      },
    },
  });
  intents = await new Kvm(s.nc).open(s.names.buckets.intents);
}, 90_000);
afterAll(async () => {
  await s?.stop();
});

const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);
const approver = async (sub: string) => s.client(await s.approverToken(sub, ['approvers']));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends an intent again, as an agent can. */
async function resubmit(token: string, intentId: string, sessionId: string, sql: string): Promise<void> {
  const intent = { v: 1, type: 'intent', id: intentId, sessionId, target: 'db', command: { kind: 'sql', sql }, token, submittedAt: Date.now() };
  s.nc.publish(s.names.intent('db'), JSON.stringify(intent));
  await s.nc.flush();
}

it('never re-sends an order from a pending record a worker rewrote as dispatched (no vote given)', async () => {
  const token = await s.token('agent-d1', ['agents']);
  const agent = s.client(token, 's_forgery_d1');
  const sql = "INSERT INTO events (note) VALUES ('d1-no-vote')";
  const p = await agent.run({ target: 'db', sql });
  expect(p.status).toBe('pending');
  const entry = (await getRecord(intents, p.intentId))!;
  const { pending: _p, ...rest } = entry.rec;
  const forged: IntentRecord = { ...rest, state: 'dispatched', grantId: p.intentId, grantExp: Math.floor(Date.now() / 1000) + 60 };
  await updateRecord(intents, forged, entry.revision);
  await resubmit(token, p.intentId, 's_forgery_d1', sql);
  await sleep(2000);
  expect(await rows('d1-no-vote')).toBe(0);
  expect((await getRecord(intents, p.intentId))!.rec.grantId).toBe(p.intentId); // the forgery stands; nothing ran from it
});

it("never signs a grant from a planted dispatched record: a denied principal's write does not run", async () => {
  const token = await s.token('intern-d2', ['interns']);
  const sql = "INSERT INTO events (note) VALUES ('d2-planted')";
  const id = 'i_planted_dispatch_d2';
  const now = Date.now();
  const planted: IntentRecord = {
    intentId: id,
    sessionId: 's_forgery_d2',
    target: 'db',
    kind: 'postgres',
    principal: { iss: 'x', sub: 'intern-d2', groups: ['interns'] },
    state: 'dispatched',
    decision: { effect: 'allow', rules: ['x'], reasons: [], mode: 'write', policyVersion: 'x' },
    grant: { mode: 'write', limits: {}, mask: {} },
    grantId: id,
    grantExp: Math.floor(now / 1000) + 60,
    commandSha256: sha256Hex(sql),
    createdAt: now,
    updatedAt: now,
  };
  // The broker's own principal for this token, so the resubmission is "the same principal".
  const iss = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { iss: string }).iss;
  await createRecord(intents, { ...planted, principal: { iss, sub: 'intern-d2', groups: ['interns'] } });
  await resubmit(token, id, 's_forgery_d2', sql);
  await sleep(2000);
  expect(await rows('d2-planted')).toBe(0);
});

it('counts no vote the broker did not write: a vote added to the record refuses the next one', async () => {
  const agent = s.client(await s.token('agent-d3', ['agents']), 's_forgery_d3');
  const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('d3-forged-vote')" });
  expect(p.status).toBe('pending');
  const entry = (await getRecord(intents, p.intentId))!;
  const pend = entry.rec.pending!;
  await updateRecord(intents, { ...entry.rec, pending: { ...pend, votes: [{ sub: 'nobody', human: 'nobody', at: Date.now(), decisionId: 'forged-0001' }] } }, entry.revision);
  const shown = (await getRecord(intents, p.intentId))!.rec.commandSha256;
  await expect((await approver('real-approver')).decide(p.intentId, 'approve', { commandSha256: shown })).rejects.toMatchObject({ code: 'WRIT_RECORD_TAMPERED' });
  await sleep(500);
  expect(await rows('d3-forged-vote')).toBe(0);
});

it('counts one human once when a token acting for them votes before their own', async () => {
  const agent = s.client(await s.token('agent-d4', ['agents']), 's_forgery_d4');
  const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('d4-twice')" });
  expect(p.status).toBe('pending');
  const assistant = s.client(await mintDevToken(s.dev, { sub: 'approval-assistant', groups: ['approvers'], actFor: 'dora', audience: s.config.identity.devIssuer.approverAudience, ttlSec: 600 }));
  expect(await assistant.decide(p.intentId, 'approve')).toBe('pending');
  expect(await (await approver('dora')).decide(p.intentId, 'approve')).toBe('pending');
  expect(await agent.status(p.intentId)).toBe('pending');
  expect(await (await approver('erin')).decide(p.intentId, 'approve')).toBe('dispatched');
  expect((await agent.wait(p.intentId)).status).toBe('succeeded');
  expect(await rows('d4-twice')).toBe(1);
});

it('never revives an ended approval: a pending revision put back after a rejection, a cancel or a run counts no vote', async () => {
  // Rejected: the revision from while it was pending (one approval signed in) is put back.
  const agent = s.client(await s.token('agent-revive', ['agents']), 's_forgery_revive');
  const a = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('revive-rejected')" });
  expect(await (await approver('rev-bob')).decide(a.intentId, 'approve')).toBe('pending');
  const pendingA = (await getRecord(intents, a.intentId))!.rec;
  expect(await (await approver('rev-carol')).decide(a.intentId, 'reject')).toBe('rejected');
  const endedA = (await getRecord(intents, a.intentId))!;
  await updateRecord(intents, { ...pendingA, updatedAt: Date.now() }, endedA.revision);
  await expect((await approver('rev-alice')).decide(a.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });

  // Ran: the pending revision put back under a fresh grant id, one new approver.
  const b = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('revive-ran')" });
  expect(await (await approver('rev-bob')).decide(b.intentId, 'approve')).toBe('pending');
  const pendingB = (await getRecord(intents, b.intentId))!.rec;
  expect(await (await approver('rev-carol')).decide(b.intentId, 'approve')).toBe('dispatched');
  expect((await agent.wait(b.intentId)).status).toBe('succeeded');
  const ranB = (await getRecord(intents, b.intentId))!;
  await updateRecord(intents, { ...pendingB, grantId: 'g_fresh_revive_0001', updatedAt: Date.now() }, ranB.revision);
  await expect((await approver('rev-alice')).decide(b.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });

  // Cancelled by its agent, then put back to pending.
  const c = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('revive-cancelled')" });
  const pendingC = (await getRecord(intents, c.intentId))!.rec;
  expect(await agent.cancel(c.intentId)).toBe('cancelled');
  const endedC = (await getRecord(intents, c.intentId))!;
  await updateRecord(intents, { ...pendingC, updatedAt: Date.now() }, endedC.revision);
  await expect((await approver('rev-dan')).decide(c.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });

  await sleep(1000);
  expect([await rows('revive-rejected'), await rows('revive-ran'), await rows('revive-cancelled')]).toEqual([0, 1, 0]);
});
