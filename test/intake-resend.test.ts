/**
 * What a resend and a reused id are answered with. An agent sends an intent again when its
 * receipt was lost: the broker must answer where the first send stands, never refuse it as if
 * nothing were stored (a refusal of a resend past its deadline reached an agent whose intent then
 * ran), and must not answer a different command under a used id with the first one's outcome.
 * And what a refusal's text may carry: a parse error quoting a secret stays out of the log and
 * the audit log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { newId, runIdempotent } from '../client/index.ts';
import { WritError } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a resend', () => {
  it('past its deadline, of an intent already stored, is a duplicate: not refused as unstored', async () => {
    const c = s.client(await s.token('dana', ['dba']));
    const intentId = newId();
    const req = { target: 'db', sql: "INSERT INTO events (note) VALUES ('resend-late')", intentId, deadline: Date.now() + 1_500 };
    expect(await c.submit(req)).toMatchObject({ duplicate: false });
    await sleep(1_700);
    // The same intent, as the SDK resends it after a lost receipt: its deadline has passed now.
    expect(await c.submit(req)).toMatchObject({ intentId, duplicate: true });
    expect((await c.wait(intentId)).status).toBe('succeeded');
    // One never stored, past its deadline, is denied, and the denial is its record: the same
    // intent sent again (as it could still reach another broker) finds it and runs nothing.
    const late = newId();
    expect(await c.submit({ ...req, intentId: late })).toMatchObject({ duplicate: false });
    const denied = await c.wait(late);
    expect([denied.status, denied.error?.code]).toEqual(['denied', 'WRIT_DEADLINE_PASSED']);
    expect(await c.submit({ ...req, intentId: late })).toMatchObject({ intentId: late, duplicate: true });
    expect((await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'resend-late'")).rows[0].n).toBe(1);
  });

  it('of another command or target under a used id is denied, not answered with the first outcome', async () => {
    const c = s.client(await s.token('dana', ['dba']));
    const intentId = newId();
    expect((await c.run({ target: 'db', sql: 'SELECT 1 AS one', intentId })).status).toBe('succeeded');
    const other = await c.run({ target: 'db', sql: "UPDATE customers SET plan = 'enterprise' WHERE id = 3", intentId });
    expect([other.status, other.error?.code, other.result]).toEqual(['denied', 'WRIT_DUPLICATE_INTENT', undefined]);
    const idem = await runIdempotent(c, { target: 'db', sql: "UPDATE customers SET plan = 'enterprise' WHERE id = 3", intentId });
    expect([idem.status, idem.error?.code]).toEqual(['denied', 'WRIT_DUPLICATE_INTENT']);
    await expect(c.submit({ target: 'nosuch', sql: 'SELECT 1 AS one', intentId })).rejects.toMatchObject({ code: 'WRIT_DUPLICATE_INTENT' });
    expect((await s.admin.query('SELECT plan FROM customers WHERE id = 3')).rows[0].plan).toBe('team');
    // The same command again is the first run's outcome.
    const again = await c.run({ target: 'db', sql: 'SELECT 1 AS one', intentId });
    expect([again.status, again.result?.rows]).toEqual(['succeeded', [[1]]]);
  });
});

describe('a refusal', () => {
  it('that quotes the command (a parse error of a long text) keeps a secret out of the log and the audit log', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const filler = Array.from({ length: 4_000 }, (_, i) => `SELECT ${i} AS n${i};`).join('\n');
    const sql = `${filler}\nSELECT 1 'carol.private@example.net';`;
    expect(Buffer.byteLength(sql)).toBeGreaterThan(s.config.limits.maxStatementBytes);
    const o = await c.run({ target: 'db', sql });
    expect(o.status).toBe('denied');
    await sleep(300);
    expect(JSON.stringify(s.logs)).not.toContain('carol.private@example.net');
    for (const sessionId of [c.sessionId, '_unattributed']) {
      expect(JSON.stringify(await readSession({ nc: s.nc, names: s.names, sessionId }))).not.toContain('carol.private@example.net');
    }
    expect(JSON.stringify(o)).not.toContain('carol.private@example.net');
  });

  it('at intake (a schema error naming what it found) keeps a secret out of the audit log', async () => {
    const token = await s.token('alice', ['analysts']);
    const sessionId = newId('s');
    const intent = { v: 1, type: 'intent', id: newId(), sessionId, target: 'db', command: { kind: 'sql', sql: 'SELECT 1' }, token, submittedAt: Date.now(), 'dave.secret@example.org': 1 };
    s.nc.publish(s.names.intent('db'), JSON.stringify(intent));
    let text = '';
    for (let i = 0; i < 50 && !text.includes(intent.id); i++) {
      await sleep(100);
      // Under the sender's own session (alice verified, and the session is hers), else _unattributed.
      text = JSON.stringify([...(await readSession({ nc: s.nc, names: s.names, sessionId })), ...(await readSession({ nc: s.nc, names: s.names, sessionId: '_unattributed' }))]);
    }
    expect(text).toContain(intent.id);
    expect(text).not.toContain('dave.secret@example.org');
  });

  it('of an explain larger than an intent may be', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const big = `SELECT '${'x'.repeat(s.config.limits.maxIntentBytes)}'`;
    const err = await c.explain({ target: 'db', sql: big }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WritError);
    expect(err).toMatchObject({ code: 'WRIT_PAYLOAD_TOO_LARGE' });
  });
});
