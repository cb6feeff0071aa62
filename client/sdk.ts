/**
 * The agent SDK. An agent needs only three NATS permissions: publish `writ.intent.>`
 * and `writ.api.>`, and subscribe to its own inbox. `run` opens a reply box under that inbox
 * (client/replies.ts: one subscription per client serves them all), sends the intent (a core
 * request, answered by a broker's receipt once what it led to is stored) with the box as
 * `replyTo`, and takes the first outcome that arrives there; the broker (denials) or the
 * worker (results) answers it directly.
 *
 * Isolation on a shared bus (docs/ARCHITECTURE.md, "Transport: replies and isolation"): every
 * reply subject the SDK names is under the inbox of its own token's principal
 * (`<inboxPrefix>.<inboxId>.<random>`; the broker answers nothing else), and every intent and
 * outcome request carries this client's X25519 public key: outcomes arrive sealed to it and are
 * opened here. An outcome that is not sealed to this client's key is refused (WRIT_SEAL_INVALID).
 */
import { randomBytes } from 'node:crypto';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { generateSealKeyPair, inboxIdOfToken, openOutcome, replySubjectFor, type SealKeyPair } from '../lib/seal.ts';
import { endSpan, startClientSpan, traceHeaders, type Span } from '../lib/tracing.ts';
import {
  ApiReplySchema,
  ATTEMPT_HEADER,
  buildOutcome,
  IntentReceiptSchema,
  names as makeNames,
  OutcomeSchema,
  WritError,
  isErrorCode,
  toWritError,
  type ApiReply,
  type Command,
  type ErrorReply,
  type Intent,
  type IntentReceipt,
  type IntentState,
  type Names,
  type Outcome,
} from '../schemas/index.ts';
import { ReplyMux, type ReplyBox } from './replies.ts';
import { settle, type SettleDeps } from './settle.ts';

/** How long `submit` keeps sending an intent no broker acknowledged (a reconnect, a broker restarting, a leader election). */
const PUBLISH_RETRY_MS = 10_000;
/** The longest an intent is sent again, whatever the caller's deadline. */
const PUBLISH_RETRY_MAX_MS = 60_000;
/** One send's wait for the broker's receipt (it answers once the intent's record, evidence and order are stored). */
const PUBLISH_ATTEMPT_MS = 2_000;
/** How long `run`, refused at intake, waits for the sealed refusal the broker sent before its receipt. */
const REFUSAL_GRACE_MS = 1_000;
/** How long `run` relies on the intent's inbox alone before it also asks the broker (most intents end sooner). */
const ASK_AFTER_MS = 2_000;
/** How long a read-only API call (status, explain …) keeps asking while no broker answers (a reconnect, a failover). */
const API_RETRY_MS = 15_000;

/** A failure of a bus call that a later attempt can get past. */
function transient(e: unknown): boolean {
  return toWritError(e).code === 'WRIT_TRANSPORT';
}

/**
 * True when a failed send may still have been taken: its receipt was lost or never came (a
 * timeout, a connection that closed under it). No responders or a refusal says nobody took it.
 */
function maybeStored(e: unknown): boolean {
  if (e instanceof WritError) return e.details?.maybeStored === true;
  const name = e instanceof Error ? e.name : '';
  return name === 'TimeoutError' || name === 'ConnectionError' || name === 'ClosedConnectionError' || name === 'DrainingConnectionError';
}

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export interface IntentRequest {
  target: string;
  sql?: string;
  command?: string;
  /** Groups a planner run; one is made per client when absent. */
  sessionId?: string;
  /** Resubmitting with the same id is idempotent. */
  intentId?: string;
  justification?: string;
  /** Epoch ms after which the broker must not act. */
  deadline?: number;
}

export interface Submitted {
  intentId: string;
  sessionId: string;
  /** True when the server had this id already (a resubmission). */
  duplicate: boolean;
}

/** An outcome that is an error, as an exception with its stable code. */
export class WritOutcomeError extends Error {
  readonly code: string;
  readonly outcome: Outcome;
  constructor(outcome: Outcome) {
    super(outcome.error?.message ?? outcome.status);
    this.name = 'WritOutcomeError';
    this.code = outcome.error?.code ?? 'WRIT_INTERNAL';
    this.outcome = outcome;
  }
}

export function newId(prefix = 'i'): string {
  return `${prefix}_${randomBytes(12).toString('base64url')}`;
}

const enc = new TextEncoder();

