/**
 * The two ways an order reaches a worker (broker/service.ts #publishOrder): handed to a free
 * worker directly (no stream write), or queued in the exec stream when no worker takes it at
 * once: none listening, or every one busy. Either way it runs once, and the intent's receipt
 * comes only when the order is with a worker or stored.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { createLogger } from '../lib/index.ts';
import { createWorker } from '../workers/index.ts';
import { startStack, type Stack } from './fixture.ts';

/** A worker with one place; analysts may read, DBAs write (a slow insert holds the place). */
const ONE_PLACE = {
  limits: { concurrency: 1 },
  policy: {
    rules: [
      { id: 'analysts-read', effect: 'allow' as const, groups: ['analysts'], targets: ['db'], mode: 'read' as const },
      { id: 'dba-write', effect: 'allow' as const, groups: ['dba'], targets: ['db'], mode: 'write' as const, limits: { seconds: 10 } },
    ],
  },
};

async function execStored(s: Stack): Promise<number> {
  return (await (await jetstreamManager(s.nc)).streams.info(s.names.streams.exec)).state.last_seq;
}

describe('with no worker listening', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ worker: false });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('the order is queued, acknowledged, and runs once a worker starts', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const before = await execStored(s);
    const { intentId, duplicate } = await c.submit({ target: 'db', sql: 'SELECT 41 + 1 AS answer' });
    expect(duplicate).toBe(false);
    expect((await execStored(s)) - before).toBe(1);
    await s.worker.start();
    const o = await c.wait(intentId, { timeoutMs: 15_000 });
    expect(o.status).toBe('succeeded');
    expect(o.result!.rows).toEqual([[42]]);
  });
});

describe('with every worker busy', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      config: ONE_PLACE,
    });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('the next order is queued and runs once the worker is free; one free worker takes orders directly', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    // The session's first intent records its owner; then the worker is idle.
    expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    let before = await execStored(s);
    expect((await c.run({ target: 'db', sql: 'SELECT 2' })).status).toBe('succeeded');
    expect((await execStored(s)) - before).toBe(0);

    before = await execStored(s);
    const dba = s.client(await s.token('dba1', ['dba']));
    // Its receipt comes once the worker answered that it holds the claim: from then on the
    // worker's one place is taken.
    const slow = await dba.submit({ target: 'db', sql: "INSERT INTO events (note) SELECT 'slow' FROM pg_sleep(1.5)" });
    expect((await execStored(s)) - before).toBe(0);
    const next = await c.run({ target: 'db', sql: 'SELECT 3 AS n' });
    expect(next.status).toBe('succeeded');
    expect(next.result!.rows).toEqual([[3]]);
    expect((await dba.wait(slow.intentId, { timeoutMs: 15_000 })).status).toBe('succeeded');
    expect((await execStored(s)) - before).toBe(1);
  });
});

describe("a burst beyond the worker's concurrency", () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      config: {
        limits: { concurrency: 2 },
        policy: { rules: [{ id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { seconds: 10 } }] },
      },
    });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('runs at most limits.concurrency statements at once, queued and direct orders together', async () => {
    const c = s.client(await s.token('dba1', ['dba']));
    expect((await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('first')" })).status).toBe('succeeded');
    // The database's own view of the worker's statements: how many run at each moment.
    const admin = new pg.Client({ connectionString: s.db.adminUrl });
    await admin.connect();
    let most = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const r = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO events (note) SELECT ''burst%'");
        most = Math.max(most, r.rows[0]!.n);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      // Two take the worker's two places directly; the rest find it busy and are queued, and
      // must wait for a place, not run beside the two (before, the stream's own loop ran two more).
      const runs = await Promise.all(Array.from({ length: 6 }, (_, i) => c.run({ target: 'db', sql: `INSERT INTO events (note) SELECT 'burst ${i}' FROM pg_sleep(0.4)` }, { timeoutMs: 20_000 })));
      expect(runs.map((o) => o.status)).toEqual(Array(6).fill('succeeded'));
    } finally {
      watching = false;
      await watch;
      await admin.end();
    }
    expect(most).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(2);
  });
});

/**
 * A broker and a worker of one process (`writ up`): the order goes from one to the other
 * without the bus (lib/handover.ts), and through the bus when the worker has no free place, or
 * when the two run apart.
 */
