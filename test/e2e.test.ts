/**
 * The walking skeleton end to end, on a real nats-server and a real PostgreSQL:
 * agent → NATS → broker → PostgreSQL worker → masked result → audit log.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { publicKeyFileFor } from '../broker/index.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, SignJWT } from 'jose';
import { loadKeyRegistry, runAuditCli, verify } from '../audit/index.ts';
import { generateSealKeyPair, inboxIdOfToken, newId, openOutcome, replySubjectFor } from '../client/index.ts';
import { grantSigner, OutcomeSchema, type Order, type Outcome } from '../schemas/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});

const enc = new TextEncoder();
const count = async (table: string) => Number((await s.admin.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);

/** Publishes raw bytes on an intent subject and waits for what comes back on the inbox. */
/** This test's sealing key: raw intents carry its public half, and their answers are opened with it. */
const keys = generateSealKeyPair();

async function rawIntent(target: string, body: string | Uint8Array, inbox: string, waitMs = 3000): Promise<Outcome | undefined> {
  const sub = s.nc.subscribe(inbox, { max: 1, timeout: waitMs });
  const got = (async () => {
    try {
      for await (const m of sub) return openOutcome(OutcomeSchema.parse(m.json()), keys);
    } catch {
      return undefined;
    }
    return undefined;
  })();
  s.nc.publish(s.names.intent(target), typeof body === 'string' ? enc.encode(body) : body);
  return got;
}

describe('an allowed query', () => {
  it('masks the e-mail column by its origin, also when aliased, and leaves other columns alone', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const o = await c.run({ target: 'db', sql: 'SELECT name, email AS e, plan FROM customers ORDER BY id' });
    expect(o.status).toBe('succeeded');
    expect(o.result!.columns.map((x) => [x.name, x.masked])).toEqual([
      ['name', false],
      ['e', true],
      ['plan', false],
    ]);
    expect(o.result!.rowCount).toBe(3);
    expect(o.result!.rows[0]![0]).toBe('Alice Example');
    expect(JSON.stringify(o.result!.rows)).not.toContain('alice@example.com');
    expect(JSON.stringify(o.result!.rows)).not.toMatch(/@example\.(com|org|net)/);
  });

  it('masks e-mail addresses by value where the column is not configured', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const o = await c.run({ target: 'db', sql: "SELECT 'write to ' || name || ' <bob@corp.example>' AS note FROM customers WHERE id = 2" });
    expect(o.status).toBe('succeeded');
    expect(String(o.result!.rows[0]![0])).not.toContain('bob@corp.example');
  });
});

describe('a denied statement', () => {
  it('returns a denial with a stable code and never reaches the database', async () => {
    const before = await count('events');
    const c = s.client(await s.token('alice', ['analysts']));
    const o = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('should not land')" });
    expect(o.status).toBe('denied');
    expect(o.error!.code).toBe('WRIT_POLICY_DENIED');
    expect(await count('events')).toBe(before);
    const claim = await s.broker.buckets.claims.get(o.intentId);
    expect(claim).toBeNull();
  });

  it('refuses what the grammar cannot parse, with its own code', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const o = await c.run({ target: 'db', sql: 'SELEC name FROM customers' });
    expect(o.status).toBe('denied');
    expect(o.error!.code).toBe('WRIT_SQL_UNPARSEABLE');
  });

  it('refuses an explicit deny rule even for an otherwise allowed group', async () => {
    const c = s.client(await s.token('ivan', ['analysts', 'interns']));
    const o = await c.run({ target: 'db', sql: 'SELECT 1' });
    expect(o.status).toBe('denied');
    expect(o.decision!.rules).toEqual(['no-interns']);
  });
});

describe('planning around the policy', () => {
  it('explains a decision without running anything, and audits the question', async () => {
    const before = await count('events');
    const c = s.client(await s.token('alice', ['analysts']));
    const no = await c.explain({ target: 'db', sql: "INSERT INTO events (note) VALUES ('explain-only')" });
    expect(no.decision.effect).toBe('deny');
    expect(no.decision.reasons.join(' ')).toMatch(/write/);
    const yes = await c.explain({ target: 'db', sql: 'SELECT 1' });
    expect(yes.decision.effect).toBe('allow');
    expect(yes.decision.rules).toEqual(['analysts-read']);
    expect(await count('events')).toBe(before);
  });

  it('lists the targets a principal may use, and for what', async () => {
    const analysts = await s.client(await s.token('alice', ['analysts'])).targets();
    expect(analysts.map((t) => t.name)).toEqual(['db']);
    expect(analysts[0]!.access.map((a) => a.rule)).toContain('analysts-read');
    const nobody = await s.client(await s.token('zed', ['visitors'])).targets();
    expect(nobody).toEqual([]);
  });
});

