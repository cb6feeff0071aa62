/**
 * AuditWriter: appends events to the per-session hash chains.
 *
 * Events of one session appended in the same turn of the event loop (or within `flushMs`,
 * when set) become one block (one JetStream message): the audit write is one of the main
 * costs per intent, and an intent's received/decided/dispatched events are appended together.
 * The default, 0, is group commit: no delay for a lone intent, batching under load.
 *
 * A block is published with the expected last subject sequence of the session's head, so
 * the stream refuses it if any other writer (another broker replica, a worker) appended
 * meanwhile; the writer then re-reads the head, re-chains its events onto it and retries.
 * Two writers therefore never fork a chain. One session's blocks go out strictly one
 * after the other; sessions are written in parallel.
 *
 * An event is never given up while the writer runs: a lost race or a transport fault is
 * retried (backed off with jitter, head re-read) for as long as it takes, and events that
 * arrive meanwhile join the block being retried, so a hot session converges instead of
 * queueing. Only a refusal that no retry can change (permissions, size) fails an append.
 * At close(), what is still unstored by the deadline is rejected and logged in full.
 *
 * Exactly once: a block whose publish ended ambiguously (timeout, connection lost) may be
 * stored. It then keeps its content and Nats-Msg-Id, and before it is re-chained the
 * writer looks at the block that follows the head it expected: the stream can only have
 * stored it right there, so that message says whether it was stored, independently of the
 * server's duplicate window.
 */
import { randomUUID } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Budgets } from '../lib/budgets.ts';
import { canonicalJson, WritError, type AuditEvent, type Names } from '../schemas/index.ts';
import { blockJson, CHAIN_LENGTH_HEADER, CHECKPOINT_SESSION, eventHash, sha256, ZERO_HASH, type BlockSignature } from './chain.ts';
import { decodeBlock } from './read.ts';
import type { Actor, AppendInput, AuditWriterOptions, HeadBoard, SessionHead } from './types.ts';
import type { BlockSigner } from './keys.ts';

interface Pending {
  event: Omit<AuditEvent, 'prev' | 'hash'>;
  /** Bytes this event adds to a block (its JSON plus the chain fields). */
  size: number;
  resolve(ev: AuditEvent): void;
  reject(e: unknown): void;
}

interface SessionQueue {
  pending: Pending[];
  timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** The running write loop, while one runs. */
  run: Promise<void> | undefined;
}

/** A head as the writer knows it: where to chain next. */
export type Head = Omit<SessionHead, 'sessionId'>;

const DEFAULTS = {
  flushMs: 0,
  maxBlockEvents: 64,
  maxBlockBytes: 512 * 1024,
  maxInlinePayloadBytes: 8192,
  maxCachedSessions: 10_000,
  maxChangedHeads: 100_000,
  maxInFlight: 512,
  publishTimeoutMs: 5_000,
  maxBackoffMs: 250,
  closeTimeoutMs: 10_000,
  unattributedPerSec: 20,
  unattributedSummaryMs: 10_000,
};

/** The session of evidence that no verified sender stands behind (audit/README.md). */
const UNATTRIBUTED_SESSION = '_unattributed';
/** Attempts after which a still-unstored block is reported (then every STILL_RETRYING_EVERY more). */
const STILL_RETRYING_EVERY = 50;
/** A block's JSON around its events: the envelope and the signature (`"sig":{"kid":…,"p":[…],"s":<86>}`, a batch path of up to 16 steps of 47 bytes). */
const BLOCK_OVERHEAD_BYTES = 192 + 16 * 47;
/** Per event: `"prev":"<64>","hash":"<64>",` and a comma. */
const CHAIN_FIELDS_BYTES = 150;

