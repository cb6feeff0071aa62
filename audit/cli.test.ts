// `writ audit …` against a real nats-server: what an auditor sees and the exit codes.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { AuditEventSchema, names, type Names } from '../schemas/index.ts';
import { startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import { AuditWriter, Checkpointer, ensureAuditStream, runAuditCli, type AuditCliIo } from './index.ts';
import { blockJson } from './chain.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let n: Names;
let broker: AuditWriter;
let worker: AuditWriter;
const keys = generateKeyPairSync('ed25519');
const publicKeyPem = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const big = 'sess_big_10k';
const t0 = Date.parse('2025-03-01T10:00:00Z');

async function cli(args: string[], extra: Partial<AuditCliIo> = {}): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const code = await runAuditCli(args, { nc, names: n, stdout: (s) => chunks.push(s), publicKeyPem, ...extra });
  return { code, out: chunks.join('') };
}

/** One intent's events as the broker and a worker write them. */
async function intent(sessionId: string, i: number, opts: { sub: string; target: string; sql: string; effect: 'allow' | 'deny'; at: number }) {
  const intentId = `intent_${sessionId}_${i}`;
  const base = { sessionId, intentId, policyVersion: 'pv1' };
  await Promise.all([
    broker.append({
      ...base,
      type: 'intent.received',
      at: opts.at,
      payload: { principal: { sub: opts.sub, iss: 'https://idp', groups: ['analysts'] }, target: opts.target, command: { kind: 'sql', sql: opts.sql }, tokenSha256: 'e'.repeat(64) },
    }),
    broker.append({
      ...base,
      type: 'intent.decided',
      at: opts.at + 1,
      payload: { decision: { effect: opts.effect, rules: [opts.effect === 'allow' ? 'analysts-read' : 'no-deletes'], reasons: [], mode: 'read' } },
    }),
    ...(opts.effect === 'deny'
      ? [broker.append({ ...base, type: 'intent.denied', at: opts.at + 2, payload: { code: 'WRIT_POLICY_DENIED', reasons: ['deletes need approval'] } })]
      : [broker.append({ ...base, type: 'intent.dispatched', at: opts.at + 2, payload: { grantId: intentId, mode: 'read' } })]),
  ]);
  if (opts.effect === 'allow') {
    await worker.append({ ...base, type: 'exec.claimed', at: opts.at + 3, payload: { grantId: intentId, mode: 'read' } });
    await worker.append({
      ...base,
      type: 'exec.finished',
      at: opts.at + 4,
      payload: { status: 'succeeded', ms: 3, resultSha256: 'ab'.repeat(32), rowCount: 2, truncated: false, maskedFields: ['email', 'ssn'] },
    });
  }
}

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  n = names(uniqueName('t'));
  await ensureAuditStream(jsm, n, {});
  broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'broker-1' } });
  worker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id: 'pg-1' } });
  await intent('sess_alice_1', 1, { sub: 'alice', target: 'db', sql: 'SELECT name, email FROM customers', effect: 'allow', at: t0 });
  await intent('sess_alice_1', 2, { sub: 'alice', target: 'db', sql: 'DELETE FROM customers', effect: 'deny', at: t0 + 1000 });
  await intent('sess_bob_1', 1, { sub: 'bob', target: 'ssh-web', sql: 'uptime', effect: 'allow', at: t0 + 3_600_000 });
  // 10,000 events in one session, written in bursts.
  for (let b = 0; b < 10; b++) {
    await Promise.all(Array.from({ length: 1000 }, (_, i) => broker.append({ sessionId: big, type: 'test.event', at: t0 + 7_200_000 + b * 1000 + i, payload: { i: b * 1000 + i } })));
  }
  const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'broker-1' }, privateKey: keys.privateKey, writers: [broker, worker] });
  await cp.close();
}, 120_000);

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('writ audit replay', () => {
  it('shows the timeline: command text, decision, outcome, result digest and masked fields', async () => {
    const { code, out } = await cli(['replay', '--session', 'sess_alice_1']);
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(9);
    expect(lines[0]).toMatch(/^2025-03-01T10:00:00\.000Z\s+broker:broker-1\s+intent\.received\s+\[intent_sess_alice_1_1\]\s+principal=alice target=db sql="SELECT name, email FROM customers"$/);
    expect(lines[1]).toContain('intent.decided');
    expect(lines[1]).toContain('effect=allow rules=[analysts-read] mode=read');
    expect(lines[4]).toMatch(/worker:pg-1\s+exec\.finished .*status=succeeded rows=2 result=sha256:abababababab… masked=\[email, ssn\]/);
    expect(lines[6]).toContain('effect=deny rules=[no-deletes]');
    expect(lines[7]).toMatch(/intent\.denied .*code=WRIT_POLICY_DENIED/);
    expect(lines[8]).toBe('-- session sess_alice_1: 8 events, 2 intents, chain intact');
  });

  it('replays a session of 10,000 events with the right count', async () => {
    const { code, out } = await cli(['replay', '--session', big]);
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(10_001);
    expect(lines.at(-1)).toBe(`-- session ${big}: 10000 events, 0 intents, chain intact`);
    const json = await cli(['replay', '--session', big, '--json']);
    const events = json.out
      .trimEnd()
      .split('\n')
      .map((l) => AuditEventSchema.parse(JSON.parse(l)));
    expect(events).toHaveLength(10_000);
    expect(new Set(events.map((e) => (e.payload as { i: number }).i)).size).toBe(10_000);
  });

  it('escapes control characters so a command text cannot drive the auditor terminal', async () => {
    await broker.append({
      sessionId: 'sess_evil',
      type: 'intent.received',
      payload: { principal: { sub: 'mallory\u001b]0;pwned\u0007' }, target: 'db', command: { kind: 'sql', sql: 'SELECT 1 -- \u001b[2J\u009b31m\nnext' } },
    });
    const { out } = await cli(['replay', '--session', 'sess_evil']);
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(out).toContain('\\u001b');
  });
});

