/**
 * At most once, against real servers: no crash, replica, redelivery or replayed grant
 * makes a command run twice, and a write over its blast-radius limit changes nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../lib/index.ts';
import { loadOrCreateGrantKey } from '../broker/index.ts';
import { newId } from '../client/index.ts';
import { sha256Hex, type GrantClaims, type Order } from '../schemas/index.ts';
import { createWorker, type Worker } from '../workers/index.ts';
import { readSession } from '../audit/index.ts';
import { startStack, type Stack } from './fixture.ts';

const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spawnWorker(s: Stack): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'worker', '--config', s.configFile], {
    env: { ...process.env, NATS_URL: s.nats.url, WRIT_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('running') && resolve(child));
    child.once('exit', (c) => reject(new Error(`worker exited early: ${c}`)));
  });
}

async function until<T>(f: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(100);
  }
}

describe('a worker killed mid-run', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      worker: false,
      config: {
        grants: { ttlSec: 5 },
        limits: { sweepMarginSec: 1, sweepIntervalMs: 200 },
        policy: { rules: [{ id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write', limits: { seconds: 5 } }] },
      },
    });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('leaves the intent unknown, and it is never re-run', async () => {
    const first = await spawnWorker(s);
    const c = s.client(await s.token('dba1', ['dba']));
    const sql = "INSERT INTO events (note) SELECT 'slow' FROM pg_sleep(3)";
    const { intentId } = await c.submit({ target: 'db', sql });
    await until(async () => (await s.broker.buckets.claims.get(intentId))?.operation === 'PUT');
    await sleep(300);
    first.kill('SIGKILL');
    const o = await c.wait(intentId, { timeoutMs: 40_000 });
    expect(o.status).toBe('unknown');
    expect(o.error?.code).toBe('WRIT_OUTCOME_UNKNOWN');
    // A fresh worker must not pick it up again.
    const second = await spawnWorker(s);
    try {
      await sleep(4_000);
      const rows = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'slow'");
      expect(rows.rows[0].n).toBe(0);
      expect(await c.status(intentId)).toBe('unknown');
      const events = await readSession({ nc: s.nc, names: s.names, sessionId: o.sessionId });
      const lost = events.filter((e) => e.type === 'exec.lost');
      expect(lost).toHaveLength(1);
      // The claim (which worker, when) is in the evidence even if the worker died before writing its own event.
      expect((lost[0]!.payload as { claim?: { worker?: string } }).claim?.worker).toMatch(/^worker-/);
      expect(events.filter((e) => e.type === 'exec.claimed').length).toBeLessThanOrEqual(1);
      expect(events.filter((e) => e.type === 'exec.finished')).toHaveLength(0);
    } finally {
      second.kill('SIGTERM');
    }
  }, 120_000);
});

describe('replicas, redelivery and replayed grants', () => {
  let s: Stack;
  let second: Worker;
  beforeAll(async () => {
    s = await startStack();
    second = await createWorker({ nc: s.nc, config: s.config, log: createLogger({ name: 'w2', level: 'silent' }) });
    await second.start();
  });
  afterAll(async () => {
    await second?.stop();
    await s?.stop();
  });

  it('runs each of 40 intents exactly once across two worker replicas', async () => {
    const c = s.client(await s.token('dba1', ['dba']));
    const notes = Array.from({ length: 40 }, (_, i) => `replica-${i}`);
    const outcomes = await Promise.all(notes.map((n) => c.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('${n}')` })));
    expect(outcomes.every((o) => o.status === 'succeeded')).toBe(true);
    const r = await s.admin.query("SELECT note, count(*)::int AS n FROM events WHERE note LIKE 'replica-%' GROUP BY note");
    expect(r.rows).toHaveLength(40);
    expect(r.rows.every((x: { n: number }) => x.n === 1)).toBe(true);
  });

  function signedOrder(sql: string, o: { expOffset?: number } = {}): Order {
    const { signer } = loadOrCreateGrantKey(s.config.grants.keyFile);
    const id = newId();
    const sessionId = newId('s');
    const now = Math.floor(Date.now() / 1000);
    const claims: GrantClaims = {
      gid: id,
      iid: id,
      sid: sessionId,
      tgt: 'db',
      kind: 'postgres',
      mode: 'write',
      sha256: sha256Hex(sql),
      iat: now - 5,
      exp: now + (o.expOffset ?? 60),
      limits: { rows: 10, seconds: 5 },
      mask: {},
      policyVersion: 'test',
      sub: 'test',
    };
    return { v: 1, type: 'order', intentId: id, sessionId, target: 'db', command: { kind: 'sql', sql }, grant: signer.sign(claims), stateRevision: 1 };
  }

  it('runs a validly signed order published three times exactly once (the claim refuses replays)', async () => {
    const sql = "INSERT INTO events (note) VALUES ('replayed')";
    const order = signedOrder(sql);
    const js = jetstream(s.nc);
    for (let i = 0; i < 3; i++) await js.publish(s.names.exec('postgres', 'db'), enc.encode(JSON.stringify(order)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.filter((e) => e.type === 'exec.refused').length >= 2 && ev.some((e) => e.type === 'exec.finished') ? ev : undefined;
    });
    const refused = events.filter((e) => e.type === 'exec.refused').map((e) => (e.payload as { code: string }).code);
    expect(refused).toEqual(['WRIT_ALREADY_CLAIMED', 'WRIT_ALREADY_CLAIMED']);
    const r = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'replayed'");
    expect(r.rows[0].n).toBe(1);
  });

  it('runs an order handed over directly, again directly and then queued (as after a lost answer) exactly once', async () => {
    const sql = "INSERT INTO events (note) VALUES ('direct-then-queued')";
    const order = signedOrder(sql);
    const bytes = enc.encode(JSON.stringify(order));
    const ask = async () => (await s.nc.request(s.names.dispatch('postgres', 'db'), bytes, { timeout: 5_000 })).json<{ type: string }>().type;
    expect(await ask()).toBe('claimed');
    expect(await ask()).toBe('taken');
    await jetstream(s.nc).publish(s.names.exec('postgres', 'db'), bytes);
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.filter((e) => e.type === 'exec.refused').length >= 2 && ev.some((e) => e.type === 'exec.finished') ? ev : undefined;
    });
    expect(events.filter((e) => e.type === 'exec.refused').map((e) => (e.payload as { code: string }).code)).toEqual(['WRIT_ALREADY_CLAIMED', 'WRIT_ALREADY_CLAIMED']);
    expect((await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'direct-then-queued'")).rows[0].n).toBe(1);
  });

  it('answers a direct order only on an inbox: a reply subject naming a bucket is not written to', async () => {
    const order = signedOrder("INSERT INTO events (note) VALUES ('reply-elsewhere')");
    const key = newId();
    s.nc.publish(s.names.dispatch('postgres', 'db'), enc.encode(JSON.stringify(order)), { reply: `$KV.${s.names.buckets.intents}.${key}` });
    await until(async () => (await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'reply-elsewhere'")).rows[0].n === 1);
    await sleep(300);
    expect(await s.broker.buckets.intents.get(key)).toBeNull();
  });

  it('refuses a direct order whose command differs from its grant, and says so', async () => {
    const order = signedOrder("INSERT INTO events (note) VALUES ('direct-approved')");
    const tampered: Order = { ...order, command: { kind: 'sql', sql: 'DELETE FROM events' } };
    const before = (await s.admin.query('SELECT count(*)::int AS n FROM events')).rows[0].n;
    const m = await s.nc.request(s.names.dispatch('postgres', 'db'), enc.encode(JSON.stringify(tampered)), { timeout: 5_000 });
    expect(m.json<{ type: string }>().type).toBe('refused');
    expect((await s.admin.query('SELECT count(*)::int AS n FROM events')).rows[0].n).toBe(before);
  });

  it('refuses a grant received after its expiry, and runs nothing', async () => {
    const sql = "INSERT INTO events (note) VALUES ('too-late')";
    const order = signedOrder(sql, { expOffset: -1 });
    await jetstream(s.nc).publish(s.names.exec('postgres', 'db'), enc.encode(JSON.stringify(order)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.length > 0 ? ev : undefined;
    });
    expect(events.map((e) => [e.type, (e.payload as { code?: string }).code])).toEqual([['exec.refused', 'WRIT_GRANT_EXPIRED']]);
    const r = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'too-late'");
    expect(r.rows[0].n).toBe(0);
    expect(await s.broker.buckets.claims.get(order.intentId)).toBeNull();
  });

  it('refuses an order whose command differs from the one its grant covers', async () => {
    const order = signedOrder("INSERT INTO events (note) VALUES ('approved')");
    const tampered: Order = { ...order, command: { kind: 'sql', sql: 'DELETE FROM events' } };
    const before = (await s.admin.query('SELECT count(*)::int AS n FROM events')).rows[0].n;
    await jetstream(s.nc).publish(s.names.exec('postgres', 'db'), enc.encode(JSON.stringify(tampered)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.length > 0 ? ev : undefined;
    });
    expect((events[0]!.payload as { code: string }).code).toBe('WRIT_GRANT_MISMATCH');
    expect((await s.admin.query('SELECT count(*)::int AS n FROM events')).rows[0].n).toBe(before);
  });

  it('rolls back a write that affects more rows than its limit, and names the count', async () => {
    await s.admin.query("INSERT INTO events (note) SELECT 'bulk' FROM generate_series(1, 500)");
    const c = s.client(await s.token('dba1', ['dba']));
    const o = await c.run({ target: 'db', sql: "UPDATE events SET note = 'changed' WHERE note = 'bulk'" });
    expect(o.status).toBe('failed');
    expect(o.error!.code).toBe('WRIT_ROW_LIMIT');
    expect(o.error!.message).toContain('500');
    const r = await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'bulk'");
    expect(r.rows[0].n).toBe(500);
  });
});
