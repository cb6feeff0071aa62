/**
 * The worker runtime, written once for every target kind: consume orders, verify the
 * grant, claim it, run it through the kind's executor, mask, publish, move the state,
 * audit. At most once: the claim (`create` in the claims bucket, keyed by grant id)
 * comes before anything runs, so no redelivery, replica or replayed grant runs twice.
 */
import { LRUCache } from 'lru-cache';
import { randomUUID, type KeyObject } from 'node:crypto';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { AuditWriter, serviceAuditKey, type HeadBoard } from '../audit/index.ts';
import {
  endSpan,
  lazyChild,
  SpanKind,
  type HandoverAnswer,
  type OrderTaker,
  type LocalHandover,
  type LocalOrder,
  startSpan,
  traceContextOf,
  traceHeaders,
  traceIdOf,
  type ServiceMetrics,
  type Span,
} from '../lib/index.ts';
import {
  consumeConcurrently,
  serveConcurrently,
  Slots,
  getRecord,
  updateRecord,
  ensureConsumer,
  maxBody,
  outcomeBodyBytes,
  outcomeBytes,
  replyTooLarge,
  sealOutcomeBody,
  retryTransient,
  sealOutcome,
  sendReply,
  withDeadline,
  type ConsumeLoop,
  type Logger,
  type ServeLoop,
} from '../lib/index.ts';
import {
  buildOutcome,
  commandText,
  formatIssues,
  jsonCopy,
  OrderSchema,
  sha256Hex,
  toWritError,
  verifyGrantSignature,
  verifyLocalGrant,
  WritError,
  type Config,
  type ErrorReply,
  type GrantClaims,
  type IntentRecord,
  type IntentState,
  type Names,
  type Order,
  type OrderBody,
  type LocalGrant,
  type Outcome,
  type DispatchReply,
  type ResultBody,
  type SignedGrants,
} from '../schemas/index.ts';
import { compileMasking, genericSqlError, LineMasker, maskRows, maskText, MaskingSpecSchema, sensitiveColumns, type CompiledMasking } from '../masking/index.ts';
import { ClaimedGrants } from './claimed-grants.ts';
import { errorContextOf, type ExecOutput, type Executor } from './executor.ts';

export type WorkerState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED';

export interface WorkerDeps {
  nc: NatsConnection;
  config: Config;
  names: Names;
  log: Logger;
  executors: Executor[];
  /** Grant-signing public keys the worker trusts, by key id (several during a rotation). */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  /** Grants a broker in this process signed (schemas/grant.ts SignedGrants). */
  signedGrants?: SignedGrants | undefined;
  /** Deployment key for the keyed-hash masking strategy. */
  hmacKey?: Buffer;
  id?: string;
  /** Per-execution metrics (lib/metrics-types.ts); none when the process serves no /metrics. */
  metrics?: ServiceMetrics | undefined;
  /** Audit heads shared with the other writers of this process (audit/types.ts HeadBoard). */
  auditHeads?: HeadBoard | undefined;
  /** Where a broker of this process hands its orders over without the bus (lib/handover.ts). */
  handover?: LocalHandover | undefined;
}

/**
 * An order as the runtime handles it, whichever way it came (handed over directly, or pulled
 * from the exec stream), and how its sender learns what became of it.
 */
interface OrderDelivery {
  readonly subject: string;
  readonly headers?: MsgHdrs | undefined;
  string(): string;
  /** The order as a broker of this process built it, with its unsigned grant (lib/handover.ts): not parsed again. */
  readonly local?: { order: OrderBody; grant: LocalGrant };
  /** The claim is this worker's: the order runs here. */
  ack(): void;
  /** Nothing will ever run it: its grant was refused, or its claim is someone else's. */
  term(why: 'refused' | 'taken'): void;
  /** The claim's fate is not known (the bus did not answer): nothing ran, and the order comes again. */
  nak(delayMs: number): void;
}

/** A reply subject a direct order may be answered on: a requester's inbox, never a Writ, `$KV` or `$JS` subject. */
const ANSWERABLE = /^_INBOX\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;

const fromStream = (m: JsMsg): OrderDelivery => ({
  subject: m.subject,
  headers: m.headers,
  string: () => m.string(),
  ack: () => m.ack(),
  term: () => m.term(),
  nak: (ms) => m.nak(ms),
});

/**
 * An order handed over by a broker of this process (lib/handover.ts): answered as a direct order
 * from the bus is, once; an order whose handler ends without an answer is answered `retry` (the
 * broker queues it, as it does when a bus request goes unanswered).
 */
function fromLocal(o: LocalOrder, answer: (a: HandoverAnswer) => void): OrderDelivery {
  // A copy of its own, taken as it is handed over, as an order from the bus is the worker's own
  // parse: what it checks against the grant is what it runs, whatever happens to the broker's
  // objects meanwhile.
  const order = jsonCopy(o.order);
  let answered = false;
  const once = (a: HandoverAnswer) => {
    if (answered) return;
    answered = true;
    answer(a);
  };
  return {
    subject: o.subject,
    headers: o.headers,
    string: () => JSON.stringify(order),
    local: { order, grant: o.grant },
    ack: () => once('claimed'),
    term: (why) => once(why),
    nak: () => once('retry'),
  };
}

