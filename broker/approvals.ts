/**
 * Just-in-time approval, broker side. A `require_approval` decision creates the intent's
 * record as `pending` (with the order to sign later) and publishes an approval request.
 * Decisions arrive on `writ.approval.decision.<intentId>` over core NATS, in the brokers'
 * queue group, and are never stored (a vote carries its voter's token). Each vote is verified (the
 * approver's own token, used for one vote only, or a trusted bot's token plus the identity it
 * maps and the bot's signature), checked
 * against the rule's approver groups and the no-self-approval rule, and applied by
 * compare-and-set: N distinct approvals move the intent to `dispatched` exactly once
 * however many votes race; one rejection ends it `rejected`.
 * Time-bound access windows live in the windows bucket, keyed by principal, target and
 * rule, so the broker finds one with a single get.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { AuditWriter } from '../audit/index.ts';
import { createRecord, getRecord, inboxIdFor, isReplySubjectOf, maxBody, principalKey, sanitizeSubject, sealOutcome, sendReply, updateRecord, type Logger } from '../lib/index.ts';
import {
  ApprovalDecisionSchema,
  approverTokenLifeSec,
  approverTokenSkewSec,
  commandText,
  sha256Hex,
  toWritError,
  WritError,
  type ApprovalDecision,
  type Command,
  type ApprovalOutcome,
  type ApprovalRequest,
  type Config,
  type Intent,
  type IntentRecord,
  type Names,
  type Outcome,
  type Principal,
  type TargetConfig,
  type WindowScope,
  voteSigningBytes,
} from '../schemas/index.ts';
import type { VerifiedIdentity, IdentityVerifier } from './identity.ts';
import type { CommandFacts, PolicyDecision } from './policy.ts';
import { grantSpecOf } from './grants.ts';
import type { RecordSealer } from './seal-record.ts';
import type { PendingIndex } from './sweeper.ts';
import { redactCommand, redactDeep, redactText } from './redact.ts';

const enc = new TextEncoder();

export interface WindowRecord {
  id: string;
  sub: string;
  iss: string;
  target: string;
  rule: string;
  /** Epoch ms. */
  expiresAt: number;
  grantedBy: string[];
  /** Groups that may revoke it: the rule's approver groups. */
  approverGroups: string[];
  createdAt: number;
  /** The human the approved intent acted for: the window serves no one else's requests. */
  actFor?: string;
  /** The policy version the approvers decided under: a changed policy ends the window. */
  policyVersion?: string;
  /**
   * What the approvers saw, as statement shapes (`kind:tables written`, or shell programs):
   * an intent runs in the window only if every shape of it is among these.
   */
  shapes?: string[];
}

/** The shapes of a command's facts: what kinds of statements on which tables, or which programs. */
export function commandShapes(f: CommandFacts): string[] {
  if (f.kind === 'sql') return [...new Set(f.facts.statements.map((st) => `${st.kind}:${[...st.tablesWritten].sort().join(',')}`))].sort();
  return [...new Set(f.facts.commands.map((c) => `program:${c.program ?? '?'}:${c.wrappers.join('+')}`))].sort();
}

/**
 * What a window granted on this pending record would allow: the one function behind what
 * approvers are shown (the request's and the API's `windowScope`) and what the window record
 * holds, which {@link windowAllows} enforces. Undefined when the rule grants no windows.
 */
function windowScopeOf(rec: Pick<IntentRecord, 'principal' | 'target' | 'decision' | 'pending'>, shapes: string[]): WindowScope | undefined {
  const p = rec.pending;
  if (!p?.spec.windowMaxSec || !rec.decision?.policyVersion) return undefined;
  return {
    rule: p.rule,
    target: rec.target,
    requester: { iss: rec.principal.iss, sub: rec.principal.sub },
    actFor: rec.principal.actFor ?? null,
    policyVersion: rec.decision.policyVersion,
    shapes: [...shapes],
    maxSec: p.spec.windowMaxSec,
  };
}

/** Whether a scope covers an intent: same requester, target, rule, human acted for and policy version, and only its shapes. */
export function windowAllows(scope: Omit<WindowScope, 'maxSec'>, p: Principal, target: string, rule: string, o: { facts: CommandFacts; policyVersion: string }): boolean {
  if (scope.requester.iss !== p.iss || scope.requester.sub !== p.sub || scope.target !== target || scope.rule !== rule) return false;
  if (scope.actFor !== (p.actFor ?? null) || scope.policyVersion !== o.policyVersion) return false;
  const seen = new Set(scope.shapes);
  return commandShapes(o.facts).every((x) => seen.has(x));
}

/** The scope a stored window enforces (records from before scopes, without shapes, enforce nothing: no window). */
function scopeOfWindow(w: WindowRecord): Omit<WindowScope, 'maxSec'> | undefined {
  if (!w.shapes || w.policyVersion === undefined) return undefined;
  return { rule: w.rule, target: w.target, requester: { iss: w.iss, sub: w.sub }, actFor: w.actFor ?? null, policyVersion: w.policyVersion, shapes: w.shapes };
}

