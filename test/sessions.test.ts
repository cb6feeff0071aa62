/**
 * A session belongs to the principal that opened it: another principal can neither run an
 * intent in it nor `explain` into it, so nothing of theirs lands in its audit chain.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

it('refuses another principal an intent or an explain in a session it did not open', async () => {
  const sessionId = 's_owned_by_alice_1';
  const alice = s.client(await s.token('alice', ['analysts']), sessionId);
  expect((await alice.run({ target: 'db', sql: 'SELECT 1 AS one' })).status).toBe('succeeded');
  const before = (await readSession({ nc: s.nc, names: s.names, sessionId })).length;

  const mallory = s.client(await s.token('mallory', ['analysts']), sessionId);
  const o = await mallory.run({ target: 'db', sql: 'SELECT 2 AS two' });
  expect(o.status).toBe('denied');
  expect(o.error?.code).toBe('WRIT_SESSION_FORBIDDEN');
  await expect(mallory.explain({ target: 'db', sql: 'SELECT 3' })).rejects.toMatchObject({ code: 'WRIT_SESSION_FORBIDDEN' });

  // Nothing of mallory's is in alice's chain; the attempt is in _unattributed.
  const events = await readSession({ nc: s.nc, names: s.names, sessionId });
  expect(events.length).toBe(before);
  expect(JSON.stringify(events)).not.toContain('mallory');
  const un = await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' });
  expect(un.some((e) => e.type === 'session.refused' && JSON.stringify(e.payload).includes('mallory'))).toBe(true);
  // Alice still uses her session.
  expect((await alice.run({ target: 'db', sql: 'SELECT 4 AS four' })).status).toBe('succeeded');
});

it("audits another principal's refused intent under _unattributed, never in the session it names", async () => {
  const sessionId = 's_owned_by_alice_2';
  const alice = s.client(await s.token('alice', ['analysts']), sessionId);
  const done = await alice.run({ target: 'db', sql: 'SELECT 1 AS one' });
  expect(done.status).toBe('succeeded');
  const before = await readSession({ nc: s.nc, names: s.names, sessionId });
  // Refused (a deadline long past: refused as another's session; an unknown key: at intake), naming alice's session and intent.
  const token = await s.token('mallory', ['analysts']);
  const base = { v: 1, type: 'intent', id: done.intentId, sessionId, target: 'db', command: { kind: 'sql', sql: 'SELECT 2' }, token, submittedAt: Date.now() };
  s.nc.publish(s.names.intent('db'), JSON.stringify({ ...base, deadline: 1 }));
  s.nc.publish(s.names.intent('db'), JSON.stringify({ ...base, extra: 'x' }));
  let un: Awaited<ReturnType<typeof readSession>> = [];
  for (
    let i = 0;
    i < 50 &&
    un.filter((e) => (e.type === 'intent.rejected_input' || e.type === 'session.refused') && JSON.stringify(e.payload).includes('mallory') && JSON.stringify(e.payload).includes(done.intentId))
      .length < 2;
    i++
  ) {
    await new Promise((r) => setTimeout(r, 100));
    un = await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' });
  }
  expect(
    un.filter((e) => (e.type === 'intent.rejected_input' || e.type === 'session.refused') && JSON.stringify(e.payload).includes('mallory') && JSON.stringify(e.payload).includes(done.intentId)).length,
  ).toBe(2);
  const after = await readSession({ nc: s.nc, names: s.names, sessionId });
  expect(after.length).toBe(before.length);
});