/**
 * An intent whose token fails verification gets no answer at all (the broker cannot know whose
 * inbox its reply subject is: no deputy), and its refusal is evidence under `_unattributed`.
 */
async function expectUnansweredAndAudited(token: string, code: string): Promise<void> {
  const intentId = newId();
  const err = await s
    .client(token)
    .run({ target: 'db', sql: 'SELECT 1', intentId }, { timeoutMs: 2_000 })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect((err as { code?: string })?.code).toBe('WRIT_TIMEOUT');
  let found = false;
  for (let i = 0; i < 50 && !found; i++) {
    const out: string[] = [];
    await runAuditCli(['replay', '--session', '_unattributed', '--json'], { nc: s.nc, names: s.names, stdout: (x) => out.push(x) });
    found = out.join('').includes(intentId) && out.join('').includes(code);
    if (!found) await new Promise((r) => setTimeout(r, 100));
  }
  expect(found).toBe(true);
}

describe('identity', () => {
  it('refuses a forged token signed by a key the broker does not trust', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await new SignJWT({ groups: ['dba'] })
      .setProtectedHeader({ alg: 'EdDSA', kid: s.dev.privateJwk.kid! })
      .setIssuer(s.dev.issuer)
      .setSubject('mallory')
      .setAudience('writ')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    await expectUnansweredAndAudited(forged, 'WRIT_TOKEN_INVALID');
  });

  it('refuses an expired token', async () => {
    const old = Math.floor(Date.now() / 1000) - 3600;
    const o = await s.client(await s.token('alice', ['analysts'], { iat: old, ttlSec: 600 })).run({ target: 'db', sql: 'SELECT 1' });
    expect(o.error!.code).toBe('WRIT_TOKEN_EXPIRED');
  });

  it('refuses a token for another audience', async () => {
    await expectUnansweredAndAudited(await s.token('alice', ['analysts'], { audience: 'someone-else' }), 'WRIT_TOKEN_AUDIENCE');
  });

  it('refuses a token that lives longer than the maximum lifetime', async () => {
    await expectUnansweredAndAudited(await s.token('alice', ['analysts'], { ttlSec: 3 * 24 * 3600 }), 'WRIT_TOKEN_LIFETIME');
  });
});

describe('workers trust grants, not subjects', () => {
  it('refuses an order published straight onto the exec subject with a forged grant, and runs nothing', async () => {
    const before = await count('events');
    const sql = "INSERT INTO events (note) VALUES ('forged')";
    const { privateKey } = generateKeyPairSync('ed25519');
    const forger = grantSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'not-the-broker');
    const now = Math.floor(Date.now() / 1000);
    const id = newId();
    const sessionId = newId('s');
    const order: Order = {
      v: 1,
      type: 'order',
      intentId: id,
      sessionId,
      target: 'db',
      command: { kind: 'sql', sql },
      stateRevision: 1,
      grant: forger.sign({
        gid: id,
        iid: id,
        sid: sessionId,
        tgt: 'db',
        kind: 'postgres',
        mode: 'write',
        sha256: '0'.repeat(64),
        iat: now,
        exp: now + 60,
        limits: {},
        policyVersion: 'x',
        sub: 'mallory',
      }),
    };
    const ack = await (await import('@nats-io/jetstream')).jetstream(s.nc).publish(s.names.exec('postgres', 'db'), enc.encode(JSON.stringify(order)));
    expect(ack.seq).toBeGreaterThan(0);
    // Wait until the refusal is in the session's audit chain.
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      const r = await verify({ nc: s.nc, names: s.names, sessionId });
      refused = r.events > 0;
      if (!refused) await new Promise((r2) => setTimeout(r2, 100));
    }
    expect(refused).toBe(true);
    const out: string[] = [];
    await runAuditCli(['replay', '--session', sessionId, '--json'], { nc: s.nc, names: s.names, stdout: (x) => out.push(x) });
    expect(out.join('')).toContain('WRIT_GRANT_INVALID');
    expect(await count('events')).toBe(before);
    expect(await s.broker.buckets.claims.get(id)).toBeNull();
  });
});

describe('at most once', () => {
  it('runs the same intent id submitted twice exactly once', async () => {
    const before = await count('events');
    const c = s.client(await s.token('dba1', ['dba']));
    const intentId = newId();
    const req = { target: 'db', sql: "INSERT INTO events (note) VALUES ('once')", intentId };
    const [a, b] = await Promise.all([c.run(req), c.run(req)]);
    expect(a.status).toBe('succeeded');
    expect(b.status).toBe('succeeded');
    const third = await c.run(req);
    expect(third.status).toBe('succeeded');
    expect(await count('events')).toBe(before + 1);
  });
});

