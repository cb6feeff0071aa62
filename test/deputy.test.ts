/**
 * No confused deputy, against a real nats-server: the broker answers only reply subjects under
 * the requester's own verified inbox. A reply aimed at $KV, $JS.API, writ.audit or another
 * principal's inbox, with or without a valid token, writes nothing there, and the attempt is
 * audited under `_unattributed`, its subject escaped.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAuditCli } from '../audit/index.ts';
import { generateSealKeyPair, inboxIdOfToken, newId, replySubjectFor } from '../client/index.ts';
import { inboxIdFor, isReplySubjectOf } from '../lib/seal.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function unattributed(): Promise<string> {
  const out: string[] = [];
  await runAuditCli(['replay', '--session', '_unattributed', '--json'], { nc: s.nc, names: s.names, stdout: (x) => out.push(x) }).catch(() => undefined);
  return out.join('');
}

/** Waits until the `_unattributed` session holds `needle`, `times` times. */
async function auditedTimes(needle: string, times: number): Promise<string> {
  let text = '';
  for (let i = 0; i < 200; i++) {
    text = await unattributed();
    if (text.split(needle).length - 1 >= times) return text;
    await sleep(100);
  }
  return text;
}

async function kvHas(key: string): Promise<boolean> {
  const e = await s.broker.buckets.intents.get(key);
  return !!e && e.operation === 'PUT';
}

async function auditSessionMessages(sessionId: string): Promise<number> {
  const jsm = await jetstreamManager(s.nc);
  try {
    return (await jsm.streams.getMessage(s.names.streams.audit, { last_by_subj: s.names.audit(sessionId) })) ? 1 : 0;
  } catch {
    return 0;
  }
}

describe('reply subjects are bound to one principal', () => {
  it('accepts only _INBOX[.<role>].<own inbox id>.<tokens>, unambiguously', () => {
    const me = inboxIdFor('https://issuer', 'alice');
    const other = inboxIdFor('https://issuer', 'bob');
    expect(me).toMatch(/^[a-z2-7]{20}$/);
    expect(inboxIdFor('https://issuer2', 'alice')).not.toBe(me);
    expect(isReplySubjectOf(`_INBOX.${me}.abc`, me)).toBe(true);
    expect(isReplySubjectOf(`_INBOX.agent.${me}.abc.def`, me)).toBe(true);
    for (const bad of [
      `_INBOX.${other}.abc`,
      `_INBOX.${me}`,
      `_INBOX.${me}.*`,
      `_INBOX.${me}.>`,
      `_INBOX.${me}.a b`,
      `$KV.writ_intents.${me}.x`,
      `writ.audit.${me}.x`,
      `$JS.API.${me}.x`,
      `_INBOX.${other}.${me}.x`,
      `_INBOX.${me}.x\r\nPUB evil 1`,
      `_INBOX.agent.${me}..x`,
    ])
      expect(isReplySubjectOf(bad, me), bad).toBe(false);
  });
});

describe('no confused deputy on the API', () => {
  it('writes nothing to $KV, $JS.API, writ.audit or another inbox, with or without a valid token, and audits each attempt', async () => {
    const victimToken = await s.token('victor', ['analysts']);
    const victimInbox = replySubjectFor(inboxIdOfToken(victimToken));
    const got: string[] = [];
    const victimSub = s.nc.subscribe(`_INBOX.${inboxIdOfToken(victimToken)}.>`, { callback: (_e, m) => void got.push(m.subject) });
    const valid = await s.token('mallory', ['analysts']);
    const kvKey = `i_${newId().slice(2)}`;
    const victimSession = newId('s');
    const targets = [
      `$KV.${s.names.buckets.intents}.${kvKey}`,
      s.names.audit(victimSession),
      `$JS.API.STREAM.DELETE.${s.names.streams.audit}`,
      victimInbox,
      `_INBOX.\u001b[31mOK\u001b]0;title\u0007.x`,
    ];
    const bodies = [{}, { v: 1, type: 'targets', token: 'not-a-jwt' }, { v: 1, type: 'targets', token: valid }];
    for (const reply of targets) for (const body of bodies) s.nc.publish(s.names.api('targets'), enc.encode(JSON.stringify(body)), { reply });
    await s.nc.flush();
    const text = await auditedTimes('reply.refused', targets.length * bodies.length);
    expect(text.split('reply.refused').length - 1).toBeGreaterThanOrEqual(targets.length * bodies.length);
    // Nothing written anywhere the replies were aimed at.
    expect(await kvHas(kvKey)).toBe(false);
    expect(await auditSessionMessages(victimSession)).toBe(0);
    const jsm = await jetstreamManager(s.nc);
    expect((await jsm.streams.info(s.names.streams.audit)).config.name).toBe(s.names.streams.audit);
    expect(got).toEqual([]);
    // The attacker's subject is evidence, escaped: no raw control characters in the log.
    expect(text).not.toContain('\u001b');
    expect(text).toContain('\\\\u001b');
    // A valid request under the requester's own inbox is still answered.
    expect((await s.client(valid).targets()).map((t) => t.name)).toEqual(['db']);
    victimSub.unsubscribe();
  }, 60_000);

  it("does not answer an approver's vote on a subject outside its inbox", async () => {
    const approver = await s.approverToken('anna', ['approvers']);
    const kvKey = `i_${newId().slice(2)}`;
    const intentId = newId();
    // Votes travel on core NATS (never stored: they carry the voter's token).
    s.nc.publish(
      s.names.approvalDecision(intentId),
      enc.encode(
        JSON.stringify({
          v: 1,
          type: 'approval.decision',
          intentId,
          verdict: 'approve',
          token: approver,
          decisionId: newId('d'),
          at: Date.now(),
          commandSha256: 'a'.repeat(64),
          replyTo: `$KV.${s.names.buckets.intents}.${kvKey}`,
        }),
      ),
    );
    const text = await auditedTimes(`"intentId":"${intentId}"`, 1);
    const refused = text.split('\n').filter((l) => l.includes(intentId) && l.includes('reply.refused'));
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.join('')).toContain('"source":"approval"');
    expect(await kvHas(kvKey)).toBe(false);
  }, 30_000);
});