/**
 * A direct order's answers go to its requester (a broker, waiting to queue the order should
 * no worker take it). Anything but `claimed`, `taken` or `refused` makes the broker queue it.
 * Only an inbox is answered: a worker may write to its buckets, so a reply subject naming one
 * (in an order replayed by a bus insider) must not become a write.
 */
function fromRequest(m: Msg): OrderDelivery & { answer(type: DispatchReply['type']): void } {
  const answer = (type: DispatchReply['type']): void => {
    if (!m.reply || !ANSWERABLE.test(m.reply) || m.reply.length > 256) return;
    const body: DispatchReply = { v: 1, type };
    try {
      m.respond(enc.encode(JSON.stringify(body)));
    } catch {
      // The connection is closing: the broker's request times out and it queues the order.
    }
  };
  return {
    subject: m.subject,
    headers: m.headers,
    string: () => m.string(),
    ack: () => answer('claimed'),
    term: (why) => answer(why),
    nak: () => answer('retry'),
    answer,
  };
}

/** One order's span and logger (its lines carry the intent, session and trace ids). */
interface Traced {
  span: Span;
  log: Logger;
}

type SpecResult = { ok: true; spec: CompiledMasking } | { ok: false; error: WritError };

/** A grant's masking spec, parsed and compiled with the worker's key; what cannot be applied runs nothing. */
function compileSpec(mask: unknown, hmacKey: Buffer | undefined): SpecResult {
  const r = MaskingSpecSchema.safeParse(mask);
  // A grant whose masking cannot be understood runs nothing: masking is never skipped.
  if (!r.success) return { ok: false, error: new WritError('WRIT_MASKING_FAILED', 'the grant carries a masking spec this worker cannot apply') };
  try {
    return { ok: true, spec: compileMasking(r.data, { hmacKey }) };
  } catch (e) {
    // A spec this worker cannot compile (a hash strategy with no key here): nothing runs.
    const err = toWritError(e);
    return { ok: false, error: err.code === 'WRIT_MASKING_FAILED' ? err : new WritError('WRIT_MASKING_FAILED', 'the grant carries a masking spec this worker cannot apply') };
  }
}

const enc = new TextEncoder();
/** How long the claim's audit event may wait to share a block with the outcome's. */
const CLAIM_AUDIT_DELAY_MS = 1000;
/** How long an order whose claim could not be confirmed waits before it is delivered again. */
const CLAIM_RETRY_MS = 2000;

