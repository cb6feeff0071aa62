/**
 * Just-in-time approval on a real nats-server and PostgreSQL: approve runs once, reject
 * never runs, expiry survives a broker restart, four eyes count distinct people, nobody
 * approves their own intent, identities are verified, racing votes dispatch once, and
 * time-bound windows allow, expire and are revoked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { createBroker, mintDevToken, type Broker } from '../broker/index.ts';
import { createLogger } from '../lib/index.ts';
import { sha256Hex } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);

beforeAll(async () => {
  s = await startStack({
    config: {
      limits: { sweepIntervalMs: 200 },
      policy: {
        rules: [
          { id: 'ask-once', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60, windowMaxSec: 3 } },
          { id: 'four-eyes', effect: 'require_approval', groups: ['agents2'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 2, timeoutSec: 60 } },
          { id: 'window-60', effect: 'require_approval', groups: ['agents3'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60, windowMaxSec: 60 } },
          { id: 'hasty', effect: 'require_approval', groups: ['hasty'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 2 } },
        ],
      },
    },
  });
});
afterAll(async () => {
  await s?.stop();
});

async function agent(groups = ['agents'], sub = 'agent-1', actFor?: string) {
  const token = actFor ? await (await import('../broker/index.ts')).mintDevToken(s.dev, { sub, groups, audience: 'writ', ttlSec: 600, actFor }) : await s.token(sub, groups);
  return s.client(token);
}
const approver = async (sub: string, groups = ['approvers']) => s.client(await s.approverToken(sub, groups));

describe('approval', () => {
  it('runs an approved intent exactly once, and the agent gets its result through wait', async () => {
    const c = await agent();
    const first = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('approved-1')", justification: 'ticket 42' });
    expect(first.status).toBe('pending');
    expect(first.error?.code).toBe('WRIT_APPROVAL_REQUIRED');
    const a = await approver('carol');
    const list = await a.pending();
    expect(list.map((p) => p.intentId)).toContain(first.intentId);
    expect(await a.decide(first.intentId, 'approve', { reason: 'ok' })).toBe('dispatched');
    const done = await c.wait(first.intentId);
    expect(done.status).toBe('succeeded');
    expect(await rows('approved-1')).toBe(1);
    // A late second vote changes nothing.
    await expect((await approver('dave')).decide(first.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
    expect(await rows('approved-1')).toBe(1);
  });

  it('never runs a rejected intent', async () => {
    const c = await agent();
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('rejected-1')" });
    expect(await (await approver('carol')).decide(p.intentId, 'reject', { reason: 'not today' })).toBe('rejected');
    const o = await c.wait(p.intentId);
    expect(o.status).toBe('rejected');
    expect(o.error!.code).toBe('WRIT_APPROVAL_REJECTED');
    expect(o.error!.message).toContain('not today');
    await sleep(300);
    expect(await rows('rejected-1')).toBe(0);
  });

  it('counts the same approver voting twice once (2 of N)', async () => {
    const c = await agent(['agents2']);
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('four-eyes')" });
    // Each of carol's votes comes with a fresh token (a token votes once): her second counts not.
    expect(await (await approver('carol')).decide(p.intentId, 'approve')).toBe('pending');
    expect(await (await approver('carol')).decide(p.intentId, 'approve')).toBe('pending');
    expect(await c.status(p.intentId)).toBe('pending');
    expect(await rows('four-eyes')).toBe(0);
    expect(await (await approver('erin')).decide(p.intentId, 'approve')).toBe('dispatched');
    expect((await c.wait(p.intentId)).status).toBe('succeeded');
    expect(await rows('four-eyes')).toBe(1);
  });

  it('refuses self-approval by the requester and by the human the agent acts for', async () => {
    const c = await agent(['agents', 'approvers'], 'agent-self', 'frank');
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('self')" });
    // Each voter names the command as the approval request showed it (its hash), so the broker decides.
    const shown = { commandSha256: sha256Hex("INSERT INTO events (note) VALUES ('self')") };
    // The agent's own token cannot vote at all (agents' and approvers' tokens have different audiences).
    await expect(c.decide(p.intentId, 'approve', { timeoutMs: 3000, ...shown })).rejects.toBeDefined();
    await expect((await approver('agent-self')).decide(p.intentId, 'approve', shown)).rejects.toMatchObject({ code: 'WRIT_SELF_APPROVAL' });
    await expect((await approver('frank')).decide(p.intentId, 'approve', shown)).rejects.toMatchObject({ code: 'WRIT_SELF_APPROVAL' });
    // A token whose actor (RFC 8693 `act`) is frank is frank, whatever its subject.
    const viaAssistant = s.client(
      await mintDevToken(s.dev, { sub: 'approval-assistant', groups: ['approvers'], actFor: 'frank', audience: s.config.identity.devIssuer.approverAudience, ttlSec: 600 }),
    );
    await expect(viaAssistant.decide(p.intentId, 'approve', shown)).rejects.toMatchObject({ code: 'WRIT_SELF_APPROVAL' });
    expect(await c.status(p.intentId)).toBe('pending');
  });

  it('refuses a decision without a valid identity, from outside the approver groups, or from an untrusted bot', async () => {
    const c = await agent();
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('no-id')" });
    const shown = { commandSha256: sha256Hex("INSERT INTO events (note) VALUES ('no-id')") };
    const forged = s.client('eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.');
    await expect(forged.decide(p.intentId, 'approve', shown)).rejects.toMatchObject({ code: expect.stringMatching(/WRIT_TOKEN_/) });
    await expect((await approver('gina', ['analysts'])).decide(p.intentId, 'approve', shown)).rejects.toMatchObject({ code: 'WRIT_APPROVER_NOT_ALLOWED' });
    expect(await c.status(p.intentId)).toBe('pending');
    const events = (await readSession({ nc: s.nc, names: s.names, sessionId: p.sessionId })).map((e) => e.type);
    expect(events).toContain('approval.refused');
  });

  it('dispatches once when 50 approvers race', async () => {
    const c = await agent();
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('race')" });
    const voters = await Promise.all(Array.from({ length: 50 }, (_, i) => approver(`racer-${i}`)));
    const results = await Promise.allSettled(voters.map((v) => v.decide(p.intentId, 'approve', { timeoutMs: 30_000 })));
    const states = results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as { code: string }).code));
    expect(states.filter((x) => x === 'dispatched')).toHaveLength(1);
    expect((await c.wait(p.intentId)).status).toBe('succeeded');
    expect(await rows('race')).toBe(1);
    const events = (await readSession({ nc: s.nc, names: s.names, sessionId: p.sessionId })).map((e) => e.type);
    expect(events.filter((t) => t === 'intent.dispatched')).toHaveLength(1);
    expect(events.filter((t) => t === 'exec.claimed')).toHaveLength(1);
  });
});

describe('expiry', () => {
  it('ends a pending intent as expired even when the broker restarted meanwhile', async () => {
    const c = await agent(['hasty']);
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('expired')" });
    expect(p.status).toBe('pending');
    await s.broker.stop();
    await sleep(2_500);
    const fresh: Broker = await createBroker({ nc: s.nc, config: s.config, log: createLogger({ name: 'b2', level: 'silent' }) });
    await fresh.start();
    try {
      const o = await c.wait(p.intentId, { timeoutMs: 10_000 });
      expect(o.status).toBe('expired');
      expect(o.error!.code).toBe('WRIT_APPROVAL_EXPIRED');
      await expect((await approver('carol')).decide(p.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
      expect(await rows('expired')).toBe(0);
    } finally {
      s.broker = fresh;
    }
  });

  it('lets the owner cancel a pending intent, and no one else', async () => {
    const c = await agent();
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('cancelled')" });
    await expect((await agent(['agents'], 'someone-else')).cancel(p.intentId)).rejects.toMatchObject({ code: 'WRIT_NOT_FOUND' });
    expect(await c.cancel(p.intentId)).toBe('cancelled');
    expect((await c.wait(p.intentId)).status).toBe('cancelled');
    await expect((await approver('carol')).decide(p.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
  });
});

describe('time-bound access windows', () => {
  it('allows without new approvals while the window lasts, then refuses; revocation ends it early', async () => {
    const c = await agent(['agents'], 'agent-win');
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('win-0')" });
    // Asked for an hour; the rule caps windows at 3 seconds.
    expect(await (await approver('carol')).decide(p.intentId, 'approve', { windowSec: 3600 })).toBe('dispatched');
    expect((await c.wait(p.intentId)).status).toBe('succeeded');
    const inWindow = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('win-1')" });
    expect(inWindow.status).toBe('succeeded');
    const events = (await readSession({ nc: s.nc, names: s.names, sessionId: inWindow.sessionId })).map((e) => e.type);
    expect(events).toContain('window.granted');
    expect(events).toContain('window.used');
    await sleep(3_200);
    const after = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('win-2')" });
    expect(after.status).toBe('pending');

    // A new window, revoked by an approver: the next intent needs approval again.
    expect(await (await approver('carol')).decide(after.intentId, 'approve', { windowSec: 60 })).toBe('dispatched');
    await c.wait(after.intentId);
    const a = await approver('carol');
    const windows = await a.grants();
    const mine = windows.find((w) => w.sub === 'agent-win');
    expect(mine).toBeDefined();
    await a.revoke(String(mine!.id));
    expect((await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('win-3')" })).status).toBe('pending');
    expect(await rows('win-3')).toBe(0);
  });

  it('covers only what the approvers saw: a DELETE or another table asks again, while the window lasts', async () => {
    const c = await agent(['agents3'], 'agent-shape');
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('shape-0')" });
    expect(await (await approver('carol')).decide(p.intentId, 'approve', { windowSec: 60 })).toBe('dispatched');
    await c.wait(p.intentId);
    expect((await c.run({ target: 'db', sql: 'DELETE FROM events WHERE id > 0' })).status).toBe('pending');
    expect((await c.run({ target: 'db', sql: "INSERT INTO customers (name, email) VALUES ('x', 'x@example.com')" })).status).toBe('pending');
    expect(await rows('shape-0')).toBe(1);
    // The window itself still serves what it was granted for.
    expect((await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('shape-1')" })).status).toBe('succeeded');
  });

  it('does not serve another human the window was not for', async () => {
    const forAlice = await agent(['agents3'], 'agent-act', 'alice');
    const p = await forAlice.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('act-0')" });
    expect(await (await approver('carol')).decide(p.intentId, 'approve', { windowSec: 60 })).toBe('dispatched');
    await forAlice.wait(p.intentId);
    expect((await forAlice.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('act-1')" })).status).toBe('succeeded');
    // The same agent acting for someone else is asked again.
    const forBob = await agent(['agents3'], 'agent-act', 'bob');
    expect((await forBob.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('act-2')" })).status).toBe('pending');
  });
});
