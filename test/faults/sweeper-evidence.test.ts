/**
 * The sweeper's end of an intent comes after its evidence: while the audit stream takes no
 * writes, an intent whose grant expired unclaimed stays `dispatched` (no end without an
 * `exec.expired` in its chain), and once the stream takes writes again it ends `failed` with
 * the event stored. Written the other way round, a broker lost between the two left an end
 * with no evidence that nothing would ever write. On a real nats-server: the audit stream is
 * made to refuse new messages (max_msgs reached, discard new) and then given room again.
 */
import { DiscardPolicy, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSession } from '../../audit/index.ts';
import { newId } from '../../client/index.ts';
import { startStack, type Stack } from '../fixture.ts';

let s: Stack;
const keyDir = mkdtempSync(join(tmpdir(), 'writ-sweep-evidence-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  s = await startStack({
    worker: false,
    config: {
      // Long enough that the audit stream is blocked before the grant expires, on a loaded machine too.
      grants: { keyFile: join(keyDir, 'grant-key.pem'), ttlSec: 5 },
      limits: { sweepMarginSec: 0, sweepIntervalMs: 100 },
      policy: { rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' }], defaultLimits: { rows: 10, seconds: 1, bytes: 65_536 } },
    },
  });
});
afterAll(async () => {
  await s?.stop();
  rmSync(keyDir, { recursive: true, force: true });
});

it('an unclaimed intent is not ended while its exec.expired cannot be stored, and is ended with it once it can', async () => {
  const agent = s.client(await s.token('agent-e', ['analysts']));
  const id = newId();
  await agent.submit({ target: 'db', sql: 'SELECT 1', intentId: id });
  const statusOf = (x: string) => agent.status(x).catch((e: unknown) => ((e as { code?: string }).code === 'WRIT_NOT_FOUND' ? 'received' : Promise.reject(e)));
  for (let i = 0; i < 50 && (await statusOf(id)) !== 'dispatched'; i++) await sleep(100);
  expect(await statusOf(id)).toBe('dispatched');
  // The broker's dispatch evidence is stored; from now on the audit stream takes nothing new.
  const jsm = await jetstreamManager(s.nc);
  const info = await jsm.streams.info(s.names.streams.audit);
  await jsm.streams.update(s.names.streams.audit, { ...info.config, max_msgs: info.state.messages, discard: DiscardPolicy.New });
  try {
    // Blocked before the grant expired (else this test shows nothing): then wait until the sweeper,
    // every 100 ms, has tried to end it for 3 s past the expiry.
    const rec = (await (await new Kvm(s.nc).open(s.names.buckets.intents)).get(id))!.json<{ grantExp: number; state: string }>();
    expect(rec.state).toBe('dispatched');
    expect(Date.now()).toBeLessThan(rec.grantExp * 1000);
    await sleep(rec.grantExp * 1000 - Date.now() + 3_000);
    expect(await statusOf(id)).toBe('dispatched');
    expect((await readSession({ nc: s.nc, names: s.names, sessionId: agent.sessionId })).filter((e) => e.intentId === id).map((e) => e.type)).not.toContain('exec.expired');
  } finally {
    await jsm.streams.update(s.names.streams.audit, { ...info.config, max_msgs: -1, discard: info.config.discard });
  }
  let state = '';
  for (let i = 0; i < 100 && (state = await statusOf(id)) !== 'failed'; i++) await sleep(200);
  expect(state).toBe('failed');
  const types = (await readSession({ nc: s.nc, names: s.names, sessionId: agent.sessionId })).filter((e) => e.intentId === id).map((e) => e.type);
  expect(types.filter((t) => t === 'exec.expired')).toHaveLength(1);
  const out = await agent.wait(id, { timeoutMs: 5_000 });
  expect(out.error?.code).toBe('WRIT_GRANT_EXPIRED');
}, 60_000);