/** A bot's vote verifies with its key over everything it decides (schemas voteSigningBytes). */
function verifyVote(d: ApprovalDecision, key: KeyObject): boolean {
  if (!d.sig) return false;
  const { token: _t, sig, ...rest } = d;
  try {
    return verify(null, voteSigningBytes(rest), key, Buffer.from(sig, 'base64url'));
  } catch {
    return false;
  }
}

/**
 * The key under which a human's vote token is spent: its issuer and `jti` (RFC 7519: unique per
 * issuer), else the digest of its signed part (header and payload). Never the whole token: the
 * signature segment can be re-encoded (base64url's spare bits, ECDSA's s/n−s) into another string
 * that still verifies, while the signed part cannot change without the issuer's key.
 */
export function voteTokenKey(iss: string, token: string): string {
  const [header = '', payload = ''] = token.split('.');
  let jti: unknown;
  try {
    jti = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { jti?: unknown }).jti;
  } catch {
    jti = undefined;
  }
  const id = typeof jti === 'string' && jti.length > 0 ? `jti\n${jti}` : `jws\n${header}.${payload}`;
  return `t.${sha256Hex(`${iss}\n${id}`)}`;
}

export interface ApprovalsDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  intents: KV;
  windows: KV;
  /** Human approvers' tokens spent on a vote (create-only; entries live as long as a token could). */
  voteTokens: KV;
  /**
   * A bucket only brokers write (the sessions bucket), where an approval's end is marked once:
   * `approval-end.<intentId>`. See ApprovalsDeps users: #ended, end(), the vote path.
   */
  ends: KV;
  names: Names;
  config: Config;
  /** The pending intents this broker knows of (the sweeper's watch keeps it), to count a principal's. */
  pending: PendingIndex;
  identity: IdentityVerifier;
  audit: AuditWriter;
  log: Logger;
  /** Signs and publishes the order of an approved intent; returns the dispatched record. */
  dispatch(rec: IntentRecord, revision: number): Promise<void>;
  /** Signs and checks the pending part of records (only a broker writes it). */
  sealer: RecordSealer;
  /** The statement shapes of a command on a target (for what a window allows). */
  shapesOf(target: string, command: Command): string[];
}

/** A display-safe summary of facts for approvers. */
function factsSummary(f: CommandFacts): Record<string, unknown> {
  if (f.kind === 'sql') {
    return {
      statements: f.facts.statements.map((s) => ({
        kind: s.kind,
        objectType: s.objectType,
        tablesRead: s.tablesRead,
        tablesWritten: s.tablesWritten,
        hasWhere: s.hasWhere,
        dangerousFunctions: s.dangerousFunctions,
      })),
    };
  }
  return { commands: f.facts.commands.map((c) => ({ program: c.program, args: c.args.slice(0, 20) })), filesWritten: f.facts.filesWritten };
}

export function windowKey(p: Principal, target: string, rule: string): string {
  // KV keys allow [-/_=.a-zA-Z0-9]; the principal is hashed so any sub/iss fits.
  return `w.${sha256Hex(`${p.iss}\n${p.sub}`).slice(0, 24)}.${sha256Hex(`${target}\n${rule}`).slice(0, 16)}`;
}

export class Approvals {
  readonly #d: ApprovalsDeps;
  #loop?: Promise<void>;
  #sub?: Subscription;
  /**
   * Decision ids this broker has seen, kept for twice the allowed clock skew: a vote older than
   * the skew is refused as stale anyway, so the bounded set covers every vote still fresh. Across
   * replicas, the record's own votes (each with its decision id) catch a replay on the same intent.
   */
  readonly #seen: LRUCache<string, true>;
  /** approvals.trustedBots with their keys, made once: a key that is not an Ed25519 key fails the start. */
  readonly #bots: { iss: string; sub: string; key: KeyObject }[];
  /** How long a spent vote token is remembered (the vote-tokens bucket's age, as provision sets it). */
  readonly #tokenLifeMs: number;
  readonly #tokenSkewMs: number;