export class AuditWriter {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #names: Names;
  readonly #actor: Actor;
  readonly #o: typeof DEFAULTS;
  readonly #signer: BlockSigner | undefined;
  readonly #log: Logger | undefined;
  readonly #board: HeadBoard | undefined;
  readonly #queues = new Map<string, SessionQueue>();
  /** Last known head per session, least recently used first. */
  readonly #heads = new Map<string, Head>();
  /**
   * Sessions whose last optimistic append lost to another writer (the broker and a worker take
   * turns on one session). For those the head is read first: two operations per block instead
   * of a failed publish, a read and a second publish.
   */
  readonly #contended = new Set<string>();
  /** Head reads started ahead of a block (prefetch), taken by the session's next block. */
  readonly #prefetched = new Map<string, Promise<LastBlock>>();
  /** Heads written since the last takeChangedHeads(), oldest first. */
  readonly #changed = new Map<string, SessionHead>();
  #droppedChanged = false;
  #inFlight = 0;
  readonly #slotWaiters: Array<() => void> = [];
  #closed = false;
  /** Epoch ms after which close() gives up on what is unstored; Infinity while running. */
  #deadline = Number.POSITIVE_INFINITY;
  /** Wakes retry back-offs when the deadline is set. */
  readonly #sleepers = new Set<() => void>();
  /** The group-commit turn (flushMs 0) that starts every session due in it. */
  #dueTurn: NodeJS.Immediate | undefined;
  /** Blocks chained since the last seal, waiting to be signed and published together. */
  #sealing: Array<{ sessionId: string; events: AuditEvent[]; done: (sig: BlockSignature | undefined, err?: unknown) => void }> = [];
  #sealQueued = false;
  /** Plain counters for metrics (read by lib/metrics.ts when scraped; no metrics library here). */
  readonly #stats = { blocks: 0, conflicts: 0, retries: 0 };
  /** Unattributed events that may still be stored one by one (a token bucket), and when it was last filled. */
  /** The rate budgets of appendRefused, by principal key ('' for the unattributed): unattributedPerSec, a burst of ten seconds' worth. */
  readonly #refusedBudgets: Budgets;
  /** Unattributed events counted instead of stored, by `type` (and `code`), since `from`. */
  #suppressed: { counts: Map<string, number>; from: number; to: number; timer: NodeJS.Timeout } | undefined;