/** The claim's create failed because the key exists (JetStream's expected-last-sequence check). */
function isKeyTaken(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === JetStreamApiCodes.StreamWrongLastSequence || e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

export class Worker {
  state: WorkerState = 'INITIALIZED';
  readonly id: string;
  readonly #d: WorkerDeps;
  #js!: JetStreamClient;
  #jsm!: JetStreamManager;
  #claims!: KV;
  #intents!: KV;
  #audit!: AuditWriter;
  readonly #loops: ConsumeLoop[] = [];
  /** Direct orders, one queue-group subscription per target (drained before the stream's loops). */
  readonly #direct: ServeLoop[] = [];
  /** Orders a broker of this process handed over (lib/handover.ts), running; and how to stop taking them. */
  readonly #local = new Set<Promise<void>>();
  readonly #unserve: Array<() => void> = [];
  readonly #byTarget = new Map<string, Executor>();
  readonly #running = new Set<AbortController>();
  /** Compiled masking specs by their JSON (bounded: grants of a few rules repeat a few specs). */
  readonly #specs = new LRUCache<string, SpecResult>({ max: 256 });
  /** Grants this process claimed, until they expire (claimed-grants.ts). */
  readonly #claimedHere: ClaimedGrants;
  /** This process's own mark in the claims it writes (the worker id may be configured, and so repeat across restarts). */
  readonly #instance = randomUUID();
  /** Grants whose claim create had no known fate (nothing ran): the next delivery may find it stored. */
  readonly #unconfirmed = new ClaimedGrants(10_000);
  /** Grants whose claim this process is creating or reading back right now. */
  readonly #claiming = new Set<string>();
  #warnedClaimedFull = false;

  constructor(d: WorkerDeps) {
    this.#d = d;
    this.id = d.id ?? `worker-${randomUUID().slice(0, 8)}`;
    this.#claimedHere = new ClaimedGrants(d.config.limits.claimedGrantsMax);
    for (const ex of d.executors) for (const t of ex.targets) this.#byTarget.set(t, ex);
  }

  /** Grants this process remembers having claimed (the soak benchmark prints it). */
  get claimedGrants(): number {
    return this.#claimedHere.size;
  }

  /** The audit writer's counters (metrics). */
  get auditStats(): AuditWriter['stats'] | undefined {
    return this.#audit?.stats;
  }

  async start(): Promise<void> {
    const { nc, names: n, config, log } = this.#d;
    this.#js = jetstream(nc);
    this.#jsm = await jetstreamManager(nc);
    const kvm = new Kvm(nc);
    this.#claims = await kvm.open(n.buckets.claims);
    this.#intents = await kvm.open(n.buckets.intents);
    const auditKey = serviceAuditKey(config, 'worker', (e) => log.error({ err: e }, 'audit key registry unreadable'), [...this.#byTarget.keys()]);
    log.info({ auditKeyId: auditKey.keyId }, 'audit signing key');
    this.#audit = new AuditWriter({
      js: this.#js,
      jsm: this.#jsm,
      names: n,
      actor: { kind: 'worker', id: this.id },
      flushMs: config.audit.flushMs,
      logger: log,
      signer: auditKey.signer,
      board: this.#d.auditHeads,
    });
    // One limit per target for its queued, direct and handed-over orders together: at most
    // limits.concurrency run.
    const slotsOf = new Map([...this.#byTarget.keys()].map((t) => [t, new Slots(config.limits.concurrency)]));
    // A broker of this process hands its orders over here first (lib/handover.ts), taking a place
    // of the same limit, and only while one is free and this worker runs: otherwise it asks over
    // the bus. Registered before any loop starts, so a start that fails here (another worker of
    // the process serves the target already) leaves nothing running.
    const handover = this.#d.handover;
    if (handover) {
      try {
        for (const [target, ex] of this.#byTarget) this.#unserve.push(handover.serve(n.dispatch(ex.kind, target), this.#localTaker(ex, slotsOf.get(target)!)));
      } catch (e) {
        for (const unserve of this.#unserve.splice(0)) unserve();
        throw e;
      }
    }
    try {
      for (const [target, ex] of this.#byTarget) {
        const durable = n.durables.worker(ex.kind, target);
        await ensureConsumer(this.#jsm, n.streams.exec, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: n.exec(ex.kind, target),
          ack_wait: 60_000_000_000,
          max_ack_pending: config.limits.concurrency * 4,
        });
        const consumer = await this.#js.consumers.get(n.streams.exec, durable);
        const slots = slotsOf.get(target)!;
        const queued = await consumeConcurrently(consumer, (m) => this.#handle(fromStream(m), ex), { maxInFlight: config.limits.concurrency, log, slots });
        this.#loops.push(queued);
        // Orders handed over directly, while this worker has a slot free: a full worker answers
        // `busy` at once and the broker queues the order, for whichever worker is free first. A
        // queued order waiting for a slot gets the next one before any direct order.
        const direct = serveConcurrently(nc, n.dispatch(ex.kind, target), n.workerQueue(ex.kind, target), (m) => this.#handle(fromRequest(m), ex), {
          maxInFlight: config.limits.concurrency,
          maxBacklog: 0,
          maxBacklogBytes: 0,
          log,
          slots,
          onDrop: (m) => fromRequest(m).answer('busy'),
        });
        this.#direct.push(direct);
      }
    } catch (e) {
      // Nothing handed over may wait on a worker that did not start (the loops begun are its stop's).
      for (const unserve of this.#unserve.splice(0)) unserve();
      throw e;
    }
    this.state = 'RUNNING';
    log.info({ worker: this.id, targets: [...this.#byTarget.keys()] }, 'worker running');
  }

  /** Takes an order a broker of this process hands over (lib/handover.ts) while `slots` has a free place and this worker runs. */
  #localTaker(ex: Executor, slots: Slots): OrderTaker {
    return (o) => {
      if (this.state !== 'RUNNING' || !slots.tryTake()) return undefined;
      return new Promise<HandoverAnswer>((resolve) => {
        const delivery = fromLocal(o, resolve);
        const run = this.#handle(delivery, ex)
          .catch((e: unknown) => this.#d.log.error({ err: e }, 'order handler failed'))
          .finally(() => {
            slots.release();
            this.#local.delete(run);
            // A handler that ended without an answer: the broker queues the order.
            delivery.nak(0);
          });
        this.#local.add(run);
      });
    };
  }

  /** SIGTERM: finish what is running, take nothing new. */
  async stop(deadlineMs = 15_000): Promise<void> {
    if (this.state === 'STOPPED') return;
    this.state = 'DRAINING';
    // Bounded: with NATS gone, draining and the audit flush would wait forever. What was
    // running past the deadline is ended by the sweeper as `unknown`, never re-run.
    const graceful = (async () => {
      // Direct orders first: a broker whose order meets a draining worker queues it instead.
      for (const unserve of this.#unserve.splice(0)) unserve();
      await Promise.all(this.#direct.map((l) => l.drain()));
      await Promise.all([...this.#local]);
      await Promise.all(this.#loops.map((l) => l.drain()));
      await this.#audit?.close();
    })();
    if (!(await withDeadline(graceful, deadlineMs))) {
      this.#d.log.error({ deadlineMs }, 'worker stop passed its deadline');
      await this.#audit?.close(0).catch(() => undefined);
    }
    for (const ac of this.#running) ac.abort();
    await withDeadline(Promise.all(this.#d.executors.map((e) => e.close())), 5_000);
    this.state = 'STOPPED';
  }

  async #handle(m: OrderDelivery, ex: Executor): Promise<void> {
    let order: OrderBody;
    let grant: string | LocalGrant;
    try {
      if (m.local) {
        ({ order, grant } = m.local);
      } else {
        const parsed = OrderSchema.parse(JSON.parse(m.string()));
        order = parsed;
        grant = parsed.grant;
      }
    } catch (e) {
      const msg = e instanceof SyntaxError ? 'not JSON' : formatIssues(e as never);
      this.#d.log.warn({ subject: m.subject, reason: msg }, 'malformed order refused');
      await this.#audit.append({ sessionId: '_unattributed', type: 'exec.refused', payload: { code: 'WRIT_BAD_REQUEST', subject: m.subject } });
      m.term('refused');
      this.#d.metrics?.executionEnded('', 'refused');
      return;
    }
    // The order's span continues the broker's trace (the order's traceparent header).
    const span = startSpan('writ.worker.execute', {
      parent: traceContextOf(m.headers),
      kind: SpanKind.CONSUMER,
      attributes: { 'writ.intent_id': order.intentId, 'writ.session_id': order.sessionId, 'writ.target': order.target },
    });
    const t: Traced = { span, log: lazyChild(this.#d.log, { intentId: order.intentId, sessionId: order.sessionId, traceId: traceIdOf(span) }) };
    const refused = (code: string) => {
      this.#d.metrics?.executionEnded(order.target, 'refused');
      endSpan(span, 'refused', code);
    };
    let claims: GrantClaims;
    try {
      claims = this.#verify(order, grant, ex);
    } catch (e) {
      const err = toWritError(e);
      t.log.warn({ code: err.code }, 'order refused: grant');
      await this.#audit.append({ sessionId: order.sessionId, intentId: order.intentId, type: 'exec.refused', payload: { code: err.code, message: err.message } });
      m.term('refused');
      refused(err.code);
      return;
    }
    // The claim: only one create of this key can ever succeed.
    const fate = await this.#claim(claims);
    if (fate === 'unknown') {
      // Neither stored nor refused, as far as this worker can tell (the bus did not answer):
      // nothing ran; the order comes back after a pause and is claimed then.
      t.log.warn({ grantId: claims.gid }, 'claim not confirmed; the order is redelivered');
      m.nak(CLAIM_RETRY_MS);
      refused('WRIT_TRANSPORT');
      return;
    }
    if (fate === 'taken') {
      await this.#audit.append({
        sessionId: claims.sid,
        intentId: claims.iid,
        type: 'exec.refused',
        payload: { code: 'WRIT_ALREADY_CLAIMED', grantId: claims.gid },
        policyVersion: claims.policyVersion,
      });
      m.term('taken');
      refused('WRIT_ALREADY_CLAIMED');
      return;
    }
    if (this.#claimedHere.evictedLive > 0 && !this.#warnedClaimedFull) {
      this.#warnedClaimedFull = true;
      this.#d.log.warn({ max: this.#d.config.limits.claimedGrantsMax }, 'limits.claimedGrantsMax reached with live grants: the oldest rest on the claims bucket alone; raise it for this claim rate');
    }
    // The broker's audit head, signed into the grant: this intent's events chain onto it at once.
    if (claims.ah) this.#audit.hint(claims.sid, claims.ah);
    // Acked now: from here a crash leaves the intent `running` for the sweeper, never a redelivery.
    m.ack();
    // The claim's event waits up to a second so that, for a quick run, it goes out in one block
    // with the outcome's (one chain write instead of two); a long run still records it within a
    // second, and if the worker dies first the sweeper's exec.lost event carries the claim.
    const claimedAt = Date.now();
    let claimedAudit: Promise<unknown> | undefined;
    const auditClaimed = () => {
      if (!claimedAudit) {
        claimedAudit = this.#audit.append({
          sessionId: claims.sid,
          intentId: claims.iid,
          type: 'exec.claimed',
          at: claimedAt,
          payload: { grantId: claims.gid, mode: claims.mode },
          policyVersion: claims.policyVersion,
        });
        // Handled here and awaited (and rethrown) in the finally below: never an unhandled rejection.
        claimedAudit.catch(() => undefined);
      }
      return claimedAudit;
    };
    const timer = setTimeout(auditClaimed, CLAIM_AUDIT_DELAY_MS);
    try {
      await this.#execute(
        order,
        claims,
        ex,
        () => {
          clearTimeout(timer);
          void auditClaimed();
        },
        t,
      );
    } finally {
      clearTimeout(timer);
      await auditClaimed();
    }
  }

  #verify(order: OrderBody, grant: string | LocalGrant, ex: Executor): GrantClaims {
    const c = typeof grant === 'string' ? verifyGrantSignature(grant, this.#d.trustedKeys, this.#d.signedGrants) : verifyLocalGrant(grant, this.#d.trustedKeys);
    const now = Math.floor(Date.now() / 1000);
    if (c.exp <= now) throw new WritError('WRIT_GRANT_EXPIRED');
    if (c.iat > now + 30) throw new WritError('WRIT_GRANT_INVALID', 'the grant was issued in the future');
    if (c.iid !== order.intentId || c.sid !== order.sessionId) throw new WritError('WRIT_GRANT_MISMATCH', 'the grant is for another intent');
    if (c.tgt !== order.target || c.kind !== ex.kind) throw new WritError('WRIT_GRANT_MISMATCH', 'the grant is for another target');
    if (c.sha256 !== sha256Hex(commandText(order.command))) throw new WritError('WRIT_GRANT_MISMATCH', 'the command is not the one the grant covers');
    return c;
  }

  async #execute(order: OrderBody, claims: GrantClaims, ex: Executor, beforeFinishAudit: () => void, t: Traced): Promise<void> {
    const spec = this.#spec(claims);
    const ac = new AbortController();
    this.#running.add(ac);
    const started = Date.now();
    let status: IntentState;
    let result: ResultBody | undefined;
    let error: ErrorReply | undefined;
    let maskedFields: string[] = [];
    try {
      if (!spec.ok) throw spec.error;
      const maskers: Array<{ stream: string; m: LineMasker }> = [];
      const out = await ex.run({
        order,
        claims,
        signal: ac.signal,
        streamMasker: () => {
          const m = new LineMasker(spec.spec, { hmacKey: this.#d.hmacKey });
          maskers.push({ stream: maskers.length === 0 ? 'stdout' : maskers.length === 1 ? 'stderr' : `stream${maskers.length}`, m });
          return m;
        },
      });
      ({ result, maskedFields } = this.#mask(out, spec.spec, claims, maskers));
      status = 'succeeded';
    } catch (e) {
      const err = toWritError(e);
      if (err.code === 'WRIT_INTERNAL') t.log.error({ err: e }, 'execution failed');
      const { message, withheld } = this.#errorText(e, err, spec);
      // A withheld server error keeps none of its details either: its SQLSTATE (and MySQL's
      // errno) would tell, say, a division by zero from a bad cast, which a CASE over a masked
      // column turns into a bit of its value.
      error = capError({ code: err.code, message, ...(err.details && !withheld ? { details: err.details } : {}) });
      // A commit whose fate is not known ends `unknown`, never `failed` ("no effect" would be a lie).
      status = err.code === 'WRIT_COMMIT_UNKNOWN' ? 'unknown' : 'failed';
    } finally {
      this.#running.delete(ac);
    }
    this.#observe(order.target, status, started, result, error, t.span);
    // The sealed part of the outcome is encoded once: its bytes are what is hashed into the
    // evidence and what is sealed to each recipient (the agent, the durable copy).
    let clear = buildOutcome({ intentId: order.intentId, sessionId: order.sessionId, status, decision: order.record?.decision, result, error });
    let body = outcomeBodyBytes(clear);
    if (result?.rows.length && body.length > this.#budget(claims).budget - FIT_ROOM) {
      // Masked rows beyond the byte limit, or what the bus carries, are cut here. The whole body
      // is measured first (the rows are part of it), row by row only when it is over.
      result = this.#cut(result, claims);
      clear = { ...clear, result };
      body = outcomeBodyBytes(clear);
    }
    // Results were cut to what the bus carries; should the body still not fit, the outcome says
    // so with a code, and the statement's own success stays recorded in its state.
    const max = maxBody(this.#d.nc);
    if (body.length > max) {
      const e = replyTooLarge(body.length, max);
      clear = { ...clear, result: undefined, error: { ...e.toReply(), code: 'WRIT_RESULT_TOO_LARGE', message: `the command ${status}; ${e.message}` } };
      body = outcomeBodyBytes(clear);
    }
    const resultDigest = sha256Hex(body);
    // Sealed before anything leaves: the agent's copy to the key in its intent, the durable copy
    // to the broker's results key (both from the signed grant). A grant without one gets the
    // outcome's status only: results and reasons never cross the bus in clear.
    const sealedFor = (key: string | undefined): Outcome =>
      key
        ? sealOutcomeBody(clear, body, key)
        : {
            v: 1,
            type: 'outcome',
            intentId: clear.intentId,
            sessionId: clear.sessionId,
            status: clear.status,
            at: clear.at,
            error: new WritError('WRIT_SEAL_REQUIRED', `the command ${status}; the grant names no key to seal its outcome to`).toReply(),
          };
    const stk = claims.stk;
    // The durable copy goes into the record with the end state: fitted to what the bus carries
    // beside the record's own fields (an outcome too large says so, sealed, with a code).
    const storedFor = (recordBytes: number): Uint8Array => {
      const bytes = outcomeBytes(sealedFor(stk));
      const max = maxBody(this.#d.nc) - recordBytes;
      if (bytes.length <= max) return bytes;
      const e = replyTooLarge(bytes.length, max);
      return outcomeBytes(stk ? sealOutcome({ ...clear, result: undefined, error: e.toReply() }, stk) : { ...sealedFor(undefined), error: e.toReply() });
    };
    const retry = { log: t.log, context: {} };
    // Evidence first: the agent and the record learn the end only once exec.claimed and
    // exec.finished are stored (the audit writer retries through reconnects).
    beforeFinishAudit();
    await this.#audit.append({
      sessionId: order.sessionId,
      intentId: order.intentId,
      type: 'exec.finished',
      policyVersion: claims.policyVersion,
      payload: {
        status,
        ms: Date.now() - started,
        resultSha256: resultDigest,
        rowCount: result?.rowCount,
        truncated: result?.truncated,
        ...(result?.truncatedBy ? { truncatedBy: result.truncatedBy } : {}),
        maskedFields,
        exitCode: result?.exitCode,
        ...(error ? { error } : {}),
      },
    });
    // Only to the inbox the broker validated and signed into the grant (never a subject the order alone names).
    // A failed send is logged: the durable outcome in the record still reaches the agent through the broker's API.
    if (order.replyTo && claims.rpl) {
      const key = claims.rpl.key;
      sendReply(this.#d.nc, order.replyTo, outcomeBytes(sealedFor(key)), (e) => sealOutcome({ ...clear, result: undefined, error: e.toReply() }, key), t.log, claims.rpl.inbox, traceHeaders(t.span));
    } else if (order.replyTo) {
      t.log.warn('the order names a replyTo its grant does not cover; not sent');
    }
    // The error as the outcome carries it (replaced by a coded one when the outcome did not fit).
    await retryTransient('end state', () => this.#finish(order, claims, status, clear.error, storedFor), retry);
  }

  /** Metrics and the span's end for a run: its status and time, and each masked field's reasons. */
  #observe(target: string, status: IntentState, startedMs: number, result: ResultBody | undefined, error: ErrorReply | undefined, span: Span): void {
    const m = this.#d.metrics;
    if (m) {
      m.executionEnded(target, status === 'succeeded' || status === 'failed' || status === 'unknown' ? status : 'failed', (Date.now() - startedMs) / 1000);
      for (const c of result?.columns ?? []) if (c.masked) for (const r of c.reasons ?? ['unspecified']) m.fieldMasked(target, r);
    }
    endSpan(span, status, error?.code);
  }

  /**
   * Creates the grant's claim. 'ours' when this process now holds it: created here, or stored
   * by a create of this process whose answer was lost (the claim names this process's
   * instance, which no other process, nor this worker after a restart, ever writes). 'taken'
   * when anyone else holds it, or this process already ran it. 'unknown' when the bus answered
   * neither the create nor the read: nothing may run.
   */
  async #claim(claims: GrantClaims): Promise<'ours' | 'taken' | 'unknown'> {
    // A claim of this grant is being settled here now (another copy of the order: handed over
    // directly and queued when the answer was slow). Not 'taken': that claim may end unknown,
    // and this copy is then the one left to run. It goes back, and meets the settled claim.
    if (this.#claiming.has(claims.gid)) return 'unknown';
    if (this.#claimedHere.has(claims.gid)) return 'taken';
    this.#claiming.add(claims.gid);
    try {
      return await this.#settleClaim(claims);
    } finally {
      this.#claiming.delete(claims.gid);
    }
  }

  async #settleClaim(claims: GrantClaims): Promise<'ours' | 'taken' | 'unknown'> {
    const until = claims.exp * 1000 + 60_000;
    // Held from here, synchronously: a second delivery of the order to this process is 'taken'.
    this.#claimedHere.add(claims.gid, until);
    // Only a claim whose earlier create had no known fate may turn out to be this process's
    // own: any other claim naming this process was run by it (and may have been forgotten by
    // #claimedHere since, at its bound), so it is 'taken'.
    const retried = this.#unconfirmed.has(claims.gid);
    this.#unconfirmed.delete(claims.gid);
    try {
      await this.#claims.create(claims.gid, enc.encode(JSON.stringify({ worker: this.id, inst: this.#instance, at: Date.now(), iid: claims.iid })));
      return 'ours';
    } catch (e) {
      if (isKeyTaken(e) && !retried) return 'taken';
      // A timeout or a lost connection (or the key of a create whose answer was lost before):
      // the create may or may not be stored. The claim says.
      const fate = await this.#claimedByUs(claims);
      if (fate === 'unknown') {
        this.#claimedHere.delete(claims.gid);
        this.#unconfirmed.add(claims.gid, until);
      }
      return fate;
    }
  }

  async #claimedByUs(claims: GrantClaims): Promise<'ours' | 'taken' | 'unknown'> {
    try {
      // The KV read has the connection's request timeout: no answer is 'unknown'.
      const e = await this.#claims.get(claims.gid);
      if (!e || e.operation !== 'PUT') return 'unknown';
      const c = e.json<{ inst?: unknown; iid?: unknown }>();
      return c.inst === this.#instance && c.iid === claims.iid ? 'ours' : 'taken';
    } catch {
      return 'unknown';
    }
  }

  #spec(claims: GrantClaims): SpecResult {
    // No spec is not "no column rules": a grant rebuilt without its masking (a re-sent order)
    // must not run unmasked. `{}` is the explicit "no column rules".
    if (claims.mask === undefined || claims.mask === null) return { ok: false, error: new WritError('WRIT_MASKING_FAILED', 'the grant carries no masking spec; nothing ran') };
    // Grants of one rule carry the same spec: it is parsed and compiled once (the masking
    // engine's compiled form is immutable), not once per intent and again per use.
    const key = JSON.stringify(claims.mask);
    let r = this.#specs.get(key);
    if (!r) {
      r = compileSpec(claims.mask, this.#d.hmacKey);
      this.#specs.set(key, r);
    }
    return r;
  }

  /**
   * The error text the agent may see. A database server's text quotes values (`invalid input
   * syntax for type integer: "hunter2"`): when the failed statement touched a masked column,
   * or what it touched is unknown, the whole text is replaced by a generic one for its
   * SQLSTATE; otherwise the value detectors run over it.
   */
  #errorText(e: unknown, err: WritError, spec: SpecResult): { message: string; withheld: boolean } {
    if (!spec.ok) return { message: '[withheld]', withheld: true };
    const ctx = errorContextOf(err) ?? errorContextOf(e);
    const sqlstate = typeof err.details?.sqlstate === 'string' ? err.details.sqlstate : undefined;
    const fromServer = ctx ? ctx.serverText : sqlstate !== undefined;
    if (fromServer && spec.spec.columns.length > 0) {
      let touches = true; // unknown is never cleared
      try {
        if (ctx && !ctx.opaque) touches = sensitiveColumns(spec.spec, ctx.sources).length > 0;
      } catch {
        touches = true;
      }
      if (touches) return { message: genericSqlError(undefined), withheld: true };
    }
    try {
      return { message: maskText(err.message, spec.spec, { hmacKey: this.#d.hmacKey }).text, withheld: false };
    } catch {
      return { message: '[withheld: the message could not be masked]', withheld: true };
    }
  }

  #mask(out: ExecOutput, spec: CompiledMasking, claims: GrantClaims, maskers: Array<{ stream: string; m: LineMasker }>): { result: ResultBody; maskedFields: string[] } {
    const opts = { hmacKey: this.#d.hmacKey };
    void claims;
    if (out.type === 'stream') {
      // Streams were masked line by line while they arrived; report what was masked, and why.
      const columns = maskers.map(({ stream, m }) => {
        const reasons = Object.keys(m.summary().reasons);
        return { name: stream, masked: reasons.length > 0, ...(reasons.length ? { reasons } : {}) };
      });
      // Output beyond what the bus carries is cut here, and the result says so.
      const { budget, by } = this.#budget(claims);
      const stdout = cutUtf8(out.stdout, Math.floor(budget * 0.75));
      const stderr = cutUtf8(out.stderr, budget - Buffer.byteLength(stdout));
      const cut = stdout.length < out.stdout.length || stderr.length < out.stderr.length;
      return {
        result: {
          columns,
          rows: [],
          rowCount: 0,
          truncated: out.truncated || cut,
          ...(cut ? { truncatedBy: by } : {}),
          command: 'exec',
          exitCode: out.exitCode,
          signal: out.signal,
          stdout,
          stderr,
        },
        maskedFields: columns.filter((c) => c.masked).map((c) => c.name),
      };
    }
    const fields = out.fields.map((f) => {
      if (f.origin === null) {
        const sensitive = f.sources?.length ? sensitiveColumns(spec, f.sources) : [];
        return { name: f.name, origin: null, ...(sensitive.length ? { sensitiveSources: sensitive } : {}), ...(f.opaque ? { opaque: f.opaque } : {}) };
      }
      if (f.viewSources && sensitiveColumns(spec, [`${f.origin.table}.${f.origin.column}`]).length === 0) {
        // A view column is masked when the view draws on any sensitive base column.
        const sensitive = sensitiveColumns(spec, f.viewSources);
        if (sensitive.length) return { name: f.name, origin: null, sensitiveSources: sensitive };
      }
      return { name: f.name, origin: f.origin, ...(f.wholeRow ? { wholeRow: true } : {}), ...(f.tableColumns ? { tableColumns: f.tableColumns } : {}) };
    });
    const masked = maskRows({ fields, rows: out.rows }, spec, opts);
    return {
      result: {
        columns: masked.columns.map((c) => ({ name: c.name, masked: c.masked, ...(c.reasons.length ? { reasons: c.reasons } : {}) })),
        rows: out.unordered ? canonicalOrder(masked.rows) : masked.rows,
        rowCount: out.rowCount,
        truncated: out.truncated,
        ...(out.truncated ? { truncatedBy: out.truncatedBy ?? ('rows' as const) } : {}),
        command: out.command,
      },
      maskedFields: masked.columns.filter((c) => c.masked).map((c) => `${c.name} (${c.reasons.join(', ')})`),
    };
  }

  /**
   * The byte limit applies to what is sent, and so does what the bus carries: masked rows
   * beyond the smaller of the two are cut, and the result says which limit cut them.
   */
  #cut(result: ResultBody, claims: GrantClaims): ResultBody {
    const { budget, by } = this.#budget(claims);
    const { rows, cut } = fitBytes(result.rows, budget);
    return cut ? { ...result, rows, rowCount: rows.length, truncated: true, truncatedBy: by } : result;
  }

  /** Bytes a result may take: the grant's byte limit, or less when the server carries less. */
  #budget(claims: GrantClaims): { budget: number; by: 'bytes' | 'transport' } {
    // Room for the outcome's envelope (ids, decision, column metadata) beside the rows; sealing
    // sends the body as base64url, 4/3 of its size, so the rows get 3/4 of what remains.
    const transport = Math.max(4096, Math.floor((maxBody(this.#d.nc) - 64 * 1024) * 0.74));
    const grant = claims.limits.bytes ?? DEFAULT_RESULT_BYTES;
    return grant <= transport ? { budget: grant, by: 'bytes' } : { budget: transport, by: 'transport' };
  }

  /**
   * Moves the intent's record from `dispatched` to its end state by compare-and-set, with the
   * durable outcome in the same write: one write ends the run. The pending part of an approved
   * intent (its raw command among it) is not kept past the run.
   */
  async #finish(order: OrderBody, claims: GrantClaims, status: IntentState, error: ErrorReply | undefined, storedFor: (recordBytes: number) => Uint8Array): Promise<void> {
    const ended = ({ pending: _p, ending: _e, ...rec }: IntentRecord): IntentRecord => ({ ...rec, state: status, updatedAt: Date.now(), ...(error ? { error } : {}) });
    const r = order.record;
    // Fast path: the order carries the record at stateRevision; one compare-and-set, no read.
    if (r && r.intentId === claims.iid && r.sessionId === claims.sid && r.principal.sub === claims.sub && r.state === 'dispatched') {
      const next = ended(r);
      try {
        await updateRecord(this.#intents, next, order.stateRevision, storedFor);
        return;
      } catch {
        // The record moved on (e.g. the sweeper): take the slow path, which reads it.
      }
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await getRecord(this.#intents, order.intentId);
      if (!entry) {
        this.#d.log.error({ intentId: order.intentId, status }, 'the intent has no record: its end and durable outcome are not stored (the audit log holds exec.finished)');
        return;
      }
      const rec = entry.rec;
      if (rec.state !== 'dispatched' && rec.state !== 'running') {
        // The sweeper already declared it unknown; the evidence keeps both.
        this.#d.log.warn({ intentId: order.intentId, state: rec.state }, 'intent left dispatched before the worker finished');
        return;
      }
      const next = ended(rec);
      try {
        await updateRecord(this.#intents, next, entry.revision, storedFor);
        return;
      } catch {
        // Lost a race with another writer of this record: read again.
      }
    }
    this.#d.log.error({ intentId: order.intentId, status }, 'the record kept changing: the end and durable outcome are not stored (the audit log holds exec.finished); the sweeper ends it unknown');
  }
}

/**
 * Longest error message an outcome, the record and the audit log carry, in characters. A
 * target's error text is the agent's to shape (a cast of a 1.5 MB string quotes it whole): past
 * this it is cut, and details too long to keep are reduced to their short fields, so the record's
 * end write stays within what NATS carries and exec.finished keeps its payload inline.
 */
const MAX_ERROR_CHARS = 2048;

function capError(e: ErrorReply): ErrorReply {
  const message = e.message.length > MAX_ERROR_CHARS ? `${e.message.slice(0, MAX_ERROR_CHARS)}… [${e.message.length - MAX_ERROR_CHARS} more characters cut]` : e.message;
  let details = e.details;
  if (details !== undefined && JSON.stringify(details).length > MAX_ERROR_CHARS) {
    details = Object.fromEntries(Object.entries(details).filter(([, v]) => typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 256)));
  }
  return { ...e, message, ...(details !== undefined ? { details } : {}) };
}

/** The grant's byte limit when the policy sets none (docs/policy.md: 4 MiB). */
const DEFAULT_RESULT_BYTES = 4 * 1024 * 1024;

/** The longest prefix of `s` whose UTF-8 encoding fits in `max` bytes (never splits a character). */
function cutUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  const b = Buffer.from(s).subarray(0, Math.max(0, max));
  return b.toString('utf8').replace(/\uFFFD$/, '');
}

/** Rows sorted by their masked text (RowsOutput.unordered): an order that depends on nothing masked. */
function canonicalOrder(rows: unknown[][]): unknown[][] {
  const keyed = rows.map((r) => ({ r, k: JSON.stringify(r, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  return keyed.map((x) => x.r);
}

/** Room left for the envelope when rows are fitted to a byte limit. */
const FIT_ROOM = 1024;

/** Keeps the leading rows whose JSON fits in `limit` bytes (with room for the envelope). */
function fitBytes(rows: unknown[][], limit: number | undefined): { rows: unknown[][]; cut: boolean } {
  if (limit === undefined) return { rows, cut: false };
  const budget = Math.max(0, limit - FIT_ROOM);
  let used = 2;
  for (let i = 0; i < rows.length; i++) {
    used += Buffer.byteLength(JSON.stringify(rows[i])) + 1;
    if (used > budget) return { rows: rows.slice(0, i), cut: true };
  }
  return { rows, cut: false };
}