describe('writ audit sessions', () => {
  it('filters by principal, target, time and outcome', async () => {
    const all = JSON.parse((await cli(['sessions', '--json'])).out) as Array<{ sessionId: string; outcome?: string }>;
    expect(all.map((s) => s.sessionId)).toEqual(expect.arrayContaining(['sess_alice_1', 'sess_bob_1', big]));
    const ids = async (...args: string[]) => (JSON.parse((await cli(['sessions', '--json', ...args])).out) as Array<{ sessionId: string }>).map((s) => s.sessionId);
    expect(await ids('--principal', 'alice')).toEqual(['sess_alice_1']);
    expect(await ids('--target', 'ssh-web')).toEqual(['sess_bob_1']);
    expect(await ids('--outcome', 'denied')).toEqual(['sess_alice_1']);
    expect(await ids('--outcome', 'succeeded')).toEqual(['sess_bob_1']);
    expect(await ids('--since', '2025-03-01T10:30:00Z', '--until', '2025-03-01T11:30:00Z')).toEqual(['sess_bob_1']);
    const table = await cli(['sessions', '--principal', 'bob']);
    expect(table.out).toMatch(
      /^SESSION\s+FIRST\s+LAST\s+EVENTS\s+INTENTS\s+PRINCIPAL\s+TARGET\s+OUTCOME\nsess_bob_1\s+2025-03-01T11:00:00.000Z\s+\S+\s+5\s+1\s+bob\s+ssh-web\s+succeeded\n1 sessions\n$/,
    );
  });
});

describe('writ audit export', () => {
  it('writes the events of a time range as JSON Lines', async () => {
    const { code, out } = await cli(['export', '--since', '2025-03-01T10:00:00Z', '--until', String(t0 + 3_600_000)]);
    expect(code).toBe(0);
    const events = out
      .trimEnd()
      .split('\n')
      .map((l) => AuditEventSchema.parse(JSON.parse(l)));
    expect(events.map((e) => e.sessionId)).toEqual(Array(8).fill('sess_alice_1'));
  });
});

describe('writ audit verify', () => {
  it('exits 0 on an intact log and 1 with the first broken link', async () => {
    // This log was written without a broker: no state buckets to check against.
    const ok = await cli(['verify', '--require-checkpoint', '--no-against-state', '--no-signatures']);
    expect(ok.out).toMatch(/^OK: \d+ sessions, \d+ events/);
    expect(ok.out).toContain('signatures verified');
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('state: NOT checked');
    expect((await cli(['verify', '--session', 'sess_alice_1', '--no-against-state', '--no-signatures'])).code).toBe(0);
    const other = names(uniqueName('t'));
    await ensureAuditStream(jsm, other, {});
    await js.publish(
      other.audit('sess_x'),
      blockJson([{ v: 1, id: 'evt-broken', sessionId: 'sess_x', type: 'x', at: 1, actor: { kind: 'agent', id: 'a' }, prev: '1'.repeat(64), hash: '2'.repeat(64) }]),
    );
    const bad = await cli(['verify', '--no-against-state', '--no-signatures'], { names: other });
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/^BROKEN/);
    expect(bad.out).toMatch(/first broken link: session sess_x, seq 1, event evt-broken: first event of the session does not link to zeros/);
  });

  it('checks against state by default, and refuses (exit 2, not OK) when there is no state to check against', async () => {
    const errs: string[] = [];
    const r = await cli(['verify', '--no-signatures'], { stderr: (s) => errs.push(s) });
    expect(r.code).toBe(2);
    expect(r.out).not.toMatch(/^OK/);
    expect(errs.join('')).toMatch(/bucket could not be read.*--no-against-state/s);
  });

  it('answers usage errors with exit 2', async () => {
    expect((await cli(['replay'])).code).toBe(2);
    expect((await cli(['replay', '--session', 'a.b'])).code).toBe(2);
    expect((await cli(['frobnicate'])).code).toBe(2);
    expect((await cli(['sessions', '--since', 'yesterday-ish'])).code).toBe(2);
    expect((await cli(['replay', '--session', 'sess_x', '--principal', 'p'])).code).toBe(2);
    expect((await cli(['verify', '--anchor', 'nothex'])).code).toBe(2);
    expect((await cli(['verify', '--against-state', '--no-against-state'])).code).toBe(2);
    expect((await cli(['verify', '--no-against-state', '--state-grace', '5'])).code).toBe(2);
    // Fail closed: without a writer key registry verify refuses unless told to skip signatures.
    const errs: string[] = [];
    expect((await cli(['verify', '--no-against-state'], { stderr: (s) => errs.push(s) })).code).toBe(2);
    expect(errs.join('')).toMatch(/no writer key registry/);
    expect((await cli(['verify', '--no-signatures', '--keys', '/nonexistent'])).code).toBe(2);
    expect((await cli(['keys'])).code).toBe(2);
    expect((await cli([])).code).toBe(2);
    expect((await cli(['--help'])).code).toBe(0);
  });
});

