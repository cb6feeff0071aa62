/**
 * The shipped permissions, end to end: a real nats-server with deploy/nats/accounts.conf, and
 * the whole stack under it, every role on its own credentials through lib/nats.ts: broker,
 * PostgreSQL worker, SSH worker (real sshd), an approver, an agent (SDK) and an auditor. An
 * intent goes through and one is approved; then each role tries what it must not do, and the
 * server refuses it (a permission violation), with nothing written.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { readSession, verify } from '../audit/index.ts';
import { createBroker, loadDevIssuer, mintDevToken, type Broker, type DevIssuer } from '../broker/index.ts';
import { WritClient } from '../client/index.ts';
import { ROLE_INBOX, type NatsRole } from '../cmd/paths.ts';
import { connectNats, createLogger, resolveNatsConfig } from '../lib/index.ts';
import { names, parseConfig, type Config, type ConfigInput } from '../schemas/index.ts';
import { createWorker, type Worker } from '../workers/index.ts';
import { SCHEMA_SQL } from './fixture.ts';
import { createTestDatabase, startNats, startSshd, type NatsServerHandle, type SshdHandle, type TestDatabase } from './helpers/index.ts';

const ROLES: NatsRole[] = ['broker', 'worker', 'agent', 'approver', 'auditor', 'operator'];
const password = (r: string) => `pw-${r}-${process.pid}`;
// accounts.conf spells the default prefix.
const n = names('writ');

let server: NatsServerHandle;
let sshd: SshdHandle;
let db: TestDatabase;
let dir: string;
let dev: DevIssuer;
let broker: Broker;
const workers: Worker[] = [];
const conns: NatsConnection[] = [];
const as = new Map<NatsRole, NatsConnection>();

/** Each role connects the way a deployment does: the config's `nats` section, through lib/nats.ts. */
async function login(role: NatsRole): Promise<NatsConnection> {
  const inbox = ROLE_INBOX[role];
  const nc = await connectNats(resolveNatsConfig({ servers: [server.url], user: { value: role }, password: { value: password(role) }, ...(inbox ? { inboxPrefix: inbox } : {}) }, {}), `perm-${role}`);
  conns.push(nc);
  return nc;
}
const token = (sub: string, groups: string[], audience = 'writ') => mintDevToken(dev, { sub, groups, audience, ttlSec: 600 });
// Approvers vote with approver tokens (the dev issuer's approver audience).
const clientOf = async (role: NatsRole, sub: string, groups: string[]) =>
  new WritClient({
    nc: as.get(role)!,
    token: await token(sub, groups, role === 'approver' ? 'writ-approver' : 'writ'),
    prefix: 'writ',
    ...(ROLE_INBOX[role] ? { inboxPrefix: ROLE_INBOX[role] } : {}),
  });
const jsmOf = (role: NatsRole): Promise<JetStreamManager> => jetstreamManager(as.get(role)!, { timeout: 1500, checkAPI: false });

beforeAll(async () => {
  for (const r of ROLES) process.env[`WRIT_${r.toUpperCase()}_PASSWORD`] = password(r);
  server = await startNats({ gomaxprocs: 1, extraConfig: readFileSync(new URL('../deploy/nats/accounts.conf', import.meta.url), 'utf8') });
  sshd = await startSshd();
  db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(SCHEMA_SQL);
  await admin.end();
  dir = mkdtempSync(join(tmpdir(), 'writ-perm-'));
  const input: ConfigInput = {
    prefix: 'writ',
    identity: { devIssuer: { enabled: true, dir: join(dir, 'dev-issuer'), audience: 'writ' } },
    grants: { keyFile: join(dir, 'grant-key.pem'), ttlSec: 60 },
    targets: [
      { name: 'db', kind: 'postgres', tags: [] },
      { name: 'host', kind: 'ssh', tags: [] },
    ],
    policy: {
      rules: [
        { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
        { id: 'ops-shell', effect: 'allow', groups: ['ops'], targets: ['host'], mode: 'write', limits: { seconds: 20 } },
        { id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60 } },
      ],
    },
    workers: {
      postgres: [
        {
          target: 'db',
          host: db.host,
          port: db.port,
          database: db.database,
          credentials: {
            read: { user: { value: db.roles.read.user }, password: { value: db.roles.read.password } },
            write: { user: { value: db.roles.write.user }, password: { value: db.roles.write.password } },
          },
        },
      ],
      ssh: [
        {
          target: 'host',
          host: sshd.host,
          port: sshd.port,
          hostKeys: { fingerprints: [sshd.hostKeyFingerprint] },
          credentials: { read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath }, write: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath } },
        },
      ],
    },
    audit: { flushMs: 1 },
  };
  const config = parseConfig(input) as Config;
  const log = createLogger({ name: 'perm', level: 'warn', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  for (const r of ROLES) if (r !== 'worker') as.set(r, await login(r));
  broker = await createBroker({ nc: as.get('broker')!, config, log });
  await broker.start();
  // Two workers, each with its own worker login: PostgreSQL only, and SSH only.
  const pgOnly = { ...config, workers: { postgres: config.workers.postgres, ssh: [], mysql: [] } } as Config;
  const sshOnly = { ...config, workers: { postgres: [], ssh: config.workers.ssh, mysql: [] } } as Config;
  for (const c of [pgOnly, sshOnly]) {
    const w = await createWorker({ nc: await login('worker'), config: c, log });
    await w.start();
    workers.push(w);
  }
  as.set('worker', conns[conns.length - 1]!);
  dev = await loadDevIssuer(config.identity.devIssuer.dir, false);
}, 120_000);

