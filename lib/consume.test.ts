// ensureConsumer against a real nats-server: idempotent, updates what may change, refuses what may not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { createLogger } from './log.ts';
import { consumeConcurrently, ensureConsumer, headerBytes, serveConcurrently, Slots } from './consume.ts';

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

describe('Slots shared by a stream loop and a request loop', () => {
  it('runs at most `max` handlers of both together, answers requests busy when full, and gives a freed slot to the waiting stream message first', async () => {
    const log = createLogger({ name: 'test', level: 'silent' });
    await ensureConsumer(jsm, 'S', { ...base, durable_name: 'shared', filter_subject: 's.shared' });
    const js = jetstream(nc);
    const slots = new Slots(2);
    const release: Array<() => void> = [];
    let running = 0;
    let most = 0;
    const started: string[] = [];
    const hold = (name: string) => {
      started.push(name);
      most = Math.max(most, ++running);
      return new Promise<void>((r) => release.push(r)).finally(() => running--);
    };
    const stream = await consumeConcurrently(await js.consumers.get('S', 'shared'), (m) => hold(`q${m.string()}`).then(() => m.ack()), { maxInFlight: 2, log, slots });
    const busy: string[] = [];
    const direct = serveConcurrently(nc, 'shared.req', 'q', (m: Msg) => hold(`d${m.string()}`).then(() => void m.respond('done')), {
      maxInFlight: 2,
      maxBacklog: 0,
      maxBacklogBytes: 0,
      log,
      slots,
      onDrop: (m) => {
        busy.push(m.string());
        m.respond('busy');
      },
    });
    const settle = () => new Promise((r) => setTimeout(r, 150));
    // Two requests take both slots; two stream messages must wait for them.
    const answers = [nc.request('shared.req', '1', { timeout: 5000 }), nc.request('shared.req', '2', { timeout: 5000 })];
    await settle();
    await js.publish('s.shared', '1');
    await js.publish('s.shared', '2');
    await settle();
    expect(started).toEqual(['d1', 'd2']);
    // Full: a third request is answered busy at once, not run beside them.
    expect((await nc.request('shared.req', '3', { timeout: 5000 })).string()).toBe('busy');
    // A freed slot goes to the waiting stream message, not to a request arriving now.
    release.shift()!();
    await settle();
    expect((await nc.request('shared.req', '4', { timeout: 5000 })).string()).toBe('busy');
    expect(started).toEqual(['d1', 'd2', 'q1']);
    while (started.length < 4 || release.length > 0) {
      release.shift()?.();
      await settle();
    }
    expect(started).toEqual(['d1', 'd2', 'q1', 'q2']);
    expect(busy).toEqual(['3', '4']);
    expect(most).toBe(2);
    expect(slots.used).toBe(0);
    expect((await Promise.all(answers)).map((a) => a.string())).toEqual(['done', 'done']);
    await direct.drain();
    await stream.drain();
  });

  it('refuses a request loop that would hold a backlog beside a shared limit', () => {
    expect(() =>
      serveConcurrently(nc, 'x', 'q', () => Promise.resolve(), { maxInFlight: 1, maxBacklog: 1, maxBacklogBytes: 1, log: createLogger({ name: 'test', level: 'silent' }), slots: new Slots(1) }),
    ).toThrow(/no backlog/);
  });
});

