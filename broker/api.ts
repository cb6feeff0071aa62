/**
 * The agents' request/reply API on `writ.api.<op>`, served by every broker replica in
 * one queue group. Each request carries the agent's token; an agent only ever sees its
 * own intents (another principal's id answers "not found", not "forbidden").
 *
 * Answers go only to a reply subject under the requester's own inbox (lib/reply.ts), and only
 * once its token is verified: an invalid request, or one that names any other reply subject
 * ($KV, $JS, writ.audit, another principal's inbox), gets no answer and is audited under
 * `_unattributed`. Outcomes are answered sealed to the request's `replyKey`.
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { KvEntry } from '@nats-io/kv';
import { LRUCache } from 'lru-cache';
import { ZodError } from 'zod';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { AuditWriter } from '../audit/index.ts';
import {
  getRecord,
  inboxIdFor,
  recordOf,
  isReplySubjectOf,
  openOutcome,
  principalKey,
  sanitizeSubject,
  sealOutcome,
  sendReply,
  serveConcurrently,
  type Lane,
  type Logger,
  type SealKeyPair,
  type ServeLoop,
} from '../lib/index.ts';
import {
  API_OPS,
  ApiRequestSchema,
  OutcomeSchema,
  TERMINAL_STATES,
  WritError,
  commandText,
  formatIssues,
  toWritError,
  type ApiReply,
  type ApiRequest,
  type IntentRecord,
  type IntentState,
  type Names,
  type Outcome,
  type TargetConfig,
} from '../schemas/index.ts';
import type { IdentityVerifier, VerifiedIdentity } from './identity.ts';
import type { Buckets } from './provision.ts';
import type { Approvals } from './approvals.ts';
import type { Sweeper } from './sweeper.ts';
import type { ClassifyCommand } from './classify-command.ts';
import type { SessionOwners } from './sessions.ts';
import type { PolicyEngine } from './policy.ts';
import { tokenIn } from './intake.ts';
import { redactCommand, redactDeep, withRedactedReasons } from './redact.ts';

export interface ApiDeps {
  nc: NatsConnection;
  names: Names;
  kv: Buckets;
  js: JetStreamClient;
  jsm: JetStreamManager;
  identity: IdentityVerifier;
  audit: AuditWriter;
  log: Logger;
  approvals: Approvals;
  sweeper: Sweeper;
  /** The active policy (read at each request, so a reloaded policy answers at once). */
  policy: () => PolicyEngine;
  targets: ReadonlyMap<string, TargetConfig>;
  /** The broker's classifier (shared cache and limits). */
  classify: ClassifyCommand;
  /** Session ownership: `explain` may audit only into the asker's own session. */
  sessions: SessionOwners;
  /** Opens the durable outcome (sealed to the broker) to re-seal it to the asking agent. */
  resultsKey: SealKeyPair;
  /** results.maxAgeSec: how long a stored outcome's rows are answered. */
  resultsMaxAgeSec: number;
  /** An explained command is held to the size an intent may have (limits.maxIntentBytes). */
  maxCommandBytes: number;
  /** limits.concurrency: requests handled at once (waits apart), as for intents. */
  concurrency: number;
  /** identity.maxTokenBytes: a token longer than this is not looked for in a request's bytes. */
  maxTokenBytes: number;
}

/**
 * An intent's outcome in clear, for sealing to whoever asks: the durable outcome the record
 * holds (opened with the broker's results key; the sweeper's own `unknown` is unsealed and
 * carries no data), or, without one, built from the record.
 */
export function outcomeOf(rec: IntentRecord, d: { resultsKey: SealKeyPair; log: Logger; maxAgeSec: number }, nowMs = Date.now()): Outcome {
  const o = rec.outcome;
  // Rows are answered for results.maxAgeSec after the run; later, the status and the error only.
  if (o && o.intentId === rec.intentId && o.sessionId === rec.sessionId && o.status === rec.state && nowMs - o.at <= d.maxAgeSec * 1000) {
    // Unsealed is only ever the sweeper's status and code: one carrying data is not believed.
    if (!o.sealed) return o.result === undefined && o.decision === undefined ? o : recordOutcome(rec);
    try {
      return openOutcome(o, d.resultsKey);
    } catch (e) {
      // Sealed to a results key since rotated: the record answers (status and error, no rows).
      d.log.debug({ err: e, intentId: rec.intentId }, 'stored outcome not readable with this results key; answering from the record');
    }
  }
  return recordOutcome(rec);
}

