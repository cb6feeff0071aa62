/**
 * `verify --against-state` on a real stack (issue 11, item 9): the broker and a PostgreSQL
 * worker run real intents, and verify finds every record's and claim's events in the log.
 * Then state is created without its evidence (the audit stream cannot be edited, so the
 * gap is made the other way round): a claim with no exec.claimed, an ended intent with no
 * exec.finished or no intent.dispatched, events in the wrong session, a claim with no
 * record. Each must be reported with the intent, its session and its state, and fail verify.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startStack, type Stack } from '../test/fixture.ts';
import { uniqueName } from '../test/helpers/index.ts';
import { AuditWriter, runAuditCli, verify, type VerifyResult } from './index.ts';

let s: Stack;
const enc = new TextEncoder();
const OLD = Date.now() - 5 * 60_000;

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const code = await runAuditCli(['verify', '--no-signatures', ...args], { nc: s.nc, names: s.names, stdout: (x) => out.push(x), stderr: (x) => out.push(x) });
  return { code, out: out.join('') };
}

/** Verify against state until it holds (the worker's events land just after the outcome), or the last result. */
async function settled(extra: Parameters<typeof verify>[0] extends infer O ? Partial<O> : never = {}): Promise<VerifyResult> {
  let r: VerifyResult | undefined;
  for (let i = 0; i < 50; i++) {
    r = await verify({ nc: s.nc, names: s.names, againstState: true, stateGraceMs: 0, ...extra });
    if (r.ok) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
  return r!;
}

beforeAll(async () => {
  s = await startStack({
    config: {
      policy: {
        rules: [
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
          { id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60 } },
          { id: 'no-interns', effect: 'deny', groups: ['interns'], targets: ['*'] },
        ],
      },
    },
  });
  const analyst = s.client(await s.token('alice', ['analysts']), uniqueName('sess'));
  const intern = s.client(await s.token('ivan', ['interns']), uniqueName('sess'));
  const agent = s.client(await s.token('otto', ['agents']), uniqueName('sess'));
  const outcomes = await Promise.all([
    analyst.run({ target: 'db', sql: 'SELECT name FROM customers ORDER BY id' }),
    analyst.run({ target: 'db', sql: 'SELECT no_such_column FROM customers' }),
    intern.run({ target: 'db', sql: 'SELECT 1' }),
    agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('x')" }),
  ]);
  expect(outcomes.map((o) => o.status)).toEqual(['succeeded', 'failed', 'denied', 'pending']);
  // A cancelled approval: the record ends `cancelled`, which implies approval.requested and approval.cancelled.
  expect(await agent.cancel(outcomes[3]!.intentId)).toBe('cancelled');
});

afterAll(async () => {
  await s?.stop();
});

