/**
 * A long-polling `wait` holds a broker handler and a KV watch for up to its timeout: one agent's
 * token opened thousands at once. One principal now holds at most 256 per broker; past that the
 * broker answers WRIT_BUSY at once, and another principal's wait is still served.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateSealKeyPair, inboxIdOfToken, newId, replySubjectFor } from '../client/index.ts';
import { ApiReplySchema } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

/** One raw `wait` for an id no one used (it long-polls for the record to appear); resolves with the reply. */
async function waitFor(token: string, timeoutMs: number) {
  const body = { v: 1, type: 'wait', token, intentId: newId(), timeoutMs, replyKey: generateSealKeyPair().publicKey };
  const m = await s.nc.request(s.names.api('wait'), JSON.stringify(body), { timeout: timeoutMs + 5_000, noMux: true, reply: replySubjectFor(inboxIdOfToken(token)) });
  return ApiReplySchema.parse(m.json());
}

it("answers a principal's waits past 256 with WRIT_BUSY, and still serves another principal's", async () => {
  const mallory = await s.token('mallory', ['analysts']);
  // 300 at once, each held up to 3 s (the id never appears): 256 are held, the other 44 refused at once.
  const replies = Promise.all(Array.from({ length: 300 }, () => waitFor(mallory, 3_000)));
  const alice = s.client(await s.token('alice', ['analysts']));
  const o = await alice.run({ target: 'db', sql: 'SELECT 1' });
  expect(o.status).toBe('succeeded');
  const codes = (await replies).map((r) => (r.type === 'error' ? r.error.code : r.type));
  expect(codes.filter((c) => c === 'WRIT_BUSY')).toHaveLength(44);
  expect(codes.filter((c) => c === 'WRIT_NOT_FOUND')).toHaveLength(256);
  // Once they ended, the principal may wait again.
  expect(await waitFor(mallory, 200)).toMatchObject({ type: 'error', error: { code: 'WRIT_NOT_FOUND' } });
});