afterAll(async () => {
  for (const w of workers) await w.stop().catch(() => undefined);
  await broker?.stop().catch(() => undefined);
  for (const nc of conns) await nc.close().catch(() => undefined);
  await db?.drop().catch(() => undefined);
  await sshd?.stop();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** How an operation ended: refused by the server's permissions, or something else. */
async function outcome(op: () => Promise<unknown>): Promise<string> {
  try {
    await op();
    return 'ok';
  } catch (e) {
    const err = e as { name?: string; message?: string };
    if (/Permissions Violation/i.test(err.message ?? '') || err.name === 'PermissionViolationError') return 'denied';
    return `${err.name}: ${err.message}`;
  }
}

/** A core request: a publish the server refuses comes back as a permission violation. */
const request = (role: NatsRole, subject: string) => () => as.get(role)!.request(subject, '{}', { timeout: 1500 });

/** Subscribes briefly: a refused subscription is closed by the server with a permission violation. */
const subscribe = (role: NatsRole, subject: string) => async () => {
  const sub = as.get(role)!.subscribe(subject);
  const closed = sub.closed.then((err) => {
    if (err) throw err;
  });
  // A refusal that comes after the wait below is still handled (it was once an unhandled
  // rejection that failed the run on a busy machine); every caller expects one, so the wait
  // ends as soon as it comes.
  closed.catch(() => undefined);
  await as.get(role)!.flush();
  await Promise.race([closed.catch(() => undefined), new Promise((r) => setTimeout(r, 5_000))]);
  if (sub.isClosed()) await closed;
  sub.unsubscribe();
};

const messages = async (stream: string) => (await (await jsmOf('operator')).streams.info(stream)).state.messages;

let sessionId: string;

describe('the stack runs under the shipped roles', () => {
  it('runs an agent SQL intent on the PostgreSQL worker and a shell intent on the SSH worker', async () => {
    const c = await clientOf('agent', 'alice', ['analysts']);
    const o = await c.run({ target: 'db', sql: 'SELECT id, name FROM customers ORDER BY id' }, { timeoutMs: 30_000 });
    expect(o.error).toBeUndefined();
    expect(o.status).toBe('succeeded');
    expect(o.result!.rowCount).toBe(3);
    sessionId = o.sessionId;
    const ops = await clientOf('agent', 'olga', ['ops']);
    const sh = await ops.run({ target: 'host', command: 'echo hello from writ' }, { timeoutMs: 30_000 });
    expect(sh.error).toBeUndefined();
    expect(sh.result!.stdout).toContain('hello from writ');
  }, 60_000);

  it('lets the approver list and approve an intent that needs approval; it then runs once', async () => {
    const c = await clientOf('agent', 'bot-1', ['agents']);
    const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('approved-under-auth')" }, { timeoutMs: 30_000 });
    expect(p.status).toBe('pending');
    const a = await clientOf('approver', 'carol', ['approvers']);
    expect((await a.pending()).map((x) => x.intentId)).toContain(p.intentId);
    expect(await a.decide(p.intentId, 'approve', { reason: 'ok' })).toBe('dispatched');
    expect((await c.wait(p.intentId, { timeoutMs: 30_000 })).status).toBe('succeeded');
  }, 60_000);

  it('lets the auditor read and verify the log (chains alone: --no-against-state)', async () => {
    const auditor = as.get('auditor')!;
    const events = await readSession({ nc: auditor, names: n, sessionId });
    expect(events.map((e) => e.type)).toContain('exec.finished');
    // Whether the chains verify is the audit tests' business; here: the auditor may read all it needs.
    expect(await outcome(() => verify({ nc: auditor, names: n, againstState: false }))).not.toBe('denied');
  });
});

describe('an agent', () => {
  it('cannot publish execution orders on writ.exec.>', async () => {
    const before = await messages(n.streams.exec);
    expect(await outcome(request('agent', n.exec('postgres', 'db')))).toBe('denied');
    expect(await outcome(() => jetstream(as.get('agent')!, { timeout: 1500 }).publish(n.exec('ssh', 'host'), '{}'))).toBe('denied');
    expect(await messages(n.streams.exec)).toBe(before);
  });

  it('cannot hand an order to a worker directly on writ.dispatch.>, nor take one', async () => {
    expect(await outcome(request('agent', n.dispatch('postgres', 'db')))).toBe('denied');
    expect(await outcome(subscribe('agent', n.dispatchAll()))).toBe('denied');
  });

  it('cannot read writ.audit.>, by subscription or through JetStream', async () => {
    expect(await outcome(subscribe('agent', n.auditAll()))).toBe('denied');
    expect(await outcome(subscribe('agent', '>'))).toBe('denied');
    expect(await outcome(() => readSession({ js: jetstream(as.get('agent')!, { timeout: 1500 }), names: n, sessionId }))).toBe('denied');
  });

  it('cannot use $JS.API: stream info, consumers on the audit stream and the intents bucket, direct gets', async () => {
    const jsm = await jsmOf('agent');
    for (const stream of [n.streams.audit, `KV_${n.buckets.intents}`]) {
      expect(await outcome(() => jsm.streams.info(stream))).toBe('denied');
      expect(await outcome(() => jsm.consumers.add(stream, { name: `spy-${stream}` }))).toBe('denied');
      expect(await outcome(() => jsm.direct.getMessage(stream, { seq: 1 }))).toBe('denied');
    }
    expect(await outcome(request('agent', '$JS.API.INFO'))).toBe('denied');
  });

  it('cannot receive on another role inbox, nor on the whole _INBOX', async () => {
    for (const s of ['_INBOX.>', '_INBOX.approver.>', '_INBOX.auditor.>', '_INBOX.x']) expect(await outcome(subscribe('agent', s))).toBe('denied');
  });

  it('cannot write the intents or claims buckets itself', async () => {
    expect(await outcome(request('agent', `$KV.${n.buckets.intents}.i_forged`))).toBe('denied');
    expect(await outcome(request('agent', `$KV.${n.buckets.claims}.g_forged`))).toBe('denied');
    const kv = await new Kvm(as.get('operator')!).open(n.buckets.intents);
    expect(await kv.get('i_forged')).toBeNull();
  });
});

describe('a reply subject aimed at what the agent may not write', () => {
  // The server checks a reply subject against no one's permissions until someone answers on
  // it: an agent may publish such a request. What must hold is that no answer lands there.
  it('writes nothing into $KV, writ.audit or $JS through the broker or a worker', async () => {
    const agent = as.get('agent')!;
    const targets = [`$KV.${n.buckets.intents}.i_deputy`, `$KV.${n.buckets.claims}.g_deputy`, n.audit('s_victim'), '$JS.API.STREAM.DELETE.WRIT_RESULTS'];
    for (const reply of targets) agent.publish(n.api('targets'), '{}', { reply });
    const c = await clientOf('agent', 'alice', ['analysts']);
    const intent = {
      v: 1,
      type: 'intent',
      id: 'i_deputy_intent',
      sessionId: 's_deputy',
      target: 'db',
      command: { kind: 'sql', sql: 'SELECT 1' },
      token: await token('alice', ['analysts']),
      submittedAt: Date.now(),
    };
    // Aimed there twice: as the intent's replyTo (where its outcome would go) and as the
    // request's own reply subject (where its receipt would go).
    for (const [i, replyTo] of targets.entries()) {
      agent.publish(n.intent('db'), JSON.stringify({ ...intent, id: `i_deputy_${i}`, replyTo }));
      agent.publish(n.intent('db'), JSON.stringify({ ...intent, id: `i_deputy_r${i}` }), { reply: replyTo });
    }
    await c.targets(); // the broker has answered everything before this
    await new Promise((r) => setTimeout(r, 1500));
    const kvm = new Kvm(as.get('operator')!);
    expect(await (await kvm.open(n.buckets.intents)).get('i_deputy')).toBeNull();
    expect(await (await kvm.open(n.buckets.claims)).get('g_deputy')).toBeNull();
    const jsm = await jsmOf('operator');
    const victim = await jsm.streams.getMessage(n.streams.audit, { last_by_subj: n.audit('s_victim') }).catch(() => null);
    expect(victim ? new TextDecoder().decode(victim.data) : null).toBeNull();
    expect(await outcome(() => jsm.streams.info(`KV_${n.buckets.intents}`))).toBe('ok');
  }, 30_000);
});

describe('a worker', () => {
  it('cannot publish intents, approval decisions or orders', async () => {
    expect(await outcome(request('worker', n.intent('db')))).toBe('denied');
    expect(await outcome(request('worker', n.approvalDecision('i_x')))).toBe('denied');
    expect(await outcome(request('worker', n.exec('postgres', 'db')))).toBe('denied');
  });

  it('cannot read the approvals stream', async () => {
    for (const stream of [n.streams.approvals]) {
      expect([stream, await outcome(request('worker', `$JS.API.STREAM.MSG.GET.${stream}`))]).toEqual([stream, 'denied']);
      expect([stream, await outcome(request('worker', `$JS.API.DIRECT.GET.${stream}`))]).toEqual([stream, 'denied']);
    }
  });
});

describe('the approver and the auditor', () => {
  it('the approver cannot submit intents or read the audit log; the auditor cannot publish anything', async () => {
    expect(await outcome(request('approver', n.intent('db')))).toBe('denied');
    expect(await outcome(subscribe('approver', n.auditAll()))).toBe('denied');
    expect(await outcome(request('auditor', n.intent('db')))).toBe('denied');
    expect(await outcome(request('auditor', n.api('targets')))).toBe('denied');
    expect(await outcome(request('auditor', `$KV.${n.buckets.intents}.i_x`))).toBe('denied');
  });
});

describe('an approver reads only approval requests and outcomes', () => {
  it('cannot receive votes: no subscription on the decision subjects, nor on wildcards over them', async () => {
    for (const subject of [n.approvalDecisionAll(), n.approvalDecision('i_someone'), 'writ.approval.>', 'writ.>', '>', 'writ.api.>']) {
      expect(await outcome(subscribe('approver', subject)), subject).toBe('denied');
    }
  });

  it('cannot create a consumer on any stream but the approvals stream, nor change that stream to capture votes', async () => {
    const jsm = await jsmOf('approver');
    for (const stream of [n.streams.exec, n.streams.audit, `KV_${n.buckets.intents}`, `KV_${n.buckets.voteTokens}`]) {
      expect(await outcome(() => jsm.consumers.add(stream, { name: `spy-${stream}` })), stream).toBe('denied');
      expect(await outcome(() => jsm.consumers.add(stream, {})), stream).toBe('denied');
    }
    const info = await (await jsmOf('operator')).streams.info(n.streams.approvals);
    // The stream holds requests and outcomes only: a consumer on it sees nothing else.
    expect([...info.config.subjects].sort()).toEqual([n.approvalOutcomeAll(), n.approvalRequestAll()].sort());
    expect(await outcome(() => jsm.streams.update(n.streams.approvals, { ...info.config, subjects: [...info.config.subjects, n.approvalDecisionAll()] }))).toBe('denied');
    expect(await outcome(() => jsm.consumers.add(n.streams.approvals, { name: 'votes', filter_subject: n.approvalDecisionAll() }))).not.toBe('ok');
    expect((await (await jsmOf('operator')).streams.info(n.streams.approvals)).config.subjects).toEqual(info.config.subjects);
  });

  it('cannot read or write the buckets: not the spent vote tokens, not the intents', async () => {
    for (const b of [n.buckets.voteTokens, n.buckets.intents, n.buckets.windows]) {
      expect(await outcome(request('approver', `$KV.${b}.t_x`)), b).toBe('denied');
      expect(await outcome(() => jsmOf('approver').then((jsm) => jsm.direct.getMessage(`KV_${b}`, { last_by_subj: `$KV.${b}.t_x` }))), b).toBe('denied');
    }
  });
});

describe('the audit stream', () => {
  for (const role of ['broker', 'worker', 'agent', 'approver', 'auditor'] as const) {
    it(`cannot be deleted or updated by the ${role}`, async () => {
      const jsm = await jsmOf(role);
      const info = await (await jsmOf('operator')).streams.info(n.streams.audit);
      expect(await outcome(() => jsm.streams.delete(n.streams.audit))).toBe('denied');
      expect(await outcome(() => jsm.streams.update(n.streams.audit, { ...info.config, max_age: 1_000_000_000 }))).toBe('denied');
      expect(await outcome(() => jsm.streams.purge(n.streams.audit))).toBe('denied');
      const after = await (await jsmOf('operator')).streams.info(n.streams.audit);
      expect(after.config.max_age).toBe(info.config.max_age);
      expect(after.state.messages).toBeGreaterThanOrEqual(info.state.messages);
    });
  }

  it('can be updated by the operator', async () => {
    const jsm = await jsmOf('operator');
    const info = await jsm.streams.info(n.streams.audit);
    expect(await outcome(() => jsm.streams.update(n.streams.audit, { ...info.config, description: 'operator was here' }))).toBe('ok');
  });
});
