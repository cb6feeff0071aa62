// flushOncePerTurn (lib/nats.ts) holds what a connection queued until the end of the event-loop
// turn. These tests, on a real nats-server, check that nothing queued is lost, reordered,
// duplicated or held back by that: around close(), drain() and a server restart, with payloads
// past the client's pending limit, with JetStream publishes, and when the flush itself queues more.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { connectNats, flushingOncePerTurn } from './nats.ts';

interface Internals {
  connected: boolean;
  pendingLimit: number;
  outbound: { size(): number };
  flushPending(): void;
  transport: { send(frame: Uint8Array): void };
}
const internals = (nc: NatsConnection) => (nc as unknown as { protocol: Internals }).protocol;
const turn = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Every message under `subject` that `nc` receives, as `subject:payload`. */
async function collect(nc: NatsConnection, subject: string): Promise<{ got: string[]; sub: Subscription }> {
  const got: string[] = [];
  const sub = nc.subscribe(subject, { callback: (_e, m) => void got.push(`${m.subject}:${m.string()}`) });
  await nc.flush();
  return { got, sub };
}

/** Counts the socket writes of `nc`'s current transport; `stop()` puts the transport back. */
function countWrites(nc: NatsConnection): { count: () => number; stop: () => void } {
  const t = internals(nc).transport;
  const send = t.send.bind(t);
  let n = 0;
  t.send = (frame) => {
    n++;
    send(frame);
  };
  return { count: () => n, stop: () => void (t.send = send) };
}