  constructor(opts: AuditWriterOptions) {
    this.#js = opts.js;
    this.#jsm = opts.jsm;
    this.#names = opts.names;
    this.#actor = Object.freeze({ id: opts.actor.id, kind: opts.actor.kind });
    this.#log = opts.logger;
    this.#signer = opts.signer;
    this.#board = opts.board;
    const o = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>) {
      const v = opts[k];
      if (v === undefined) continue;
      if (!Number.isFinite(v) || v < (k === 'flushMs' ? 0 : 1)) throw new WritError('WRIT_CONFIG_INVALID', `AuditWriter: ${k} must be a number >= ${k === 'flushMs' ? 0 : 1}, got ${v}`);
      o[k] = v;
    }
    this.#o = o;
    this.#refusedBudgets = new Budgets(o.unattributedPerSec, o.unattributedPerSec * 10);
  }

  /** Blocks stored, appends that lost to another writer (re-chained), and attempts retried, since start. */
  get stats(): { blocks: number; conflicts: number; retries: number } {
    return { ...this.#stats };
  }

  /**
   * Appends one event to its session's chain; resolves with the event as stored once its
   * block is acknowledged by JetStream. A payload over `maxInlinePayloadBytes` is replaced
   * by its `digest` (SHA-256 of its canonical JSON): keep large data (result rows) out of
   * the log and audit their digests.
   */
  append(input: AppendInput): Promise<AuditEvent> {
    if (this.#closed) return Promise.reject(new WritError('WRIT_INTERNAL', 'the audit writer is closed'));
    let event: Pending['event'];
    try {
      event = this.#prepare(input);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<AuditEvent>((resolve, reject) => {
      const size = Buffer.byteLength(JSON.stringify(event)) + CHAIN_FIELDS_BYTES;
      let q = this.#queues.get(event.sessionId);
      if (!q) {
        q = { pending: [], timer: undefined, run: undefined };
        this.#queues.set(event.sessionId, q);
      }
      q.pending.push({ event, size, resolve, reject });
      // flushMs 0 is group commit: the block goes out once the current turn of the event loop
      // ends (events appended together, such as one intent's, share it), and events arriving
      // while a session's block is being stored join the next one. No timer delays a lone intent.
      // Every session due in one turn starts in one callback, so their blocks are sealed together.
      if (!q.run && !q.timer) q.timer = this.#o.flushMs === 0 ? (this.#dueTurn ??= setImmediate(this.#startDue)) : setTimeout(this.#startFn, this.#o.flushMs, event.sessionId);
    });
  }

  /**
   * Evidence of input that no verified sender stands behind (malformed intents, unverifiable
   * tokens, replies aimed elsewhere), in session `_unattributed`. Anyone with a NATS login can
   * send such input as fast as a broker refuses it; each refusal stored as an event made the
   * log grow by megabytes a second from one sender, for good (the stream denies deletes). So
   * up to `unattributedPerSec` are stored one by one (with a burst of ten seconds' worth), and
   * the rest are counted: one `audit.suppressed` event every `unattributedSummaryMs` says how
   * many of each type and code were not stored one by one, and between which times. Resolves
   * once the event is stored, or at once when it was counted.
   */
  async appendUnattributed(input: Omit<AppendInput, 'sessionId'>): Promise<void> {
    return this.appendRefused({ ...input, sessionId: UNATTRIBUTED_SESSION });
  }

  /**
   * Evidence of refused input from a verified sender (a reply aimed elsewhere, another
   * principal's session, a malformed intent), in the session given: at the same bounded rate as
   * appendUnattributed, but each principal (`who`, a key naming it) with a budget of its own. One
   * principal's flood of refused requests with its own valid token grew the log by 4 MB a second
   * (an attack helper's finding); past its budget it is counted, under its key, in the next
   * `audit.suppressed`. Without `who`, the input shares the budget of everything unattributed.
   */
  async appendRefused(input: AppendInput, who?: string): Promise<void> {
    const now = Date.now();
    if (this.#refusedBudgets.take(who ?? '', 1, now) || this.#closed) {
      await this.append(input);
      return;
    }
    const code = typeof input.payload?.['code'] === 'string' ? `:${input.payload['code']}` : '';
    const countKey = `${input.type}${code}${who ? `@${who}` : ''}`.slice(0, 160);
    if (!this.#suppressed) {
      const timer = setTimeout(() => void this.#summarize(), this.#o.unattributedSummaryMs);
      timer.unref();
      this.#suppressed = { counts: new Map(), from: now, to: now, timer };
    }
    const s = this.#suppressed;
    // Bounded: past 256 distinct kinds, the rest are counted together.
    const k = s.counts.has(countKey) || s.counts.size < 256 ? countKey : '(other)';
    s.counts.set(k, (s.counts.get(k) ?? 0) + 1);
    s.to = now;
  }

  /** Stores what appendUnattributed counted since the last summary, as one event. */
  async #summarize(): Promise<void> {
    const s = this.#suppressed;
    if (!s) return;
    this.#suppressed = undefined;
    clearTimeout(s.timer);
    const counts = Object.fromEntries([...s.counts].sort(([a], [b]) => (a < b ? -1 : 1)));
    const total = [...s.counts.values()].reduce((a, b) => a + b, 0);
    this.#log?.warn({ total, counts }, 'unattributed input past its rate: counted, not stored one by one');
    await this.append({ sessionId: UNATTRIBUTED_SESSION, type: 'audit.suppressed', payload: { total, counts, from: s.from, to: s.to } }).catch((e: unknown) =>
      this.#log?.error({ err: e, total, counts }, 'audit.suppressed could not be stored'),
    );
  }

  /** Writes everything pending now and resolves when it is stored (or has failed). */
  async flush(): Promise<void> {
    for (;;) {
      const runs: Promise<void>[] = [];
      for (const [sid, q] of this.#queues) {
        if (q.timer) this.#start(sid);
        if (q.run) runs.push(q.run);
      }
      if (runs.length === 0) return;
      await Promise.all(runs);
    }
  }

  /**
   * Refuses new events and writes the pending ones, retrying until `timeoutMs` (default
   * `closeTimeoutMs`). What is not stored by then is rejected, and logged at error level
   * with every event in full, so the evidence survives at least in the process log.
   */
  async close(timeoutMs = this.#o.closeTimeoutMs): Promise<void> {
    // What was counted and not yet summed up is stored before the writer closes.
    const summary = this.#summarize();
    this.#closed = true;
    this.#deadline = Math.min(this.#deadline, Date.now() + timeoutMs);
    for (const wake of this.#sleepers) wake();
    await this.flush();
    await summary;
  }

  /** Key id this writer signs its blocks with (undefined: unsigned). */
  get keyId(): string | undefined {
    return this.#signer?.keyId;
  }

  /** Last known head of every cached session (at most `maxCachedSessions`). */
  heads(): SessionHead[] {
    return [...this.#heads].map(([sessionId, h]) => ({ sessionId, ...h }));
  }

  /** The head this writer last wrote or learnt for a session, if it still holds it. */
  headOf(sessionId: string): Head | undefined {
    return this.#heads.get(sessionId);
  }

  /**
   * Where a session's chain stands, learnt from a trusted writer (the broker's head, signed
   * into the grant): the next block chains onto it optimistically instead of reading the head
   * first, one round trip less. Only ever a hint: the stream still refuses a block whose
   * expected last sequence is stale, and the writer then reads the head and re-chains.
   */
  hint(sessionId: string, head: Head): void {
    const known = this.#heads.get(sessionId);
    if (known && known.seq >= head.seq) return;
    this.#contended.delete(sessionId);
    this.#heads.delete(sessionId);
    this.#heads.set(sessionId, { seq: head.seq, hash: head.hash, count: head.count });
    if (this.#heads.size > this.#o.maxCachedSessions) this.#heads.delete(this.#heads.keys().next().value!);
  }

  /**
   * Starts reading a contended session's head now, so the read overlaps whatever the caller
   * does before its next append (the broker classifies and decides meanwhile). The next block
   * of that session uses it; a head that moved meanwhile is refused by the stream and re-read.
   */
  prefetch(sessionId: string): void {
    if (!this.#contended.has(sessionId) || this.#prefetched.has(sessionId) || this.#sharedNewer(sessionId)) return;
    const p = this.#loadHead(sessionId);
    p.catch(() => undefined);
    this.#prefetched.set(sessionId, p);
    if (this.#prefetched.size > this.#o.maxInFlight) this.#prefetched.delete(this.#prefetched.keys().next().value!);
  }

  /** Heads this writer wrote since the previous call, newest per session; the Checkpointer signs them. */
  takeChangedHeads(): SessionHead[] {
    const out = [...this.#changed.values()];
    this.#changed.clear();
    this.#droppedChanged = false;
    return out;
  }

  #prepare(input: AppendInput): Pending['event'] {
    try {
      this.#names.audit(input.sessionId);
    } catch (e) {
      throw new WritError('WRIT_BAD_REQUEST', `audit: invalid session id ${JSON.stringify(String(input.sessionId).slice(0, 64))}`, { cause: e });
    }
    if (input.sessionId === CHECKPOINT_SESSION || input.type === 'checkpoint') throw new WritError('WRIT_BAD_REQUEST', 'audit: checkpoints are written by the Checkpointer only');
    if (typeof input.type !== 'string' || input.type.length === 0 || input.type.length > 128) throw new WritError('WRIT_BAD_REQUEST', 'audit: type must be 1-128 characters');
    const at = input.at ?? Date.now();
    if (!Number.isSafeInteger(at)) throw new WritError('WRIT_BAD_REQUEST', 'audit: at must be an integer epoch ms');
    let payload: Record<string, unknown> | undefined;
    let digest: string | undefined;
    if (input.payload !== undefined) {
      const text = canonicalJson(input.payload);
      if (Buffer.byteLength(text) > this.#o.maxInlinePayloadBytes) digest = sha256(text);
      else payload = JSON.parse(text) as Record<string, unknown>; // keys sorted at every depth
    }
    // Keys in canonical order, so hashing and serializing take the native JSON.stringify path.
    return {
      actor: this.#actor,
      at,
      ...(digest !== undefined ? { digest } : {}),
      id: randomUUID(),
      ...(input.intentId !== undefined ? { intentId: input.intentId } : {}),
      ...(payload !== undefined ? { payload } : {}),
      ...(input.policyVersion !== undefined ? { policyVersion: input.policyVersion } : {}),
      sessionId: input.sessionId,
      type: input.type,
      v: 1,
    };
  }

  /** One bound function for every session's timer: no closure per block. */
  readonly #startFn = (sessionId: string): void => this.#start(sessionId);

  /** Starts every session whose group commit waited for this turn (their `timer` is this turn's). */
  readonly #startDue = (): void => {
    const turn = this.#dueTurn;
    this.#dueTurn = undefined;
    for (const [sessionId, q] of this.#queues) if (q.timer === turn) this.#start(sessionId);
  };

  #start(sessionId: string): void {
    const q = this.#queues.get(sessionId);
    if (!q || q.run) return;
    // The writer's group-commit turn is shared and runs once for all; a flushMs timer is this session's.
    if (q.timer && this.#o.flushMs !== 0) clearTimeout(q.timer as NodeJS.Timeout);
    q.timer = undefined;
    q.run = this.#drain(sessionId, q).finally(() => {
      q.run = undefined;
      if (q.pending.length > 0) this.#start(sessionId);
      else if (!q.timer) this.#queues.delete(sessionId);
    });
  }

  /** Writes the session's pending events block after block until none is left. */
  async #drain(sessionId: string, q: SessionQueue): Promise<void> {
    while (q.pending.length > 0) {
      let n = 0;
      let bytes = BLOCK_OVERHEAD_BYTES;
      while (n < q.pending.length && n < this.#o.maxBlockEvents) {
        const next = bytes + q.pending[n]!.size;
        if (n > 0 && next > this.#o.maxBlockBytes) break;
        bytes = next;
        n++;
      }
      const batch = q.pending.splice(0, n);
      await this.#acquire();
      try {
        const stored = await this.#writeBlock(sessionId, q, batch);
        batch.forEach((p, i) => p.resolve(stored[i]!));
      } catch (e) {
        const err = e instanceof WritError ? e : new WritError('WRIT_INTERNAL', `audit block for session ${sessionId} could not be stored`, { cause: e });
        // The events in full: when the stream cannot take them, the log is the last place they exist.
        this.#log?.error({ err: e, sessionId, lost: batch.map((p) => p.event) }, `AUDIT EVENTS NOT STORED: ${batch.length} event(s) of session ${sessionId}`);
        for (const p of batch) p.reject(err);
      } finally {
        this.#release();
      }
    }
  }

  /**
   * The block's signature, given once the blocks being chained now (the sessions started in one
   * group-commit turn chain theirs one after the other, in the microtasks of that turn) are all
   * chained: they share one signature (audit/keys.ts signBatch) and are published in the same
   * turn, so under load they leave in one socket write instead of one each. A lone block waits
   * one microtask.
   */
  #sealed(sessionId: string, events: AuditEvent[]): Promise<BlockSignature | undefined> {
    return new Promise((resolve, reject) => {
      this.#sealing.push({ sessionId, events, done: (sig, err) => (err === undefined ? resolve(sig) : reject(err)) });
      if (!this.#sealQueued) {
        this.#sealQueued = true;
        queueMicrotask(this.#sealFn);
      }
    });
  }

  /** One bound function for every seal. */
  readonly #sealFn = (): void => {
    this.#sealQueued = false;
    const blocks = this.#sealing;
    this.#sealing = [];
    let sigs: Array<BlockSignature | undefined>;
    try {
      sigs = this.#signer ? this.#signer.signBatch(blocks) : [];
    } catch (e) {
      for (const b of blocks) b.done(undefined, e);
      return;
    }
    blocks.forEach((b, i) => b.done(sigs[i]));
  };

  /**
   * Chains `batch` onto the session's head and stores it, retrying until it is stored (or the
   * close deadline passes). While no attempt may have been stored, events pending for the
   * session join `batch` (in place). Returns the events as stored, in `batch`'s order.
   */
  async #writeBlock(sessionId: string, q: SessionQueue, batch: Pending[]): Promise<AuditEvent[]> {
    const subject = this.#names.audit(sessionId);
    let blockId = randomUUID();
    /** Expected head sequences of attempts whose fate is unknown: while any is, the block is frozen. */
    const maybeStored = new Set<number>();
    let known = this.#contended.has(sessionId) ? undefined : this.#cachedHead(sessionId);
    // A newer head another writer of this process stored (the worker's block after the broker's):
    // chained onto at once, as trusted as this writer's own.
    const shared = this.#sharedNewer(sessionId);
    if (shared) known = shared;
    const optimistic = known !== undefined;
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      if (Date.now() >= this.#deadline) {
        throw new WritError('WRIT_INTERNAL', `audit: block for session ${sessionId} not stored before the shutdown deadline (${attempt - 1} attempts)`, { cause: lastError });
      }
      if (attempt > 1 && maybeStored.size === 0 && this.#absorb(q, batch)) blockId = randomUUID();
      let head: Head;
      let events: AuditEvent[];
      try {
        if (maybeStored.size > 0) {
          const mine = await this.#resolveAmbiguous(sessionId, maybeStored, batch);
          if (mine) return mine;
        }
        const ahead = this.#prefetched.get(sessionId);
        if (ahead) this.#prefetched.delete(sessionId);
        head = known ?? (await (ahead ?? this.#loadHead(sessionId)).catch(() => this.#loadHead(sessionId))).head;
        known = undefined;
        events = chain(batch, head.hash);
        const sig = await this.#sealed(sessionId, events);
        const h = headers();
        h.set(CHAIN_LENGTH_HEADER, String(head.count + events.length));
        const timeout = Math.max(1, Math.min(this.#o.publishTimeoutMs, this.#deadline - Date.now()));
        const ack = await this.#js
          .publish(subject, blockJson(events, sig), {
            msgID: blockId,
            headers: h,
            timeout,
            expect: { lastSubjectSequence: head.seq },
          })
          .catch((e: unknown) => {
            // A refusal for the wrong head is certain: nothing was stored. Anything else may have been.
            if (!isWrongLastSequence(e)) maybeStored.add(head.seq);
            throw e;
          });
        if (ack.duplicate) return await this.#readBack(sessionId, ack.seq, batch);
        // An optimistic first attempt on the cached head won: the session is no longer contended.
        if (attempt === 1 && optimistic) this.#contended.delete(sessionId);
        this.#remember(sessionId, { seq: ack.seq, hash: events[events.length - 1]!.hash, count: head.count + events.length });
        this.#stats.blocks++;
        return events;
      } catch (e) {
        lastError = e;
        this.#heads.delete(sessionId);
        if (!isRetryable(e)) throw e;
        this.#stats.retries++;
        if (isWrongLastSequence(e)) this.#stats.conflicts++;
        if (this.#contended.size > this.#o.maxCachedSessions) this.#contended.clear();
        this.#contended.add(sessionId);
        if (attempt % STILL_RETRYING_EVERY === 0) {
          this.#log?.warn({ sessionId, attempt, events: batch.length, err: (e as Error).message }, 'audit block still not stored; retrying until it is');
        } else this.#log?.debug({ sessionId, attempt, err: (e as Error).message }, 'audit append conflict: re-chaining');
        // The first retry goes at once onto a fresh head; repeated failures back off with full jitter.
        if (attempt > 1) await this.#sleep(Math.random() * Math.min(this.#o.maxBackoffMs, 2 ** attempt));
      }
    }
  }

  /**
   * For each head sequence an ambiguous attempt expected: the block stored right after it on
   * the session's subject is ours (return the stored events), another writer's (ours can never
   * be stored there: forget it), or absent (ours may still arrive: stay frozen).
   */
  async #resolveAmbiguous(sessionId: string, maybeStored: Set<number>, batch: readonly Pending[]): Promise<AuditEvent[] | undefined> {
    for (const seq of [...maybeStored]) {
      const next = await this.#jsm.streams.getMessage(this.#names.streams.audit, { seq: seq + 1, next_by_subj: this.#names.audit(sessionId) } as unknown as { seq: number });
      if (!next) continue;
      const events = decodeBlock(next.data, sessionId);
      if (typeof events !== 'string' && events[0]?.id === batch[0]!.event.id) {
        const stored = await this.#readBack(sessionId, next.seq, batch);
        const count = Number(next.header?.get(CHAIN_LENGTH_HEADER) || NaN);
        if (Number.isSafeInteger(count)) this.#remember(sessionId, { seq: next.seq, hash: stored[stored.length - 1]!.hash, count });
        return stored;
      }
      maybeStored.delete(seq);
    }
    return undefined;
  }

  /** The block at `seq` is this batch, stored by an earlier attempt: its events are the truth. */
  async #readBack(sessionId: string, seq: number, batch: readonly Pending[]): Promise<AuditEvent[]> {
    const stored = await this.#jsm.streams.getMessage(this.#names.streams.audit, { seq });
    const parsed = stored ? decodeBlock(stored.data, sessionId) : undefined;
    if (!parsed || typeof parsed === 'string' || parsed.length !== batch.length || parsed.some((e, i) => e.id !== batch[i]!.event.id)) {
      throw new WritError('WRIT_INTERNAL', `audit: block ${seq} of ${sessionId} (an earlier attempt of this block) could not be read back`);
    }
    return parsed;
  }

  /** Moves pending events of the session into `batch` while the block limits allow; true when any moved. */
  #absorb(q: SessionQueue, batch: Pending[]): boolean {
    let bytes = BLOCK_OVERHEAD_BYTES + batch.reduce((a, p) => a + p.size, 0);
    let n = 0;
    while (n < q.pending.length && batch.length + n < this.#o.maxBlockEvents && bytes + q.pending[n]!.size <= this.#o.maxBlockBytes) {
      bytes += q.pending[n]!.size;
      n++;
    }
    if (n === 0) return false;
    batch.push(...q.pending.splice(0, n));
    return true;
  }

  /** Sleeps `ms`, cut short by close(). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, Math.max(0, Math.min(ms, this.#deadline - Date.now())));
      this.#sleepers.add(done);
    });
  }

  async #loadHead(sessionId: string): Promise<LastBlock> {
    const last = await loadLastBlock(this.#jsm, this.#names, sessionId);
    // A broken tail is for verify to report; new evidence is still written, chained after it.
    if (last.malformed) this.#log?.error({ sessionId, seq: last.head.seq, reason: last.malformed }, 'audit: last block of the session is malformed');
    return last;
  }

  /** The board's head of the session when it is newer than the one this writer holds. */
  #sharedNewer(sessionId: string): Head | undefined {
    const shared = this.#board?.get(this.#names.audit(sessionId));
    if (!shared) return undefined;
    const own = this.#heads.get(sessionId);
    return !own || shared.seq > own.seq ? shared : undefined;
  }

  #cachedHead(sessionId: string): Head | undefined {
    const h = this.#heads.get(sessionId);
    if (h) {
      this.#heads.delete(sessionId);
      this.#heads.set(sessionId, h);
    }
    return h;
  }

  #remember(sessionId: string, head: Head): void {
    this.#board?.offer(this.#names.audit(sessionId), head);
    this.#heads.delete(sessionId);
    this.#heads.set(sessionId, head);
    if (this.#heads.size > this.#o.maxCachedSessions) this.#heads.delete(this.#heads.keys().next().value!);
    this.#changed.delete(sessionId);
    this.#changed.set(sessionId, { sessionId, ...head });
    if (this.#changed.size > this.#o.maxChangedHeads) {
      this.#changed.delete(this.#changed.keys().next().value!);
      if (!this.#droppedChanged) this.#log?.warn({ max: this.#o.maxChangedHeads }, 'audit: changed heads exceed the bound; the oldest are left out of the next checkpoint');
      this.#droppedChanged = true;
    }
  }

  async #acquire(): Promise<void> {
    while (this.#inFlight >= this.#o.maxInFlight) await new Promise<void>((r) => this.#slotWaiters.push(r));
    this.#inFlight++;
  }

  #release(): void {
    this.#inFlight--;
    this.#slotWaiters.shift()?.();
  }
}

/** A session's last block: where to chain next, and its events when readable. */
export interface LastBlock {
  head: Head;
  events?: AuditEvent[];
  /** Why the last block could not be read; the head then chains to the SHA-256 of its raw bytes. */
  malformed?: string;
}

/** Reads the session's last block from the stream (seq 0 and the zero hash when it has none). */
export async function loadLastBlock(jsm: JetStreamManager, n: Names, sessionId: string): Promise<LastBlock> {
  const m = await jsm.streams.getMessage(n.streams.audit, { last_by_subj: n.audit(sessionId) });
  if (!m) return { head: { seq: 0, hash: ZERO_HASH, count: 0 } };
  const count = Number(m.header?.get(CHAIN_LENGTH_HEADER) || NaN);
  const events = decodeBlock(m.data, sessionId);
  if (typeof events === 'string' || !Number.isSafeInteger(count)) {
    return {
      head: { seq: m.seq, hash: sha256(Buffer.from(m.data).toString('latin1')), count: Number.isSafeInteger(count) ? count : 0 },
      malformed: typeof events === 'string' ? events : `no ${CHAIN_LENGTH_HEADER} header`,
    };
  }
  return { head: { seq: m.seq, hash: events[events.length - 1]!.hash, count }, events };
}

/** Links `batch` after `prev`: each event's prev is the hash of the one before. */
function chain(batch: readonly Pending[], prev: string): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (const e of batch.map((p) => p.event)) {
    // Built in canonical key order (hash sorts between digest and id); the placeholder has the real hash's length.
    const ev: AuditEvent = {
      actor: e.actor,
      at: e.at,
      ...(e.digest !== undefined ? { digest: e.digest } : {}),
      hash: ZERO_HASH,
      id: e.id,
      ...(e.intentId !== undefined ? { intentId: e.intentId } : {}),
      ...(e.payload !== undefined ? { payload: e.payload } : {}),
      ...(e.policyVersion !== undefined ? { policyVersion: e.policyVersion } : {}),
      prev,
      sessionId: e.sessionId,
      type: e.type,
      v: 1,
    };
    ev.hash = eventHash(ev);
    prev = ev.hash;
    out.push(ev);
  }
  return out;
}

function isWrongLastSequence(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamWrongLastSequence;
}

/**
 * What a retry can never change: a closed or draining connection, a permission refusal, a
 * payload the server will not take, and JetStream's other 4xx refusals. Everything else
 * (lost races, timeouts, no responders while NATS restarts, 5xx, a stream briefly not found)
 * is retried: an event is not given up on a guess.
 */
function isRetryable(e: unknown): boolean {
  if (e instanceof WritError) return false;
  if (e instanceof JetStreamApiError) return isWrongLastSequence(e) || e.status === 404 || e.status >= 500;
  const name = (e as { name?: string } | null)?.name;
  if (
    name === 'ClosedConnectionError' ||
    name === 'DrainingConnectionError' ||
    name === 'PermissionViolationError' ||
    name === 'AuthorizationError' ||
    name === 'InvalidArgumentError' ||
    name === 'InvalidSubjectError'
  )
    return false;
  return true;
}

/**
 * The heads this process's writers stored, newest per session, shared between them
 * (AuditWriterOptions.board). Bounded: the least recently offered are forgotten, and a writer
 * that finds none reads the head as it would alone.
 */
export class SharedHeads implements HeadBoard {
  readonly #heads = new Map<string, Head>();
  constructor(readonly max = 10_000) {}

  get(subject: string): Head | undefined {
    return this.#heads.get(subject);
  }

  offer(subject: string, head: Head): void {
    const had = this.#heads.get(subject);
    if (had && had.seq >= head.seq) return;
    this.#heads.delete(subject);
    this.#heads.set(subject, { seq: head.seq, hash: head.hash, count: head.count });
    if (this.#heads.size > this.max) this.#heads.delete(this.#heads.keys().next().value!);
  }
}
