// deploy/nats/accounts.conf on a real nats-server: only the operator can touch the audit
// stream's configuration, and the auditor reads the audit log and nothing else.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { names } from '../../schemas/index.ts';
import { startNats, type NatsServerHandle } from '../../test/helpers/index.ts';
import { AuditWriter, ensureAuditStream, listSessions, readSession, verify } from '../../audit/index.ts';

const ROLES = ['agent', 'broker', 'worker', 'approver', 'auditor', 'operator'] as const;
type Role = (typeof ROLES)[number];
const password = (r: Role) => `pw-${r}-${process.pid}`;
/** Per-role inbox prefixes, as the config's subscribe permissions expect. */
const INBOX: Partial<Record<Role, string>> = { agent: '_INBOX.agent', approver: '_INBOX.approver', auditor: '_INBOX.auditor' };
const n = names('writ');
/** The intents bucket's stream. */
const RECORDS = `KV_${n.buckets.intents}`;

let server: NatsServerHandle;
const conns = new Map<Role, NatsConnection>();
const as = (r: Role) => conns.get(r)!;
/** A manager that does not probe the account first (agents may not). */
const jsmOf = (r: Role, timeout = 1500): Promise<JetStreamManager> => jetstreamManager(as(r), { timeout, checkAPI: false });

beforeAll(async () => {
  for (const r of ROLES) process.env[`WRIT_${r.toUpperCase()}_PASSWORD`] = password(r);
  server = await startNats({ gomaxprocs: 1, extraConfig: readFileSync(new URL('./accounts.conf', import.meta.url), 'utf8') });
  for (const r of ROLES) {
    conns.set(r, await connect({ servers: server.url, user: r, pass: password(r), ...(INBOX[r] ? { inboxPrefix: INBOX[r] } : {}) }));
  }
  const op = await jsmOf('operator');
  await ensureAuditStream(op, n, {});
  // The intents bucket's stream: an ended intent's record holds its durable outcome.
  await op.streams.add({ name: RECORDS, subjects: [`$KV.${n.buckets.intents}.>`] });
  await jetstream(as('operator')).publish(`$KV.${n.buckets.intents}.intent_0001`, '{"state":"succeeded","outcome":{"secret":"row data"}}');
}, 60_000);

afterAll(async () => {
  for (const nc of conns.values()) await nc.close().catch(() => undefined);
  await server?.stop();
});

/** Runs `op` and says how it failed: refused by the server's permissions, or answered (and refused) by JetStream. */
async function outcome(op: () => Promise<unknown>): Promise<string> {
  try {
    await op();
    return 'ok';
  } catch (e) {
    const err = e as { name?: string; message?: string };
    if (/Permissions Violation/.test(err.message ?? '')) return 'denied';
    if (err.name === 'JetStreamApiError') return 'jetstream-refused';
    return `${err.name}: ${err.message}`;
  }
}

describe('the audit stream cannot be deleted, purged, updated or edited but by the operator', () => {
  for (const role of ['broker', 'worker', 'agent', 'approver', 'auditor'] as const) {
    it(`refuses all four to ${role}`, async () => {
      const jsm = await jsmOf(role);
      const info = await (await jsmOf('operator')).streams.info(n.streams.audit);
      expect(await outcome(() => jsm.streams.delete(n.streams.audit))).toBe('denied');
      expect(await outcome(() => jsm.streams.purge(n.streams.audit))).toBe('denied');
      expect(await outcome(() => jsm.streams.update(n.streams.audit, { ...info.config, max_msgs: 1 }))).toBe('denied');
      expect(await outcome(() => jsm.streams.deleteMessage(n.streams.audit, 1))).toBe('denied');
      const after = await (await jsmOf('operator')).streams.info(n.streams.audit);
      expect(after.state.messages).toBe(info.state.messages);
      expect(after.config.max_msgs).toBe(-1);
    });
  }

  it('lets the operator through (JetStream itself still refuses purge and message delete)', async () => {
    const jsm = await jsmOf('operator');
    const info = await jsm.streams.info(n.streams.audit);
    expect(await outcome(() => jsm.streams.purge(n.streams.audit))).toBe('jetstream-refused');
    expect(await outcome(() => jsm.streams.deleteMessage(n.streams.audit, 1))).toBe('jetstream-refused');
    expect(await outcome(() => jsm.streams.update(n.streams.audit, { ...info.config, description: 'updated by the operator' }))).toBe('ok');
    const copy = names('writcopy');
    await ensureAuditStream(jsm, copy, {});
    expect(await outcome(() => jsm.streams.delete(copy.streams.audit))).toBe('ok');
  });
});

