/**
 * What a broker's receipt promises: `receipt` only when the sender's intent is stored under its
 * id (its record), an error otherwise, so that `submit()` never returns for an intent that will
 * never end. And what intake reads of a message from anyone: headers only once their size is
 * known to be small (decoding many header keys held the broker's event loop for seconds).
 */
import { headers as natsHeaders } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxIdOfToken, newId, replySubjectFor } from '../client/index.ts';
import { IntentReceiptSchema, WritError } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof WritError ? e.code : String(e);
  }
}

describe('a receipt only for an intent stored under the sender', () => {
  it("refuses an intent in another principal's session: submit() throws, run() is denied, nothing is stored", async () => {
    const sessionId = `s_${newId().slice(2)}`;
    // Mallory's intent opens the session (an explain opens none).
    expect((await s.client(await s.token('mallory', ['analysts']), sessionId).run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    const victim = s.client(await s.token('victim', ['analysts']), sessionId);
    const intentId = newId();
    expect(await codeOf(victim.submit({ target: 'db', sql: 'SELECT 1', intentId }))).toBe('WRIT_SESSION_FORBIDDEN');
    expect(await s.broker.buckets.intents.get(intentId)).toBeNull();
    const o = await victim.run({ target: 'db', sql: 'SELECT 1' });
    expect([o.status, o.error?.code]).toEqual(['denied', 'WRIT_SESSION_FORBIDDEN']);
  });

  it("refuses an intent id another principal used first: submit() throws, it is not called a duplicate of the sender's own", async () => {
    const intentId = newId();
    await s.client(await s.token('mallory', ['analysts'])).submit({ target: 'db', sql: 'SELECT 1', intentId });
    const victim = s.client(await s.token('victim', ['dba']));
    expect(await codeOf(victim.submit({ target: 'db', sql: "UPDATE customers SET plan = 'pro' WHERE id = 2", intentId }))).toBe('WRIT_DUPLICATE_INTENT');
    const o = await victim.run({ target: 'db', sql: "UPDATE customers SET plan = 'pro' WHERE id = 2", intentId });
    expect([o.status, o.error?.code]).toEqual(['denied', 'WRIT_DUPLICATE_INTENT']);
    expect((await s.admin.query('SELECT plan FROM customers WHERE id = 2')).rows[0].plan).toBe('free');
  });

  it("the sender's own resubmission is a duplicate, with a receipt", async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const intentId = newId();
    expect(await c.submit({ target: 'db', sql: 'SELECT 1', intentId })).toMatchObject({ duplicate: false });
    expect(await c.submit({ target: 'db', sql: 'SELECT 1', intentId })).toMatchObject({ duplicate: true });
  });
});

describe('headers', () => {
  /** One intent of alice's, sent as the SDK would but with `headers`; resolves with its receipt. */
  async function send(h: ReturnType<typeof natsHeaders>) {
    const token = await s.token('alice', ['analysts']);
    const intent = { v: 1, type: 'intent', id: newId(), sessionId: newId('s'), target: 'db', command: { kind: 'sql', sql: 'SELECT 1' }, token, submittedAt: Date.now() };
    const m = await s.nc.request(s.names.intent('db'), JSON.stringify(intent), { timeout: 10_000, noMux: true, reply: replySubjectFor(inboxIdOfToken(token)), headers: h });
    return { id: intent.id, receipt: IntentReceiptSchema.parse(m.json()) };
  }

  it('refuses an intent whose headers are over 4 KiB, before reading them; small ones are read', async () => {
    const many = natsHeaders();
    for (let i = 0; i < 2_000; i++) many.set(`k${i}`, 'v');
    const big = await send(many);
    expect(big.receipt).toMatchObject({ type: 'error', error: { code: 'WRIT_BAD_REQUEST', message: expect.stringContaining('headers') } });
    expect(await s.broker.buckets.intents.get(big.id)).toBeNull();
    const small = natsHeaders();
    small.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    const ok = await send(small);
    expect(ok.receipt).toMatchObject({ type: 'receipt', duplicate: false });
  });
});