describe('a connection that flushes once per turn, on one nats-server', () => {
  let server: NatsServerHandle;
  let reader: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    reader = await connect({ servers: server.url });
  }, 30_000);
  afterAll(async () => {
    await reader?.close();
    await server?.stop();
  });

  it('writes what was queued before close() first, as nats.js does, also while something watches its status', async () => {
    const { got, sub } = await collect(reader, 'close.>');
    // A status listener makes nats.js's close() wait a few microtasks before closing the socket:
    // time enough for its own once-per-microtask flush, never for a setImmediate.
    for (const [name, nc] of [
      ['plain', await connect({ servers: server.url })],
      ['turn', await connectNats(server.url, 'close-test')],
    ] as const) {
      const watching = (async () => {
        for await (const s of nc.status()) void s;
      })();
      await nc.flush();
      // The turn's first write goes out at once; the second waits for the turn's end, which close() does not.
      nc.publish(`close.${name}`, 'first');
      await Promise.resolve();
      nc.publish(`close.${name}`, 'last words');
      await nc.close();
      await watching;
    }
    // And without a listener, where nats.js's own close() drops it: written before the socket closes.
    const bare = await connectNats(server.url, 'close-bare');
    bare.publish('close.bare', 'first');
    await Promise.resolve();
    bare.publish('close.bare', 'last words');
    await bare.close();
    await until('the messages published before close()', () => got.length >= 6, 3_000).catch(() => undefined);
    await reader.flush();
    expect(got.sort()).toEqual(['close.bare:first', 'close.bare:last words', 'close.plain:first', 'close.plain:last words', 'close.turn:first', 'close.turn:last words']);
    sub.unsubscribe();
  });

  it('writes what was queued before reconnect() first, as nats.js does', async () => {
    const { got, sub } = await collect(reader, 'recon.>');
    for (const [name, nc] of [
      ['plain', await connect({ servers: server.url, reconnectTimeWait: 100 })],
      ['turn', await connectNats(server.url, 'reconnect-test')],
    ] as const) {
      const events: string[] = [];
      void (async () => {
        for await (const s of nc.status()) events.push(s.type);
      })();
      await nc.flush();
      // The turn's first write goes out at once; the second waits for the turn's end, which reconnect() does not.
      nc.publish(`recon.${name}`, 'first');
      await Promise.resolve();
      nc.publish(`recon.${name}`, 'before');
      await nc.reconnect();
      await until(`${name} to reconnect`, () => events.includes('reconnect'));
      nc.publish(`recon.${name}`, 'after');
      await nc.flush();
      await nc.close();
    }
    await reader.flush();
    expect(got.sort()).toEqual(['recon.plain:after', 'recon.plain:before', 'recon.plain:first', 'recon.turn:after', 'recon.turn:before', 'recon.turn:first']);
    sub.unsubscribe();
  });

  it('a flush still pending when close() returns runs without throwing and writes nothing', async () => {
    const nc = await connectNats(server.url, 'close-pending');
    const p = internals(nc);
    const ran: { connected: boolean; error?: unknown }[] = [];
    const flushPending = p.flushPending.bind(p);
    p.flushPending = () => {
      try {
        flushPending();
        ran.push({ connected: p.connected });
      } catch (e) {
        ran.push({ connected: p.connected, error: e });
        throw e;
      }
    };
    const writes = countWrites(nc);
    // The turn's first publish is written once the microtasks ran; the second waits for the turn's end.
    nc.publish('close.pending', 'x');
    await Promise.resolve();
    nc.publish('close.pending', 'y');
    const closing = nc.close();
    const before = writes.count();
    await closing;
    ran.length = 0;
    await turn();
    await turn();
    expect(await nc.closed()).toBeUndefined();
    // The flush scheduled by the publish ran after close(), on the closed connection, and threw nothing.
    expect(ran).toEqual([{ connected: false }]);
    expect(writes.count()).toBe(before);
  });

  it('drain() sends every publish and reply queued in the same turn, in order', async () => {
    const nc = await connectNats(server.url, 'drain');
    const { got, sub } = await collect(reader, 'drain.>');
    const held: Msg[] = [];
    nc.subscribe('drain.ask', { callback: (_e, m) => void held.push(m) });
    await nc.flush();
    const asks = Array.from({ length: 20 }, (_, i) => reader.request('drain.ask', String(i), { timeout: 3_000 }));
    await until('the asks to reach the handler', () => held.length === 20, 3_000);
    // Replies and publishes queued in the same turn as drain(), none written yet.
    for (const m of held) m.respond(`answer ${m.string()}`);
    for (let i = 0; i < 50; i++) nc.publish('drain.out', String(i));
    expect(internals(nc).outbound.size()).toBeGreaterThan(0);
    await nc.drain();
    expect((await Promise.all(asks)).map((m) => m.string())).toEqual(Array.from({ length: 20 }, (_, i) => `answer ${i}`));
    await reader.flush();
    expect(got.filter((g) => g.startsWith('drain.out:'))).toEqual(Array.from({ length: 50 }, (_, i) => `drain.out:${i}`));
    sub.unsubscribe();
  });

  it('payloads past the pending limit are written at once, whole and in order with the small ones around them', async () => {
    const nc = await connectNats(server.url, 'big');
    const big: string[] = [];
    const sub = reader.subscribe('big.>', { callback: (_e, m) => void big.push(`${m.subject}:${m.data.length}:${m.data[0]}:${m.data[m.data.length - 1]}`) });
    await reader.flush();
    const p = internals(nc);
    const payload = (n: number, fill: number) => new Uint8Array(n).fill(fill);
    const sizes = [10, p.pendingLimit - 100, 10, p.pendingLimit, 900_000, 5, 3 * p.pendingLimit, 1];
    const writes = countWrites(nc);
    const expected: string[] = [];
    let i = 0;
    for (const n of sizes) {
      const before = writes.count();
      const fill = (i % 250) + 1;
      nc.publish(`big.${i}`, payload(n, fill));
      expected.push(`big.${i}:${n}:${fill}:${fill}`);
      // Whatever reaches the limit goes out in the same call, with everything queued before it.
      if (n >= p.pendingLimit) {
        expect(writes.count()).toBe(before + 1);
        expect(p.outbound.size()).toBe(0);
      }
      i++;
      if (i % 3 === 0) await Promise.resolve();
    }
    await nc.flush();
    await until('the big messages', () => big.length === sizes.length, 5_000);
    expect(big).toEqual(expected);
    writes.stop();
    sub.unsubscribe();
    await nc.close();
  });

  it('what the flush itself queues, or a flush made by hand in between, still goes out in the same order', async () => {
    const nc = await connectNats(server.url, 'reentrant');
    const { got, sub } = await collect(reader, 're.>');
    const p = internals(nc);
    const t = p.transport;
    const send = t.send.bind(t);
    let armed = false;
    // A publish made while the scheduled flush is writing (re-entrant sendCommand).
    t.send = (frame) => {
      send(frame);
      if (armed) {
        armed = false;
        nc.publish('re.inner', 'from inside the flush');
      }
    };
    nc.publish('re.a', '1');
    p.flushPending(); // a flush by hand while one is scheduled
    nc.publish('re.b', '2');
    armed = true;
    await turn();
    // The inner publish was queued during the flush: a later turn writes it without any other publish.
    await turn();
    t.send = send;
    await reader.flush();
    await until('the inner publish', () => got.length === 3, 3_000);
    expect(got).toEqual(['re.a:1', 're.b:2', 're.inner:from inside the flush']);
    sub.unsubscribe();
    await nc.close();
  });

  it('a subscription, its unsubscribe and a max in one turn reach the server in order', async () => {
    const nc = await connectNats(server.url, 'subs');
    const got: string[] = [];
    const gone = nc.subscribe('subs.gone', { callback: (_e, m) => void got.push(`gone:${m.string()}`) });
    gone.unsubscribe();
    nc.subscribe('subs.two', { max: 2, callback: (_e, m) => void got.push(`two:${m.string()}`) });
    const back = nc.subscribe('subs.back', { callback: () => undefined });
    back.unsubscribe();
    nc.subscribe('subs.back', { callback: (_e, m) => void got.push(`back:${m.string()}`) });
    await nc.flush();
    const inMsgs = nc.stats().inMsgs;
    for (let i = 0; i < 5; i++) for (const s of ['gone', 'two', 'back']) reader.publish(`subs.${s}`, String(i));
    await reader.flush();
    await nc.flush();
    await until('the messages', () => got.length >= 7, 3_000);
    await nc.flush();
    expect(got).toEqual(['two:0', 'back:0', 'two:1', 'back:1', 'back:2', 'back:3', 'back:4']);
    // What the server sent, before the client's own filtering: it had the unsubscribes too.
    expect(nc.stats().inMsgs - inMsgs).toBe(7);
    await nc.close();
  });

  it('JetStream publishes made in one turn are stored once each, in the order made, and all acked', async () => {
    const nc = await connectNats(server.url, 'js');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FLUSHJS', subjects: ['fjs.>'] });
    const js = jetstream(nc);
    const acks = Array.from({ length: 200 }, (_, i) => js.publish(`fjs.${i % 7}`, String(i), { msgID: `m-${i}` }));
    const done = await Promise.all(acks);
    expect(done.map((a) => a.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(done.every((a) => !a.duplicate)).toBe(true);
    const info = await jsm.streams.info('FLUSHJS');
    expect(info.state.messages).toBe(200);
    const last = await jsm.streams.getMessage('FLUSHJS', { seq: 200 });
    expect(last?.string()).toBe('199');
    await nc.close();
  });
});

