/**
 * A waiting agent gets its intent's outcome even when its inbox never sees it: an outcome
 * sent while the agent's connection is down, and a lost worker's `unknown` (which the
 * sweeper only stores) both come through the broker's API (`writ.api.wait`), promptly and
 * long before the agent's own timeout. Real servers throughout; the agent's connection runs
 * through a TCP relay the test can cut, as a network fault would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { WritClient, newId } from '../client/index.ts';
import { WritError, type IntentState } from '../schemas/index.ts';
import { readSession } from '../audit/index.ts';
import { startStack, type Stack } from './fixture.ts';

/** A TCP relay to nats-server whose connections can be cut, and new ones refused, at will. */
async function relay(port: number): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let up = true;
  const server: Server = createServer((client) => {
    if (!up) return void client.destroy();
    const upstream = tcpConnect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    url: `nats://127.0.0.1:${addr.port}`,
    cut() {
      up = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      up = true;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let s: Stack | undefined;
let cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
  await s?.stop();
  s = undefined;
});

describe('SDK outcomes the inbox never sees', () => {
  it('an outcome sent while the agent is disconnected is still returned, soon after it reconnects', async () => {
    s = await startStack({ worker: false });
    const stack = s;
    const r = await relay(stack.nats.port);
    cleanups.push(() => r.close());
    const agentNc: NatsConnection = await connect({ servers: r.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    cleanups.push(() => agentNc.close());
    const token = await stack.token('agent-a', ['analysts']);
    const agent = new WritClient({ nc: agentNc, token, prefix: stack.names.prefix });
    const observer = stack.client(token);
    const status = (id: string) => observer.status(id);

    const intentId = newId();
    const started = Date.now();
    const running = agent.run({ target: 'db', sql: 'SELECT 42 AS answer', intentId }, { timeoutMs: 60_000 });
    running.catch(() => undefined);
    await until('the intent to be dispatched', async () => ((await status(intentId)) === 'dispatched' ? true : undefined));

    // Past the SDK's first wait on the inbox alone, so its API long-poll is in flight when the
    // connection drops: that poll's reply is lost too, and only a new one after the reconnect helps.
    await new Promise((res) => setTimeout(res, Math.max(0, started + 3_000 - Date.now())));
    // The agent's connection drops; meanwhile a worker runs the intent and answers the (gone) inbox.
    const disconnected = (async () => {
      for await (const st of agentNc.status()) if (st.type === 'disconnect') return;
    })();
    r.cut();
    await disconnected;
    await stack.worker.start();
    await until('the intent to succeed', async () => ((await status(intentId)) === 'succeeded' ? true : undefined));
    expect(agentNc.isClosed()).toBe(false);

    r.restore();
    const restoredAt = Date.now();
    const out = await running;
    expect(out.status).toBe('succeeded');
    expect(out.intentId).toBe(intentId);
    expect(out.result?.rows).toEqual([[42]]);
    // Well before the 60 s timeout, and without waiting out a long-poll sent before the drop.
    expect(Date.now() - restoredAt).toBeLessThan(20_000);
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 90_000);

  it("a lost worker's unknown (sweeper) is reported as unknown as soon as the broker records it", async () => {
    const keyDir = mkdtempSync(join(tmpdir(), 'writ-sdk-'));
    cleanups.push(() => rmSync(keyDir, { recursive: true, force: true }));
    // Short grants and run limits, so the sweeper ends a claimed, never-finished intent within seconds.
    s = await startStack({
      worker: false,
      config: {
        grants: { keyFile: join(keyDir, 'grant-key.pem'), ttlSec: 1 },
        limits: { sweepMarginSec: 0, sweepIntervalMs: 100 },
        policy: {
          rules: [{ id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' }],
          defaultLimits: { rows: 1000, seconds: 1, bytes: 4 * 1024 * 1024 },
        },
      },
    });
    const stack = s;
    const token = await stack.token('agent-b', ['analysts']);
    const agent = stack.client(token);
    const claims = await new Kvm(stack.nc).open(stack.names.buckets.claims);

    const intentId = newId();
    const started = Date.now();
    const running = agent.run({ target: 'db', sql: 'SELECT 1', intentId }, { timeoutMs: 120_000 });
    running.catch(() => undefined);
    await until('the intent to be dispatched', async () => ((await agent.status(intentId)) === 'dispatched' ? true : undefined));
    // A worker claimed the grant and died: the claim stays, nothing ever finishes it.
    await claims.create(intentId, new TextEncoder().encode(JSON.stringify({ worker: 'w_lost', at: Date.now(), iid: intentId })));

    let endedAt = 0;
    const watching = until(
      'the record to turn unknown',
      async () => {
        const st: IntentState = await agent.status(intentId);
        if (st === 'unknown') return (endedAt = Date.now());
        return undefined;
      },
      60_000,
    );
    const out = await running;
    const returnedAt = Date.now();
    await watching;
    expect(out.status).toBe('unknown');
    expect(out.error?.code).toBe('WRIT_OUTCOME_UNKNOWN');
    expect(returnedAt - endedAt).toBeLessThan(10_000); // not the 60 s timeout
    expect(returnedAt - started).toBeLessThan(20_000);
  }, 60_000);

  it('a timeout names the intent and where it stands, and says not to resubmit under a new id', async () => {
    s = await startStack({ worker: false });
    const agent = s.client(await s.token('agent-c', ['analysts']));
    const intentId = newId();
    const err = await agent.run({ target: 'db', sql: 'SELECT 1', intentId }, { timeoutMs: 3_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WritError);
    expect((err as WritError).code).toBe('WRIT_TIMEOUT');
    expect((err as WritError).details).toEqual({ intentId, status: 'dispatched' });
    expect((err as WritError).message).toContain('new id');
  }, 60_000);

  it('an outcome answered on the inbox costs the broker no API request afterwards', async () => {
    s = await startStack();
    const agent = s.client(await s.token('agent-d', ['analysts']));
    // A tap on the broker's API subjects, on its own connection.
    const tap = await connect({ servers: s.nats.url });
    cleanups.push(() => tap.close());
    let asked = 0;
    const sub = tap.subscribe(`${s.names.prefix}.api.>`, {
      callback: () => {
        asked++;
      },
    });
    await tap.flush();
    for (let i = 0; i < 5; i++) expect((await agent.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    // Time for a request that would follow a settled run to be sent.
    await new Promise((r) => setTimeout(r, 300));
    await tap.flush();
    sub.unsubscribe();
    expect(asked).toBe(0);
  }, 60_000);

  it('an intent the bus could not take (disconnected past the publish timeout) is stored by a retry, once, and ends with its outcome', async () => {
    s = await startStack();
    const stack = s;
    const r = await relay(stack.nats.port);
    cleanups.push(() => r.close());
    const agentNc: NatsConnection = await connect({ servers: r.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    cleanups.push(() => agentNc.close());
    const token = await stack.token('agent-e', ['analysts']);
    const agent = new WritClient({ nc: agentNc, token, prefix: stack.names.prefix });
    const disconnected = (async () => {
      for await (const st of agentNc.status()) if (st.type === 'disconnect') return;
    })();
    r.cut();
    await disconnected;
    const intentId = newId();
    const running = agent.run({ target: 'db', sql: 'SELECT 7 AS n', intentId }, { timeoutMs: 30_000 });
    running.catch(() => undefined);
    // Longer than a JetStream publish waits for its ack: the first attempt fails on the agent's side.
    await new Promise((res) => setTimeout(res, 6_000));
    r.restore();
    const out = await running;
    expect(out.status).toBe('succeeded');
    expect(out.result?.rows).toEqual([[7]]);
    // Stored and run once, whatever the attempts: one claim, one exec.finished.
    const events = await readSession({ nc: stack.nc, names: stack.names, sessionId: out.sessionId });
    expect(events.filter((e) => e.intentId === intentId && e.type === 'exec.finished')).toHaveLength(1);
  }, 90_000);
});