export interface WritClientOptions {
  nc: NatsConnection;
  /** The agent's short-lived token, or a function that returns a fresh one. */
  token: string | (() => string | Promise<string>);
  prefix?: string;
  sessionId?: string;
  /**
   * What reply subjects start with, before the principal's inbox id: `_INBOX` (default) or
   * `_INBOX.<role>` (`_INBOX.agent`, `_INBOX.approver`) where NATS permissions key on the role.
   */
  inboxPrefix?: string;
  /** How long the client's reply subscription outlives its last run, ms (default 5,000): the next run of a busy agent reuses it. */
  replyLingerMs?: number;
}

/** The broker API's operations (`writ.api.<op>`). */
type ApiOp = 'wait' | 'status' | 'result' | 'cancel' | 'explain' | 'targets' | 'pending' | 'grants' | 'revoke';

export class WritClient {
  readonly names: Names;
  readonly sessionId: string;
  readonly #o: WritClientOptions;
  /** This client's sealing key pair: the private half never leaves the process. */
  readonly #keys: SealKeyPair = generateSealKeyPair();
  /** Where this client's receipts and outcomes arrive: one subscription, not one per run (client/replies.ts). */
  readonly #replies: ReplyMux;

  constructor(o: WritClientOptions) {
    this.#o = o;
    this.#replies = new ReplyMux(o.nc, o.replyLingerMs === undefined ? {} : { lingerMs: o.replyLingerMs });
    this.names = makeNames(o.prefix ?? 'writ');
    this.sessionId = o.sessionId ?? newId('s');
  }

  /** The public key outcomes for this client are sealed to (raw X25519, base64url). */
  get replyKey(): string {
    return this.#keys.publicKey;
  }