describe('bad input never crashes a service', () => {
  it('answers each malformed intent with a stable code and keeps serving', async () => {
    const token = await s.token('alice', ['analysts']);
    const base = { v: 1, type: 'intent', sessionId: newId('s'), target: 'db', command: { kind: 'sql', sql: 'SELECT 1' }, token, submittedAt: Date.now(), replyKey: keys.publicKey };
    // Malformed JSON: no one to answer; the broker must survive it.
    s.nc.publish(s.names.intent('db'), enc.encode('{not json'));
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['schema violation', { command: { kind: 'sql', sqll: 'x' } }, 'WRIT_BAD_REQUEST'],
      ['unknown target', {}, 'WRIT_UNKNOWN_TARGET'],
      ['oversized', { justification: 'x'.repeat(1900), command: { kind: 'sql', sql: `SELECT '${'y'.repeat(300_000)}'` } }, 'WRIT_PAYLOAD_TOO_LARGE'],
      ['past deadline', { deadline: Date.now() - 1000 }, 'WRIT_DEADLINE_PASSED'],
    ];
    for (const [what, patch, code] of cases) {
      // Answered only under alice's own inbox, and sealed to the intent's key.
      const inbox = replySubjectFor(inboxIdOfToken(token));
      const target = what === 'unknown target' ? 'nosuch' : 'db';
      const o = await rawIntent(target, JSON.stringify({ ...base, target, id: newId(), replyTo: inbox, ...patch }), inbox);
      expect(o?.error?.code, what).toBe(code);
    }
    // Still serving.
    const ok = await s.client(token).run({ target: 'db', sql: 'SELECT 1 AS one' });
    expect(ok.status).toBe('succeeded');
    expect(ok.result!.rows).toEqual([[1]]);
  });
});

describe('audit', () => {
  it('replays the whole session as a timeline, and its chain verifies', async () => {
    const sessionId = newId('s');
    const c = s.client(await s.token('alice', ['analysts']), sessionId);
    await c.run({ target: 'db', sql: 'SELECT name FROM customers WHERE id = 1' });
    await c.run({ target: 'db', sql: 'DELETE FROM customers' });
    await s.worker.stop(); // flushes the worker's audit writer
    await s.broker.stop();
    const out: string[] = [];
    const code = await runAuditCli(['replay', '--session', sessionId], { nc: s.nc, names: s.names, stdout: (x) => out.push(x) });
    expect(code).toBe(0);
    const text = out.join('');
    for (const t of ['intent.received', 'intent.decided', 'intent.dispatched', 'exec.claimed', 'exec.finished', 'intent.denied']) expect(text).toContain(t);
    expect(text).toContain('SELECT name FROM customers WHERE id = 1');
    // The broker wrote a signed checkpoint at shutdown; it verifies with the public key alone.
    const publicKeyPem = readFileSync(publicKeyFileFor(s.config.grants.keyFile), 'utf8');
    const v = await verify({ nc: s.nc, names: s.names, publicKeyPem, requireCheckpoint: true });
    expect(v.ok).toBe(true);
    expect(v.events).toBeGreaterThan(10);
    expect(v.checkpoints).toBeGreaterThanOrEqual(1);
    expect(v.signaturesChecked).toBe(true);
    // Every block is signed by the writer's registered key, of the right kind; the worker's key
    // registered itself bound to the worker's targets, so its exec events are checked against them.
    const registry = loadKeyRegistry(s.config.audit.keyRegistry!);
    const workerKeys = [...registry.values()].filter((k) => k.kind === 'worker');
    expect(workerKeys.length).toBeGreaterThan(0);
    for (const k of workerKeys) expect(k.targets).toContain('db');
    const signed = await verify({ nc: s.nc, names: s.names, publicKeyPem, requireCheckpoint: true, signers: registry });
    expect(signed.ok, JSON.stringify(signed)).toBe(true);
    expect(signed.blockSignaturesChecked).toBe(true);
    expect(signed.unsignedBlocks).toBe(0);
    // No token and no unmasked e-mail anywhere in the log.
    const json: string[] = [];
    await runAuditCli(['export'], { nc: s.nc, names: s.names, stdout: (x) => json.push(x) });
    const all = json.join('');
    expect(all).not.toContain('alice@example.com');
    expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
    // Nor in what the services logged: no database password, no token, no unmasked value.
    const logs = JSON.stringify(s.logs);
    expect(s.logs.length).toBeGreaterThan(0);
    for (const secret of [s.db.roles.read.password, s.db.roles.write.password, 'alice@example.com']) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
  });
});