describe('writers and readers', () => {
  let sessionId: string;

  it('lets the broker and a worker append to one chain', async () => {
    sessionId = 'sess_perm_test';
    const broker = new AuditWriter({ js: jetstream(as('broker')), jsm: await jetstreamManager(as('broker')), names: n, actor: { kind: 'broker', id: 'b1' } });
    const worker = new AuditWriter({ js: jetstream(as('worker')), jsm: await jetstreamManager(as('worker')), names: n, actor: { kind: 'worker', id: 'w1' } });
    await broker.append({ sessionId, type: 'intent.received', payload: { principal: { sub: 'alice' }, target: 'db' } });
    await worker.append({ sessionId, type: 'exec.finished', payload: { status: 'succeeded' } });
    await broker.append({ sessionId, type: 'api.cancel' });
  });

  it('lets the auditor read the audit stream: replay, list, verify, direct get', async () => {
    const auditor = as('auditor');
    const events = await readSession({ nc: auditor, names: n, sessionId });
    expect(events.map((e) => e.type)).toEqual(['intent.received', 'exec.finished', 'api.cancel']);
    expect((await listSessions({ nc: auditor, names: n, principal: 'alice' })).map((s) => s.sessionId)).toEqual([sessionId]);
    expect(await verify({ nc: auditor, names: n })).toMatchObject({ ok: true, events: 3 });
    const jsm = await jetstreamManager(auditor);
    const m = await jsm.direct.getMessage(n.streams.audit, { seq: 1 });
    expect(m?.subject).toBe(n.audit(sessionId));
  });

  it('keeps the auditor out of intent records (their stored outcomes) and intents', async () => {
    const auditor = as('auditor');
    const js = jetstream(auditor, { timeout: 1500 });
    const jsm = await jetstreamManager(auditor, { timeout: 1500 });
    expect(await outcome(() => js.consumers.get(RECORDS))).toBe('denied');
    expect(await outcome(() => jsm.direct.getMessage(RECORDS, { seq: 1 }))).toBe('denied');
    expect(await outcome(() => jsm.streams.getMessage(RECORDS, { seq: 1 }))).toBe('denied');
    expect(await outcome(() => auditor.request(n.intent('db'), '{}', { timeout: 1500 }))).toBe('denied');
    expect(await outcome(() => subscribeOnce(auditor, `$KV.${n.buckets.intents}.>`))).toBe('denied');
    expect(await outcome(() => subscribeOnce(auditor, n.intentAll()))).toBe('denied');
  });

  it('lets an agent send an intent to the brokers, and get their answer, but not read the audit log or results', async () => {
    const agent = as('agent');
    // The broker's queue subscription takes intents (core requests) and answers on the agent's inbox.
    const broker = as('broker').subscribe(n.intentAll(), { queue: n.brokerQueue, max: 1, callback: (_e, m) => void m?.respond('{"taken":true}') });
    await as('broker').flush();
    const answer = await agent.request(n.intent('db'), '{"v":1}', { timeout: 1500 });
    expect(answer.json()).toEqual({ taken: true });
    await broker.closed;
    expect(await outcome(() => verify({ js: jetstream(agent, { timeout: 1500 }), names: n }))).toBe('denied');
    expect(await outcome(() => subscribeOnce(agent, n.auditAll()))).toBe('denied');
    expect(await outcome(() => subscribeOnce(agent, '_INBOX.>'))).toBe('denied');
  });
});

/** Subscribes and waits briefly: a permission violation closes the subscription with an error. */
async function subscribeOnce(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject);
  const closed = sub.closed.then((err) => {
    if (err) throw err;
  });
  await nc.flush();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 500))]);
  if (sub.isClosed()) await closed;
  sub.unsubscribe();
}