describe('in one process', () => {
  const dispatchRequests = (s: Stack) => {
    let n = 0;
    const sub = s.nc.subscribe(s.names.dispatchAll(), {
      callback: () => {
        n++;
      },
    });
    return { count: () => n, stop: () => sub.unsubscribe() };
  };

  describe('with the handover (as `writ up`)', () => {
    let s: Stack;
    beforeAll(async () => {
      s = await startStack({
        config: ONE_PLACE,
      });
    });
    afterAll(async () => {
      await s?.stop();
    });

    it('hands the order to the worker without the bus; it runs once, claimed and audited as from the bus', async () => {
      const c = s.client(await s.token('alice', ['analysts']));
      expect((await c.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
      const seen = dispatchRequests(s);
      await s.nc.flush();
      const taken = s.handover!.stats.taken;
      const storedBefore = await execStored(s);
      const o = await c.run({ target: 'db', sql: 'SELECT 40 + 2 AS answer' });
      expect(o.status).toBe('succeeded');
      expect(o.result!.rows).toEqual([[42]]);
      await s.nc.flush();
      seen.stop();
      expect(seen.count()).toBe(0);
      expect(s.handover!.stats.taken - taken).toBe(1);
      expect((await execStored(s)) - storedBefore).toBe(0);
      // The claim is stored, and a second copy of the order (a resend) is refused by it.
      const claims = await new Kvm(s.nc).open(s.names.buckets.claims);
      expect((await claims.get(o.intentId))?.operation).toBe('PUT');
      const trail = await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId });
      expect(trail.filter((e) => e.intentId === o.intentId).map((e) => e.type)).toEqual(expect.arrayContaining(['intent.dispatched', 'exec.claimed', 'exec.finished']));
    });

    it('a worker with no free place gets the next order through the bus, which queues it; it runs once the place is free', async () => {
      const dba = s.client(await s.token('dba1', ['dba']));
      const c = s.client(await s.token('alice', ['analysts']));
      const slow = await dba.submit({ target: 'db', sql: "INSERT INTO events (note) SELECT 'slow' FROM pg_sleep(1)" });
      const seen = dispatchRequests(s);
      await s.nc.flush();
      const offered = s.handover!.stats;
      const storedBefore = await execStored(s);
      const next = await c.run({ target: 'db', sql: 'SELECT 7 AS n' }, { timeoutMs: 15_000 });
      expect(next.status).toBe('succeeded');
      expect(next.result!.rows).toEqual([[7]]);
      seen.stop();
      // Offered here first and not taken (the one place was the slow insert's), then asked on the bus, then queued.
      expect(s.handover!.stats.offered - offered.offered).toBe(1);
      expect(s.handover!.stats.taken - offered.taken).toBe(0);
      expect(seen.count()).toBe(1);
      expect((await execStored(s)) - storedBefore).toBe(1);
      expect((await dba.wait(slow.intentId, { timeoutMs: 15_000 })).status).toBe('succeeded');
    });
  });

  it('a second worker given the same handover does not start, and runs nothing', async () => {
    const s = await startStack({ config: { policy: { rules: [{ id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { seconds: 10 } }] } } });
    try {
      const second = await createWorker({ nc: s.nc, config: s.config, log: createLogger({ name: 'second', level: 'silent' }), handover: s.handover, id: 'worker-second' });
      await expect(second.start()).rejects.toThrow(/served already/);
      // With the first worker stopped, nothing is left to run an order: it is queued, not run by the half-started one.
      await s.worker.stop();
      const c = s.client(await s.token('dba1', ['dba']));
      const { intentId } = await c.submit({ target: 'db', sql: "INSERT INTO events (note) VALUES ('second')" });
      await new Promise((r) => setTimeout(r, 1_500));
      expect(await c.status(intentId)).toBe('dispatched');
      expect((await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'second'")).rows[0].n).toBe(0);
      await second.stop();
    } finally {
      await s.stop();
    }
  }, 60_000);

  describe('without it (a broker and a worker apart)', () => {
    let s: Stack;
    beforeAll(async () => {
      s = await startStack({ handover: false });
    });
    afterAll(async () => {
      await s?.stop();
    });

    it('the order goes to the worker through the bus', async () => {
      const c = s.client(await s.token('alice', ['analysts']));
      const seen = dispatchRequests(s);
      await s.nc.flush();
      const o = await c.run({ target: 'db', sql: 'SELECT 5 AS n' });
      expect(o.status).toBe('succeeded');
      seen.stop();
      expect(seen.count()).toBe(1);
      expect(s.handover).toBeUndefined();
    });
  });
});