  async #token(): Promise<string> {
    return typeof this.#o.token === 'string' ? this.#o.token : this.#o.token();
  }

  /** A fresh reply subject under the inbox of this token's principal: the only kind the broker answers. */
  #replySubject(token: string): string {
    return replySubjectFor(this.#inboxId(token), this.#o.inboxPrefix ?? '_INBOX');
  }

  /** A reply box under the inbox of this token's principal (client/replies.ts). */
  #box(token: string): ReplyBox {
    return this.#replies.open(this.#o.inboxPrefix ?? '_INBOX', this.#inboxId(token));
  }

  #inboxId(token: string): string {
    try {
      return inboxIdOfToken(token);
    } catch (e) {
      throw new WritError('WRIT_TOKEN_INVALID', 'the token is not a JWT with iss and sub', { cause: e });
    }
  }

  /** Opens an outcome sealed to this client; anything else is refused, never trusted. */
  #open(o: Outcome): Outcome {
    try {
      return openOutcome(o, this.#keys);
    } catch (e) {
      throw new WritError('WRIT_SEAL_INVALID', `outcome of ${o.intentId}: ${(e as Error).message}`, { cause: e });
    }
  }

  #intent(req: IntentRequest, token: string, replyTo?: string): Intent {
    const command: Command | undefined = req.sql !== undefined ? { kind: 'sql', sql: req.sql } : req.command !== undefined ? { kind: 'shell', command: req.command } : undefined;
    if (!command || (req.sql !== undefined && req.command !== undefined)) throw new WritError('WRIT_BAD_REQUEST', 'give exactly one of sql or command');
    return {
      v: 1,
      type: 'intent',
      id: req.intentId ?? newId(),
      sessionId: req.sessionId ?? this.sessionId,
      target: req.target,
      command,
      token,
      submittedAt: Date.now(),
      ...(req.justification ? { justification: req.justification } : {}),
      ...(req.deadline ? { deadline: req.deadline } : {}),
      ...(replyTo ? { replyTo } : {}),
      replyKey: this.#keys.publicKey,
    };
  }

  /**
   * Sends the intent to the brokers (with the span's W3C trace context in its headers: the broker
   * and worker continue that trace) and returns on the broker's receipt, which comes once the
   * intent's record and evidence (and, when it runs, its order) are stored. A send nobody answered
   * (no broker, a reconnect, a lost receipt) or answered with a retryable error is sent again
   * under the same id until `deadline`, never longer than PUBLISH_RETRY_MAX_MS, backing off: the
   * record makes a second send harmless (the receipt then says `duplicate`). A refusal is thrown
   * at once. A final failure is WRIT_TRANSPORT with `details.maybeStored` when some send may
   * have been taken.
   */
  async #publish(intent: Intent, span: Span, deadline = Date.now() + PUBLISH_RETRY_MS): Promise<Submitted> {
    const subject = this.names.intent(intent.target);
    const data = enc.encode(JSON.stringify(intent));
    // Every attempt names the same box: a receipt for an earlier attempt that comes late still counts.
    const box = this.#box(intent.token);
    const end = Math.min(deadline, Date.now() + PUBLISH_RETRY_MAX_MS);
    let stored = false;
    try {
      for (let attempt = 1; ; attempt++) {
        let failure: unknown;
        try {
          // Short attempts: a receipt lost to a reconnect is asked for again soon, not after a long wait.
          const timeout = Math.max(100, Math.min(PUBLISH_ATTEMPT_MS, end - Date.now()));
          const h = traceHeaders(span) ?? natsHeaders();
          h.set(ATTEMPT_HEADER, String(attempt));
          this.#o.nc.publish(subject, data, { reply: box.subject, headers: h });
          const r = await receiptOf(box, timeout, subject);
          if (r.type === 'receipt') return { intentId: intent.id, sessionId: intent.sessionId, duplicate: r.duplicate };
          const err = toError(r.error);
          // A refusal says nothing was stored by this send. After an earlier send that may have
          // been taken (its receipt lost), it does not say that one was not: its broker may store
          // it a moment later (a token that expired meanwhile, a broker that trusts other keys).
          // Only the broker's record can tell, so this is asked of it, never reported as denied.
          if (!err.retryable && stored) {
            throw new WritError('WRIT_TRANSPORT', `a later send of intent ${intent.id} was refused (${err.code}) after an earlier one that may have been taken`, {
              cause: err,
              details: { intentId: intent.id, maybeStored: true, refused: err.code },
            });
          }
          if (!err.retryable) throw err;
          stored = true; // the broker took it and failed part-way: some of it may be stored
          failure = err;
        } catch (e) {
          if (e instanceof WritError && (e.details?.refused !== undefined || (e.code !== 'WRIT_TRANSPORT' && failure === undefined))) throw e;
          if (failure === undefined) {
            if (!transient(e)) throw toWritError(e);
            stored ||= maybeStored(e);
            failure = e;
          }
        }
        if (Date.now() >= end || this.#o.nc.isClosed()) {
          throw new WritError(
            'WRIT_TRANSPORT',
            `no broker acknowledged intent ${intent.id}${stored ? ' (it may have been taken: wait for it by its id before submitting it again under a new id)' : ''}`,
            { cause: failure, details: { intentId: intent.id, maybeStored: stored } },
          );
        }
        const ms = Math.min(2_000, 50 * 2 ** Math.min(attempt - 1, 5)) * (0.5 + Math.random());
        await sleepMs(Math.min(ms, end - Date.now()));
      }
    } finally {
      box.close();
    }
  }

  /** A span for one intent, child of the caller's active OpenTelemetry context when it has one. */
  #span(op: 'submit' | 'run', intent: Intent): Span {
    return startClientSpan(`writ.${op}`, { 'writ.intent_id': intent.id, 'writ.session_id': intent.sessionId, 'writ.target': intent.target });
  }

  /**
   * Sends an intent and returns once a broker has acknowledged it (its record is stored). One no
   * broker acknowledged (a reconnect, a broker restarting) is sent again under the same id for
   * `timeoutMs` (default 10 s; at most 60 s), then WRIT_TRANSPORT. A refusal is thrown.
   */
  async submit(req: IntentRequest, opts: { timeoutMs?: number } = {}): Promise<Submitted> {
    const intent = this.#intent(req, await this.#token());
    const span = this.#span('submit', intent);
    try {
      const s = await this.#publish(intent, span, Date.now() + (opts.timeoutMs ?? PUBLISH_RETRY_MS));
      endSpan(span, s.duplicate ? 'duplicate' : 'submitted');
      return s;
    } catch (e) {
      endSpan(span, 'error', (e as { code?: string }).code ?? 'WRIT_TRANSPORT');
      throw e;
    }
  }

  /**
   * Submits and waits for the outcome. Rejects only on transport failure or timeout; a denial is an outcome.
   * The answer on the intent's own inbox is the fast path; the broker's record (client/settle.ts) covers
   * what that inbox can miss: an outcome sent while the connection reconnected, and a lost worker's `unknown`.
   */
  async run(req: IntentRequest, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Outcome> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const token = await this.#token();
    if (tokenExpired(token)) {
      // The broker answers nothing for a token it cannot verify (no deputy): say it here, nothing is sent.
      return {
        v: 1,
        type: 'outcome',
        intentId: req.intentId ?? newId(),
        sessionId: req.sessionId ?? this.sessionId,
        status: 'denied',
        at: Date.now(),
        error: { code: 'WRIT_TOKEN_EXPIRED', message: 'the token has expired (checked by the SDK; the intent was not sent)' },
      };
    }
    const box = this.#box(token);
    let intent: Intent;
    try {
      intent = this.#intent(req, token, box.subject);
    } catch (e) {
      box.close();
      throw e;
    }
    // The first outcome sealed to this client; anything else on the subject (unsealed, another key, altered) is skipped.
    const direct = (async () => {
      for (;;) {
        const r = await box.next();
        if (!('msg' in r)) return undefined;
        let o: Outcome;
        try {
          o = this.#open(OutcomeSchema.parse(r.msg.json()));
        } catch {
          continue;
        }
        // Sealed to this client's key is not "about this intent": anyone who saw the key in an
        // intent can seal to it. Another intent's outcome on this subject is skipped.
        if (o.intentId === intent.id && o.sessionId === intent.sessionId) return o;
      }
    })();
    const span = this.#span('run', intent);
    try {
      let askNow: boolean;
      try {
        // A duplicate is asked of the API at once: its answer may have gone to an earlier call's inbox.
        askNow = (await this.#publish(intent, span, deadline)).duplicate;
      } catch (e) {
        // Refused at the broker's intake (nothing stored): a denial is an outcome. The broker
        // sent it, sealed, to this run's inbox before its receipt, so it is normally here already.
        if (e instanceof WritError && e.code !== 'WRIT_TRANSPORT') {
          const sent = await raceTimeout(direct, REFUSAL_GRACE_MS, opts.signal);
          const outcome = sent ?? buildOutcome({ intentId: intent.id, sessionId: intent.sessionId, status: 'denied', error: e.toReply() });
          endSpan(span, outcome.status, outcome.error?.code);
          return outcome;
        }
        // No receipt on any attempt: the intent may be stored and under way. Only the broker
        // can say, so ask it for the rest of the run's time rather than report a failure that may not be.
        const unsure = e instanceof WritError && e.details?.maybeStored === true;
        if (!unsure) throw e;
        if (Date.now() >= deadline) {
          // The run's time went by with no answer at all (no broker took it, or none could answer
          // this sender: an unverifiable token is answered nothing).
          throw new WritError('WRIT_TIMEOUT', `no answer for intent ${intent.id} within ${timeoutMs} ms; it may have been taken: wait for it by its id`, {
            cause: e,
            details: { intentId: intent.id, maybeStored: true },
          });
        }
        askNow = true;
      }
      const outcome = await settle(this.#settleDeps, {
        intentId: intent.id,
        sessionId: intent.sessionId,
        deadline,
        signal: opts.signal,
        refusalsEnd: false,
        // Every attempt named this run's inbox: an answer to any of them arrives there.
        direct,
        askAfterMs: askNow ? 0 : Math.min(ASK_AFTER_MS, timeoutMs / 2),
      });
      endSpan(span, outcome.status, outcome.error?.code);
      return outcome;
    } catch (e) {
      endSpan(span, 'error', (e as { code?: string }).code ?? 'WRIT_TRANSPORT');
      throw e;
    } finally {
      box.close();
    }
  }

  /** What settle() needs: the connection (for its reconnects) and the broker API. */
  get #settleDeps(): SettleDeps {
    return {
      nc: this.#o.nc,
      api: (op, intentId, timeoutMs) => this.#api(op, op === 'wait' ? { intentId, timeoutMs } : { intentId }, op === 'wait' ? timeoutMs + 2_000 : timeoutMs),
    };
  }

  /**
   * One broker API request. A request no broker answered (a timeout, no responders, the
   * connection reconnecting) is WRIT_TRANSPORT; a coded reply is its WritError.
   */
  async #api(op: ApiOp, body: Record<string, unknown>, timeoutMs: number): Promise<ApiReply> {
    const token = await this.#token();
    const withKey = op === 'wait' || op === 'result' ? { replyKey: this.#keys.publicKey } : {};
    let m;
    try {
      m = await this.#o.nc.request(this.names.api(op), enc.encode(JSON.stringify({ v: 1, type: op, token, ...body, ...withKey })), {
        timeout: timeoutMs,
        noMux: true,
        reply: this.#replySubject(token),
      });
    } catch (e) {
      // The broker answers no request whose token fails verification: say so when it is plainly expired.
      if (tokenExpired(token)) throw new WritError('WRIT_TOKEN_EXPIRED', 'the token has expired; the broker does not answer requests with an expired token', { cause: e });
      if (transient(e)) throw new WritError('WRIT_TRANSPORT', `no broker answered ${op} within ${timeoutMs} ms (${(e as Error).message})`, { cause: e });
      throw toWritError(e);
    }
    const reply = ApiReplySchema.parse(m.json());
    if (reply.type === 'error') throw toError(reply.error);
    if (reply.type === 'outcome') return { ...reply, outcome: this.#open(reply.outcome) };
    return reply;
  }

  /**
   * An API request asked again while no broker answers it (WRIT_TRANSPORT: a reconnect, a
   * failover, a broker's own bus error) for up to API_RETRY_MS. Only for requests that asking
   * twice cannot change (the read-only ones), or whose second answer `again` can read: it may
   * turn a refusal met on a retry into the answer (cancel). Each attempt waits at most `timeoutMs`.
   */
  async #ask(op: ApiOp, body: Record<string, unknown>, timeoutMs: number, again?: (e: WritError) => Promise<ApiReply | undefined>): Promise<ApiReply> {
    const end = Date.now() + API_RETRY_MS;
    let retried = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#api(op, body, Math.max(250, Math.min(timeoutMs, end - Date.now())));
      } catch (e) {
        const answer = retried && again && e instanceof WritError ? await again(e) : undefined;
        if (answer) return answer;
        if (!(e instanceof WritError && e.code === 'WRIT_TRANSPORT') || Date.now() >= end || this.#o.nc.isClosed()) throw e;
        retried = true;
        await sleepMs(Math.min(Math.min(2_000, 100 * 2 ** Math.min(attempt, 4)) * (0.5 + Math.random()), end - Date.now()));
      }
    }
  }

  /**
   * Waits for an intent's outcome through the broker API (works after a reconnect or from another
   * process). A pending intent is waited for; if still pending at the timeout, it is reported as such.
   */
  async wait(intentId: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Outcome> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return settle(this.#settleDeps, { intentId, sessionId: this.sessionId, deadline: Date.now() + timeoutMs, signal: opts.signal, askAfterMs: 0, refusalsEnd: true });
  }

  async status(intentId: string): Promise<IntentState> {
    const r = await this.#ask('status', { intentId }, 5_000);
    return r.type === 'status' ? r.status : r.type === 'outcome' ? r.outcome.status : 'unknown';
  }

  /** Would this intent be allowed, and why? Nothing runs. */
  async explain(req: Pick<IntentRequest, 'target' | 'sql' | 'command' | 'sessionId'>): Promise<Extract<ApiReply, { type: 'explanation' }>> {
    const command = req.sql !== undefined ? { kind: 'sql', sql: req.sql } : { kind: 'shell', command: req.command ?? '' };
    const r = await this.#ask('explain', { target: req.target, command, sessionId: req.sessionId ?? this.sessionId }, 10_000);
    if (r.type !== 'explanation') throw new WritError('WRIT_INTERNAL', 'unexpected reply');
    return r;
  }

  /** The targets this principal may use, and for what. */
  async targets(): Promise<Extract<ApiReply, { type: 'targets' }>['targets']> {
    const r = await this.#ask('targets', {}, 10_000);
    return r.type === 'targets' ? r.targets : [];
  }

  /** Approvers: pending intents this caller may decide on. */
  async pending(opts: { intentId?: string } = {}): Promise<Record<string, unknown>[]> {
    return (await this.pendingList(opts)).requests;
  }

  /**
   * Approvers: the pending requests, and how many were left out because one reply could not hold
   * them all (fair across requesters; ask for one by `intentId` to see it whatever the list holds).
   */
  async pendingList(opts: { intentId?: string } = {}): Promise<{ requests: Record<string, unknown>[]; omitted: number }> {
    const r = await this.#ask('pending', opts.intentId ? { intentId: opts.intentId } : {}, 10_000);
    return r.type === 'pending' ? { requests: r.requests, omitted: r.omitted ?? 0 } : { requests: [], omitted: 0 };
  }

  /**
   * Approvers: votes on a pending intent with the caller's own token. Resolves with the
   * intent's state after the vote, or rejects with the coded reason the broker refused it.
   * The vote names the command it is for (`commandSha256`, as `pending()` or the approval
   * request showed it); without one, it is taken from this caller's `pending()` view, and an
   * intent missing there is refused here (WRIT_NOT_PENDING) before anything is sent.
   */
  async decide(intentId: string, verdict: 'approve' | 'reject', opts: { reason?: string; windowSec?: number; timeoutMs?: number; commandSha256?: string } = {}): Promise<string> {
    let commandSha256 = opts.commandSha256;
    if (commandSha256 === undefined) {
      const shown = (await this.pending({ intentId })).find((p) => p.intentId === intentId);
      if (!shown || typeof shown.commandSha256 !== 'string') throw new WritError('WRIT_NOT_PENDING', `${intentId} is not among the pending requests you may decide on`);
      commandSha256 = shown.commandSha256;
    }
    const token = await this.#token();
    const inbox = this.#replySubject(token);
    const sub = this.#o.nc.subscribe(inbox, { max: 1, timeout: opts.timeoutMs ?? 10_000 });
    const answer = (async () => {
      for await (const m of sub) return m.json<{ accepted: boolean; status?: string; code?: string; message?: string }>();
      return undefined;
    })().catch(() => undefined);
    const body = {
      v: 1,
      type: 'approval.decision',
      intentId,
      verdict,
      token,
      decisionId: newId('d'),
      at: Date.now(),
      replyTo: inbox,
      commandSha256,
      ...(opts.reason ? { reason: opts.reason } : {}),
      ...(opts.windowSec ? { windowSec: opts.windowSec } : {}),
    };
    // Core NATS, never a stream: the vote carries this approver's token, which must not be stored.
    this.#o.nc.publish(this.names.approvalDecision(intentId), enc.encode(JSON.stringify(body)));
    const a = await answer;
    if (!a) throw new WritError('WRIT_TIMEOUT', 'no answer from a broker');
    if (!a.accepted) throw toError({ code: a.code ?? 'WRIT_INTERNAL', message: a.message ?? 'refused' });
    return a.status ?? 'pending';
  }

  async grants(): Promise<Record<string, unknown>[]> {
    const r = await this.#ask('grants', {}, 10_000);
    return r.type === 'grants' ? r.windows : [];
  }

  async revoke(windowId: string): Promise<void> {
    await this.#api('revoke', { windowId }, 10_000);
  }

  /**
   * Withdraws a pending intent of this principal. Asked again while no broker answers; a retry
   * that finds the intent no longer pending asks where it stands, and an intent now `cancelled`
   * was cancelled by the attempt whose answer was lost.
   */
  async cancel(intentId: string): Promise<IntentState> {
    const r = await this.#ask('cancel', { intentId }, 5_000, async (e) => {
      if (e.code !== 'WRIT_NOT_PENDING') return undefined;
      const now = await this.status(intentId);
      return now === 'cancelled' ? { v: 1, type: 'status', intentId, status: now } : undefined;
    });
    return r.type === 'status' ? r.status : 'unknown';
  }
}