describe('writ audit verify across a grant-key rotation', () => {
  it('trusts every --public-key given (repeated, or several PEM keys in one file): checkpoints signed before and after a rotation both verify', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-rotation-'));
    try {
      const rn = names(uniqueName('t'));
      await ensureAuditStream(jsm, rn, {});
      const w = new AuditWriter({ js, jsm, names: rn, actor: { kind: 'broker', id: 'broker-1' } });
      const [oldKey, newKey] = [generateKeyPairSync('ed25519'), generateKeyPairSync('ed25519')];
      const pem = (k: typeof oldKey) => k.publicKey.export({ type: 'spki', format: 'pem' }).toString();
      // Events and a checkpoint under the old key, then the rotation, more events and a checkpoint under the new one.
      for (const [k, at] of [
        [oldKey, t0],
        [newKey, t0 + 60_000],
      ] as const) {
        await w.append({ sessionId: 'sess_rot', type: 'test.event', at, payload: { at } });
        await new Checkpointer({ js, jsm, names: rn, actor: { kind: 'broker', id: 'broker-1' }, privateKey: k.privateKey, writers: [w] }).close();
      }
      const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
      const oldPub = file('old.pub.pem', pem(oldKey));
      const newPub = file('new.pub.pem', pem(newKey));
      const both = file('both.pub.pem', `${pem(oldKey)}\n${pem(newKey)}`);
      const verifyWith = (...keyArgs: string[]) => cli(['verify', '--require-checkpoint', '--no-against-state', '--no-signatures', ...keyArgs], { names: rn });
      // One key alone: the other key's checkpoint counts as signed by an unknown key.
      expect((await verifyWith('--public-key', oldPub)).code).toBe(1);
      expect((await verifyWith('--public-key', newPub)).code).toBe(1);
      const ok = await verifyWith('--public-key', oldPub, '--public-key', newPub);
      expect(ok.out).toMatch(/^OK/);
      expect(ok.code).toBe(0);
      expect((await verifyWith('--public-key', both)).code).toBe(0);
      // Fail closed: a file with no key, or with a private key, is a usage error, never a key left out.
      const errs: string[] = [];
      expect(
        (await cli(['verify', '--no-against-state', '--no-signatures', '--public-key', newPub, '--public-key', file('empty.pem', 'no key here\n')], { names: rn, stderr: (x) => errs.push(x) })).code,
      ).toBe(2);
      const priv = file('priv.pem', `${pem(oldKey)}${newKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()}`);
      expect((await cli(['verify', '--no-against-state', '--no-signatures', '--public-key', priv], { names: rn, stderr: (x) => errs.push(x) })).code).toBe(2);
      expect(errs.join('')).toMatch(/no PEM public key in it[\s\S]*PEM block 2 is a private key/);
      // keys add still takes exactly one.
      expect((await cli(['keys', 'add', '--public-key', oldPub, '--public-key', newPub, '--kind', 'broker', '--keys', join(dir, 'reg.yaml')])).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('writ audit tail', () => {
  it('prints events as they are appended, until the limit', async () => {
    const pending = cli(['tail', '--limit', '3']);
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 5; i++) await broker.append({ sessionId: 'sess_live', type: 'live.event', payload: { i } });
    const { code, out } = await pending;
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/#\d+\s+sess_live\s+broker:broker-1\s+live\.event\s+i=0/);
  });

  it('stops when the signal aborts', async () => {
    const ac = new AbortController();
    const pending = cli(['tail', '--session', 'sess_quiet'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    expect((await pending).code).toBe(0);
  });
});