  constructor(d: ApprovalsDeps) {
    this.#d = d;
    this.#bots = d.config.approvals.trustedBots.map((b, i) => {
      try {
        return { iss: b.iss, sub: b.sub, key: createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b.publicKey }, format: 'jwk' }) };
      } catch (e) {
        throw new WritError('WRIT_CONFIG_INVALID', `approvals.trustedBots[${i}].publicKey: not an Ed25519 public key`, { cause: e });
      }
    });
    this.#tokenLifeMs = approverTokenLifeSec(d.config) * 1000;
    this.#tokenSkewMs = approverTokenSkewSec(d.config) * 1000;
    this.#seen = new LRUCache<string, true>({ max: 200_000, ttl: 2 * d.config.approvals.maxVoteSkewSec * 1000, ttlAutopurge: false });
  }

  /** What a window granted on this pending record would allow (see {@link windowScopeOf}). */
  scopeOf(rec: IntentRecord): WindowScope | undefined {
    if (!rec.pending) return undefined;
    return windowScopeOf(rec, this.#d.shapesOf(rec.target, rec.pending.order.command));
  }

  async start(): Promise<void> {
    const { nc, names: n, log } = this.#d;
    // Votes arrive on core NATS, never captured by a stream: a vote carries its voter's token,
    // and a stream would keep every approver's token for anyone who may read it to replay.
    // A vote sent while no broker listens is unanswered, and the approver's client says so.
    this.#sub = nc.subscribe(n.approvalDecisionAll(), { queue: n.brokerQueue });
    const sub = this.#sub;
    this.#loop = (async () => {
      const running = new Set<Promise<void>>();
      for await (const m of sub) {
        const p = this.#onDecision(m.string())
          .catch((e: unknown) => log.error({ err: e }, 'vote handler failed'))
          .finally(() => running.delete(p));
        running.add(p);
      }
      await Promise.allSettled([...running]);
    })();
  }

  async stop(): Promise<void> {
    await this.#sub?.drain().catch(() => undefined);
    await this.#loop;
  }

  /**
   * An active window that covers this intent: same principal, target and rule, the same human
   * acted for, the policy version the approvers decided under, and no statement (or program)
   * of another shape than the ones they saw. Anything else asks again.
   */
  async activeWindow(p: Principal, target: string, rule: string, o: { facts: CommandFacts; policyVersion: string }): Promise<WindowRecord | undefined> {
    const e = await this.#d.windows.get(windowKey(p, target, rule));
    if (!e || e.operation !== 'PUT') return undefined;
    const w = e.json<WindowRecord>();
    if (!(w.expiresAt > Date.now())) return undefined;
    const scope = scopeOfWindow(w);
    return scope && windowAllows(scope, p, target, rule, o) ? w : undefined;
  }

  /** Creates the pending record and publishes the request. Returns false when the id exists (a duplicate). */
  async open(
    intent: Intent,
    who: VerifiedIdentity,
    target: TargetConfig,
    decision: PolicyDecision,
    facts: CommandFacts,
    commandSha256: string,
    audit: (t: string, p: Record<string, unknown>) => void,
    reply: NonNullable<IntentRecord['reply']>,
  ): Promise<boolean> {
    const spec = decision.approval ?? { groups: ['approvers'], count: 1, timeoutSec: 3600 };
    const now = Date.now();
    // Each pending intent is a record kept until its timeout, and a request shown to every
    // approver: one principal may not leave more than this many waiting (counted fleet-wide, as
    // far as this broker's watch has seen; a burst across replicas can pass it by a few).
    const allowed = this.#d.config.approvals.maxPendingPerPrincipal;
    const held = this.#d.pending.countOf(who.principal, now);
    // (A resend of an intent already pending is not another one: it finds its record below.)
    if (held >= allowed && !this.#d.pending.has(intent.id)) {
      throw new WritError('WRIT_TOO_MANY_PENDING', `${held} intents of this principal are waiting for approval; at most ${allowed} may (approvals.maxPendingPerPrincipal)`, {
        details: { pending: held, max: allowed },
      });
    }
    const expiresAt = Math.min(now + spec.timeoutSec * 1000, intent.deadline ?? Number.MAX_SAFE_INTEGER);
    const rule = decision.rules[0] ?? '(default)';
    // Signed by this broker: votes and dispatch trust only a pending part it wrote.
    const record: IntentRecord = this.#d.sealer.seal({
      intentId: intent.id,
      sessionId: intent.sessionId,
      target: target.name,
      kind: target.kind,
      principal: who.principal,
      state: 'pending',
      decision: { effect: decision.effect, rules: decision.rules, reasons: decision.reasons, mode: decision.mode, policyVersion: decision.policyVersion },
      commandSha256,
      createdAt: now,
      updatedAt: now,
      grant: grantSpecOf(decision),
      reply,
      pending: {
        rule,
        spec,
        expiresAt,
        votes: [],
        // The reply is in `record.reply` (validated by the broker); the order keeps none of its own.
        order: { command: intent.command, mode: decision.mode, limits: decision.limits, ...(decision.masking !== undefined ? { mask: decision.masking } : {}) },
      },
    });
    const windowScope = this.scopeOf(record);
    const req: ApprovalRequest = {
      v: 1,
      type: 'approval.request',
      intentId: intent.id,
      sessionId: intent.sessionId,
      target: target.name,
      requester: who.principal,
      // Approvers see the command with secrets masked (chat platforms are outside the boundary).
      command: redactCommand(intent.command),
      facts: redactDeep(factsSummary(facts)),
      rule,
      reasons: decision.reasons,
      approval: spec,
      expiresAt,
      createdAt: now,
      // The scope is shown exactly as the window would enforce it: identifiers, never masked.
      commandSha256,
      ...(windowScope ? { windowScope } : {}),
      ...(intent.justification ? { justification: redactText(intent.justification) } : {}),
    };
    // Approvers must see what they approve: a request the bus cannot carry is refused before any
    // pending record exists (a record with no request was still approvable, and ran).
    const bytes = enc.encode(JSON.stringify(req));
    const max = maxBody(this.#d.nc);
    if (bytes.length > max) throw new WritError('WRIT_APPROVAL_TOO_LARGE', `the approval request would be ${bytes.length} bytes; the server carries at most ${max}`);
    // Counted before the record is written, in the same turn as the check: the watch brings it
    // back only later, after the checks of every other intent of a burst.
    const counted = !this.#d.pending.has(intent.id);
    if (counted) this.#d.pending.set(intent.id, expiresAt, principalKey(who.principal));
    try {
      await createRecord(this.#d.intents, record);
    } catch {
      if (counted) this.#d.pending.delete(intent.id);
      return false;
    }
    try {
      await this.#d.js.publish(this.#d.names.approvalRequest(target.name), bytes, { msgID: `req-${intent.id}` });
    } catch (e) {
      // The request never reached the approvers: the approval ends here, so no vote can count,
      // and the intent ends failed (fail closed; a resend finds it ended).
      await this.#abandon(record, e);
      throw new WritError('WRIT_TRANSPORT', 'the approval request could not be published; the intent is not approvable', { cause: e });
    }
    audit('approval.requested', { rule, approvers: spec.groups, count: spec.count, expiresAt });
    this.#answer(record, {
      v: 1,
      type: 'outcome',
      intentId: intent.id,
      sessionId: intent.sessionId,
      status: 'pending',
      at: now,
      decision: record.decision!,
      // What the approvers are shown (sealed to the agent like every outcome): the facts, and what a window would allow.
      error: new WritError('WRIT_APPROVAL_REQUIRED', `waiting for ${spec.count} approval(s) from ${spec.groups.join(', ')} until ${new Date(expiresAt).toISOString()}`, {
        details: { facts: req.facts, ...(req.windowScope ? { windowScope: req.windowScope } : {}) },
      }).toReply(),
    });
    return true;
  }

  /** Tells the agent, on the reply the broker validated at intake, sealed to its key; records without one get nothing. */
  #answer(rec: IntentRecord, o: Outcome): void {
    const r = rec.reply;
    if (!r?.to) return;
    // The inbox is recomputed from the record's principal, not taken from the stored reply: a
    // record is the broker's, but the bucket is not only the broker's to write (issue 13).
    const inbox = inboxIdFor(rec.principal.iss, rec.principal.sub);
    try {
      sendReply(this.#d.nc, r.to, sealOutcome(o, r.key), (e) => sealOutcome({ ...o, decision: undefined, error: e.toReply() }, r.key), this.#d.log, inbox);
    } catch (e) {
      this.#d.log.warn({ err: e, intentId: o.intentId }, 'could not seal an outcome; not sent');
    }
  }

  async #onDecision(data: string): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      return;
    }
    const replyTo = (raw as { replyTo?: unknown })?.replyTo;
    const { replyTo: _r, ...rest } = (raw ?? {}) as Record<string, unknown>;
    const parsed = ApprovalDecisionSchema.safeParse(rest);
    if (!parsed.success) {
      // Unverified: no answer anywhere (no deputy); the attempt is evidence.
      await this.#d.audit.appendUnattributed({
        type: 'approval.refused',
        payload: { code: 'WRIT_BAD_REQUEST', ...(replyTo !== undefined ? { replyTo: sanitizeSubject(replyTo) } : {}) },
      });
      return;
    }
    let who: VerifiedIdentity;
    try {
      // Approver tokens have their own audience: an agent's token cannot vote.
      who = await this.#d.identity.verifyApprover(parsed.data.token);
    } catch (e) {
      await this.#d.audit.appendUnattributed({
        type: 'approval.refused',
        payload: { intentId: parsed.data.intentId, code: toWritError(e).code, ...(replyTo !== undefined ? { replyTo: sanitizeSubject(replyTo) } : {}) },
      });
      return;
    }
    // The voter is answered only on its own inbox; a vote naming another subject still counts, unanswered.
    const inbox = inboxIdFor(who.principal.iss, who.principal.sub);
    const mine = isReplySubjectOf(replyTo, inbox);
    if (replyTo !== undefined && !mine) {
      // Refused input of a verified sender: within its own budget, as intake's and the API's.
      await this.#d.audit.appendRefused(
        { sessionId: '_unattributed', type: 'reply.refused', payload: { source: 'approval', intentId: parsed.data.intentId, subject: sanitizeSubject(replyTo), principal: who.principal } },
        principalKey(who.principal),
      );
    }
    const reply = (body: Record<string, unknown>) => mine && sendReply(this.#d.nc, replyTo, body, (e) => ({ accepted: false, code: e.code, message: e.message }), this.#d.log, inbox);
    try {
      const r = await this.#apply(parsed.data, who);
      reply({ accepted: true, status: r });
    } catch (e) {
      const err = toWritError(e);
      // Nothing is redelivered: the voter hears the failure and may vote again.
      reply({ accepted: false, code: err.code, message: err.message });
    }
  }

  /** The human behind an identity: its linked id from approvals.humans, else issuer and subject. */
  #humanOf(iss: string, sub: string): string {
    for (const h of this.#d.config.approvals.humans) if (h.identities.some((i) => i.iss === iss && i.sub === sub)) return `human:${h.id}`;
    return `${iss}\u0000${sub}`;
  }

  /** Verifies one vote and applies it; returns the intent's state afterwards. */
  async #apply(d: ApprovalDecision, who: VerifiedIdentity): Promise<string> {
    const { audit, config } = this.#d;
    let approver: { sub: string; groups: string[]; via: string; iss: string };
    // A trusted bot is its token's issuer AND subject, and speaks for a human only with a vote
    // signed by its own key: a harvested bot token alone votes for no one, not even the bot.
    // A bot may be listed more than once (old and new key while it rotates): any of its keys verifies.
    const bots = this.#bots.filter((b) => b.iss === who.principal.iss && b.sub === who.principal.sub);
    // A human's token votes once: whoever captures a vote message (or its token) cannot cast
    // another vote with it, on this intent or any other, on any replica. Spent before any other
    // check, so a refused vote spends it too. A bot's token is reused: its key signs each vote.
    if (bots.length === 0) await this.#spend(d, who);
    // A vote is fresh and used once: outside the skew it is stale, and a decision id seen before
    // (on this intent or another, from this token or another) is a replay (for a bot's votes, whose
    // token is not spent, the guard that matters). Remembered before the vote is applied, so two
    // copies racing count once.
    if (Math.abs(Date.now() - d.at) > config.approvals.maxVoteSkewSec * 1000) {
      throw await this.#refuse(d, who.principal.sub, new WritError('WRIT_VOTE_STALE', `the vote was cast at ${new Date(d.at).toISOString()}, outside the allowed clock skew`));
    }
    if (this.#seen.has(d.decisionId)) throw await this.#refuse(d, who.principal.sub, new WritError('WRIT_VOTE_REPLAYED'));
    this.#seen.set(d.decisionId, true);
    if (d.onBehalfOf || bots.length > 0) {
      if (bots.length === 0) throw await this.#refuse(d, who.principal.sub, new WritError('WRIT_APPROVER_NOT_ALLOWED', `${who.principal.sub} is not a trusted approver bot`));
      if (!d.onBehalfOf) throw await this.#refuse(d, who.principal.sub, new WritError('WRIT_APPROVER_NOT_ALLOWED', 'a trusted bot votes only on behalf of a human it maps'));
      if (!bots.some((b) => verifyVote(d, b.key))) {
        throw await this.#refuse(d, who.principal.sub, new WritError('WRIT_VOTE_SIGNATURE', `the vote is not signed with the key listed for ${who.principal.sub}`));
      }
      approver = { sub: d.onBehalfOf.sub, groups: d.onBehalfOf.groups, via: `${d.onBehalfOf.via}:${who.principal.sub}`, iss: who.principal.iss };
    } else approver = { sub: who.principal.sub, groups: who.principal.groups, via: 'token', iss: who.principal.iss };

    let rejecting = false; // this vote marked the end (a rejection retried after a conflict)
    for (let attempt = 0; attempt < 100; attempt++) {
      const entry = await getRecord(this.#d.intents, d.intentId);
      if (!entry) throw new WritError('WRIT_NOT_FOUND');
      const rec = entry.rec;
      const p = rec.pending;
      if (rec.state !== 'pending' || !p) throw await this.#refuse(d, approver.sub, new WritError('WRIT_NOT_PENDING', `the intent is ${rec.state}`), rec);
      // The approver groups, count and what would run come from this record: only a broker's counts.
      // (A planted record's session is not trusted either: the refusal is audited under _unattributed.)
      try {
        this.#d.sealer.check(rec);
      } catch (e) {
        throw await this.#refuse(d, approver.sub, e as WritError);
      }
      // The digest the broker signed is of this very command text.
      if (sha256Hex(commandText(p.order.command)) !== rec.commandSha256)
        throw await this.#refuse(d, approver.sub, new WritError('WRIT_RECORD_TAMPERED', 'the pending command does not match its digest'));
      if (p.expiresAt <= Date.now()) throw await this.#refuse(d, approver.sub, new WritError('WRIT_NOT_PENDING', 'the approval request has expired'), rec);
      // Ended once, for good: a worker's login can write the intents bucket, and putting back a
      // revision from while it was pending (signed, votes and all) revived a rejected, cancelled or
      // finished intent, whose next vote then ran it. The end is marked where only brokers write.
      if (!rejecting && (await this.#hasEnded(rec.intentId))) throw await this.#refuse(d, approver.sub, new WritError('WRIT_NOT_PENDING', 'the approval has already ended'), rec);
      // The vote is for the command the approver was shown, by its hash: another one (a stale or
      // forged request, a vote moved to another intent) does not count.
      if (d.commandSha256 !== rec.commandSha256) {
        throw await this.#refuse(d, approver.sub, new WritError('WRIT_VOTE_MISMATCH', 'the vote names another command hash than the one pending approval'), rec);
      }
      // Another replica may have seen this decision id: the record keeps every counted vote's.
      if (p.votes.some((v) => v.decisionId === d.decisionId)) throw await this.#refuse(d, approver.sub, new WritError('WRIT_VOTE_REPLAYED'), rec);
      // Self-approval, by human: the voter and the human its token acts for (RFC 8693 `act`)
      // against the requester and the human the request acts for, each resolved through
      // approvals.humans (one person's several identities), else by issuer and subject.
      const human = (iss: string, sub: string) => this.#humanOf(iss, sub);
      const voterHumans = [human(approver.iss, approver.sub), ...(who.principal.actFor && !d.onBehalfOf ? [human(who.principal.iss, who.principal.actFor)] : [])];
      const requesterHumans = [human(rec.principal.iss, rec.principal.sub), ...(rec.principal.actFor !== undefined ? [human(rec.principal.iss, rec.principal.actFor)] : [])];
      if (voterHumans.some((h) => requesterHumans.includes(h))) {
        throw await this.#refuse(d, approver.sub, new WritError('WRIT_SELF_APPROVAL'), rec);
      }
      if (!approver.groups.some((g) => p.spec.groups.includes(g))) {
        throw await this.#refuse(d, approver.sub, new WritError('WRIT_APPROVER_NOT_ALLOWED', `approvers must be in ${p.spec.groups.join(', ')}`), rec);
      }
      // The count is reached: the vote that reached it dispatches from the revision it wrote, so
      // no later vote may write the record under it.
      if (d.verdict !== 'reject' && p.votes.length >= p.spec.count) {
        throw await this.#refuse(d, approver.sub, new WritError('WRIT_NOT_PENDING', 'the approval is complete'), rec);
      }
      const now = Date.now();
      let next: IntentRecord;
      if (d.verdict === 'reject') {
        if (!rejecting && !(await this.#markEnded(rec.intentId, 'rejected'))) {
          throw await this.#refuse(d, approver.sub, new WritError('WRIT_NOT_PENDING', 'the approval has already ended'), rec);
        }
        rejecting = true;
        // An ended approval keeps no pending part: it holds the raw command (see withoutPending).
        next = {
          ...withoutPending(rec),
          state: 'rejected',
          updatedAt: now,
          error: new WritError('WRIT_APPROVAL_REJECTED', d.reason ? `rejected by ${approver.sub}: ${d.reason}` : `rejected by ${approver.sub}`).toReply(),
        };
      } else {
        // The same approver voting twice counts once.
        // Distinct humans count: a vote speaks for every human it names (the voter, and the human
        // its token acts for), and one that shares any of them with a counted vote counts once,
        // whichever came first (an assistant acting for dora, then dora, counted twice).
        const votedBy = new Set(p.votes.flatMap((v) => v.humans ?? [v.human ?? v.sub]));
        const counted = voterHumans.some((h) => votedBy.has(h)) || p.votes.some((v) => !v.human && v.sub === approver.sub);
        const votes = counted
          ? p.votes
          : [
              ...p.votes,
              {
                sub: approver.sub,
                human: voterHumans[0]!,
                humans: [...new Set(voterHumans)],
                at: now,
                decisionId: d.decisionId,
                via: approver.via,
                ...(d.windowSec ? { windowSec: d.windowSec } : {}),
              },
            ];
        if (votes === p.votes) {
          await audit.append({
            sessionId: rec.sessionId,
            intentId: rec.intentId,
            type: 'approval.vote',
            payload: { by: approver.sub, via: approver.via, verdict: d.verdict, counted: false, reason: 'already voted' },
          });
          return rec.state;
        }
        // Re-signed with the vote: the count trusts only votes this broker wrote.
        next = this.#d.sealer.seal({ ...rec, pending: { ...p, votes }, updatedAt: now });
      }
      let revision: number;
      try {
        revision = await updateRecord(this.#d.intents, next, entry.revision);
      } catch {
        continue; // another vote landed first: read again and re-apply
      }
      await audit.append({
        sessionId: rec.sessionId,
        intentId: rec.intentId,
        type: 'approval.vote',
        payload: { by: approver.sub, via: approver.via, verdict: d.verdict, reason: d.reason, counted: true, windowSec: d.windowSec },
      });
      if (next.state === 'rejected') {
        await this.#ended(next, [approver.sub], d.reason);
        return 'rejected';
      }
      if (next.pending!.votes.length >= p.spec.count) {
        // Only the vote whose compare-and-set completed the count gets here, so one dispatch; and
        // only once per intent whatever the record says later (the mark is create-only).
        if (!(await this.#markEnded(rec.intentId, 'dispatched'))) throw await this.#refuse(d, approver.sub, new WritError('WRIT_NOT_PENDING', 'the approval has already ended'), rec);
        try {
          await this.#d.dispatch(next, revision);
        } catch (e) {
          const err = toWritError(e);
          if (err.code !== 'WRIT_DECISION_CHANGED') throw e;
          // Approved, but the policy now decides otherwise: it ends rejected, and nothing runs.
          const ended: IntentRecord = { ...withoutPending(next), state: 'rejected', updatedAt: Date.now(), error: err.toReply() };
          await updateRecord(this.#d.intents, ended, revision);
          await this.#ended(
            ended,
            next.pending!.votes.map((v) => v.sub),
            err.message,
          );
          return 'rejected';
        }
        await this.#grantWindow(next);
        await this.#ended(
          { ...next, state: 'dispatched' },
          next.pending!.votes.map((v) => v.sub),
        );
        return 'dispatched';
      }
      return 'pending';
    }
    throw new WritError('WRIT_INTERNAL', 'too many concurrent votes');
  }

  /**
   * Marks a human's vote token spent, across replicas (one create per key can succeed). Refuses
   * a token spent before, and a token that could outlive the record of its spending (a config
   * whose approver tokens live longer than the bucket keeps entries). Fails closed: a bucket
   * that cannot be written refuses the vote.
   */
  async #spend(d: ApprovalDecision, who: VerifiedIdentity): Promise<void> {
    const by = who.principal.sub;
    if (who.exp * 1000 + this.#tokenSkewMs - Date.now() > this.#tokenLifeMs) {
      throw await this.#refuse(d, by, new WritError('WRIT_TOKEN_LIFETIME', 'the approver token lives longer than a spent vote token is remembered'));
    }
    const key = voteTokenKey(who.principal.iss, d.token);
    try {
      await this.#d.voteTokens.create(key, enc.encode(JSON.stringify({ at: Date.now(), intentId: d.intentId, decisionId: d.decisionId })));
      return;
    } catch (e) {
      let spent = false;
      try {
        const entry = await this.#d.voteTokens.get(key);
        spent = !!entry && entry.operation === 'PUT';
      } catch {
        spent = false;
      }
      if (spent) throw await this.#refuse(d, by, new WritError('WRIT_VOTE_TOKEN_SPENT'));
      throw await this.#refuse(d, by, new WritError('WRIT_TRANSPORT', 'the vote token could not be recorded as spent; vote again', { cause: e }));
    }
  }

  async #refuse(d: ApprovalDecision, by: string, err: WritError, rec?: IntentRecord): Promise<WritError> {
    // A refused vote is refused input of a verified voter: stored within the voter's budget (a
    // spent token sent again and again was one event each), counted past it.
    await this.#d.audit.appendRefused(
      {
        sessionId: rec?.sessionId ?? '_unattributed',
        intentId: rec?.intentId,
        type: 'approval.refused',
        payload: { by, verdict: d.verdict, code: err.code, message: err.message, intentId: d.intentId, decisionId: d.decisionId },
      },
      `voter:${by}`,
    );
    return err;
  }

  /** Announces how a pending intent ended (bots update their messages) and answers a waiting agent. */
  async #ended(rec: IntentRecord, by: string[], reason?: string): Promise<void> {
    const status = rec.state as ApprovalOutcome['status'];
    const out: ApprovalOutcome = { v: 1, type: 'approval.outcome', intentId: rec.intentId, status, by, at: Date.now(), ...(reason ? { reason } : {}) };
    await this.#d.js.publish(this.#d.names.approvalOutcome(rec.intentId), enc.encode(JSON.stringify(out)));
    await this.#d.audit.append({ sessionId: rec.sessionId, intentId: rec.intentId, type: `approval.${status}`, payload: { by, reason } });
    if (status !== 'dispatched') {
      this.#answer(rec, { v: 1, type: 'outcome', intentId: rec.intentId, sessionId: rec.sessionId, status: rec.state, at: Date.now(), ...(rec.error ? { error: rec.error } : {}) });
    }
  }

  /**
   * An approval may grant a window, capped by the rule: the smallest window any approver granted.
   * It holds exactly the scope the approvers were shown ({@link scopeOf}), nothing wider.
   */
  async #grantWindow(rec: IntentRecord): Promise<void> {
    const p = rec.pending!;
    const scope = this.scopeOf(rec);
    if (!scope) return;
    const asked = p.votes.map((v) => v.windowSec ?? 0);
    const sec = Math.min(...asked, scope.maxSec);
    if (!(sec > 0)) return;
    const now = Date.now();
    const w: WindowRecord = {
      id: windowKey(rec.principal, scope.target, scope.rule),
      sub: scope.requester.sub,
      iss: scope.requester.iss,
      target: scope.target,
      rule: scope.rule,
      expiresAt: now + sec * 1000,
      grantedBy: p.votes.map((v) => v.sub),
      approverGroups: p.spec.groups,
      createdAt: now,
      ...(scope.actFor !== null ? { actFor: scope.actFor } : {}),
      policyVersion: scope.policyVersion,
      shapes: scope.shapes,
    };
    await this.#d.windows.put(w.id, enc.encode(JSON.stringify(w)));
    await this.#d.audit.append({
      sessionId: rec.sessionId,
      intentId: rec.intentId,
      type: 'window.granted',
      payload: { windowId: w.id, principal: w.sub, target: w.target, rule: w.rule, seconds: sec, grantedBy: w.grantedBy },
    });
  }

  /** A pending record whose request was never published: ended (best effort) so that no vote can count. */
  async #abandon(rec: IntentRecord, cause: unknown): Promise<void> {
    try {
      await this.#markEnded(rec.intentId, 'failed');
      const entry = await getRecord(this.#d.intents, rec.intentId);
      if (entry?.rec.state !== 'pending') return;
      const error = new WritError('WRIT_TRANSPORT', 'the approval request could not be published; nothing was approved or run');
      await updateRecord(this.#d.intents, { ...withoutPending(entry.rec), state: 'failed', updatedAt: Date.now(), error: error.toReply() }, entry.revision);
    } catch (e) {
      // The end marker, if it was stored, already refuses every vote.
      this.#d.log.error({ err: e, cause, intentId: rec.intentId }, 'a pending intent whose approval request was not published could not be ended');
    }
  }

  /** Whether a record's pending part is a broker's, unchanged: only such a request is shown to approvers. */
  sealedByBroker(rec: IntentRecord): boolean {
    try {
      this.#d.sealer.check(rec);
      return true;
    } catch {
      return false;
    }
  }

  /** Ends a pending intent on expiry or cancel (sweeper and API). */
  async end(id: string, state: 'expired' | 'cancelled', by: string): Promise<boolean> {
    const entry = await getRecord(this.#d.intents, id);
    if (!entry) return false;
    const rec = entry.rec;
    if (rec.state !== 'pending') return false;
    await this.#markEnded(id, state);
    const error = state === 'expired' ? new WritError('WRIT_APPROVAL_EXPIRED') : new WritError('WRIT_CANCELLED');
    const next: IntentRecord = { ...withoutPending(rec), state, updatedAt: Date.now(), error: error.toReply() };
    try {
      await updateRecord(this.#d.intents, next, entry.revision);
    } catch {
      return false;
    }
    await this.#ended(next, [by]);
    return true;
  }

  /** Marks the approval of `intentId` ended; false when it had ended before (create-only). */
  async #markEnded(intentId: string, how: string): Promise<boolean> {
    try {
      await this.#d.ends.create(`approval-end.${intentId}`, enc.encode(JSON.stringify({ how, at: Date.now() })));
      return true;
    } catch (e) {
      // The key exists: ended before. Anything else (the bucket unreachable) fails closed.
      if (await this.#hasEnded(intentId)) return false;
      throw e;
    }
  }

  async #hasEnded(intentId: string): Promise<boolean> {
    const e = await this.#d.ends.get(`approval-end.${intentId}`);
    return e !== null && e.operation === 'PUT';
  }

  async listWindows(): Promise<WindowRecord[]> {
    const out: WindowRecord[] = [];
    const keys = await this.#d.windows.keys();
    for await (const k of keys) {
      const e = await this.#d.windows.get(k);
      if (e?.operation === 'PUT') {
        const w = e.json<WindowRecord>();
        if (w.expiresAt > Date.now()) out.push(w);
      }
    }
    return out;
  }

  async revokeWindow(id: string, by: Principal, sessionId = '_windows'): Promise<void> {
    const e = await this.#d.windows.get(id);
    if (!e || e.operation !== 'PUT') throw new WritError('WRIT_NOT_FOUND');
    const w = e.json<WindowRecord>();
    if (!by.groups.some((g) => w.approverGroups.includes(g)) && by.sub !== w.sub) throw new WritError('WRIT_APPROVER_NOT_ALLOWED', "only the rule's approvers or the holder can revoke a window");
    await this.#d.windows.delete(id);
    await this.#d.audit.append({ sessionId, type: 'window.revoked', payload: { windowId: id, by: by.sub, principal: w.sub, target: w.target, rule: w.rule } });
  }
}

/**
 * The record without its pending part, for an approval that ended without running: that part
 * holds the raw command to sign once approved (the audit log and the approvers get it
 * redacted), and the votes, which the audit log keeps.
 */
function withoutPending({ pending: _p, ...rec }: IntentRecord): IntentRecord {
  return rec;
}
