// ensureConsumer against a real nats-server: idempotent, updates what may change, refuses what may not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { createLogger } from './log.ts';
import { ensureConsumer, headerBytes, serveConcurrently } from './consume.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'S', subjects: ['s.>'] });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const base = { durable_name: 'd', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: 's.a', ack_wait: 10_000_000_000, max_ack_pending: 64 };

describe('ensureConsumer', () => {
  it('creates, finds the same again, and updates an updatable setting in place', async () => {
    await ensureConsumer(jsm, 'S', base);
    await ensureConsumer(jsm, 'S', base);
    await ensureConsumer(jsm, 'S', { ...base, ack_wait: 20_000_000_000, max_ack_pending: 128 });
    const info = await jsm.consumers.info('S', 'd');
    expect(info.config.ack_wait).toBe(20_000_000_000);
    expect(info.config.max_ack_pending).toBe(128);
  });

  it('refuses a durable of the same name with another filter, with a configuration error', async () => {
    await expect(ensureConsumer(jsm, 'S', { ...base, filter_subject: 's.b' })).rejects.toMatchObject({ code: 'WRIT_CONFIG_INVALID' });
    expect((await jsm.consumers.info('S', 'd')).config.filter_subject).toBe('s.a');
  });

  it('passes on a refusal that is not about an existing consumer', async () => {
    await expect(ensureConsumer(jsm, 'NO_SUCH_STREAM', base)).rejects.not.toMatchObject({ code: 'WRIT_CONFIG_INVALID' });
  });
});

describe('serveConcurrently', () => {
  it('runs at most maxInFlight handlers, holds a bounded backlog, drops past it, and drains what it took', async () => {
    const release: Array<() => void> = [];
    const handled: string[] = [];
    const loop = serveConcurrently(
      nc,
      'req.>',
      'q',
      async (m) => {
        await new Promise<void>((r) => release.push(r));
        handled.push(m.string());
      },
      { maxInFlight: 1, maxBacklog: 2, maxBacklogBytes: 1_000, log: createLogger({ name: 'test', level: 'silent' }) },
    );
    const sender = await connect({ servers: server.url });
    for (const body of ['a', 'b', 'c', 'd', 'e']) sender.publish('req.x', body);
    // The server has passed them on once the sender's flush returns; this connection has run their callbacks once its own does.
    await sender.flush();
    await nc.flush();
    expect([loop.inFlight, loop.backlog, loop.dropped]).toEqual([1, 2, 2]);
    // A body over the byte bound is dropped even where the count leaves room.
    sender.publish('req.x', 'x'.repeat(2_000));
    await sender.flush();
    await nc.flush();
    expect(loop.dropped).toBe(3);
    const drained = loop.drain();
    // Each finished handler starts the next one taken, in order.
    for (let i = 0; i < 3; i++) {
      while (release.length === 0) await new Promise((r) => setTimeout(r, 5));
      release.shift()!();
    }
    await drained;
    expect(handled).toEqual(['a', 'b', 'c']);
    expect([loop.inFlight, loop.backlog]).toEqual([0, 0]);
    await sender.close();
  });

  it("counts a waiting request's headers against the backlog's bytes, measured without decoding them", async () => {
    const release: Array<() => void> = [];
    const loop = serveConcurrently(nc, 'hdr.>', 'q', () => new Promise<void>((r) => release.push(r)), {
      maxInFlight: 1,
      maxBacklog: 100,
      maxBacklogBytes: 10_000,
      log: createLogger({ name: 'test', level: 'silent' }),
    });
    const seen: number[] = [];
    const probe = nc.subscribe('hdr.>', { callback: (_e, m) => void seen.push(headerBytes(m) ?? -1) });
    const sender = await connect({ servers: server.url });
    const h = natsHeaders();
    h.set('x-pad', 'p'.repeat(6_000));
    sender.publish('hdr.x', 'first');
    sender.publish('hdr.x', 'b', { headers: h }); // 6 KB of headers: waits
    sender.publish('hdr.x', 'c', { headers: h }); // 12 KB with the one before: dropped
    await sender.flush();
    await nc.flush();
    expect(seen[0]).toBe(0);
    expect(seen[1]).toBeGreaterThan(6_000);
    expect([loop.inFlight, loop.backlog, loop.dropped]).toEqual([1, 1, 1]);
    const drained = loop.drain();
    for (let i = 0; i < 2; i++) {
      while (release.length === 0) await new Promise((r) => setTimeout(r, 5));
      release.shift()!();
    }
    await drained;
    probe.unsubscribe();
    await sender.close();
  });
});
