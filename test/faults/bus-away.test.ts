/**
 * An accepted intent is not dropped because NATS could not take a write for a while: on a
 * cluster, a leader election leaves the intents bucket without a responder for longer than a
 * few quick retries. Here the bucket's stream is taken away for 12 s on a single real
 * nats-server (its writes then get no responders, as during an election), and put back: the
 * broker answers each send as retryable, and the agent's SDK sends the intent again, backing off
 * to 2 s between sends (about ten sends in that time), for up to 60 s.
 */
import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../client/index.ts';
import { startStack, type Stack } from '../fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

describe('the intents bucket away for longer than a few retries', () => {
  it('retries the intent until the bucket is back, then runs it once', async () => {
    const jsm = await jetstreamManager(s.nc);
    const stream = `KV_${s.names.buckets.intents}`;
    const config = (await jsm.streams.info(stream)).config as StreamConfig;
    const agent = s.client(await s.token('agent-away', ['analysts']));
    await jsm.streams.delete(stream);
    const intentId = newId();
    const running = agent.run({ target: 'db', sql: 'SELECT 5 AS n', intentId }, { timeoutMs: 60_000 });
    running.catch(() => undefined);
    // Longer than the five quick retries that once gave up (each waits out its write's timeout).
    await new Promise((r) => setTimeout(r, 12_000));
    await jsm.streams.add(config);
    const out = await running;
    expect(out.status).toBe('succeeded');
    expect(out.result?.rows).toEqual([[5]]);
  }, 90_000);
});