describe('verify against state', () => {
  it('passes on what a real broker and worker wrote, with every record and claim checked', async () => {
    const r = await settled();
    expect(r.ok).toBe(true);
    expect(r.state).toMatchObject({ missing: 0, findings: [], recent: 0 });
    expect(r.state!.checked).toBeGreaterThanOrEqual(4);
    expect(r.state!.claims).toBeGreaterThanOrEqual(2);
    // The same through worker threads, and through the CLI (where it is the default).
    expect((await settled({ threads: 1 })).ok).toBe(true);
    const c = await cli(['--state-grace', '0']);
    expect(c.out).toMatch(/^OK/);
    expect(c.out).toMatch(/state: \d+ intent records checked against the log \(\d+ claims\), 0 with missing evidence/);
    expect(c.code).toBe(0);
  });

  it('reports every record and claim whose events are not in its session chain, and fails', async () => {
    const kv = s.broker.buckets;
    const w = new AuditWriter({ js: jetstream(s.nc), jsm: await jetstreamManager(s.nc), names: s.names, actor: { kind: 'broker', id: 'fixture' } });
    const sid = uniqueName('gap');
    const other = uniqueName('elsewhere');
    const ev = (intentId: string, ...types: string[]) => Promise.all(types.map((type) => w.append({ sessionId: sid, intentId, type })));
    const record = (intentId: string, state: string, sessionId = sid) =>
      kv.intents.put(
        intentId,
        enc.encode(
          JSON.stringify({
            intentId,
            sessionId,
            target: 'db',
            kind: 'postgres',
            principal: { sub: 'alice', iss: 'x', groups: [] },
            state,
            grantId: intentId,
            commandSha256: '0'.repeat(64),
            createdAt: OLD,
            updatedAt: OLD,
          }),
        ),
      );
    const claim = (gid: string, iid = gid) => kv.claims.put(gid, enc.encode(JSON.stringify({ worker: 'w-1', at: OLD, iid })));
    const ids = Object.fromEntries(['claimNoEvent', 'noFinished', 'noDispatched', 'unknownNoLost', 'deniedNoEvent', 'wrongSession', 'orphan'].map((k) => [k, uniqueName(k.slice(0, 8))]));

    // Claimed and running, but no exec.claimed (nor the sweeper's exec.lost).
    await record(ids.claimNoEvent!, 'dispatched');
    await claim(ids.claimNoEvent!);
    await ev(ids.claimNoEvent!, 'intent.received', 'intent.dispatched');
    // Ended succeeded, but the worker's exec.finished was never stored (item 7).
    await record(ids.noFinished!, 'succeeded');
    await claim(ids.noFinished!);
    await ev(ids.noFinished!, 'intent.received', 'intent.dispatched', 'exec.claimed');
    // Ran, but the broker died before intent.dispatched was stored (item 6).
    await record(ids.noDispatched!, 'succeeded');
    await claim(ids.noDispatched!);
    await ev(ids.noDispatched!, 'intent.received', 'exec.claimed', 'exec.finished');
    // Declared unknown with no exec.lost and no exec.finished.
    await record(ids.unknownNoLost!, 'unknown');
    await claim(ids.unknownNoLost!);
    await ev(ids.unknownNoLost!, 'intent.received', 'intent.dispatched', 'exec.claimed');
    // Denied without intent.denied.
    await record(ids.deniedNoEvent!, 'denied');
    await ev(ids.deniedNoEvent!, 'intent.received');
    // Every event present, but in another session's chain: not this session's evidence.
    await record(ids.wrongSession!, 'succeeded');
    await claim(ids.wrongSession!);
    await Promise.all(['intent.received', 'intent.dispatched', 'exec.claimed', 'exec.finished'].map((type) => w.append({ sessionId: other, intentId: ids.wrongSession!, type })));
    // Claimed (so possibly run) with no intent record at all.
    await claim(ids.orphan!);
    await w.close();

    const r = await verify({ nc: s.nc, names: s.names, againstState: true, stateGraceMs: 0 });
    expect(r.ok).toBe(false);
    expect(r.breaks).toBe(0); // every chain is intact: only the state shows what is missing
    const by = new Map(r.state!.findings.map((f) => [f.intentId, f]));
    expect(by.get(ids.claimNoEvent!)).toEqual({ intentId: ids.claimNoEvent, sessionId: sid, state: 'dispatched', claimed: true, missing: ['exec.claimed or exec.lost'] });
    expect(by.get(ids.noFinished!)).toMatchObject({ sessionId: sid, state: 'succeeded', missing: ['exec.finished'] });
    expect(by.get(ids.noDispatched!)).toMatchObject({ sessionId: sid, state: 'succeeded', missing: ['intent.dispatched'] });
    expect(by.get(ids.unknownNoLost!)).toMatchObject({ state: 'unknown', missing: ['exec.lost or exec.finished'] });
    expect(by.get(ids.deniedNoEvent!)).toMatchObject({ state: 'denied', missing: ['intent.denied'] });
    expect(by.get(ids.wrongSession!)).toMatchObject({ sessionId: sid, missing: ['intent.received', 'intent.dispatched', 'exec.claimed or exec.lost', 'exec.finished'] });
    expect(by.get(ids.orphan!)).toMatchObject({ sessionId: '?', state: 'claimed', missing: ['an intent record for this claim'] });
    expect(r.state!.missing).toBe(7);

    // The CLI: exit 1, each finding on its own line with intent, session and state.
    const c = await cli(['--state-grace', '0']);
    expect(c.code).toBe(1);
    expect(c.out).toMatch(/^BROKEN/);
    expect(c.out).toContain(`missing evidence: intent ${ids.noFinished}, session ${sid}, state succeeded (claimed): no exec.finished`);
    expect(c.out).toContain(`missing evidence: intent ${ids.claimNoEvent}, session ${sid}, state dispatched (claimed): no exec.claimed or exec.lost`);
    // One session's verify reports that session's findings only.
    const one = await verify({ nc: s.nc, names: s.names, sessionId: sid, againstState: true, stateGraceMs: 0 });
    expect(one.state!.findings.map((f) => f.intentId).sort()).toEqual([ids.claimNoEvent, ids.noFinished, ids.noDispatched, ids.unknownNoLost, ids.deniedNoEvent, ids.wrongSession].sort());
    // The chains alone are intact: that is all --no-against-state can say.
    expect((await cli(['--no-against-state'])).code).toBe(0);
  });

  it('leaves records changed within the grace period unchecked, and checks them once it has passed', async () => {
    const sid = uniqueName('fresh');
    const id = uniqueName('fresh');
    const now = Date.now();
    await s.broker.buckets.intents.put(id, enc.encode(JSON.stringify({ intentId: id, sessionId: sid, state: 'denied', createdAt: now, updatedAt: now })));
    const young = await verify({ nc: s.nc, names: s.names, sessionId: sid, againstState: true, stateGraceMs: 60_000 });
    expect(young.state).toMatchObject({ recent: 1, checked: 0, missing: 0 });
    const old = await verify({ nc: s.nc, names: s.names, sessionId: sid, againstState: true, stateGraceMs: 0 });
    expect(old.state!.findings).toEqual([{ intentId: id, sessionId: sid, state: 'denied', missing: ['intent.received', 'intent.denied'] }]);
  });

  it('reports an intent that asked for approval and ran with no counted vote in its chain', async () => {
    const w = new AuditWriter({ js: jetstream(s.nc), jsm: await jetstreamManager(s.nc), names: s.names, actor: { kind: 'broker', id: 'fixture' } });
    const sid = uniqueName('novote');
    const [noVote, voted] = [uniqueName('novote'), uniqueName('voted')];
    for (const id of [noVote, voted]) {
      const rec = {
        intentId: id,
        sessionId: sid,
        target: 'db',
        kind: 'postgres',
        principal: { sub: 'a', iss: 'x', groups: [] },
        state: 'succeeded',
        grantId: id,
        commandSha256: '0'.repeat(64),
        createdAt: OLD,
        updatedAt: OLD,
      };
      await s.broker.buckets.intents.put(id, enc.encode(JSON.stringify(rec)));
      await s.broker.buckets.claims.put(id, enc.encode(JSON.stringify({ worker: 'w-1', at: OLD, iid: id })));
      await w.append({ sessionId: sid, intentId: id, type: 'intent.received' });
      await w.append({ sessionId: sid, intentId: id, type: 'approval.requested' });
      // A vote that was not counted (already voted, refused) is no approval.
      await w.append({ sessionId: sid, intentId: id, type: 'approval.vote', payload: { by: 'x', counted: id === voted } });
      for (const type of ['intent.dispatched', 'exec.claimed', 'exec.finished']) await w.append({ sessionId: sid, intentId: id, type });
    }
    await w.close();
    const r = await verify({ nc: s.nc, names: s.names, sessionId: sid, againstState: true, stateGraceMs: 0 });
    expect(r.state!.findings).toEqual([{ intentId: noVote, sessionId: sid, state: 'succeeded', claimed: true, missing: ['approval.vote'] }]);
  });
});

