/**
 * The approver bot runtime, written once for every chat platform. It consumes approval
 * requests and posts each through its adapter, consumes approval outcomes and redraws
 * the posted message, and keeps intentId → message in a store any replica can read.
 *
 * Shared delivery (chat bots): all replicas of a bot share one durable consumer of
 * requests (`names.durables.approverBot(bot)`) and one of outcomes (the same name with
 * `-outcomes`), so each request is posted once and each outcome redrawn once; a claim in
 * the KV record keeps a redelivered request from being posted twice while a replica is
 * still posting it. Each delivery (the terminal): ordered consumers, so every process
 * sees every request, and an in-memory store.
 */
import { randomUUID } from 'node:crypto';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type Consumer, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { consumeConcurrently, ensureConsumer, type ConsumeLoop, type Logger } from '../lib/index.ts';
import { ApprovalOutcomeSchema, ApprovalRequestSchema, commandText, subjectToken, type ApprovalRequest, type Names } from '../schemas/index.ts';
import { Busy, KvApprovalStore, MemoryApprovalStore, mutate, type ApprovalStore } from './store.ts';
import { MAX_ACTIVITY, type Activity, type ApprovalView, type ApproverAdapter, type BotContext, type StoredApproval } from './types.ts';

export type BotState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED';

export interface BotOptions {
  /** The bot's name, one subject token: durable `<prefix>-approver-<name>`, bucket `<prefix>_approver_<name>`. */
  name: string;
  nc: NatsConnection;
  names: Names;
  adapter: ApproverAdapter;
  log: Logger;
  /** `shared` (default): replicas share durable consumers and post each request once. `each`: this process sees every request. */
  delivery?: 'shared' | 'each';
  /** Default: the KV bucket for `shared`, memory for `each`. */
  store?: ApprovalStore;
  /** Replicas of the KV bucket the bot creates. Default 1. */
  replicas?: number;
  /** A claim older than this is taken over (its replica died mid-post). Default 60 s. */
  claimStaleMs?: number;
  /** Handlers in flight per consumer. Default 8 (`each`: 1, to keep the terminal in order). */
  concurrency?: number;
  /** This replica's id in claims and logs. */
  id?: string;
}

/** Stored copies keep this much command text; messages show less, and say so. */
const STORED_COMMAND_MAX = 16_000;
const STORED_TEXT_MAX = 4_000;
const NS = 1_000_000_000;

function approverBucket(n: Names, bot: string): string {
  return `${n.prefix}_approver_${subjectToken('bot', bot)}`;
}

/** Durable consumer names of a shared bot: requests (the design's name) and outcomes. */
function approverDurables(n: Names, bot: string): { requests: string; outcomes: string } {
  const requests = n.durables.approverBot(bot);
  return { requests, outcomes: `${requests}-outcomes` };
}

/** A copy small enough for a KV value: long command, justification and facts are capped. */
function storedCopy(req: ApprovalRequest): { request: ApprovalRequest; commandLength: number } {
  const text = commandText(req.command);
  const cap = (s: string, n: number) => (s.length > n ? s.slice(0, n) : s);
  const command = req.command.kind === 'sql' ? { kind: 'sql' as const, sql: cap(text, STORED_COMMAND_MAX) } : { kind: 'shell' as const, command: cap(text, STORED_COMMAND_MAX) };
  const factsJson = JSON.stringify(req.facts);
  const facts = factsJson.length > STORED_COMMAND_MAX ? { truncated: cap(factsJson, STORED_COMMAND_MAX) } : req.facts;
  return {
    request: { ...req, command, facts, ...(req.justification !== undefined ? { justification: cap(req.justification, STORED_TEXT_MAX) } : {}) },
    commandLength: text.length,
  };
}

function viewOf(s: StoredApproval & { request: ApprovalRequest }): ApprovalView {
  return { request: s.request, commandLength: s.commandLength ?? commandText(s.request.command).length, activity: s.activity, ...(s.outcome ? { outcome: s.outcome } : {}) };
}

export class Bot {
  state: BotState = 'INITIALIZED';
  readonly id: string;
  readonly name: string;
  readonly #o: BotOptions;
  readonly #shared: boolean;
  readonly #log: Logger;
  #js!: JetStreamClient;
  #store!: ApprovalStore;
  #loops: ConsumeLoop[] = [];

