// Worker keys bound to targets: a worker's registered audit key signs blocks in any session, so
// without a binding a compromised worker could add exec evidence (a claim, a finished run) for an
// intent of a target it does not serve. A key registered with `targets` counts only for intents
// the broker received for one of them; verify names every other exec event it signed.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { names, type AuditEvent, type Names } from '../schemas/index.ts';
import { ed25519Pair, startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import {
  addKeyToRegistry,
  auditStreamConfig,
  AuditWriter,
  blockSigner,
  ensureAuditStream,
  eventHash,
  listSessions,
  loadKeyRegistry,
  parseKeyRegistry,
  runAuditCli,
  verify,
  type KeyRegistry,
} from './index.ts';
import { blockJson } from './chain.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const dir = mkdtempSync(join(tmpdir(), 'writ-key-targets-'));

const pair = ed25519Pair;
const brokerKey = pair();
const dbWorker = pair(); // bound to db
const webWorker = pair(); // bound to web
const oldWorker = pair(); // registered before binding existed: unbound
const registryFile = join(dir, 'audit-keys.yaml');
let registry: KeyRegistry;

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  addKeyToRegistry(registryFile, { publicKeyPem: brokerKey.pub, kind: 'broker' });
  addKeyToRegistry(registryFile, { publicKeyPem: dbWorker.pub, kind: 'worker', targets: ['db'] });
  addKeyToRegistry(registryFile, { publicKeyPem: webWorker.pub, kind: 'worker', targets: ['web'] });
  addKeyToRegistry(registryFile, { publicKeyPem: oldWorker.pub, kind: 'worker' });
  registry = loadKeyRegistry(registryFile);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

interface Log {
  n: Names;
  broker: AuditWriter;
  writer(key: { priv: ReturnType<typeof pair>['priv'] }, id: string): AuditWriter;
  close(): Promise<void>;
}

/** A log where the broker received intents `db-1` (target db) and `web-1` (target web) in session `sess_a`. */
async function log(): Promise<Log> {
  const n = names(uniqueName('t'));
  await ensureAuditStream(jsm, n, {});
  const writers: AuditWriter[] = [];
  const writer = (key: { priv: ReturnType<typeof pair>['priv'] }, id: string) => {
    const w = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id }, flushMs: 1, signer: blockSigner(key.priv) });
    writers.push(w);
    return w;
  };
  const broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1, signer: blockSigner(brokerKey.priv) });
  writers.push(broker);
  for (const [intentId, target] of [
    ['db-1', 'db'],
    ['web-1', 'web'],
  ] as const) {
    await Promise.all([
      broker.append({ sessionId: 'sess_a', intentId, type: 'intent.received', payload: { target } }),
      broker.append({ sessionId: 'sess_a', intentId, type: 'intent.dispatched', payload: {} }),
    ]);
  }
  return { n, broker, writer, close: async () => void (await Promise.all(writers.map((w) => w.close()))) };
}

const run = async (w: AuditWriter, intentId: string, sessionId = 'sess_a') => {
  await w.append({ sessionId, intentId, type: 'exec.claimed', payload: {} });
  await w.append({ sessionId, intentId, type: 'exec.finished', payload: { status: 'succeeded' } });
};

/** Verify inline and with worker threads (which get the registry too): both must agree. */
const verifyBoth = async (n: Names) => {
  const inline = await verify({ js, names: n, signers: registry, threads: 0 });
  expect(await verify({ js, names: n, signers: registry, threads: 2 })).toEqual(inline);
  return inline;
};

