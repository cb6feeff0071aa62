/**
 * The agent SDK through what a cluster failover looks like from one agent's connection, on a
 * real stack: a receipt lost on the way back (the broker took the intent, the agent never
 * heard), no broker to take it (no responders, as while one restarts), and a connection that is
 * down for longer than one request waits. Each time, submit/run/status/cancel end with the real
 * answer, and an intent runs once. The agent's connection runs through a TCP relay the test can mute (server-to-agent
 * bytes dropped) or cut.
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { createBroker } from '../broker/index.ts';
import { createLogger } from '../lib/index.ts';
import { WritError } from '../schemas/index.ts';
import { startStack, type Stack } from '../test/fixture.ts';
import { WritClient, newId } from './index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Relay {
  url: string;
  /** Drops every byte the server sends the agent from now on (the agent's own bytes still go through). */
  mute(): void;
  /** Closes every relayed connection and refuses new ones. */
  cut(): void;
  /** Accepts connections again, relaying both ways. */
  restore(): void;
  close(): Promise<void>;
}

/** A TCP relay to nats-server: what a member's loss looks like from one agent's socket. */
async function relay(port: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  let up = true;
  let muted = false;
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
    upstream.on('data', (b: Buffer) => {
      if (!muted) client.write(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    url: `nats://127.0.0.1:${addr.port}`,
    mute() {
      muted = true;
    },
    cut() {
      up = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      muted = false;
      up = true;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(what: string, f: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** An agent connection through a fresh relay, reconnecting quickly and forever. */
async function agentConnection(port: number): Promise<{ nc: NatsConnection; r: Relay }> {
  const r = await relay(port);
  const nc = await connect({ servers: r.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  cleanups.push(() => r.close());
  cleanups.push(() => nc.close());
  return { nc, r };
}

describe('submit through a failover, on a whole stack', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ config: { policy: { rules: [{ id: 'read', effect: 'allow', groups: ['readers'], targets: ['db'], mode: 'read' }] } } });
  });
  afterAll(async () => {
    await s?.stop();
  });

  /** The intent's events in its session, by type. */
  const eventsOf = async (sessionId: string, intentId: string) => (await readSession({ nc: s.nc, names: s.names, sessionId })).filter((e) => e.intentId === intentId).map((e) => e.type);

  it('an intent whose receipt was lost is sent again under the same id, recorded once, and answered as a duplicate', async () => {
    const { nc, r } = await agentConnection(s.nats.port);
    const agent = new WritClient({ nc, token: await s.token('agent-f0', ['readers']), prefix: s.names.prefix });
    r.mute();
    const intentId = newId();
    const submitting = agent.submit({ target: 'db', sql: 'SELECT 1', intentId }, { timeoutMs: 30_000 });
    submitting.catch(() => undefined);
    // The broker took it and ran it; the agent heard nothing. Past one attempt's wait, the connection goes.
    await until('ran', async () => (await eventsOf(agent.sessionId, intentId)).includes('exec.finished'));
    await sleep(2_500);
    r.cut();
    r.restore();
    await expect(submitting).resolves.toMatchObject({ intentId, duplicate: true });
    const types = await eventsOf(agent.sessionId, intentId);
    expect(types.filter((t) => t === 'exec.finished')).toHaveLength(1);
    expect(types).toContain('intent.duplicate');
  }, 40_000);

  it('an intent no broker answers (none running, as while one restarts) is sent again until a broker takes it', async () => {
    const agent = new WritClient({ nc: (await agentConnection(s.nats.port)).nc, token: await s.token('agent-f0b', ['readers']), prefix: s.names.prefix });
    await s.broker.stop();
    const intentId = newId();
    const submitting = agent.submit({ target: 'db', sql: 'SELECT 1', intentId }, { timeoutMs: 20_000 });
    submitting.catch(() => undefined);
    await sleep(1_500);
    s.broker = await createBroker({ nc: s.nc, config: s.config, log: createLogger({ name: 'broker', level: 'silent' }) });
    await s.broker.start();
    await expect(submitting).resolves.toMatchObject({ intentId, duplicate: false });
    await until('ran', async () => (await eventsOf(agent.sessionId, intentId)).includes('exec.finished'));
  }, 30_000);

  it('gives up at its deadline with WRIT_TRANSPORT, saying whether the intent may have been taken', async () => {
    const { nc, r } = await agentConnection(s.nats.port);
    const agent = new WritClient({ nc, token: await s.token('agent-f0c', ['readers']), prefix: s.names.prefix });
    // No broker: every attempt finds no responder, nothing can have been taken.
    await s.broker.stop();
    const t0 = Date.now();
    const refused = await agent.submit({ target: 'db', sql: 'SELECT 1' }, { timeoutMs: 1_500 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(refused).toBeInstanceOf(WritError);
    expect(refused).toMatchObject({ code: 'WRIT_TRANSPORT', details: { maybeStored: false } });
    s.broker = await createBroker({ nc: s.nc, config: s.config, log: createLogger({ name: 'broker', level: 'silent' }) });
    await s.broker.start();
    // Receipts lost: the broker has it, the agent cannot know.
    r.mute();
    const intentId = newId();
    const lost = await agent.submit({ target: 'db', sql: 'SELECT 1', intentId }, { timeoutMs: 3_000 }).catch((e: unknown) => e);
    expect(lost).toMatchObject({ code: 'WRIT_TRANSPORT', details: { maybeStored: true } });
    await until('recorded', async () => (await s.broker.buckets.intents.get(intentId))?.operation === 'PUT');
  }, 30_000);
});

describe('run, status and cancel through a failover, on a whole stack', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      config: {
        policy: {
          rules: [
            { id: 'read', effect: 'allow', groups: ['readers'], targets: ['db'], mode: 'read' },
            { id: 'ask', effect: 'require_approval', groups: ['writers'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60 } },
          ],
        },
      },
    });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('run() whose ack and answer were both lost ends with the real outcome, run once', async () => {
    const { nc, r } = await agentConnection(s.nats.port);
    const agent = new WritClient({ nc, token: await s.token('agent-f1', ['readers']), prefix: s.names.prefix });
    r.mute();
    const intentId = newId();
    const running = agent.run({ target: 'db', sql: 'SELECT 41 + 1 AS n', intentId }, { timeoutMs: 30_000 });
    running.catch(() => undefined);
    // Stored, run and answered while the agent heard nothing of it.
    const finished = async () => (await readSession({ nc: s.nc, names: s.names, sessionId: agent.sessionId })).some((e) => e.intentId === intentId && e.type === 'exec.finished');
    await until('ran', finished);
    await sleep(2_500);
    r.cut();
    r.restore();
    const out = await running;
    expect(out.status).toBe('succeeded');
    expect(out.result?.rows).toEqual([[42]]);
    const events = await readSession({ nc: s.nc, names: s.names, sessionId: agent.sessionId });
    expect(events.filter((e) => e.intentId === intentId && e.type === 'exec.finished')).toHaveLength(1);
  }, 40_000);

  it('status() asked while the connection is down past one request timeout answers once it is back', async () => {
    const { nc, r } = await agentConnection(s.nats.port);
    const agent = new WritClient({ nc, token: await s.token('agent-f2', ['readers']), prefix: s.names.prefix });
    const out = await agent.run({ target: 'db', sql: 'SELECT 1' });
    expect(out.status).toBe('succeeded');
    r.cut();
    const asking = agent.status(out.intentId);
    asking.catch(() => undefined);
    // Longer than the 5 s one status request waits.
    await sleep(6_000);
    r.restore();
    await expect(asking).resolves.toBe('succeeded');
  }, 30_000);

  it('cancel() whose answer was lost reports cancelled, not "not pending"', async () => {
    const { nc, r } = await agentConnection(s.nats.port);
    const agent = new WritClient({ nc, token: await s.token('agent-f3', ['writers']), prefix: s.names.prefix });
    const p = await agent.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('failover-cancel')" });
    expect(p.status).toBe('pending');
    r.mute();
    const cancelling = agent.cancel(p.intentId);
    cancelling.catch(() => undefined);
    // The broker cancels it; the answer is dropped on the way.
    await until('cancelled', async () => (await new WritClient({ nc: s.nc, token: await s.token('agent-f3', ['writers']), prefix: s.names.prefix }).status(p.intentId)) === 'cancelled');
    await sleep(5_500);
    r.cut();
    r.restore();
    await expect(cancelling).resolves.toBe('cancelled');
  }, 40_000);
});
