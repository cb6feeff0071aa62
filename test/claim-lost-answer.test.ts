/**
 * A worker whose claim create was stored but whose answer was lost (a member failing over, a
 * cut connection) neither runs the order twice nor gives it up: it reads the claim, and when
 * the bus does not answer that either, puts the order back and claims it on redelivery. Before,
 * any failed create counted as "claimed by someone else", and the intent never ran (it ended
 * `unknown` when the sweeper found it past its deadline; seen in the cluster kill tests).
 */
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../lib/index.ts';
import { createWorker } from '../workers/index.ts';
import { startStack, type Stack } from './fixture.ts';
import { interceptRequests } from './helpers/index.ts';

/** A TCP relay that, once it sees the claims bucket written, drops what the server sends for `muteMs`. */
async function claimMutingRelay(port: number, claimsSubject: string, muteMs: number) {
  const sockets = new Set<Socket>();
  let mutedUntil = 0;
  let fired = false;
  const server = createServer((client) => {
    const upstream = tcpConnect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (b: Buffer) => {
      if (!fired && b.toString('latin1').includes(claimsSubject)) {
        fired = true;
        mutedUntil = Date.now() + muteMs;
      }
      upstream.write(b);
    });
    upstream.on('data', (b: Buffer) => {
      if (Date.now() >= mutedUntil) client.write(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `nats://127.0.0.1:${(server.address() as { port: number }).port}`,
    fired: () => fired,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false });
}, 60_000);
afterAll(async () => s?.stop());

describe('a claim whose answer is lost', () => {
  it('runs the intent once, after the order is put back and claimed again', async () => {
    // Long enough for the create and the claim read after it to go unanswered (each waits the
    // connection's 5 s request timeout), so the worker cannot tell and must put the order back.
    const r = await claimMutingRelay(s.nats.port, `$KV.${s.names.buckets.claims}.`, 9_000);
    const nc = await connect({ servers: r.url, timeout: 5_000 });
    const worker = await createWorker({ nc, config: s.config, log: createLogger({ name: 'test', level: 'silent' }) });
    await worker.start();
    try {
      const c = s.client(await s.token('dana', ['dba']));
      const o = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('claimed once')" }, { timeoutMs: 45_000 });
      expect(r.fired()).toBe(true);
      expect(o.status).toBe('succeeded');
      const rows = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'claimed once'");
      expect(rows.rows[0].n).toBe(1);
    } finally {
      await worker.stop();
      await nc.close().catch(() => undefined);
      await r.close();
    }
  }, 60_000);

  it('puts back, not refuses, a second copy of an order whose claim is still being settled here', async () => {
    // The order's claim create and its read-back go unanswered for a while (each fails after
    // 1.5 s, as at a request timeout), from the worker's side of the connection: the broker's
    // direct hand-over times out meanwhile and it queues a copy, which reaches the same worker
    // while the first claim is unsettled. Taken for "claimed already", that copy was refused, the
    // first then ended unknown (nothing ran) and put back an order no one held any more.
    const nc = await connect({ servers: s.nats.url, timeout: 5_000 });
    const claims = s.names.buckets.claims;
    let failUntil = Number.POSITIVE_INFINITY;
    let failed = 0;
    const flaky = interceptRequests(nc, async (subject) => {
      if ((subject.startsWith(`$KV.${claims}.`) || subject.includes(`KV_${claims}`)) && Date.now() < failUntil) {
        if (failUntil === Number.POSITIVE_INFINITY) failUntil = Date.now() + 5_000;
        failed++;
        await new Promise((r) => setTimeout(r, 1_500));
        throw Object.assign(new Error('injected: no answer'), { name: 'TimeoutError' });
      }
    });
    const worker = await createWorker({ nc: flaky, config: s.config, log: createLogger({ name: 'test', level: 'silent' }) });
    await worker.start();
    try {
      const c = s.client(await s.token('dana', ['dba']));
      const o = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('settled once')" }, { timeoutMs: 30_000 });
      expect(failed).toBeGreaterThan(1);
      expect(o.status).toBe('succeeded');
      const rows = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'settled once'");
      expect(rows.rows[0].n).toBe(1);
    } finally {
      await worker.stop();
      await nc.close().catch(() => undefined);
    }
  }, 60_000);
});