  constructor(o: BotOptions) {
    subjectToken('bot name', o.name);
    this.#o = o;
    this.name = o.name;
    this.id = o.id ?? `approver-${o.name}-${randomUUID().slice(0, 8)}`;
    this.#shared = (o.delivery ?? 'shared') === 'shared';
    this.#log = o.log.child({ bot: o.name, replica: this.id, adapter: o.adapter.kind });
  }

  get store(): ApprovalStore {
    return this.#store;
  }

  async start(): Promise<void> {
    if (this.state !== 'INITIALIZED') throw new Error(`cannot start a bot that is ${this.state}`);
    const { nc, names: n, adapter } = this.#o;
    this.#js = jetstream(nc);
    this.#store = this.#o.store ?? (this.#shared ? await KvApprovalStore.open(nc, approverBucket(n, this.name), { replicas: this.#o.replicas ?? 1 }) : new MemoryApprovalStore());
    await adapter.start?.(this.#context());
    const [requests, outcomes] = await this.#consumers();
    const maxInFlight = this.#o.concurrency ?? (this.#shared ? 8 : 1);
    // Outcomes first, so a request decided before this bot saw it is skipped rather than posted.
    this.#loops.push(await consumeConcurrently(outcomes, (m) => this.#onOutcome(m), { maxInFlight, log: this.#log }));
    if (this.#shared) await caughtUp(outcomes, 5_000);
    this.#loops.push(await consumeConcurrently(requests, (m) => this.#onRequest(m), { maxInFlight, log: this.#log }));
    this.state = 'RUNNING';
    this.#log.info({ delivery: this.#shared ? 'shared' : 'each' }, 'approver bot started');
  }

  /** Takes nothing new, finishes what is in flight, then stops the adapter. */
  async stop(): Promise<void> {
    if (this.state === 'STOPPED' || this.state === 'DRAINING') return;
    this.state = 'DRAINING';
    await Promise.allSettled(this.#loops.map((l) => l.drain()));
    await this.#o.adapter.stop?.();
    this.state = 'STOPPED';
  }

  /** The stored record of a request. */
  async lookup(intentId: string): Promise<StoredApproval | undefined> {
    return (await this.#store.get(intentId))?.value;
  }

  /** Records a vote and the broker's answer, then redraws the message. */
  async note(intentId: string, activity: Activity): Promise<void> {
    const r = await mutate(this.#store, intentId, (cur) => (cur ? { ...cur, activity: [...cur.activity, activity].slice(-MAX_ACTIVITY) } : undefined));
    if (r.changed) await this.#refresh(intentId);
  }

  #context(): BotContext {
    return {
      names: this.#o.names,
      nc: this.#o.nc,
      log: this.#log,
      botName: this.name,
      lookup: (id) => this.lookup(id),
      note: (id, a) => this.note(id, a),
    };
  }

  async #consumers(): Promise<[Consumer, Consumer]> {
    const n = this.#o.names;
    const requestSubject = n.approvalRequestAll();
    const outcomeSubject = n.approvalOutcomeAll();
    if (!this.#shared) {
      return Promise.all([
        this.#js.consumers.get(n.streams.approvals, { filter_subjects: requestSubject, deliver_policy: DeliverPolicy.All }),
        this.#js.consumers.get(n.streams.approvals, { filter_subjects: outcomeSubject, deliver_policy: DeliverPolicy.All }),
      ]);
    }
    const jsm = await jetstreamManager(this.#o.nc);
    const d = approverDurables(n, this.name);
    for (const [durable, filter] of [
      [d.requests, requestSubject],
      [d.outcomes, outcomeSubject],
    ] as const) {
      // All: a bot deployed late still posts requests that are pending now (expired ones are skipped).
      await ensureConsumer(jsm, n.streams.approvals, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filter,
        ack_wait: 60 * NS,
        max_ack_pending: 256,
      });
    }
    return Promise.all([this.#js.consumers.get(n.streams.approvals, d.requests), this.#js.consumers.get(n.streams.approvals, d.outcomes)]);
  }

  // Ordered consumers (each delivery) take no acks.
  #ack(m: JsMsg): void {
    if (this.#shared) m.ack();
  }

  #retry(m: JsMsg, ms: number): void {
    if (this.#shared) m.nak(ms);
  }

  async #onRequest(m: JsMsg): Promise<void> {
    const parsed = ApprovalRequestSchema.safeParse(safeJson(m));
    if (!parsed.success) {
      this.#log.warn({ subject: m.subject, seq: m.seq }, 'not an approval request; dropped');
      if (this.#shared) m.term();
      return;
    }
    const req = parsed.data;
    if (req.expiresAt <= Date.now()) {
      this.#ack(m);
      return;
    }
    try {
      await this.#post(req);
      this.#ack(m);
    } catch (e) {
      if (e instanceof Busy) {
        this.#retry(m, 2_000);
        return;
      }
      const delay = Math.min(60_000, 1_000 * 2 ** Math.min(m.info.deliveryCount, 6));
      this.#log.error({ err: e, intentId: req.intentId, retryInMs: delay }, 'could not post an approval request');
      this.#retry(m, delay);
    }
  }

  async #post(req: ApprovalRequest): Promise<void> {
    const now = Date.now();
    const staleMs = this.#o.claimStaleMs ?? 60_000;
    const claimed = await mutate(this.#store, req.intentId, (cur) => {
      if (!cur) return { intentId: req.intentId, ...storedCopy(req), claim: { by: this.id, at: now }, activity: [] };
      // Posted already (a redelivery), or decided before any replica posted it: nothing to show.
      if (cur.ref || cur.outcome) return undefined;
      if (cur.claim && cur.claim.by !== this.id && now - cur.claim.at < staleMs) throw new Busy();
      return { ...cur, ...(cur.request ? {} : storedCopy(req)), claim: { by: this.id, at: now } };
    });
    if (!claimed.changed || !claimed.record) return;
    const posted = claimed.record.value as StoredApproval & { request: ApprovalRequest };
    const ref = await this.#o.adapter.post(viewOf(posted));
    const saved = await mutate(this.#store, req.intentId, (cur) => {
      const { claim: _c, ...rest } = cur ?? posted;
      return { ...rest, ref };
    });
    this.#log.info({ intentId: req.intentId, target: req.target }, 'approval request posted');
    // Votes or an outcome landed while it was being posted: draw them.
    const v = saved.record?.value;
    if (v && (v.outcome || v.activity.length > 0)) await this.#refresh(req.intentId);
  }

  async #onOutcome(m: JsMsg): Promise<void> {
    const parsed = ApprovalOutcomeSchema.safeParse(safeJson(m));
    if (!parsed.success) {
      this.#log.warn({ subject: m.subject, seq: m.seq }, 'not an approval outcome; dropped');
      if (this.#shared) m.term();
      return;
    }
    const outcome = parsed.data;
    try {
      const r = await mutate(this.#store, outcome.intentId, (cur) => {
        if (cur?.outcome) return undefined;
        return cur ? { ...cur, outcome } : { intentId: outcome.intentId, activity: [], outcome };
      });
      // Redraw even when the outcome was stored before: a redelivery means the last redraw may have failed.
      if (r.record?.value.ref) await this.#refresh(outcome.intentId);
      this.#ack(m);
    } catch (e) {
      this.#log.error({ err: e, intentId: outcome.intentId }, 'could not show an approval outcome');
      this.#retry(m, Math.min(60_000, 1_000 * 2 ** Math.min(m.info.deliveryCount, 6)));
    }
  }

  /**
   * Redraws from the latest stored record, and again if it changed meanwhile: two
   * replicas redrawing at once both end on the newest record, so a late vote line can
   * never bring back buttons an outcome removed.
   */
  async #refresh(intentId: string): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const e = await this.#store.get(intentId);
      if (!e?.value.ref || !e.value.request) return;
      await this.#o.adapter.update(e.value.ref, viewOf(e.value as StoredApproval & { request: ApprovalRequest }));
      const again = await this.#store.get(intentId);
      if (!again || again.revision === e.revision) return;
    }
  }
}

/**
 * Waits (at most `ms`) until a durable consumer has nothing undelivered or unacked: on a
 * bot's first start, every past outcome is stored before any past request is looked at.
 */
async function caughtUp(c: Consumer, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const i = await c.info(false);
    if (i.num_pending === 0 && i.num_ack_pending === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function safeJson(m: JsMsg): unknown {
  try {
    return JSON.parse(m.string());
  } catch {
    return undefined;
  }
}