describe('worker keys bound to targets', () => {
  it("passes a log where each worker reported only its own targets' intents", async () => {
    const l = await log();
    await run(l.writer(dbWorker, 'pg-1'), 'db-1');
    await run(l.writer(webWorker, 'ssh-1'), 'web-1');
    await l.close();
    const r = await verifyBoth(l.n);
    expect(r.firstBreak).toBeUndefined();
    expect(r.ok).toBe(true);
  });

  it("fails every exec event a worker's key signed for another target's intent, naming it", async () => {
    const l = await log();
    await run(l.writer(dbWorker, 'pg-1'), 'db-1');
    // The db worker's key, chained and signed correctly, reports a run of the web intent.
    await run(l.writer(dbWorker, 'pg-1'), 'web-1');
    await l.close();
    const r = await verifyBoth(l.n);
    expect(r.ok).toBe(false);
    expect(r.breaks).toBe(2);
    expect(r.firstBreak?.reason).toMatch(/exec event for an intent on target web, signed by key [0-9a-f]{16} bound to targets db/);
  });

  it('fails an exec event of a bound key for an intent the session never received', async () => {
    const l = await log();
    await l.writer(webWorker, 'ssh-1').append({ sessionId: 'sess_a', intentId: 'made-up', type: 'exec.finished', payload: { status: 'succeeded' } });
    // Nor does an intent received in another session count in this one.
    await l.broker.append({ sessionId: 'sess_b', intentId: 'web-2', type: 'intent.received', payload: { target: 'web' } });
    await l.writer(webWorker, 'ssh-1').append({ sessionId: 'sess_a', intentId: 'web-2', type: 'exec.claimed', payload: {} });
    await l.close();
    const r = await verifyBoth(l.n);
    expect(r.breaks).toBe(2);
    expect(r.firstBreak?.reason).toMatch(/exec event for intent made-up, which the session never received, signed by key [0-9a-f]{16} bound to targets web/);
  });

  it('takes no receipt from a block that fails its own checks: a forged receipt excuses no report', async () => {
    const l = await log();
    // An insider's block, chained, naming a db intent as received, signed by a key nobody registered.
    const stranger = pair();
    const w = new AuditWriter({ js, jsm, names: l.n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1, signer: blockSigner(stranger.priv) });
    await w.append({ sessionId: 'sess_a', intentId: 'db-forged', type: 'intent.received', payload: { target: 'db' } });
    await w.close();
    // The db worker's key reports a run of it.
    await run(l.writer(dbWorker, 'pg-1'), 'db-forged');
    await l.close();
    const r = await verifyBoth(l.n);
    // The forged block, and both reports, which no genuine receipt covers.
    expect(r.breaks).toBe(3);
    expect(r.firstBreak?.reason).toMatch(/unregistered key/);
  });

  it("accepts a bound key's refusal of an order for any intent: a refusal says nothing ran", async () => {
    const l = await log();
    const w = l.writer(dbWorker, 'pg-1');
    // A forged order names an intent never received, or another target's: the worker refuses it and says so.
    await w.append({ sessionId: 'sess_a', intentId: 'forged-1', type: 'exec.refused', payload: { code: 'WRIT_GRANT_INVALID' } });
    await w.append({ sessionId: 'sess_a', intentId: 'web-1', type: 'exec.refused', payload: { code: 'WRIT_GRANT_INVALID' } });
    await l.close();
    expect((await verifyBoth(l.n)).ok).toBe(true);
  });

  it('checks one session alone the same way', async () => {
    const l = await log();
    await run(l.writer(webWorker, 'ssh-1'), 'db-1');
    await l.close();
    const r = await verify({ js, names: l.n, signers: registry, threads: 0, sessionId: 'sess_a' });
    expect(r.breaks).toBe(2);
    expect(r.firstBreak?.reason).toMatch(/on target db, signed by key [0-9a-f]{16} bound to targets web/);
  });

  it('holds a report in a session that only looks aged out to its receipt, unless it was stored soon after the oldest retained message', async () => {
    const n = names(uniqueName('t'));
    // A stream with retention whose first messages aged out (1 s here, so the test need not wait).
    await jsm.streams.add({ ...auditStreamConfig(n, { maxAgeSec: 3600 }), max_age: nanos(1000), duplicate_window: nanos(500) });
    const broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1, signer: blockSigner(brokerKey.priv) });
    await broker.append({ sessionId: 'sess_old', intentId: 'old-1', type: 'intent.received', payload: { target: 'db' } });
    while ((await (await js.streams.get(n.streams.audit)).info()).state.messages > 0) await new Promise((r) => setTimeout(r, 100));
    await ensureAuditStream(jsm, n, { maxAgeSec: 3600 });
    await broker.append({ sessionId: 'sess_a', intentId: 'web-1', type: 'intent.received', payload: { target: 'web' } });
    await broker.close();
    await new Promise((r) => setTimeout(r, 50));
    // The db key invents a session whose first block links to a made-up head, as if its start had aged out.
    const ev = (intentId: string, type: string, prev: string) => {
      const e = { v: 1, id: uniqueName('e'), sessionId: 'sess_fake', intentId, type, at: Date.now(), actor: { kind: 'worker', id: 'pg-1' }, payload: {}, prev, hash: '' } as AuditEvent;
      e.hash = eventHash(e);
      return e;
    };
    const e1 = ev('web-1', 'exec.claimed', 'ab'.repeat(32));
    const e2 = ev('web-1', 'exec.finished', e1.hash);
    await js.publish(n.audit('sess_fake'), blockJson([e1, e2], blockSigner(dbWorker.priv).sign('sess_fake', [e1, e2])));
    // Stored after the oldest retained message by more than the window: held to its receipt.
    for (const threads of [0, 2]) {
      const r = await verify({ js, names: n, signers: registry, threads, receiptWindowMs: 10 });
      expect(r.breaks).toBe(2);
      expect(r.firstBreak?.reason).toMatch(/exec event for intent web-1, which the session never received, signed by key [0-9a-f]{16} bound to targets db/);
    }
    // Within the window (7 days by default) the receipt may have aged out: not failed, but counted and said.
    const lenient = await verify({ js, names: n, signers: registry, threads: 0 });
    expect(lenient).toMatchObject({ ok: true, truncatedSessions: 1, uncheckedExec: 2 });
    const out: string[] = [];
    await runAuditCli(['verify', '--no-against-state', '--keys', registryFile], { nc, names: n, stdout: (x) => out.push(x) });
    expect(out.join('')).toContain('2 execution reports of target-bound worker keys NOT checked');
  });

  it("never takes a worker's report for the intent's state in a session summary", async () => {
    const l = await log();
    const w = l.writer(dbWorker, 'pg-1');
    await run(w, 'db-1');
    await w.append({ sessionId: 'sess_a', intentId: 'db-1', type: 'exec.refused', payload: { code: 'WRIT_GRANT_INVALID', state: 'cancelled' } });
    await l.close();
    const [summary] = await listSessions({ js, names: l.n });
    expect(summary).toMatchObject({ sessionId: 'sess_a', outcome: 'succeeded' });
  });

  it('leaves a key registered without targets free to report any intent (registries from before binding)', async () => {
    const l = await log();
    await run(l.writer(oldWorker, 'any'), 'web-1');
    await l.close();
    expect((await verifyBoth(l.n)).ok).toBe(true);
  });
});