/** The outcome the record itself tells: status, decision and error, no rows. */
function recordOutcome(rec: IntentRecord): Outcome {
  return {
    v: 1,
    type: 'outcome',
    intentId: rec.intentId,
    sessionId: rec.sessionId,
    status: rec.state,
    at: rec.updatedAt,
    ...(rec.decision ? { decision: rec.decision } : {}),
    ...(rec.error ? { error: rec.error } : {}),
  };
}

/** Room left in a `pending` reply for its envelope and sealing nothing (the list is sent in clear to the approver's inbox). */
const PENDING_REPLY_MARGIN = 16 * 1024;

/**
 * The pending requests that fit in one reply of at most `budget` bytes, fair across requesters:
 * each requester's soonest-expiring request first, then each one's second, and so on. One agent
 * that left many large commands waiting filled the whole reply (`WRIT_REPLY_TOO_LARGE`), and no
 * approver could list or decide anything; now it fills at most its share of each round, and
 * what does not fit is counted (`omitted`) and can be asked for by id.
 */
export function fitPending<T extends { requester: string; expiresAt: number }>(
  entries: T[],
  budget: number,
  sizeOf: (e: T) => number = (e) => Buffer.byteLength(JSON.stringify(e)),
): { requests: T[]; omitted: number } {
  const by = new Map<string, T[]>();
  for (const e of entries) {
    const list = by.get(e.requester);
    if (list) list.push(e);
    else by.set(e.requester, [e]);
  }
  for (const list of by.values()) list.sort((a, b) => a.expiresAt - b.expiresAt);
  const requests: T[] = [];
  let used = 64;
  let omitted = 0;
  for (let round = 0, left = entries.length; left > 0; round++) {
    for (const list of by.values()) {
      const e = list[round];
      if (!e) continue;
      left--;
      const size = sizeOf(e) + 1;
      if (used + size > budget) {
        omitted++;
        continue;
      }
      used += size;
      requests.push(e);
    }
  }
  return { requests, omitted };
}

/** What one pending record shows approvers, with what decides which approvers see it. */
interface PendingView {
  groups: string[];
  principal: { iss: string; sub: string; actFor?: string | undefined };
  entry: Record<string, unknown> & { requester: string; expiresAt: number };
  /** The entry's size as JSON, measured once. */
  bytes: number;
}

/** Pending records read at once when a listing needs them. */
const PENDING_READS_AT_ONCE = 8;
/** Bytes of built pending views kept (about a command's size each). */
const PENDING_VIEWS_MAX_BYTES = 64 * 1024 * 1024;

/** Long-polling `wait`s one principal may hold open on one broker at once. */
const MAX_WAITS_PER_PRINCIPAL = 256;
/** Long-polling `wait`s one broker holds open at once, all principals together (each is a handler and a watch). */
const MAX_WAITS = 4_096;
/**
 * API requests one principal may start a second on one broker (a burst of twice as many); the rest
 * are dropped on arrival. Agents of a fleet may share one principal and ask for their outcomes
 * together after a failover: at 100 a second, 2,000 intents in flight across a cluster member's
 * kill waited on dropped requests (the cluster suite took 131 s instead of 80 s).
 */
const API_PRINCIPAL_RATE = 1_000;
/** Requests waiting for a place, as a multiple of the places (as intake's backlog). */
const API_BACKLOG_FACTOR = 16;
const API_BACKLOG_BYTES = 16 * 1024 * 1024;
/** Requests a second from senders not known yet (their token not verified here): as intake's rest lane. */
const API_REST_MIN_RATE = 200;

