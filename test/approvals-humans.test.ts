/**
 * Approvals count humans, not identities: one person's login and admin accounts (or a chat
 * identity a bot maps) are linked in approvals.humans, count once, and never approve that
 * person's own request.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
let iss: string;

beforeAll(async () => {
  // The dev issuer's `iss`, read from one of its tokens.
  const probe = await startStack({ worker: false });
  iss = (JSON.parse(Buffer.from((await probe.token('x', [])).split('.')[1]!, 'base64url').toString()) as { iss: string }).iss;
  await probe.stop();
  s = await startStack({
    config: {
      approvals: {
        trustedBots: [],
        humans: [
          {
            id: 'alice',
            identities: [
              { iss, sub: 'alice' },
              { iss, sub: 'alice-admin' },
            ],
          },
          {
            id: 'dave',
            identities: [
              { iss, sub: 'dave' },
              { iss, sub: 'dave-admin' },
            ],
          },
        ],
      },
      policy: { rules: [{ id: 'two', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 2, timeoutSec: 60 } }] },
    },
  });
}, 90_000);
afterAll(async () => {
  await s?.stop();
});

it('counts one human once, whichever of their identities votes', async () => {
  const agent = s.client(await s.token('agent-h', ['agents']));
  const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('humans')" });
  expect(await s.client(await s.approverToken('alice', ['approvers'])).decide(p.intentId, 'approve')).toBe('pending');
  expect(await s.client(await s.approverToken('alice-admin', ['approvers'])).decide(p.intentId, 'approve')).toBe('pending');
  expect(await agent.status(p.intentId)).toBe('pending');
  expect(await s.client(await s.approverToken('bob', ['approvers'])).decide(p.intentId, 'approve')).toBe('dispatched');
  expect((await agent.wait(p.intentId)).status).toBe('succeeded');
});

it('refuses a human approving their own request under another identity', async () => {
  const dave = s.client(await s.token('dave', ['agents']));
  const p = await dave.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('self-linked')" });
  await expect(s.client(await s.approverToken('dave-admin', ['approvers'])).decide(p.intentId, 'approve')).rejects.toMatchObject({ code: 'WRIT_SELF_APPROVAL' });
});