/** True when the JWT's `exp` has passed (decoded, not verified: only to explain a missing answer). */
function tokenExpired(token: string): boolean {
  try {
    const p = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof p.exp === 'number' && p.exp * 1000 < Date.now();
  } catch {
    return false;
  }
}

/**
 * The next message on an intent's reply box: its receipt, or the server's no-responders status
 * (nobody took it), or a WRIT_TRANSPORT that says whether it may have been taken.
 */
async function receiptOf(box: ReplyBox, timeoutMs: number, subject: string): Promise<IntentReceipt> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await box.next(Math.max(0, end - Date.now()));
    if ('timedOut' in r) throw new WritError('WRIT_TRANSPORT', `no receipt within ${timeoutMs} ms`, { details: { maybeStored: true } });
    if ('closed' in r) throw new WritError('WRIT_TRANSPORT', 'the connection closed before a receipt came', { details: { maybeStored: true } });
    if (r.msg.headers?.code === 503) throw new WritError('WRIT_TRANSPORT', `no broker listens on ${subject}`, { details: { maybeStored: false } });
    // Anything else on the box is not an answer: a stray message said nothing about the intent,
    // and taking it for a refusal reported `denied` of an intent that then ran.
    const parsed = IntentReceiptSchema.safeParse(safeJson(r.msg.data));
    if (parsed.success) return parsed.data;
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

function toError(e: ErrorReply): WritError {
  return isErrorCode(e.code) ? new WritError(e.code, e.message) : new WritError('WRIT_INTERNAL', `${e.code}: ${e.message}`);
}

async function raceTimeout<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
      new Promise<never>((_, reject) => {
        if (!signal) return;
        if (signal.aborted) reject(signal.reason);
        onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}