describe('serveConcurrently lanes', () => {
  it('keeps places and backlog for known senders: the rest hold at most half, wait behind them, and are dropped first', async () => {
    const release = new Map<string, () => void>();
    const started: string[] = [];
    const loop = serveConcurrently(
      nc,
      'lanes.>',
      'q',
      (m) => {
        started.push(m.string());
        return new Promise<void>((r) => release.set(m.string(), r));
      },
      { maxInFlight: 2, maxBacklog: 4, maxBacklogBytes: 1_000_000, log: createLogger({ name: 'test', level: 'silent' }), lane: (m) => (m.subject === 'lanes.known' ? 'first' : 'rest') },
    );
    const settle = () => new Promise((r) => setTimeout(r, 100));
    // The rest: one place of two, two places of four in the backlog; the fourth is dropped.
    for (const r of ['r1', 'r2', 'r3', 'r4']) nc.publish('lanes.other', r);
    await settle();
    expect(started).toEqual(['r1']);
    expect(loop.backlog).toBe(2);
    expect(loop.dropped).toBe(1);
    // A known sender starts at once in the place kept for it; the next one waits.
    nc.publish('lanes.known', 'k1');
    nc.publish('lanes.known', 'k2');
    await settle();
    expect(started).toEqual(['r1', 'k1']);
    // A freed place goes to the waiting known sender before the rest that waited longer.
    release.get('k1')!();
    await settle();
    expect(started).toEqual(['r1', 'k1', 'k2']);
    // The rest never take more than their half: r1 done, r2 starts; k2 done, nothing of the rest beside r2.
    release.get('r1')!();
    await settle();
    expect(started).toEqual(['r1', 'k1', 'k2', 'r2']);
    release.get('k2')!();
    await settle();
    expect(started).toEqual(['r1', 'k1', 'k2', 'r2']);
    release.get('r2')!();
    await settle();
    expect(started).toEqual(['r1', 'k1', 'k2', 'r2', 'r3']);
    release.get('r3')!();
    await loop.drain();
    expect(loop.dropped).toBe(1);
  });
});

describe('serveConcurrently senders of the first lane', () => {
  /** A loop whose handlers run until released, one place: what starts next is the loop's choice. */
  function held(subject: string, maxBacklog: number) {
    const release: Array<() => void> = [];
    const started: string[] = [];
    const loop = serveConcurrently(
      nc,
      `${subject}.>`,
      'q',
      (m) => {
        started.push(m.string());
        return new Promise<void>((r) => release.push(r));
      },
      { maxInFlight: 1, maxBacklog, maxBacklogBytes: 10_000_000, log: createLogger({ name: 'test', level: 'silent' }), lane: (m) => ({ first: m.subject.split('.')[1]! }) },
    );
    const next = async () => {
      release.shift()!();
      await new Promise((r) => setTimeout(r, 30));
    };
    return { loop, started, next };
  }
  const settle = () => new Promise((r) => setTimeout(r, 100));

  it("takes the senders' waiting requests in turn: one sender's flood waits behind its own", async () => {
    const { loop, started, next } = held('turns', 100);
    for (let i = 1; i <= 8; i++) nc.publish('turns.a', `a${i}`);
    await settle();
    nc.publish('turns.b', 'b1');
    nc.publish('turns.b', 'b2');
    await settle();
    for (let i = 0; i < 9; i++) await next();
    expect(started).toHaveLength(10);
    // b's two came in turns with a's, not after a's eight.
    expect(started.indexOf('b1')).toBeLessThanOrEqual(3);
    expect(started.indexOf('b2')).toBeLessThanOrEqual(5);
    // Each sender's own requests keep their order.
    expect(started.filter((x) => x.startsWith('a'))).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8']);
    await next();
    await loop.drain();
    expect(loop.dropped).toBe(0);
  });

  it('makes room in a full backlog for a sender holding fewer than another, by dropping the newest of the one holding most', async () => {
    const { loop, started, next } = held('room', 4);
    // a: one running, four waiting (the backlog is full), the fifth dropped.
    for (let i = 1; i <= 6; i++) nc.publish('room.a', `a${i}`);
    await settle();
    expect(loop.backlog).toBe(4);
    expect(loop.dropped).toBe(1);
    // b's first and second each push out a's newest; its third finds a holding no more than it and is dropped.
    for (let i = 1; i <= 3; i++) nc.publish('room.b', `b${i}`);
    await settle();
    expect(loop.backlog).toBe(4);
    expect(loop.dropped).toBe(4);
    for (let i = 0; i < 4; i++) await next();
    expect(started.sort()).toEqual(['a1', 'a2', 'a3', 'b1', 'b2']);
    await next();
    await loop.drain();
  });

  it('counts a large request once per 64 KiB begun in the turns', async () => {
    const release: Array<() => void> = [];
    const started: string[] = [];
    const loop = serveConcurrently(
      nc,
      'big.>',
      'q',
      (m) => {
        started.push(m.subject.split('.')[1]!);
        return new Promise<void>((r) => release.push(r));
      },
      { maxInFlight: 1, maxBacklog: 100, maxBacklogBytes: 100_000_000, log: createLogger({ name: 'test', level: 'silent' }), lane: (m) => ({ first: m.subject.split('.')[1]! }) },
    );
    // A blocker first, then a's 200 KiB requests (4 turns each) and b's small ones.
    nc.publish('big.z', 'z');
    await settle();
    for (let i = 0; i < 3; i++) nc.publish('big.a', new Uint8Array(200 * 1024));
    for (let i = 0; i < 12; i++) nc.publish('big.b', 'b');
    await settle();
    for (let i = 0; i < 15; i++) {
      release.shift()!();
      await new Promise((r) => setTimeout(r, 20));
    }
    release.shift()!();
    await loop.drain();
    const order = started.slice(1).join('');
    expect(order.replaceAll('b', '')).toBe('aaa');
    // One a per four b at most: a's three spread over b's twelve, not three at once.
    expect(order).not.toMatch(/aa/);
    expect(order.indexOf('a', order.indexOf('a') + 1) - order.indexOf('a')).toBeGreaterThanOrEqual(4);
  });
});

