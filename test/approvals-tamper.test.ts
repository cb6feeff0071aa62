/**
 * Only a broker writes what an approval runs. Workers can write the intents bucket (each run
 * needs its compare-and-set), so a pending record planted or edited there must not be
 * trusted: not its approver groups, not its mode, not its command.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { readSession } from '../audit/index.ts';
import { newId } from '../client/index.ts';
import { sha256Hex, type IntentRecord } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);

beforeAll(async () => {
  s = await startStack({
    config: {
      policy: {
        rules: [
          { id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['dba'], count: 1, timeoutSec: 60 } },
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
        ],
      },
    },
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

async function intents() {
  return new Kvm(s.nc).open(s.names.buckets.intents);
}

it('refuses a vote on a pending record planted in the bucket (analysts as approvers, write mode); nothing runs', async () => {
  const kv = await intents();
  const sql = "INSERT INTO events (note) VALUES ('planted')";
  const id = newId();
  const now = Date.now();
  const planted: IntentRecord = {
    intentId: id,
    sessionId: 's_planted_session',
    target: 'db',
    kind: 'postgres',
    principal: { sub: 'mallory', iss: 'x', groups: ['analysts'] },
    state: 'pending',
    commandSha256: sha256Hex(sql),
    createdAt: now,
    updatedAt: now,
    grant: { mode: 'write', limits: { rows: 10, seconds: 5 }, mask: {} },
    pending: {
      rule: 'ask',
      spec: { groups: ['analysts'], count: 1, timeoutSec: 60 },
      expiresAt: now + 60_000,
      votes: [],
      order: { command: { kind: 'sql', sql }, mode: 'write', limits: { rows: 10, seconds: 5 } },
      sig: 'AAAA',
    },
  };
  await kv.create(id, JSON.stringify(planted));
  const analyst = s.client(await s.approverToken('ana', ['analysts']));
  // Not shown to approvers (its seal does not verify); a vote naming it is refused all the same.
  expect((await analyst.pending()).map((x) => x.intentId)).not.toContain(id);
  await expect(analyst.decide(id, 'approve', { commandSha256: planted.commandSha256 })).rejects.toMatchObject({ code: 'WRIT_RECORD_TAMPERED' });
  await new Promise((r) => setTimeout(r, 500));
  expect(await rows('planted')).toBe(0);
  // Nothing written into the session the planted record names.
  expect(await readSession({ nc: s.nc, names: s.names, sessionId: 's_planted_session' })).toEqual([]);
});

it('refuses a vote on a real pending record whose approver groups were edited; the right approver still decides', async () => {
  const agent = s.client(await s.token('agent-1', ['agents']));
  const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('edited')" });
  expect(p.status).toBe('pending');
  const kv = await intents();
  const e = (await kv.get(p.intentId))!;
  const rec = e.json<IntentRecord>();
  await kv.update(p.intentId, JSON.stringify({ ...rec, pending: { ...rec.pending!, spec: { ...rec.pending!.spec, groups: ['analysts'] } } }), e.revision);
  const ana = s.client(await s.approverToken('ana', ['analysts']));
  expect((await ana.pending()).map((x) => x.intentId)).not.toContain(p.intentId);
  await expect(ana.decide(p.intentId, 'approve', { commandSha256: rec.commandSha256 })).rejects.toMatchObject({ code: 'WRIT_RECORD_TAMPERED' });
  expect(await rows('edited')).toBe(0);
  // Restore the broker's record: the real approver group decides as usual.
  const e2 = (await kv.get(p.intentId))!;
  await kv.update(p.intentId, JSON.stringify(rec), e2.revision);
  expect(await s.client(await s.approverToken('dora', ['dba'])).decide(p.intentId, 'approve')).toBe('dispatched');
  expect((await agent.wait(p.intentId)).status).toBe('succeeded');
  expect(await rows('edited')).toBe(1);
});

it('refuses a vote on a pending record whose policy version was edited (a window would name it); nothing runs', async () => {
  const agent = s.client(await s.token('agent-pv', ['agents']));
  const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('edited-version')" });
  const kv = await intents();
  const e = (await kv.get(p.intentId))!;
  const rec = e.json<IntentRecord>();
  await kv.update(p.intentId, JSON.stringify({ ...rec, decision: { ...rec.decision!, policyVersion: 'next-version' } }), e.revision);
  await expect(s.client(await s.approverToken('dora', ['dba'])).decide(p.intentId, 'approve', { commandSha256: rec.commandSha256 })).rejects.toMatchObject({ code: 'WRIT_RECORD_TAMPERED' });
  expect(await rows('edited-version')).toBe(0);
});

it('keeps no vote, and so no voter token, in any stream', async () => {
  const agent = s.client(await s.token('agent-2', ['agents']));
  const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('stored-vote')" });
  const token = await s.approverToken('dora', ['dba']);
  expect(await s.client(token).decide(p.intentId, 'approve')).toBe('dispatched');
  expect((await agent.wait(p.intentId)).status).toBe('succeeded');
  // Read every message of every stream: the voter's token is in none of them.
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(s.nc);
  const sig = token.split('.')[2]!;
  for await (const si of jsm.streams.list()) {
    const last = si.state.last_seq;
    for (let seq = si.state.first_seq; seq <= last && seq > 0; seq++) {
      const m = await jsm.streams.getMessage(si.config.name, { seq }).catch(() => null);
      if (m) expect(new TextDecoder().decode(m.data).includes(sig), `${si.config.name}#${seq}`).toBe(false);
    }
  }
});