describe('verify against state: what a worker login could take out of it', () => {
  it('reports a deleted or purged record or claim, and a record stored under another intent id', async () => {
    const kv = s.broker.buckets;
    const w = new AuditWriter({ js: jetstream(s.nc), jsm: await jetstreamManager(s.nc), names: s.names, actor: { kind: 'broker', id: 'fixture' } });
    const sid = uniqueName('gone');
    const [delRec, purgedRec, delClaim, copied, source] = ['delrec', 'purged', 'delclaim', 'copied', 'source'].map((k) => uniqueName(k));
    const rec = (intentId: string) =>
      JSON.stringify({
        intentId,
        sessionId: sid,
        target: 'db',
        kind: 'postgres',
        principal: { sub: 'a', iss: 'x', groups: [] },
        state: 'denied',
        grantId: intentId,
        commandSha256: '0'.repeat(64),
        createdAt: OLD,
        updatedAt: OLD,
      });
    for (const id of [delRec!, purgedRec!, delClaim!, source!]) {
      await kv.intents.put(id, enc.encode(rec(id)));
      await w.append({ sessionId: sid, intentId: id, type: 'intent.received' });
      await w.append({ sessionId: sid, intentId: id, type: 'intent.denied' });
    }
    await w.close();
    const before = await verify({ nc: s.nc, names: s.names, againstState: true, stateGraceMs: 0 });
    const mine = (r: VerifyResult) => new Map(r.state!.findings.filter((f) => [delRec, purgedRec, delClaim, copied, source].includes(f.intentId)).map((f) => [f.intentId, f]));
    expect(mine(before).size).toBe(0);
    // What a worker's login may publish on the buckets' subjects: delete and purge markers, and a put.
    await kv.intents.delete(delRec!);
    await kv.intents.purge(purgedRec!);
    await kv.claims.put(delClaim!, enc.encode(JSON.stringify({ worker: 'w-1', at: OLD, iid: delClaim })));
    await kv.claims.delete(delClaim!);
    await kv.intents.put(copied!, enc.encode(rec(source!))); // a record whose evidence exists, under another key
    const r = await verify({ nc: s.nc, names: s.names, againstState: true, stateGraceMs: 0 });
    expect(r.ok).toBe(false);
    const by = mine(r);
    const deleted = (what: string) => [`the ${what} (a delete marker stands in its place; no Writ service deletes one)`];
    expect(by.get(delRec!)).toEqual({ intentId: delRec, sessionId: '?', state: 'deleted', missing: deleted('intent record') });
    expect(by.get(purgedRec!)).toEqual({ intentId: purgedRec, sessionId: '?', state: 'deleted', missing: deleted('intent record') });
    expect(by.get(delClaim!)).toEqual({ intentId: delClaim, sessionId: '?', state: 'deleted', missing: deleted('claim') });
    expect(by.get(copied!)).toEqual({ intentId: copied, sessionId: sid, state: '?', missing: [`a record of this intent (the one stored here is of ${JSON.stringify(source)})`] });
    expect(by.has(source!)).toBe(false);
  });
});
