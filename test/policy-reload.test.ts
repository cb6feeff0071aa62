/**
 * The rule engine in the broker: the policy file is published to the writ_policy bucket
 * at start, and brokers hot-reload what is published there; an invalid policy is refused
 * and the old one keeps deciding.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyStore } from '../broker/index.ts';
import { readSession } from '../audit/index.ts';
import { startStack, type Stack } from './fixture.ts';

const POLICY = (version: string, extra = '') => `
version: ${version}
targets:
  - { name: db, kind: postgres }
defaults:
  masking: { columns: [{ column: public.customers.email }] }
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match:
      principal: { groups: [analysts] }
      sql: { readOnly: true }
${extra}`;

let s: Stack;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-policy-'));
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, POLICY('v1'));
  s = await startStack({ config: { policyFile: file } });
});
afterAll(async () => {
  await s?.stop();
});

describe('policy lifecycle', () => {
  it('decides with the file it started from, then follows updates published to the bucket', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const o = await c.run({ target: 'db', sql: 'SELECT name, email FROM customers ORDER BY id' });
    expect(o.status).toBe('succeeded');
    expect(o.result!.columns[1]!.masked).toBe(true);
    expect(o.decision?.policyVersion).toMatch(/^v1\+/);

    const store = new PolicyStore(s.broker.buckets.policy);
    const deny = `  - id: no-customers
    effect: deny
    match:
      sql: { tables: [public.customers] }
`;
    await store.publish(POLICY('v2', deny), { author: 'test' });
    let denied = false;
    for (let i = 0; i < 50 && !denied; i++) {
      const r = await c.run({ target: 'db', sql: 'SELECT name FROM customers' });
      denied = r.status === 'denied' && r.decision?.rules.includes('no-customers') === true && /^v2\+/.test(r.decision.policyVersion);
      if (!denied) await sleep(100);
    }
    expect(denied).toBe(true);

    await expect(store.publish('version: v3\nrules:\n  - id: x\n    effect: allow\n    match: { sql: { tabels: [a] } }\n')).rejects.toMatchObject({ code: 'WRIT_POLICY_INVALID' });
    const still = await c.run({ target: 'db', sql: 'SELECT name FROM customers' });
    expect(still.decision?.policyVersion).toMatch(/^v2\+/);
    expect(still.status).toBe('denied');

    const events = await readSession({ nc: s.nc, names: s.names, sessionId: '_policy' });
    expect(events.filter((e) => e.type === 'policy.loaded').length).toBeGreaterThanOrEqual(1);
  });
});