describe('across a nats-server killed and restarted on the same port and store', () => {
  let server: NatsServerHandle;
  let storeDir: string;
  beforeAll(async () => {
    storeDir = mkdtempSync(join(tmpdir(), 'writ-nats-flush-'));
    server = await startNats({ storeDir });
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
    rmSync(storeDir, { recursive: true, force: true });
  });

  async function restart(): Promise<void> {
    const port = server.port;
    await server.stop(); // reaps the killed server; the store is the caller's and stays
    for (let attempt = 0; ; attempt++) {
      try {
        server = await startNats({ storeDir, port });
        return;
      } catch (e) {
        if (attempt > 20) throw e;
        await sleep(100); // the port may not be free again yet
      }
    }
  }

  it('keeps subscriptions, takes those made and dropped while down, and publishes, requests and JetStream acks afterwards', async () => {
    const nc = await connectNats(server.url, 'restart');
    const reader = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'RESTART', subjects: ['rjs.>'] });
      const got: string[] = [];
      const on = (s: string) => nc.subscribe(s, { callback: (_e, m) => void got.push(`${m.subject}:${m.string()}`) });
      on('r.before');
      const gone = on('r.gone');
      await nc.flush();
      const events: string[] = [];
      void (async () => {
        for await (const s of nc.status()) events.push(s.type);
      })();

      server.kill9();
      await until('the disconnect', () => events.includes('disconnect'));
      on('r.during');
      gone.unsubscribe();
      await restart();
      await until('the reconnect', () => events.includes('reconnect') && !reader.isClosed() && internals(reader).connected);
      await nc.flush();
      await reader.flush();

      const inMsgs = nc.stats().inMsgs;
      for (const s of ['r.before', 'r.during', 'r.gone']) reader.publish(s, 'after');
      await reader.flush();
      await nc.flush();
      await until('the messages after the restart', () => got.length >= 2, 3_000);
      await nc.flush();
      expect(got.sort()).toEqual(['r.before:after', 'r.during:after']);
      expect(nc.stats().inMsgs - inMsgs).toBe(2); // the server had the unsubscribe made while it was down

      // The connection still writes once per turn on its new socket, and what it writes arrives.
      expect(flushingOncePerTurn(nc)).toBe(true);
      const echo = reader.subscribe('r.echo', { callback: (_e, m) => void m.respond(m.data) });
      const { got: seen, sub } = await collect(reader, 'r.out');
      const writes = countWrites(nc);
      for (let i = 0; i < 30; i++) {
        nc.publish('r.out', String(i));
        await Promise.resolve();
      }
      await turn();
      // The turn's first publish as nats.js writes it, the other 29 together at the turn's end.
      expect(writes.count()).toBe(2);
      writes.stop();
      expect((await nc.request('r.echo', 'ping', { timeout: 3_000 })).string()).toBe('ping');
      await reader.flush();
      expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => `r.out:${i}`));
      const js = jetstream(nc);
      for (let i = 0; ; i++) {
        try {
          await jsm.streams.info('RESTART');
          break;
        } catch (e) {
          if (i > 50) throw e;
          await sleep(100);
        }
      }
      const acks = await Promise.all(Array.from({ length: 20 }, (_, i) => js.publish('rjs.x', String(i), { msgID: `after-${i}` })));
      expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      echo.unsubscribe();
      sub.unsubscribe();
    } finally {
      await nc.close();
      await reader.close();
    }
  }, 30_000);
});