describe('targets in the key registry', () => {
  it('binds only worker keys, to a non-empty list of target names', () => {
    const a = pair();
    const kid = blockSigner(a.priv).keyId;
    const entry = (e: Record<string, unknown>) => JSON.stringify({ v: 1, keys: { [kid]: { publicKey: a.pub, ...e } } });
    expect(parseKeyRegistry(entry({ kind: 'worker', targets: ['db', 'db', 'web'] })).get(kid)?.targets).toEqual(['db', 'web']);
    expect(() => parseKeyRegistry(entry({ kind: 'broker', targets: ['db'] }))).toThrow(/only a worker key is bound to targets/);
    for (const bad of [[], 'db', [''], ['a b'], [1]]) expect(() => parseKeyRegistry(entry({ kind: 'worker', targets: bad }))).toThrow(/non-empty list of target names/);
  });

  it("`keys add --targets` replaces a key's targets; a service registering itself widens them, and leaves an unbound key unbound", async () => {
    const file = join(dir, `${uniqueName('r')}.yaml`);
    const k = pair();
    const kid = blockSigner(k.priv).keyId;
    const pubFile = join(dir, `${uniqueName('k')}.pub.pem`);
    writeFileSync(pubFile, k.pub);
    const out: string[] = [];
    const io = { nc, names: names('writ'), stdout: (s: string) => out.push(s), keyRegistryFile: file };
    expect(await runAuditCli(['keys', 'add', '--public-key', pubFile, '--kind', 'worker', '--targets', 'db,web'], io)).toBe(0);
    expect(out.join('')).toContain('for db, web');
    expect(loadKeyRegistry(file).get(kid)?.targets).toEqual(['db', 'web']);
    addKeyToRegistry(file, { publicKeyPem: k.pub, kind: 'worker', targets: ['ssh'], targetsMode: 'widen' });
    expect(loadKeyRegistry(file).get(kid)?.targets).toEqual(['db', 'web', 'ssh']);
    expect(await runAuditCli(['keys', 'add', '--public-key', pubFile, '--kind', 'worker', '--targets', 'db'], io)).toBe(0);
    expect(loadKeyRegistry(file).get(kid)?.targets).toEqual(['db']);
    expect(await runAuditCli(['keys', 'list', '--json'], io)).toBe(0);
    expect(JSON.parse(out[out.length - 1]!)).toEqual([{ keyId: kid, kind: 'worker', targets: ['db'] }]);
    // The operator registered it unbound: a service starting with it does not narrow it.
    expect(await runAuditCli(['keys', 'add', '--public-key', pubFile, '--kind', 'worker'], io)).toBe(0);
    addKeyToRegistry(file, { publicKeyPem: k.pub, kind: 'worker', targets: ['ssh'], targetsMode: 'widen' });
    expect(loadKeyRegistry(file).get(kid)?.targets).toBeUndefined();
    expect(await runAuditCli(['keys', 'add', '--public-key', pubFile, '--kind', 'broker', '--targets', 'db'], io)).toBe(2);
  });
});