describe('serveConcurrently senderRate', () => {
  it("takes at most twice senderRate of one sender's requests at once, then its rate, and others' apart; also on several subjects", async () => {
    const handled: string[] = [];
    const loop = serveConcurrently(
      nc,
      ['srate.a', 'srate.b'],
      'q',
      (m) => {
        handled.push(m.string());
        return Promise.resolve();
      },
      { maxInFlight: 4, maxBacklog: 1000, maxBacklogBytes: 10_000_000, log: createLogger({ name: 'test', level: 'silent' }), lane: (m) => ({ first: m.string() }), senderRate: 5 },
    );
    for (let i = 0; i < 30; i++) nc.publish('srate.a', 'x');
    for (let i = 0; i < 8; i++) nc.publish('srate.b', 'y');
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    // x's burst of 10 (one more may have been refilled); y's 8 all, on the other subject.
    expect(handled.filter((h) => h === 'x').length).toBeGreaterThanOrEqual(10);
    expect(handled.filter((h) => h === 'x').length).toBeLessThanOrEqual(12);
    expect(handled.filter((h) => h === 'y').length).toBe(8);
    expect(loop.senderDropped).toBeGreaterThanOrEqual(18);
    expect(loop.dropped).toBe(loop.senderDropped);
    await loop.drain();
  });
});

describe('serveConcurrently restRate', () => {
  it('takes at most restRate requests of the rest lane a second (a large one counts once per 64 KiB) and drops the others on arrival', async () => {
    const handled: string[] = [];
    const loop = serveConcurrently(
      nc,
      'rated.>',
      'q',
      (m) => {
        handled.push(m.subject);
        return Promise.resolve();
      },
      {
        maxInFlight: 4,
        maxBacklog: 100,
        maxBacklogBytes: 10_000_000,
        log: createLogger({ name: 'test', level: 'silent' }),
        lane: (m) => (m.subject === 'rated.known' ? 'first' : 'rest'),
        restRate: 5,
      },
    );
    for (let i = 0; i < 20; i++) nc.publish('rated.other', 'x');
    for (let i = 0; i < 20; i++) nc.publish('rated.known', 'k');
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    // A burst of 5 of the rest (one more may have been refilled meanwhile); every known one.
    expect(handled.filter((x) => x === 'rated.other').length).toBeGreaterThanOrEqual(5);
    expect(handled.filter((x) => x === 'rated.other').length).toBeLessThanOrEqual(7);
    expect(handled.filter((x) => x === 'rated.known').length).toBe(20);
    expect(loop.restDropped).toBeGreaterThanOrEqual(13);
    // After a second the rate has refilled: a 200 KiB request counts 4, so one fits and a second does not.
    await new Promise((r) => setTimeout(r, 1100));
    const before = handled.length;
    nc.publish('rated.big', new Uint8Array(200 * 1024));
    nc.publish('rated.big', new Uint8Array(200 * 1024));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(handled.length - before).toBe(1);
    await loop.drain();
  });
});