describe('no confused deputy through an intent', () => {
  async function publishIntent(token: string, replyTo: string): Promise<string> {
    const id = newId();
    const intent = {
      v: 1,
      type: 'intent',
      id,
      sessionId: newId('s'),
      target: 'db',
      command: { kind: 'sql', sql: 'SELECT name FROM customers' },
      token,
      submittedAt: Date.now(),
      replyTo,
      replyKey: generateSealKeyPair().publicKey,
    };
    s.nc.publish(s.names.intent('db'), enc.encode(JSON.stringify(intent)));
    return id;
  }

  it('refuses an intent whose replyTo is $KV; the worker never publishes there', async () => {
    const token = await s.token('mallory', ['analysts']);
    const kvKey = `i_${newId().slice(2)}`;
    const id = await publishIntent(token, `$KV.${s.names.buckets.intents}.${kvKey}`);
    // Evidence of the attempt, under `_unattributed`, naming the subject it aimed at.
    const text = await auditedTimes(`"claimedIntentId":"${id}"`, 1);
    const line = text.split('\n').find((l) => l.includes(`"claimedIntentId":"${id}"`)) ?? '';
    expect(line).toContain('reply.refused');
    expect(line).toContain(kvKey);
    await sleep(500);
    expect(await kvHas(kvKey)).toBe(false);
    expect(await kvHas(id)).toBe(false); // never decided, never run
  }, 30_000);

  it("denies an intent whose replyTo is another principal's inbox: nothing reaches the victim, nothing runs", async () => {
    const victim = await s.token('victor', ['analysts']);
    const victimPrefix = `_INBOX.${inboxIdOfToken(victim)}`;
    const got: string[] = [];
    const sub = s.nc.subscribe(`${victimPrefix}.>`, { callback: (_e, m) => void got.push(m.string()) });
    const token = await s.token('mallory', ['analysts']);
    const id = await publishIntent(token, `${victimPrefix}.x`);
    const text = await auditedTimes(`"claimedIntentId":"${id}"`, 1);
    expect(text).toContain(`"claimedIntentId":"${id}"`);
    // The sender learns why through the API (its own inbox); the victim got nothing.
    const c = s.client(token);
    const o = await c.wait(id, { timeoutMs: 5_000 });
    expect(o.status).toBe('denied');
    expect(o.error?.code).toBe('WRIT_REPLY_REFUSED');
    await sleep(300);
    expect(got).toEqual([]);
    expect(await s.broker.buckets.claims.get(id)).toBeNull();
    sub.unsubscribe();
  }, 30_000);

  it('denies an intent that carries no key to seal its outcome to', async () => {
    const token = await s.token('mallory', ['analysts']);
    const id = newId();
    const replyTo = replySubjectFor(inboxIdOfToken(token));
    s.nc.publish(
      s.names.intent('db'),
      enc.encode(
        JSON.stringify({
          v: 1,
          type: 'intent',
          id,
          sessionId: newId('s'),
          target: 'db',
          command: { kind: 'sql', sql: 'SELECT 1' },
          token,
          submittedAt: Date.now(),
          replyTo,
        }),
      ),
    );
    const o = await s.client(token).wait(id, { timeoutMs: 5_000 });
    expect(o.status).toBe('denied');
    expect(o.error?.code).toBe('WRIT_SEAL_REQUIRED');
    expect(await s.broker.buckets.claims.get(id)).toBeNull();
  }, 30_000);
});
