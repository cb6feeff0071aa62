/**
 * What the SDK takes for an answer to an intent. A `denied` outcome must mean nothing ran, so
 * only a broker's own refusal of a send that cannot have been stored may become one: not a
 * stray message on the receipt's subject, and not a refusal of a later send after an earlier
 * one may have been taken (here, the first send's broker stalls past the SDK's 2 s attempt
 * and the resend reaches a broker with a lower size limit, as in a rolling deploy). And a run
 * refused before anything is sent leaves no reply subscription behind.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, type Broker } from '../broker/index.ts';
import { newId, WritClient } from '../client/index.ts';
import { sealOutcome } from '../lib/index.ts';
import { buildOutcome } from '../schemas/index.ts';
import { createLogger } from '../lib/index.ts';
import { startStack, type Stack } from './fixture.ts';
import { interceptRequests } from './helpers/index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rows = async (s: Stack, note: string) => (await s.admin.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0]!.n;

describe('answers on the receipt subject', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ config: { policy: { rules: [{ id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { seconds: 10 } }] } } });
  }, 60_000);
  afterAll(async () => {
    await s?.stop();
  });

  it('a stray message there is not taken for a refusal: the run ends with what happened', async () => {
    const nc = await connect({ servers: s.nats.url });
    try {
      const c = new WritClient({ nc, token: await s.token('dana', ['dba']), prefix: s.config.prefix });
      // Learns the receipt's subject as the intent goes out (what an insider would need), and
      // puts a message there before the broker's receipt.
      const publish = nc.publish.bind(nc);
      (nc as { publish: NatsConnection['publish'] }).publish = (subject, data, opts) => {
        // (On the same connection, so it is there before the broker's receipt.)
        if (subject.startsWith(`${s.config.prefix}.intent.`) && opts?.reply) publish(opts.reply, JSON.stringify({ v: 1, type: 'claimed' }));
        return publish(subject, data, opts);
      };
      // Longer than the second a refusal's sealed outcome is waited for.
      const o = await c.run({ target: 'db', sql: "INSERT INTO events (note) SELECT 'stray-receipt' FROM pg_sleep(1.2)" });
      expect(o.status).toBe('succeeded');
      expect(await rows(s, 'stray-receipt')).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it("another intent's outcome sealed to this client, on this run's subject, is not taken for its answer", async () => {
    const nc = await connect({ servers: s.nats.url });
    try {
      const c = new WritClient({ nc, token: await s.token('dana', ['dba']), prefix: s.config.prefix });
      const publish = nc.publish.bind(nc);
      (nc as { publish: NatsConnection['publish'] }).publish = (subject, data, opts) => {
        if (subject.startsWith(`${s.config.prefix}.intent.`) && data instanceof Uint8Array) {
          const intent = JSON.parse(new TextDecoder().decode(data)) as { replyTo: string; sessionId: string };
          const forged = buildOutcome({ intentId: newId(), sessionId: intent.sessionId, status: 'succeeded', result: { columns: [], rows: [], rowCount: 0, truncated: false } });
          publish(intent.replyTo, JSON.stringify(sealOutcome(forged, c.replyKey)));
        }
        return publish(subject, data, opts);
      };
      const o = await c.run({ target: 'db', sql: "INSERT INTO events (note) SELECT 'own-outcome' FROM pg_sleep(1.2)" });
      expect(o.status).toBe('succeeded');
      expect(o.result?.rowCount).toBe(1);
      expect(await rows(s, 'own-outcome')).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it('a run refused before it is sent leaves no reply subscription', async () => {
    const nc = await connect({ servers: s.nats.url });
    try {
      const c = new WritClient({ nc, token: await s.token('dana', ['dba']), prefix: s.config.prefix, replyLingerMs: 200 });
      const subs = () => (nc as unknown as { protocol: { subscriptions: { size(): number } } }).protocol.subscriptions.size();
      const before = subs();
      await expect(c.run({ target: 'db' })).rejects.toMatchObject({ code: 'WRIT_BAD_REQUEST' });
      // The reply subscription outlives its last box by 200 ms here; none was kept for the refused run.
      await sleep(700);
      expect(subs()).toBe(before);
    } finally {
      await nc.close();
    }
  });
});

describe('a later send refused after an earlier one may have been taken', () => {
  let s: Stack;
  let a: Broker;
  let b: Broker | undefined;
  beforeAll(async () => {
    s = await startStack();
    await s.broker.stop();
    // Broker A: its record writes stall 3.5 s, past the SDK's 2 s wait for a receipt and the 1 s
    // it gives a refusal's sealed outcome to arrive.
    const prefix = `$KV.${s.names.buckets.intents}.`;
    const stalling = interceptRequests(s.nc, async (subject) => {
      if (subject.startsWith(prefix)) await sleep(3_500);
    });
    a = await createBroker({ nc: stalling, config: s.config, log: createLogger({ name: 'a', level: 'silent' }) });
    await a.start();
  }, 60_000);
  afterAll(async () => {
    await b?.stop().catch(() => undefined);
    await s?.stop();
  });

  it('is not reported as denied: the run ends with the first send outcome', async () => {
    const c = s.client(await s.token('dana', ['dba']));
    expect((await c.run({ target: 'db', sql: 'SELECT 1' }, { timeoutMs: 20_000 })).status).toBe('succeeded');
    const run = c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('refused-later')" }, { timeoutMs: 20_000 });
    await sleep(300);
    // From here only broker B takes intents, and its limit refuses this one as too large.
    b = await createBroker({ nc: s.nc, config: { ...s.config, limits: { ...s.config.limits, maxIntentBytes: 256 } }, log: createLogger({ name: 'b', level: 'silent' }) });
    await b.start();
    const aStopped = a.stop();
    const o = await run;
    await aStopped;
    expect([o.status, o.error?.code]).toEqual(['succeeded', undefined]);
    expect(await rows(s, 'refused-later')).toBe(1);
  }, 60_000);
});
