/**
 * The decision service. For each intent (a core NATS request from an agent): intake, identity,
 * classification, policy, then one compare-and-set create of the intent's record (the first
 * durable state, which also makes a resubmitted id a no-op), the signed order, and the audit
 * events. The intent is acknowledged (its receipt) only once all of that is stored, so nothing
 * acknowledged is lost on a crash: an agent that got no receipt asks again under the same id,
 * which finds the record and re-sends the same order (the claim makes it harmless).
 */
import { createPrivateKey, randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { AuditWriter, Checkpointer, serviceAuditKey, type HeadBoard } from '../audit/index.ts';
import { readFileSync } from 'node:fs';
import {
  createRecord,
  endSpan,
  getRecord,
  principalKey,
  updateRecord,
  lazyChild,
  SpanKind,
  startSpan,
  traceContextOf,
  traceHeaders,
  traceIdOf,
  type BrokerOutcome,
  type ServiceMetrics,
  type Span,
} from '../lib/index.ts';
import {
  headerBytes,
  inboxIdFor,
  isReplySubjectOf,
  sanitizeSubject,
  sealKeyPairFromSecret,
  sealOutcome,
  sendReply,
  serveConcurrently,
  withDeadline,
  type ServeLoop,
  type LocalHandover,
  type Logger,
  type SealKeyPair,
} from '../lib/index.ts';
import {
  ATTEMPT_HEADER,
  buildOutcome,
  commandText,
  DispatchReplySchema,
  AgentIdSchema,
  sha256Hex,
  toWritError,
  WritError,
  X25519KeySchema,
  type Config,
  type GrantClaims,
  type GrantSigner,
  type Intent,
  type IntentReceipt,
  type IntentRecord,
  type Names,
  type Order,
  type OrderBody,
  type Outcome,
  type TargetConfig,
} from '../schemas/index.ts';
import { createCommandClassifier, type ClassifyCommand } from './classify-command.ts';
import { SessionOwners } from './sessions.ts';
import { sealCommandForAuditors } from '../audit/index.ts';
import { commandShapes } from './approvals.ts';
import { RecordSealer } from './seal-record.ts';
import { buildGrantClaims, grantSpecOf } from './grants.ts';
import type { IdentityVerifier, VerifiedIdentity } from './identity.ts';
import { intake, MAX_INTENT_HEADER_BYTES, tokenIn, type Refusal } from './intake.ts';
import type { PolicyDecision, PolicyEngine } from './policy.ts';
import { provision, type Buckets } from './provision.ts';
import { ApiService, outcomeOf } from './api.ts';
import { PendingIndex, Sweeper } from './sweeper.ts';
import { Approvals } from './approvals.ts';
import { redactCommand, redactDeepOnce, redactText, withRedactedReasons } from './redact.ts';

export type BrokerState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED';

export interface BrokerDeps {
  nc: NatsConnection;
  config: Config;
  names: Names;
  log: Logger;
  identity: IdentityVerifier;
  /** The policy, or a factory that builds it once the buckets exist (the hot-reloading engine reads writ_policy). */
  policy: PolicyEngine | ((ctx: { kv: Buckets; audit: AuditWriter }) => Promise<PolicyEngine & { stop?(): Promise<void> }>);
  signer: GrantSigner;
  /** Broker replica id, for audit actors. */
  id?: string;
  /** Per-intent metrics (lib/metrics-types.ts); none when the process serves no /metrics. */
  metrics?: ServiceMetrics | undefined;
  /** Audit heads shared with the other writers of this process (audit/types.ts HeadBoard). */
  auditHeads?: HeadBoard | undefined;
  /** Where this broker hands orders to a worker of the same process without the bus (lib/handover.ts). */
  handover?: LocalHandover | undefined;
}

const enc = new TextEncoder();
/**
 * How long a broker waits for a worker to take an order directly before it queues it. A worker
 * answers once its claim is stored (a bucket write), so this is the claim's round trip with
 * room for a busy bus; the agent's receipt waits for it (the agent asks again after 2 s).
 */
const DIRECT_ORDER_MS = 1_000;

/** Requests started beyond `limits.concurrency` wait in a backlog of at most this many times it … */
const INTAKE_BACKLOG_FACTOR = 16;
/** … and of at most this many bytes; past either, an intent is dropped unanswered and its agent asks again. */
const INTAKE_BACKLOG_BYTES = 64 * 1024 * 1024;
/**
 * Intents a second from senders the broker has not verified yet (an agent's first, or a flood):
 * 8 per place of `limits.concurrency`, at least 200. A flood of 8,700 a second of intents with a
 * bogus token held a broker's event loop for seconds; at 2,000 a second it kept up.
 */
const INTAKE_REST_RATE_FACTOR = 8;
const INTAKE_REST_MIN_RATE = 200;

/** Where and how an intent is answered, once validated against its verified sender (IntentRecord.reply). */
export type ReplySpec = NonNullable<IntentRecord['reply']>;

/**
 * The broker's results key: an X25519 pair derived from the grant-signing key, so every replica
 * has it without another secret to distribute, and it rotates with that key. Workers seal the
 * durable outcome in the intent's record to it; the API opens it and re-seals to the asking agent's key.
 */
function resultsKeyFromGrantKey(pem: string): SealKeyPair {
  const d = createPrivateKey(pem).export({ format: 'jwk' }).d;
  if (!d) throw new WritError('WRIT_INTERNAL', 'the grant key has no private part');
  return sealKeyPairFromSecret(Buffer.from(d, 'base64url'), 'results');
}

export class Broker {
  state: BrokerState = 'INITIALIZED';
  readonly id: string;
  readonly #d: BrokerDeps;
  #warnedDispatchDenied = false;
  #js!: JetStreamClient;
  #jsm!: JetStreamManager;
  #kv!: Buckets;
  #audit!: AuditWriter;
  #loop?: ServeLoop;
  /** Intents taken in the first lane of intake, and the known token they were taken for. */
  readonly #firstLane = new WeakMap<Msg, string>();
  #api?: ApiService;
  #sweeper?: Sweeper;
  #approvals!: Approvals;
  #policy!: PolicyEngine & { stop?(): Promise<void> };
  #checkpointer?: Checkpointer;
  #store!: SealKeyPair;
  readonly #targets: Map<string, TargetConfig>;
  readonly #classify: ClassifyCommand;
  #sessions!: SessionOwners;
  #sealer!: RecordSealer;
  /** The span of each intent being handled: its trace context goes on the order and the reply. */
  readonly #traces = new Map<string, Span>();

  constructor(deps: BrokerDeps) {
    this.#d = deps;
    this.id = deps.id ?? `broker-${randomUUID().slice(0, 8)}`;
    this.#targets = new Map(deps.config.targets.map((t) => [t.name, t]));
    this.#classify = createCommandClassifier(deps.config.limits);
  }

  get buckets(): Buckets {
    return this.#kv;
  }

  /** What the bounded in-memory caches hold now (the soak benchmark prints it). */
  get caches(): { factsBytes: number; factsEntries: number; sessionOwners: number } {
    return { factsBytes: this.#classify.cachedBytes, factsEntries: this.#classify.cachedEntries, sessionOwners: this.#sessions?.cachedSessions ?? 0 };
  }

  /** The audit writer's counters (metrics). */
  get auditStats(): AuditWriter['stats'] | undefined {
    return this.#audit?.stats;
  }

  /** Intents taken and not started yet, and those dropped for a full backlog (metrics). */
  get intake(): { backlog: number; dropped: number; restDropped: number } | undefined {
    return this.#loop ? { backlog: this.#loop.backlog, dropped: this.#loop.dropped, restDropped: this.#loop.restDropped } : undefined;
  }

  /** API requests dropped on arrival: all, and those past their principal's rate (metrics and tests). */
  get apiDropped(): { all: number; senderRate: number } | undefined {
    return this.#api?.dropped;
  }

  /** Intents waiting for approval, as this broker's sweeper follows them (metrics). */
  get pendingApprovals(): number | undefined {
    return this.#sweeper?.pendingIds().length;
  }

  async start(): Promise<void> {
    const { nc, names: n, config } = this.#d;
    this.#js = jetstream(nc);
    this.#jsm = await jetstreamManager(nc);
    this.#kv = await provision(nc, this.#jsm, n, config);
    this.#sessions = new SessionOwners(this.#kv.sessions, config.limits.sessionOwnersMax);
    this.#sealer = new RecordSealer(readFileSync(config.grants.keyFile, 'utf8'));
    // Every block this broker appends is signed with its own key (audit/keys.ts).
    const auditKey = serviceAuditKey(config, 'broker', (e) => this.#d.log.error({ err: e }, 'audit key registry unreadable'));
    this.#d.log.info({ auditKeyId: auditKey.keyId }, 'audit signing key');
    this.#audit = new AuditWriter({
      js: this.#js,
      jsm: this.#jsm,
      names: n,
      actor: { kind: 'broker', id: this.id },
      flushMs: config.audit.flushMs,
      logger: this.#d.log,
      signer: auditKey.signer,
      board: this.#d.auditHeads,
    });
    // Signed checkpoints over the heads this broker wrote, with the broker's key: a truncated
    // log, a doctored restore or a dropped session then fails `writ audit verify`.
    const grantKeyPem = readFileSync(config.grants.keyFile, 'utf8');
    this.#store = resultsKeyFromGrantKey(grantKeyPem);
    this.#checkpointer = new Checkpointer({
      js: this.#js,
      jsm: this.#jsm,
      names: n,
      actor: { kind: 'broker', id: this.id },
      privateKey: grantKeyPem,
      writers: this.#audit,
      intervalMs: config.audit.checkpointSec * 1000,
      logger: this.#d.log,
      signer: auditKey.signer,
      // With a registry, a checkpoint covers only blocks whose signatures it verified.
      ...(auditKey.signers ? { signers: auditKey.signers, allowUnsignedBefore: config.audit.allowUnsignedBefore } : {}),
    });
    this.#checkpointer.start();
    this.#policy = typeof this.#d.policy === 'function' ? await this.#d.policy({ kv: this.#kv, audit: this.#audit }) : this.#d.policy;
    // Intents are core requests shared by the replicas' queue group: not stored on the way in
    // (the record is the first durable state, and the agent's token is never kept in a stream).
    this.#loop = serveConcurrently(nc, n.intentAll(), n.brokerQueue, (m) => this.#handle(m), {
      maxInFlight: config.limits.concurrency,
      maxBacklog: config.limits.concurrency * INTAKE_BACKLOG_FACTOR,
      maxBacklogBytes: INTAKE_BACKLOG_BYTES,
      log: this.#d.log,
      // Agents whose token this broker verified and still holds go first: a flood from senders
      // it does not know (anyone with a login on the bus) is dropped before it crowds them out.
      lane: (m) => {
        if (m.data.length > config.limits.maxIntentBytes) return 'rest';
        const token = tokenIn(m.data, config.identity.maxTokenBytes);
        const sender = token === undefined ? undefined : this.#d.identity.knownAs(token);
        if (sender === undefined) return 'rest';
        this.#firstLane.set(m, token!);
        // Known principals take turns: one's flood waits behind its own intents, not others'.
        return { first: sender };
      },
      // Senders the broker does not know yet: at most this many intents a second are handled.
      restRate: Math.max(INTAKE_REST_MIN_RATE, config.limits.concurrency * INTAKE_REST_RATE_FACTOR),
    });
    // Pending intents, fleet-wide: the sweeper's watch fills it, approvals count a principal's.
    const pending = new PendingIndex();
    this.#approvals = new Approvals({
      nc,
      pending,
      js: this.#js,
      jsm: this.#jsm,
      intents: this.#kv.intents,
      windows: this.#kv.windows,
      voteTokens: this.#kv.voteTokens,
      ends: this.#kv.sessions,
      names: n,
      config,
      identity: this.#d.identity,
      audit: this.#audit,
      log: this.#d.log,
      dispatch: (rec, revision) => this.#dispatchApproved(rec, revision),
      sealer: this.#sealer,
      shapesOf: (t, command) => {
        const tc = this.#targets.get(t);
        return tc ? commandShapes(this.#classify(tc, command)) : ['?'];
      },
    });
    await this.#approvals.start();
    this.#sweeper = new Sweeper({ kv: this.#kv, js: this.#js, names: n, audit: this.#audit, log: this.#d.log, intervalMs: config.limits.sweepIntervalMs, approvals: this.#approvals, pending });
    this.#api = new ApiService({
      nc,
      names: n,
      kv: this.#kv,
      js: this.#js,
      jsm: this.#jsm,
      identity: this.#d.identity,
      audit: this.#audit,
      log: this.#d.log,
      approvals: this.#approvals,
      sweeper: this.#sweeper,
      policy: () => this.#policy,
      targets: this.#targets,
      classify: this.#classify,
      sessions: this.#sessions,
      resultsKey: this.#store,
      resultsMaxAgeSec: config.results.maxAgeSec,
      maxCommandBytes: config.limits.maxIntentBytes,
      concurrency: config.limits.concurrency,
      maxTokenBytes: config.identity.maxTokenBytes,
    });
    this.#api.start();
    await this.#sweeper.start();
    this.state = 'RUNNING';
    this.#d.log.info({ broker: this.id, policy: this.#policy.version }, 'broker running');
  }

  /**
   * Stop taking intents, finish those in flight, flush audit. Each step waits on NATS, so
   * the whole drain has a deadline: with the server gone, stop() still returns (what was in
   * flight is then asked again by its agent of another replica, or ended by the sweeper).
   */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (this.state === 'STOPPED') return;
    this.state = 'DRAINING';
    this.#sweeper?.stop();
    const graceful = (async () => {
      // Take nothing new anywhere at once; then finish what is in flight.
      await Promise.all([this.#api?.stop(), this.#approvals?.stop(), this.#loop?.drain()]);
      await this.#policy?.stop?.();
      await this.#audit?.flush();
      await this.#checkpointer?.close();
      await this.#audit?.close();
    })();
    if (!(await withDeadline(graceful, deadlineMs))) {
      this.#d.log.error({ deadlineMs }, "broker stop passed its deadline; in-flight intents are left to their agents' resends");
      // Whatever evidence is still unstored is logged in full by the writer, never dropped silently.
      await this.#audit?.close(0).catch(() => undefined);
    }
    this.state = 'STOPPED';
  }

  async #handle(m: Msg): Promise<void> {
    const now = Date.now();
    const subjectTarget = this.#d.names.intentTarget(m.subject) ?? '';
    const hb = headerBytes(m);
    const r = intake(m.data, subjectTarget, this.#d.config.limits.maxIntentBytes, hb);
    // Taken in the first lane for a known token it named: if that is not the token it carries
    // (malformed, or another token field first), the token loses its place there for a while.
    const judged = this.#firstLane.get(m);
    if (judged !== undefined && (!r.ok || r.intent.token !== judged)) this.#d.identity.demote(judged);
    // Headers are decoded only once their size is known to be small (intake refuses the rest).
    const headersRead = hb !== undefined && hb <= MAX_INTENT_HEADER_BYTES;
    // The intent's span continues the agent's trace (its traceparent header), or starts one.
    const span = startSpan('writ.broker.intent', { parent: headersRead ? traceContextOf(m.headers) : undefined, kind: SpanKind.CONSUMER });
    if (!r.ok) {
      // A send the agent says it made before (its SDK counts them) may have been stored by
      // another broker, and may run: this one refuses only this send (its error receipt), and
      // tells the intent's own subject nothing. A `denied` there ended a run whose first send ran.
      const resend = headersRead && attemptOf(m) > 1;
      const who = await this.#refuse(r.refusal, r.refusal.reply, lazyChild(this.#d.log, { traceId: traceIdOf(span) }), !resend);
      this.#receipt(m, who, { v: 1, type: 'error', error: r.refusal.error.toReply() });
      this.#observe(subjectTarget, 'refused', now, span, r.refusal.error.code);
      return;
    }
    const intent = r.intent;
    span.setAttributes({ 'writ.intent_id': intent.id, 'writ.session_id': intent.sessionId, 'writ.target': intent.target });
    // Every line logged about this intent carries its ids and its trace id.
    const t: IntentTurn = { log: lazyChild(this.#d.log, { intentId: intent.id, sessionId: intent.sessionId, traceId: traceIdOf(span) }), steps: [] };
    this.#traces.set(intent.id, span);
    try {
      await this.#process(intent, attemptOf(m), t);
      // Refused without a record of its own (another principal's session or intent id): an
      // error, so that submit() never takes it for stored.
      this.#receipt(m, t.who, t.refused ? { v: 1, type: 'error', error: t.refused.toReply() } : { v: 1, type: 'receipt', intentId: intent.id, duplicate: t.steps.includes('intent.duplicate') });
      this.#observe(intent.target, brokerOutcome(t.steps), now, span);
    } catch (e) {
      // An error's text may quote the command (a parser's message, a driver's): it is masked
      // before it is logged, audited or answered, as a decision's reasons are.
      const raw = toWritError(e);
      const err = new WritError(raw.code, redactText(raw.message));
      t.log.error({ code: err.code, message: err.message, stack: e instanceof Error ? e.stack?.split('\n').slice(1).join('\n') : undefined }, 'intent processing failed');
      // Answered as retryable, and the agent sends the intent again under the same id (the SDK
      // backs off, never past the intent's deadline), when a resend can finish what this one
      // began: a retryable failure (NATS could not take a write), a failure after the intent's
      // record exists (a stored record re-sends its order through the duplicate path), or one
      // while this broker stops (its audit writer closing under it). Only a failure before
      // anything was stored is a refusal: a denial sent for a half-done intent once reached an
      // agent whose intent then ran.
      const finishable = err.retryable || this.state !== 'RUNNING' || (await this.#recordExists(intent.id));
      if (finishable) {
        const retry = err.retryable ? err : new WritError('WRIT_TRANSPORT', `the broker could not finish intent ${intent.id} (${err.code}); send it again under the same id`);
        this.#receipt(m, t.who, { v: 1, type: 'error', error: retry.toReply() });
        this.#observe(intent.target, 'retried', now, span, err.code);
      } else {
        const who = await this.#refuse({ error: err, partial: intent }, { replyKey: intent.replyKey, replyTo: intent.replyTo }, t.log).catch(() => undefined);
        this.#receipt(m, who, { v: 1, type: 'error', error: err.toReply() });
        this.#observe(intent.target, 'failed', now, span, err.code);
      }
    } finally {
      if (this.#traces.get(intent.id) === span) this.#traces.delete(intent.id);
    }
  }

  /** Whether a record is stored under `id` (true when the bucket cannot say: assume it may be). */
  async #recordExists(id: string): Promise<boolean> {
    return getRecord(this.#kv.intents, id).then(
      (e) => e !== undefined && e !== null,
      () => true,
    );
  }

  /**
   * The intent's receipt, on the request's reply subject: only to a sender whose token verified,
   * and only under its own inbox (no deputy). Anyone else gets nothing and, seeing no answer,
   * can only ask again.
   */
  #receipt(m: Msg, who: VerifiedIdentity | undefined, receipt: IntentReceipt): void {
    if (!who || !m.reply || !isReplySubjectOf(m.reply, inboxIdFor(who.principal.iss, who.principal.sub))) return;
    try {
      // Small by construction: an error's message is cut (a refusal can quote the intent).
      const r = receipt.type === 'error' ? { ...receipt, error: { code: receipt.error.code, message: receipt.error.message.slice(0, 2_048) } } : receipt;
      m.respond(enc.encode(JSON.stringify(r)));
    } catch (e) {
      // The connection is gone: the agent sees no answer and asks again.
      this.#d.log.debug({ err: e }, 'receipt not sent');
    }
  }

  #observe(target: string, outcome: BrokerOutcome, startedMs: number, span: Span, code?: string): void {
    this.#d.metrics?.intentHandled(target, outcome, (Date.now() - startedMs) / 1000);
    endSpan(span, outcome, code);
  }

  /**
   * Answers and audits what could not become an intent. Answered only when the sender is
   * verified, its replyTo is under its own inbox and it gave a key to seal to; an unverified
   * sender gets nothing (no deputy), and is audited under `_unattributed`.
   */
  async #refuse(ref: Refusal, raw: { replyKey?: string | undefined; replyTo?: unknown } = {}, log: Logger = this.#d.log, answerOutcome = true): Promise<VerifiedIdentity | undefined> {
    const { partial } = ref;
    // A refusal's text can quote the intent (a schema error names what it found): masked as a
    // decision's reasons are, before it is audited or answered.
    const error = new WritError(ref.error.code, redactText(ref.error.message));
    const replyKey = raw.replyKey;
    let who: VerifiedIdentity | undefined;
    if (partial.token) who = await this.#d.identity.verify(partial.token).catch(() => undefined);
    log.warn({ code: error.code, intentId: partial.id, sessionId: partial.sessionId, sub: who?.principal.sub }, 'intent refused at intake');
    // Intake keeps only a replyTo shaped like an inbox; the raw one ($KV…, $JS…) is what was asked for.
    const asked = raw.replyTo ?? partial.replyTo;
    const reply = who && asked === partial.replyTo ? this.#replySpec(who, partial.replyTo, replyKey) : undefined;
    if (reply?.ok && partial.id && partial.sessionId && answerOutcome) {
      this.#reply(reply.spec, buildOutcome({ intentId: partial.id, sessionId: partial.sessionId, status: 'denied', error: error.toReply() }));
    }
    if (asked !== undefined && !reply?.ok) await this.#replyRefused(asked, who, partial.id);
    // Audited under the sender's session when it is verified and owns that session; otherwise under
    // a system session (another agent's session id in a bad intent planted events in its chain).
    let sessionId = '_unattributed';
    if (who && partial.sessionId && AgentIdSchema.safeParse(partial.sessionId).success) {
      const owned = await this.#sessions.check(partial.sessionId, who.principal).then(
        () => true,
        () => false,
      );
      if (owned) sessionId = partial.sessionId;
    }
    const event = {
      intentId: who ? partial.id : undefined,
      type: 'intent.rejected_input',
      payload: { code: error.code, message: error.message, principal: who?.principal, target: partial.target, claimedIntentId: partial.id },
    };
    // Refused input is stored at a bounded rate, and counted past it: a verified sender's within a budget of its own.
    if (who) await this.#audit.appendRefused({ sessionId, ...event }, principalKey(who.principal));
    else await this.#audit.appendUnattributed(event);
    return who;
  }

  /** The validated reply of an intent from `who`: its inbox id, and the subject and key, when both check out. */
  #replySpec(who: VerifiedIdentity, replyTo: string | undefined, replyKey: string | undefined): { ok: true; spec: ReplySpec } | { ok: false; error: WritError } {
    const inbox = inboxIdFor(who.principal.iss, who.principal.sub);
    if (replyTo !== undefined && !isReplySubjectOf(replyTo, inbox)) return { ok: false, error: new WritError('WRIT_REPLY_REFUSED', `replyTo must be under _INBOX[.<role>].${inbox}`) };
    if (!replyKey || !X25519KeySchema.safeParse(replyKey).success) return { ok: false, error: new WritError('WRIT_SEAL_REQUIRED') };
    return { ok: true, spec: { inbox, key: replyKey, ...(replyTo ? { to: replyTo } : {}) } };
  }

  /** A reply aimed outside the sender's inbox: nothing is published there; the attempt is evidence. */
  async #replyRefused(subject: unknown, who: VerifiedIdentity | undefined, claimedIntentId: string | undefined): Promise<void> {
    const event = {
      type: 'reply.refused',
      payload: { source: 'intent', subject: sanitizeSubject(subject), verified: who !== undefined, ...(who ? { principal: who.principal } : {}), ...(claimedIntentId ? { claimedIntentId } : {}) },
    };
    if (who) await this.#audit.appendRefused({ sessionId: '_unattributed', ...event }, principalKey(who.principal));
    else await this.#audit.appendUnattributed(event);
  }

  /** Sends `outcome` sealed to the reply's key, on its validated subject; nothing without one. */
  #reply(reply: ReplySpec | undefined, outcome: Outcome): void {
    if (!reply?.to) return;
    let sealed: Outcome;
    try {
      sealed = sealOutcome(outcome, reply.key);
    } catch (e) {
      this.#d.log.warn({ err: e, intentId: outcome.intentId }, 'could not seal an outcome; not sent');
      return;
    }
    // An outcome too large for the bus is replaced by the same outcome carrying a coded error (sealed too).
    const tooLarge = (e: WritError) => sealOutcome({ ...outcome, result: undefined, decision: undefined, error: e.toReply() }, reply.key);
    sendReply(this.#d.nc, reply.to, sealed, tooLarge, this.#d.log, reply.inbox, traceHeaders(this.#traces.get(outcome.intentId)));
  }

  /** `t`: this intent's logger, and the audit event types it produced (what the metrics call its outcome). */
  async #process(intent: Intent, attempt: number, t: IntentTurn): Promise<void> {
    const { log } = t;
    const policy = this.#policy;
    // Events are gathered and appended together when the intent is handled, so they form one
    // block: one JetStream write per intent for the broker's part of the chain.
    const events: Array<{ type: string; payload: Record<string, unknown>; at: number }> = [];
    const audit = (type: string, payload: Record<string, unknown>) => {
      t.steps.push(type);
      events.push({ type, payload, at: Date.now() });
    };
    const audits = {
      all: () => Promise.all(events.splice(0).map((e) => this.#audit.append({ sessionId: intent.sessionId, intentId: intent.id, policyVersion: policy.version, ...e }))),
    };

    let who: VerifiedIdentity;
    try {
      who = await this.#d.identity.verify(intent.token);
    } catch (e) {
      const err = toWritError(e);
      // The sender is not identified: answer, and audit without attributing it to the claimed session.
      t.who = await this.#refuse({ error: err, partial: { id: intent.id, sessionId: intent.sessionId, replyTo: intent.replyTo, target: intent.target } }, {}, log);
      return;
    }
    t.who = who;
    const replyCheck = this.#replySpec(who, intent.replyTo, intent.replyKey);
    const reply = replyCheck.ok ? replyCheck.spec : undefined;
    // The session is the sender's own, or nothing of this intent is written into it.
    try {
      await this.#sessions.check(intent.sessionId, who.principal);
    } catch (e) {
      const err = toWritError(e);
      if (err.code !== 'WRIT_SESSION_FORBIDDEN') throw e;
      await this.#audit.appendRefused(
        { sessionId: '_unattributed', type: 'session.refused', payload: { principal: who.principal, claimedSessionId: intent.sessionId, claimedIntentId: intent.id } },
        principalKey(who.principal),
      );
      t.refused = err;
      this.#reply(reply, buildOutcome({ intentId: intent.id, sessionId: intent.sessionId, status: 'denied', error: err.toReply() }));
      return;
    }
    // The session's head is read while the intent is classified and decided (when another writer shares the session).
    this.#audit.prefetch(intent.sessionId);
    const target = this.#targets.get(intent.target);
    const text = commandText(intent.command);
    const commandSha256 = sha256Hex(text);
    const auditorKey = this.#d.config.audit.auditorPublicKey;
    audit('intent.received', {
      principal: who.principal,
      target: intent.target,
      command: redactCommand(intent.command),
      commandSha256,
      // The exact text, for auditors only: sealed to their key, bound to this intent.
      ...(auditorKey ? { commandSealed: sealCommandForAuditors(intent.command, auditorKey, intent.id, intent.sessionId) } : {}),
      justification: intent.justification === undefined ? undefined : redactText(intent.justification),
      tokenSha256: who.tokenSha256,
      // Which of the agent's sends this is (its SDK counts them; 1 when it says nothing): a
      // later one follows an answer that was lost, or a failure it was told to retry.
      attempt,
    });
    if (intent.deadline !== undefined && intent.deadline < Date.now()) {
      // Past its deadline: denied, and the denial is stored as the intent's record before it is
      // answered, so the record's create decides, as for every other intent. A resend of an
      // intent already stored (its receipt was lost) finds the record and is answered where it
      // stands; and a send still on its way through another broker (stalled before its own
      // create) finds this denial and runs nothing. Checking for a record and then answering
      // "refused, nothing stored" told an agent `denied` of an intent that another broker stored
      // a moment later and ran.
      t.refused = await this.#deny(intent, who, null, new WritError('WRIT_DEADLINE_PASSED'), commandSha256, audit, target, audits.all, reply);
      await audits.all();
      return;
    }
    if (!replyCheck.ok) {
      // Denied and recorded (the API tells the sender why), but nothing is sent to that subject.
      if (replyCheck.error.code === 'WRIT_REPLY_REFUSED' && intent.replyTo) await this.#replyRefused(intent.replyTo, who, intent.id);
      t.refused = await this.#deny(intent, who, null, replyCheck.error, commandSha256, audit, target, audits.all, undefined);
      await audits.all();
      return;
    }
    if (!target) {
      t.refused = await this.#deny(intent, who, null, new WritError('WRIT_UNKNOWN_TARGET', `no target named ${JSON.stringify(intent.target)}`), commandSha256, audit, undefined, audits.all, reply);
      await audits.all();
      return;
    }
    const facts = this.#classify(target, intent.command, principalKey(who.principal));
    const decision = withRedactedReasons(policy.decide({ principal: who.principal, target, command: intent.command, facts, now: new Date() }));
    audit('intent.decided', { decision: publicDecision(decision), facts: redactDeepOnce(facts.facts) });

    if (decision.effect === 'require_approval') {
      const rule = decision.rules[0] ?? '(default)';
      const win = await this.#approvals.activeWindow(who.principal, target.name, rule, { facts, policyVersion: decision.policyVersion });
      if (win) {
        // A time-bound window granted by earlier approvers covers it: run without a new approval.
        audit('window.used', { windowId: win.id, rule, expiresAt: win.expiresAt, grantedBy: win.grantedBy });
      } else {
        let opened: boolean;
        try {
          opened = await this.#approvals.open(intent, who, target, decision, facts, commandSha256, audit, reply!);
        } catch (e) {
          const err = toWritError(e);
          // Too large to show approvers, or too many of this principal's waiting already: denied,
          // with this intent's evidence, before any pending record.
          if (err.code === 'WRIT_APPROVAL_TOO_LARGE' || err.code === 'WRIT_TOO_MANY_PENDING') {
            t.refused = await this.#deny(intent, who, decision, err, commandSha256, audit, target, audits.all, reply);
            await audits.all();
            return;
          }
          // The record was created and its request not published (approvals ended it): the
          // evidence of what was received and decided is stored before the error goes on.
          audit('approval.failed', { code: err.code, message: err.message });
          await audits.all();
          throw e;
        }
        if (!opened) t.refused = await this.#duplicate(intent, who, audit, null, audits.all, reply);
        await audits.all();
        return;
      }
    } else if (decision.effect !== 'allow') {
      const code = (decision.code ?? 'WRIT_POLICY_DENIED') as ConstructorParameters<typeof WritError>[0];
      t.refused = await this.#deny(intent, who, decision, new WritError(code, decision.reasons.join('; ') || undefined), commandSha256, audit, target, audits.all, reply);
      await audits.all();
      return;
    }

    const nowSec = Math.floor(Date.now() / 1000);
    const gid = intent.id;
    // Never past the agent's deadline: an order that waits in the queue longer is not run after it.
    const grantExp = Math.min(nowSec + this.#d.config.grants.ttlSec, intent.deadline === undefined ? Number.POSITIVE_INFINITY : Math.ceil(intent.deadline / 1000));
    const record: IntentRecord = this.#sealer.sealDispatch({
      intentId: intent.id,
      sessionId: intent.sessionId,
      target: target.name,
      kind: target.kind,
      principal: who.principal,
      state: 'dispatched',
      decision: publicDecision(decision),
      grant: grantSpecOf(decision),
      grantId: gid,
      grantExp,
      commandSha256,
      runDeadline: grantExp + Math.ceil(decision.limits.seconds ?? 30) + this.#d.config.limits.sweepMarginSec,
      ...(reply ? { reply } : {}),
      createdAt: Date.now(),
      updatedAt: Date.now(),
    });
    const claims = buildGrantClaims(record, { nowSec, ttlSec: this.#d.config.grants.ttlSec, exp: grantExp, policyVersion: decision.policyVersion, storeKey: this.#store.publicKey });
    // The dispatch evidence and the record are stored side by side (one round trip, not two),
    // both before the order goes out: a broker lost before the order leaves evidence and no
    // order (the redelivery re-sends it), never an order without evidence. Should the create
    // find the id taken, the evidence names a grant that is the first attempt's own (the grant
    // id is the intent id), and the duplicate path records why nothing new was sent.
    audit('intent.dispatched', { grantId: gid, mode: decision.mode, exp: claims.exp, limits: decision.limits });
    const [created, stored] = await Promise.allSettled([createRecord(this.#kv.intents, record), audits.all()]);
    if (stored.status === 'rejected') throw stored.reason;
    if (created.status === 'rejected') {
      t.refused = await this.#duplicate(intent, who, audit, created.reason, audits.all, reply);
      await audits.all();
      return;
    }
    await this.#publishOrder(intent.id, target, this.#withAuditHead(claims), created.value, record, intent.command, true);
    log.debug({ intentId: intent.id }, 'dispatched');
  }

  /** Approved: the pending record becomes `dispatched` (compare-and-set) and its order goes out. */
  async #dispatchApproved(rec: IntentRecord, revision: number): Promise<void> {
    const p = rec.pending!;
    this.#sealer.check(rec); // the votes included
    // Each counted vote is one human, and no two share one (approvals.ts adds no overlapping vote).
    const humans = p.votes.flatMap((v) => v.humans ?? [v.human ?? v.sub]);
    if (p.votes.length < p.spec.count || new Set(humans).size !== humans.length) {
      throw new WritError('WRIT_RECORD_TAMPERED', 'the approval has fewer distinct humans than it needs; nothing is run');
    }
    const target = this.#targets.get(rec.target);
    if (!target) throw new WritError('WRIT_DECISION_CHANGED', `the target ${rec.target} is no longer configured`);
    const nowSec = Math.floor(Date.now() / 1000);
    // Decided again under the current policy: dispatched only if it still asks for the same
    // approval (rule, mode, approvers) the votes were for; its limits and masking are today's.
    const now = this.#policy.decide({ principal: rec.principal, target, command: p.order.command, facts: this.#classify(target, p.order.command), now: new Date() });
    const spec = now.approval ?? { groups: ['approvers'], count: 1, timeoutSec: 3600 };
    if (
      now.effect !== 'require_approval' ||
      (now.rules[0] ?? '(default)') !== p.rule ||
      now.mode !== p.order.mode ||
      spec.count !== p.spec.count ||
      [...spec.groups].sort().join(',') !== [...p.spec.groups].sort().join(',')
    ) {
      throw new WritError('WRIT_DECISION_CHANGED', `the current policy decides ${now.effect}${now.rules[0] ? ` by ${now.rules[0]}` : ''}; the approval was for ${p.rule}`);
    }
    const withGrant: IntentRecord = { ...rec, grant: grantSpecOf(now) };
    const claims = buildGrantClaims(withGrant, { nowSec, ttlSec: this.#d.config.grants.ttlSec, policyVersion: this.#policy.version, storeKey: this.#store.publicKey });
    const next: IntentRecord = this.#sealer.sealDispatch({
      ...withGrant,
      state: 'dispatched',
      grantId: claims.gid,
      grantExp: claims.exp,
      updatedAt: Date.now(),
      runDeadline: claims.exp + Math.ceil(claims.limits.seconds ?? 30) + this.#d.config.limits.sweepMarginSec,
    });
    const rev = await updateRecord(this.#kv.intents, next, revision);
    // Evidence first, then the order (see #process).
    await this.#audit.append({
      sessionId: rec.sessionId,
      intentId: rec.intentId,
      type: 'intent.dispatched',
      policyVersion: claims.policyVersion,
      payload: { grantId: claims.gid, mode: claims.mode, exp: claims.exp, limits: claims.limits, approvedBy: p.votes.map((v) => v.sub) },
    });
    await this.#publishOrder(rec.intentId, target, this.#withAuditHead(claims), rev, next, p.order.command, false);
  }

  /** The claims with the session's audit head as this broker just stored it (the worker chains onto it). */
  #withAuditHead(claims: GrantClaims): GrantClaims {
    const h = this.#audit.headOf(claims.sid);
    return h ? { ...claims, ah: { seq: h.seq, hash: h.hash, count: h.count } } : claims;
  }

  /**
   * Signs and sends the order. Its replyTo is only ever the record's, which the broker
   * validated against the requester's inbox (never a subject taken from a later message).
   *
   * `direct`: handed to one of the target's workers first, as a core request that the worker
   * answers once it holds the claim; only when none takes it (none free, none listening, no
   * answer) is it queued in the exec stream, where the next free worker pulls it. A direct
   * order is one persisted write less per intent (the stream's). It is used where a lost broker
   * is covered by its agent's resend (which meets the record and sends the order again); an
   * approved intent's order, which no agent resends, is always queued.
   */
  async #publishOrder(intentId: string, target: TargetConfig, claims: GrantClaims, revision: number, record: IntentRecord, command: Intent['command'], direct: boolean): Promise<void> {
    // The pending part (votes, the order to sign) is not needed by the worker.
    const { pending: _p, ...rec } = record;
    const body: OrderBody = {
      v: 1,
      type: 'order',
      intentId,
      sessionId: record.sessionId,
      target: target.name,
      command,
      stateRevision: revision,
      ...(record.reply?.to ? { replyTo: record.reply.to } : {}),
      record: rec,
    };
    const headers = traceHeaders(this.#traces.get(intentId));
    // Signed and encoded once, and only for the bus: an order a worker of this process takes is
    // handed over as built, its grant unsigned (schemas/grant.ts LocalGrant).
    let bytes: Uint8Array | undefined;
    const encoded = () => (bytes ??= enc.encode(JSON.stringify({ ...body, grant: this.#d.signer.sign(claims) } satisfies Order)));
    if (direct && (await this.#handOver(target, body, claims, encoded, headers))) {
      this.#d.metrics?.orderSent(target.name, 'direct');
      return;
    }
    // msgID = grant id: a re-sent order within the window is dropped by the server; beyond it, the claim refuses it.
    try {
      await this.#js.publish(this.#d.names.exec(target.kind, target.name), encoded(), { msgID: claims.gid, headers });
    } catch (e) {
      // Retried by redelivery: the intent then takes the duplicate path, which re-sends this order from the record.
      throw new WritError('WRIT_TRANSPORT', 'the execution order could not be stored', { cause: e });
    }
    this.#d.metrics?.orderSent(target.name, 'queued');
  }

  /**
   * The order offered to the target's workers directly; true once one of them answered that the
   * grant is claimed (by it, or before) or can run nowhere (refused, and audited there). False
   * sends it to the queue: no worker listens on the direct subject (none up, or one of an older
   * release), none is free, none answered in time (lost, or slow: should it have claimed the
   * grant after all, the queued copy finds the claim taken and is refused, so it runs once), or
   * the claim's fate was not known to the worker.
   */
  async #handOver(target: TargetConfig, order: OrderBody, claims: GrantClaims, encoded: () => Uint8Array, headers: ReturnType<typeof traceHeaders>): Promise<boolean> {
    const subject = this.#d.names.dispatch(target.kind, target.name);
    // A worker of this process with a free place takes it without the bus (lib/handover.ts).
    const handover = this.#d.handover;
    const local = handover?.serves(subject) ? handover.offer({ subject, order, grant: this.#d.signer.vouch(claims), headers }) : undefined;
    if (local) {
      // As long as a worker on the bus gets to answer: one that has not by then is taken as lost,
      // and the order is queued (should it claim the grant after all, the queued copy is refused).
      let timer: NodeJS.Timeout | undefined;
      const answer = await Promise.race([local, new Promise<'retry'>((r) => (timer = setTimeout(r, DIRECT_ORDER_MS, 'retry')))]);
      clearTimeout(timer);
      // `retry` (the worker's claim had no known fate, or no answer within the wait): queued, as
      // from the bus. A claim that was stored after all keeps it once: the queued copy is then
      // refused (`WRIT_ALREADY_CLAIMED`, audited) while the handed-over one runs.
      return answer !== 'retry';
    }
    let m: Msg;
    try {
      m = await this.#d.nc.request(subject, encoded(), { timeout: DIRECT_ORDER_MS, ...(headers ? { headers } : {}) });
    } catch (e) {
      // A broker login without `writ.dispatch.>` (permissions from an earlier release) still
      // works, every order queued; say so once, since each intent then pays a refused request.
      if ((e as Error).name === 'PermissionViolationError' && !this.#warnedDispatchDenied) {
        this.#warnedDispatchDenied = true;
        this.#d.log.warn(
          { subject: this.#d.names.dispatchAll() },
          'this broker may not publish direct orders: every order is queued in the exec stream (grant the broker publish on writ.dispatch.>, deploy/nats/accounts.conf)',
        );
      }
      return false;
    }
    let body: unknown;
    try {
      body = m.json();
    } catch {
      return false;
    }
    const r = DispatchReplySchema.safeParse(body);
    return r.success && (r.data.type === 'claimed' || r.data.type === 'taken' || r.data.type === 'refused');
  }

  /** The id exists already: a resubmission or a redelivery. Never a second execution. */
  async #duplicate(
    intent: Intent,
    who: VerifiedIdentity,
    audit: (t: string, p: Record<string, unknown>) => void,
    cause: unknown,
    flush: (() => Promise<unknown>) | undefined,
    reply: ReplySpec | undefined,
  ): Promise<WritError | undefined> {
    const entry = await getRecord(this.#kv.intents, intent.id);
    if (!entry) {
      // No record and a create that failed: a bus outage (timeout, reconnect) is answered as
      // retryable and the agent sends the intent again; nothing was acknowledged.
      const err = toWritError(cause);
      throw err.code === 'WRIT_TRANSPORT' ? err : new WritError('WRIT_INTERNAL', 'intent record could not be created', { cause });
    }
    const existing = entry.rec;
    const same = existing.principal.sub === who.principal.sub && existing.principal.iss === who.principal.iss;
    // The same id with another command or target is not a resubmission: answering the first
    // one's outcome told the caller that a command which never ran had succeeded.
    const sameCommand = existing.commandSha256 === sha256Hex(commandText(intent.command)) && existing.target === intent.target;
    audit('intent.duplicate', { existingState: existing.state, samePrincipal: same, sameCommand });
    if (!same || !sameCommand) {
      const refused = same
        ? new WritError('WRIT_DUPLICATE_INTENT', 'this intent id was used for another command or target; send a new command under a new id')
        : new WritError('WRIT_DUPLICATE_INTENT');
      this.#reply(reply, buildOutcome({ intentId: intent.id, sessionId: intent.sessionId, status: 'denied', error: refused.toReply() }));
      return refused;
    }
    // A resubmission after the server's dedupe window: answer its inbox with where the intent stands.
    if (reply?.to) this.#answerDuplicate(reply, existing);
    if (existing.state === 'dispatched' && existing.commandSha256 === sha256Hex(commandText(intent.command))) {
      // The first attempt may have died before its order was stored: send it again. The
      // exec stream's msg-id dedupe and the worker's claim make a second copy harmless.
      const target = this.#targets.get(existing.target)!;
      const nowSec = Math.floor(Date.now() / 1000);
      // Re-sent from the record's GrantSpec: the same mode, limits and masking that were decided.
      // A record without one (never decided to run) is not re-sent; the sweeper ends it.
      if (existing.grant && existing.grantExp && existing.grantExp > nowSec) {
        // Only from a record this broker signed as dispatched: a worker's login can write the
        // bucket, and a planted `dispatched` record (a denied principal's write, an approval no
        // one gave) had this path sign its grant.
        try {
          this.#sealer.checkDispatch(existing);
        } catch (e) {
          const err = toWritError(e);
          audit('intent.rejected', { code: err.code, reason: err.message });
          this.#d.log.warn({ intentId: intent.id, code: err.code }, 'a dispatched record the broker did not sign; no order sent');
          return undefined;
        }
        const claims = buildGrantClaims(existing, {
          nowSec,
          ttlSec: this.#d.config.grants.ttlSec,
          exp: existing.grantExp,
          policyVersion: existing.decision?.policyVersion ?? this.#policy.version,
          storeKey: this.#store.publicKey,
        });
        // The first attempt may have died before its dispatch evidence was stored: store it
        // (again) before the order goes out, so no order ever runs without it.
        audit('intent.dispatched', { grantId: claims.gid, mode: claims.mode, exp: claims.exp, limits: claims.limits, resent: true });
        await flush?.();
        await this.#publishOrder(intent.id, target, this.#withAuditHead(claims), entry.revision, existing, intent.command, true);
      }
    }
    return undefined;
  }

  /** Where a resubmitted intent stands, sealed to the resubmission's key: the stored outcome (opened with the results key), else the record. */
  #answerDuplicate(reply: ReplySpec, rec: IntentRecord): void {
    this.#reply(reply, outcomeOf(rec, { resultsKey: this.#store, log: this.#d.log, maxAgeSec: this.#d.config.results.maxAgeSec }));
  }

  async #deny(
    intent: Intent,
    who: VerifiedIdentity,
    decision: PolicyDecision | null,
    error: WritError,
    commandSha256: string,
    audit: (t: string, p: Record<string, unknown>) => void,
    target: TargetConfig | undefined,
    flush: (() => Promise<unknown>) | undefined,
    reply: ReplySpec | undefined,
  ): Promise<WritError | undefined> {
    const record: IntentRecord = {
      intentId: intent.id,
      sessionId: intent.sessionId,
      target: intent.target,
      kind: target?.kind ?? 'postgres',
      principal: who.principal,
      state: 'denied',
      error: error.toReply(),
      commandSha256,
      createdAt: Date.now(),
      updatedAt: Date.now(),
      ...(decision ? { decision: publicDecision(decision) } : {}),
      ...(reply ? { reply } : {}),
    };
    try {
      await createRecord(this.#kv.intents, record);
    } catch (e) {
      return this.#duplicate(intent, who, audit, e, flush, reply);
    }
    const outcome = buildOutcome({ intentId: intent.id, sessionId: intent.sessionId, status: 'denied', error: error.toReply(), decision: decision ? publicDecision(decision) : undefined });
    this.#reply(reply, outcome);
    audit('intent.denied', { code: error.code, reasons: decision?.reasons ?? [error.message] });
    return undefined;
  }
}

/** One intent being handled: its logger, the audit event types it produced (what the metrics call its outcome), and its verified sender. */
interface IntentTurn {
  log: Logger;
  steps: string[];
  who?: VerifiedIdentity | undefined;
  /** Refused with nothing stored under its id for this sender: its receipt is this error. */
  refused?: WritError | undefined;
}

/** The SDK's count of its sends of this intent (`Writ-Attempt`), 1 when absent or malformed. */
function attemptOf(m: Msg): number {
  const n = Number(m.headers?.get(ATTEMPT_HEADER));
  return Number.isSafeInteger(n) && n >= 1 ? n : 1;
}

/** What the broker did with an intent, from the audit events it produced (lib/metrics-types.ts BrokerOutcome). */
function brokerOutcome(steps: readonly string[]): BrokerOutcome {
  if (steps.includes('intent.duplicate')) return 'duplicate';
  if (steps.includes('intent.denied')) return 'denied';
  if (steps.includes('approval.requested')) return 'pending';
  if (steps.includes('intent.dispatched')) return 'dispatched';
  // No decision: an unverifiable token, or a session the sender does not own.
  return 'refused';
}

function publicDecision(d: PolicyDecision) {
  return { effect: d.effect, rules: d.rules, reasons: d.reasons, mode: d.mode, policyVersion: d.policyVersion };
}