export class ApiService {
  readonly #d: ApiDeps;
  /** The loops serving requests: waits (long-polls) apart from the rest, each bounded. */
  readonly #loops: ServeLoop[] = [];
  /** Pending views by intent id, with the record revision each was built from (#pendingView). */
  readonly #shown = new LRUCache<string, { revision: number; view: PendingView | null }>({
    maxSize: PENDING_VIEWS_MAX_BYTES,
    sizeCalculation: (v) => 1_024 + (v.view?.bytes ?? 0),
  });
  /** Requests taken in the first lane, and the known token they were taken for (as intake's). */
  readonly #firstLane = new WeakMap<Msg, string>();
  /** Open KV watches of long-polling `wait` requests: stopped at shutdown, so a stop never waits them out. */
  readonly #watches = new Set<{ stop(): void }>();
  /** Open `wait` long-polls by principal. */
  readonly #waits = new Map<string, number>();

  constructor(d: ApiDeps) {
    this.#d = d;
  }

  /**
   * Serves the API as intake serves intents (lib/consume.ts serveConcurrently): requests in
   * flight and waiting are bounded, senders whose token this broker verified go first and take
   * turns by principal, each principal may start API_PRINCIPAL_RATE requests a second, and
   * senders not known yet are held to a rate. Before, every request started on arrival: one
   * principal's flood of `status` requests (each a bucket read) grew the broker's heap to
   * 776 MB, and other agents' intents timed out (an attack helper's finding). Waits hold their
   * handler for up to their timeout, so they have places of their own.
   */
  start(): void {
    const d = this.#d;
    const lane = (m: Msg): Lane => {
      if (m.data.length > d.maxCommandBytes * 2) return 'rest';
      const token = tokenIn(m.data, d.maxTokenBytes);
      const sender = token === undefined ? undefined : d.identity.knownAs(token, 'agent-or-approver');
      if (sender === undefined) return 'rest';
      this.#firstLane.set(m, token!);
      return { first: sender };
    };
    const common = { log: d.log, lane, senderRate: API_PRINCIPAL_RATE, restRate: Math.max(API_REST_MIN_RATE, d.concurrency * 8) };
    const serve = (m: Msg) => this.#serve(m).catch((e: unknown) => d.log.error({ err: e, op: sanitizeSubject(m.subject) }, 'api handler failed'));
    const quick = API_OPS.filter((op) => op !== 'wait').map((op) => d.names.api(op));
    this.#loops.push(
      serveConcurrently(d.nc, quick, d.names.brokerQueue, serve, { ...common, maxInFlight: d.concurrency, maxBacklog: d.concurrency * API_BACKLOG_FACTOR, maxBacklogBytes: API_BACKLOG_BYTES }),
      serveConcurrently(d.nc, d.names.api('wait'), d.names.brokerQueue, serve, {
        ...common,
        maxInFlight: MAX_WAITS,
        maxBacklog: d.concurrency * API_BACKLOG_FACTOR,
        maxBacklogBytes: API_BACKLOG_BYTES,
      }),
    );
  }

  /** API requests dropped on arrival (backlog full, or past a rate), for metrics and tests. */
  get dropped(): { all: number; senderRate: number } {
    return { all: this.#loops.reduce((n, l) => n + l.dropped, 0), senderRate: this.#loops.reduce((n, l) => n + l.senderDropped, 0) };
  }

  async stop(): Promise<void> {
    // A `wait` may long-poll for 30 s: end it now; the agent's SDK asks another replica.
    const draining = Promise.all(this.#loops.map((l) => l.drain()));
    for (const w of this.#watches) w.stop();
    await draining;
  }

  async #serve(m: Msg): Promise<void> {
    // First who is asking, and whether the reply subject is theirs: nothing is answered before both hold.
    let req: ApiRequest;
    let who: VerifiedIdentity;
    // Taken first for a known token it named but does not carry (malformed, or another token
    // field first): that token loses its place there for a while, as intake's does.
    const judged = this.#firstLane.get(m);
    try {
      try {
        req = parseRequest(m);
      } catch (e) {
        if (judged !== undefined) this.#d.identity.demote(judged);
        throw e;
      }
      if (judged !== undefined && req.token !== judged) this.#d.identity.demote(judged);
      // Approvers' requests take approver tokens (their own audience); everything else an agent's.
      who = req.type === 'pending' || req.type === 'grants' || req.type === 'revoke' ? await this.#d.identity.verifyApprover(req.token) : await this.#d.identity.verify(req.token);
    } catch (e) {
      await this.#dropped(m, 'unverified', toWritError(e).code);
      return;
    }
    const inbox = inboxIdFor(who.principal.iss, who.principal.sub);
    if (!isReplySubjectOf(m.reply, inbox)) {
      await this.#dropped(m, 'foreign-reply', 'WRIT_REPLY_REFUSED', who);
      return;
    }
    let reply: ApiReply;
    try {
      reply = await this.#dispatch(req, who);
    } catch (e) {
      const err = toWritError(e);
      if (err.code === 'WRIT_INTERNAL') this.#d.log.error({ err: e }, 'api request failed');
      reply = { v: 1, type: 'error', error: err.toReply() };
    }
    sendReply(this.#d.nc, m.reply!, reply, (e) => ({ v: 1, type: 'error', error: e.toReply() }), this.#d.log, inbox);
  }

  /** An API request that gets no answer: its attempt is evidence, under `_unattributed`, its subject escaped. */
  async #dropped(m: Msg, reason: 'unverified' | 'foreign-reply', code: string, who?: VerifiedIdentity): Promise<void> {
    this.#d.log.warn({ op: sanitizeSubject(m.subject), reply: sanitizeSubject(m.reply ?? ''), reason, code, sub: who?.principal.sub }, 'api request dropped: no answer sent');
    const event = {
      type: 'reply.refused',
      payload: { source: 'api', subject: sanitizeSubject(m.subject), replyTo: m.reply === undefined ? null : sanitizeSubject(m.reply), reason, code, ...(who ? { principal: who.principal } : {}) },
    };
    // Refused input is stored at a bounded rate, and counted past it: a verified sender's within a budget of its own.
    if (who) await this.#d.audit.appendRefused({ sessionId: '_unattributed', ...event }, principalKey(who.principal));
    else await this.#d.audit.appendUnattributed(event);
  }

  /** Seals an outcome to the request's key; a request without one gets no outcome in clear. */
  #sealed(req: ApiRequest, o: Outcome): ApiReply {
    const key = 'replyKey' in req ? req.replyKey : undefined;
    if (!key) throw new WritError('WRIT_SEAL_REQUIRED', 'send replyKey with wait and result: outcomes are only answered sealed');
    return { v: 1, type: 'outcome', outcome: sealOutcome(o, key) };
  }

  async #dispatch(req: ApiRequest, who: VerifiedIdentity): Promise<ApiReply> {
    switch (req.type) {
      case 'pending': {
        const { requests, omitted } = await this.#pendingFor(who.principal, req.intentId);
        return { v: 1, type: 'pending', requests, ...(omitted ? { omitted } : {}) };
      }
      case 'grants': {
        const all = await this.#d.approvals.listWindows();
        const mine = all.filter((w) => (w.sub === who.principal.sub && w.iss === who.principal.iss) || who.principal.groups.some((g) => w.approverGroups.includes(g)));
        return { v: 1, type: 'grants', windows: mine.map((w) => ({ ...w })) };
      }
      case 'revoke':
        await this.#d.approvals.revokeWindow(req.windowId, who.principal);
        return { v: 1, type: 'ok' };
      case 'explain': {
        const target = this.#d.targets.get(req.target);
        if (!target) throw new WritError('WRIT_UNKNOWN_TARGET');
        // Classifying is synchronous work on the broker's event loop: an explain is held to what
        // an intent may carry (one agent's near-1 MB explains held the loop for seconds).
        const bytes = Buffer.byteLength(commandText(req.command));
        if (bytes > this.#d.maxCommandBytes) throw new WritError('WRIT_PAYLOAD_TOO_LARGE', `the command is ${bytes} bytes; an intent or an explain may carry ${this.#d.maxCommandBytes}`);
        // Into the asker's session only when it exists already (an explain opens none: one
        // principal's explains with a new session id each made a session per request), else `_explain`.
        const intoSession = req.sessionId !== undefined && (await this.#d.sessions.owns(req.sessionId, who.principal));
        const policy = this.#d.policy();
        const facts = this.#d.classify(target, req.command, principalKey(who.principal));
        const input = { principal: who.principal, target, command: req.command, facts, now: new Date() };
        const ex = policy.explain ? policy.explain(input) : { decision: policy.decide(input), considered: [] };
        const d = ex.decision;
        const decision = { effect: d.effect, rules: d.rules, reasons: withRedactedReasons(d).reasons, mode: d.mode, policyVersion: d.policyVersion };
        await this.#d.audit.append({
          sessionId: intoSession ? req.sessionId! : '_explain',
          type: 'policy.explained',
          policyVersion: d.policyVersion,
          payload: { principal: who.principal, target: target.name, command: redactCommand(req.command), decision, ...(req.sessionId && !intoSession ? { sessionId: req.sessionId } : {}) },
        });
        return {
          v: 1,
          type: 'explanation',
          decision,
          facts: facts.facts,
          considered: redactDeep(ex.considered) as Record<string, unknown>[],
          ...(d.code ? { code: d.code } : {}),
          ...(d.approval ? { approval: d.approval } : {}),
        };
      }
      case 'targets': {
        const policy = this.#d.policy();
        const targets = [...this.#d.targets.values()].map((t) => ({
          name: t.name,
          kind: t.kind,
          tags: t.tags,
          ...(t.description ? { description: t.description } : {}),
          access: policy.accessFor ? policy.accessFor(who.principal, t) : [],
        }));
        return { v: 1, type: 'targets', targets: targets.filter((t) => t.access.some((a) => a.effect !== 'deny')) };
      }
      default:
        break;
    }
    if (!('intentId' in req)) throw new WritError('WRIT_BAD_REQUEST');
    if (req.type !== 'wait') return this.#byIntent(req, who);
    // A long-poll holds a handler and a KV watch for up to its timeout: one principal holds at
    // most MAX_WAITS_PER_PRINCIPAL at once (an agent's token opened thousands), the rest are
    // told to come back (the SDK backs off and asks again).
    const key = `${who.principal.iss}\u0000${who.principal.sub}`;
    const held = this.#waits.get(key) ?? 0;
    if (held >= MAX_WAITS_PER_PRINCIPAL) throw new WritError('WRIT_BUSY', `this principal already has ${held} waits open; ask again later`);
    this.#waits.set(key, held + 1);
    try {
      return await this.#byIntent(req, who);
    } finally {
      const left = (this.#waits.get(key) ?? 1) - 1;
      if (left > 0) this.#waits.set(key, left);
      else this.#waits.delete(key);
    }
  }

  /** The requests about one intent of the asker's: status, result, wait, cancel. */
  async #byIntent(req: Extract<ApiRequest, { intentId: string }>, who: VerifiedIdentity): Promise<ApiReply> {
    let entry = await this.#d.kv.intents.get(req.intentId);
    // A resubmission can ask before the first submission's record exists: wait for it to appear.
    if ((!entry || entry.operation !== 'PUT') && req.type === 'wait') entry = await this.#appear(req.intentId, Math.min(req.timeoutMs, 10_000));
    const rec = recordOf(entry)?.rec;
    if (!rec || rec.principal.sub !== who.principal.sub || rec.principal.iss !== who.principal.iss) throw new WritError('WRIT_NOT_FOUND');
    switch (req.type) {
      case 'status':
        return { v: 1, type: 'status', intentId: rec.intentId, status: await this.#liveState(rec) };
      case 'result':
        if (!TERMINAL_STATES.has(rec.state)) return { v: 1, type: 'status', intentId: rec.intentId, status: await this.#liveState(rec) };
        return this.#sealed(req, await this.#outcome(rec));
      case 'wait':
        if (!req.replyKey) throw new WritError('WRIT_SEAL_REQUIRED', 'send replyKey with wait and result: outcomes are only answered sealed');
        return this.#sealed(req, await this.#wait(rec, entry!, req.timeoutMs));
      case 'cancel':
        if (rec.state !== 'pending') throw new WritError('WRIT_NOT_PENDING', `only a pending intent can be cancelled; this one is ${rec.state}`);
        if (!(await this.#d.approvals.end(rec.intentId, 'cancelled', who.principal.sub))) throw new WritError('WRIT_NOT_PENDING', 'the intent changed state before it could be cancelled');
        return { v: 1, type: 'status', intentId: rec.intentId, status: 'cancelled' };
    }
  }

  async #appear(key: string, timeoutMs: number): Promise<KvEntry | null> {
    const watch = await this.#d.kv.intents.watch({ key });
    this.#watches.add(watch);
    const timer = setTimeout(() => watch.stop(), timeoutMs);
    try {
      for await (const e of watch) if (e.operation === 'PUT') return e;
    } finally {
      clearTimeout(timer);
      watch.stop();
      this.#watches.delete(watch);
    }
    return null;
  }

  /** Pending intents this principal may approve: in the rule's groups, and not their own. */
  /**
   * The pending requests an approver may decide. What a request shows is built once per record
   * revision and kept (#shown): building it reads the record, checks the broker's seal and
   * classifies the command for its window scope, and one agent's 100 pending intents of 240 KB
   * each made every listing take 6.7 s, and ten approvers' listings time out (an attack
   * helper's finding). A record is read again only when the sweeper's watch saw a newer revision
   * of it (a vote); the reads that are needed run a few at a time.
   */
  async #pendingFor(p: { sub: string; iss: string; groups: string[] }, only?: string): Promise<{ requests: Record<string, unknown>[]; omitted: number }> {
    const ids = only ? [only] : this.#d.sweeper.pendingIds();
    const views: Array<PendingView | null> = [];
    for (let i = 0; i < ids.length; i += PENDING_READS_AT_ONCE) {
      views.push(...(await Promise.all(ids.slice(i, i + PENDING_READS_AT_ONCE).map((id) => this.#pendingView(id, only !== undefined)))));
    }
    const out = views.filter(
      (v): v is PendingView => v !== null && p.groups.some((g) => v.groups.includes(g)) && !((v.principal.iss === p.iss && v.principal.sub === p.sub) || v.principal.actFor === p.sub),
    );
    const sizes = new Map(out.map((v) => [v.entry, v.bytes]));
    return fitPending(
      out.map((v) => v.entry),
      (this.#d.nc.info?.max_payload ?? 1_048_576) - PENDING_REPLY_MARGIN,
      (e) => sizes.get(e)!,
    );
  }

  /** What a pending record shows approvers (null: nothing, it is not a broker's pending record), from #shown when the revision is the one last seen. */
  async #pendingView(id: string, fresh: boolean): Promise<PendingView | null> {
    const seen = fresh ? undefined : this.#d.sweeper.pendingRevision(id);
    const hit = this.#shown.get(id);
    if (hit && seen !== undefined && seen > 0 && hit.revision === seen) return hit.view;
    // A record that does not parse (planted in the bucket) is not shown; it never fails the listing.
    const stored = await getRecord(this.#d.kv.intents, id).catch((e: unknown) => {
      if (e instanceof ZodError || e instanceof SyntaxError) return undefined;
      throw e;
    });
    if (!stored) return null;
    const { rec } = stored;
    const pend = rec.pending;
    // A pending part the broker did not seal (planted or edited in the bucket) is never shown.
    const view: PendingView | null =
      rec.state !== 'pending' || !pend || !this.#d.approvals.sealedByBroker(rec)
        ? null
        : {
            groups: pend.spec.groups,
            principal: rec.principal,
            bytes: 0,
            entry: {
              intentId: rec.intentId,
              sessionId: rec.sessionId,
              target: rec.target,
              requester: rec.principal.sub,
              actFor: rec.principal.actFor,
              command: redactCommand(pend.order.command),
              rule: pend.rule,
              votes: pend.votes.map((v) => v.sub),
              needed: pend.spec.count,
              expiresAt: pend.expiresAt,
              // What a vote names (the exact command's hash) and what a window would allow, as enforced.
              commandSha256: rec.commandSha256,
              policyVersion: rec.decision?.policyVersion,
              windowScope: this.#d.approvals.scopeOf(rec),
            },
          };
    if (view) view.bytes = Buffer.byteLength(JSON.stringify(view.entry));
    this.#shown.set(id, { revision: stored.revision, view });
    return view;
  }

  /** `dispatched` with a claim on its grant is `running`: the claim is the run's start. */
  async #liveState(rec: IntentRecord): Promise<IntentState> {
    if (rec.state !== 'dispatched' || !rec.grantId) return rec.state;
    const claim = await this.#d.kv.claims.get(rec.grantId);
    return claim && claim.operation === 'PUT' ? 'running' : 'dispatched';
  }

  #outcome(rec: IntentRecord): Outcome {
    return outcomeOf(rec, { resultsKey: this.#d.resultsKey, log: this.#d.log, maxAgeSec: this.#d.resultsMaxAgeSec });
  }

  async #wait(rec: IntentRecord, entry: KvEntry, timeoutMs: number): Promise<Outcome> {
    if (TERMINAL_STATES.has(rec.state)) return this.#outcome(rec);
    const watch = await this.#d.kv.intents.watch({ key: rec.intentId });
    this.#watches.add(watch);
    const timer = setTimeout(() => watch.stop(), timeoutMs);
    try {
      for await (const e of watch) {
        if (e.operation !== 'PUT' || e.revision < entry.revision) continue;
        const cur = recordOf(e)!.rec;
        if (TERMINAL_STATES.has(cur.state)) return this.#outcome(cur);
      }
    } finally {
      clearTimeout(timer);
      watch.stop();
      this.#watches.delete(watch);
    }
    throw new WritError('WRIT_TIMEOUT');
  }
}

function parseRequest(m: Msg): ApiRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(m.string());
  } catch (e) {
    throw new WritError('WRIT_BAD_JSON', undefined, { cause: e });
  }
  const parsed = ApiRequestSchema.safeParse(raw);
  if (!parsed.success) throw new WritError('WRIT_BAD_REQUEST', formatIssues(parsed.error));
  return parsed.data;
}
