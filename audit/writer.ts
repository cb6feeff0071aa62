/**
 * AuditWriter: appends events to the per-session hash chains.
 *
 * Events of one session that arrive within `flushMs` become one block (one JetStream
 * message): the audit write is one of the main CPU costs per intent, and an intent's
 * received/decided/dispatched events usually land within a millisecond of each other.
 *
 * A block is published with the expected last subject sequence of the session's head, so
 * the stream refuses it if any other writer (another broker replica, a worker) appended
 * meanwhile; the writer then re-reads the head, re-chains its events onto it and retries.
 * Two writers therefore never fork a chain. One session's blocks go out strictly one
 * after the other; sessions are written in parallel.
 */
import { randomUUID } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { canonicalJson, WritError, type AuditEvent, type Names } from '../schemas/index.ts';
import { blockJson, CHAIN_LENGTH_HEADER, CHECKPOINT_SESSION, eventHash, sha256, ZERO_HASH } from './chain.ts';
import { decodeBlock } from './read.ts';
import type { Actor, AppendInput, AuditWriterOptions, SessionHead } from './types.ts';

interface Pending {
  event: Omit<AuditEvent, 'prev' | 'hash'>;
  /** Bytes this event adds to a block (its JSON plus the chain fields). */
  size: number;
  resolve(ev: AuditEvent): void;
  reject(e: unknown): void;
}

interface SessionQueue {
  pending: Pending[];
  timer: NodeJS.Timeout | undefined;
  /** The running write loop, while one runs. */
  run: Promise<void> | undefined;
}

/** A head as the writer knows it: where to chain next. */
export type Head = Omit<SessionHead, 'sessionId'>;

const DEFAULTS = {
  flushMs: 2, maxBlockEvents: 64, maxBlockBytes: 512 * 1024, maxInlinePayloadBytes: 8192,
  maxCachedSessions: 10_000, maxChangedHeads: 100_000, maxAttempts: 12, maxInFlight: 512, publishTimeoutMs: 5_000,
};
/** Per event: `"prev":"<64>","hash":"<64>",` and a comma. */
const CHAIN_FIELDS_BYTES = 150;

export class AuditWriter {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #names: Names;
  readonly #actor: Actor;
  readonly #o: typeof DEFAULTS;
  readonly #log: Logger | undefined;
  readonly #queues = new Map<string, SessionQueue>();
  /** Last known head per session, least recently used first. */
  readonly #heads = new Map<string, Head>();
  /**
   * Sessions whose last optimistic append lost to another writer (the broker and a worker take
   * turns on one session). For those the head is read first: two operations per block instead
   * of a failed publish, a read and a second publish.
   */
  readonly #contended = new Set<string>();
  /** Heads written since the last takeChangedHeads(), oldest first. */
  readonly #changed = new Map<string, SessionHead>();
  #droppedChanged = false;
  #inFlight = 0;
  readonly #slotWaiters: Array<() => void> = [];
  #closed = false;

  constructor(opts: AuditWriterOptions) {
    this.#js = opts.js;
    this.#jsm = opts.jsm;
    this.#names = opts.names;
    this.#actor = Object.freeze({ id: opts.actor.id, kind: opts.actor.kind });
    this.#log = opts.logger;
    const o = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>) {
      const v = opts[k];
      if (v === undefined) continue;
      if (!Number.isFinite(v) || v < (k === 'flushMs' ? 0 : 1)) throw new WritError('WRIT_CONFIG_INVALID', `AuditWriter: ${k} must be a number >= ${k === 'flushMs' ? 0 : 1}, got ${v}`);
      o[k] = v;
    }
    this.#o = o;
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
      if (!q.run && !q.timer) q.timer = setTimeout(() => this.#start(event.sessionId), this.#o.flushMs);
    });
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

  /** Refuses new events, writes the pending ones. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  /** Last known head of every cached session (at most `maxCachedSessions`). */
  heads(): SessionHead[] {
    return [...this.#heads].map(([sessionId, h]) => ({ sessionId, ...h }));
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
      actor: this.#actor, at, ...(digest !== undefined ? { digest } : {}), id: randomUUID(),
      ...(input.intentId !== undefined ? { intentId: input.intentId } : {}), ...(payload !== undefined ? { payload } : {}),
      ...(input.policyVersion !== undefined ? { policyVersion: input.policyVersion } : {}), sessionId: input.sessionId, type: input.type, v: 1,
    };
  }

  #start(sessionId: string): void {
    const q = this.#queues.get(sessionId);
    if (!q || q.run) return;
    if (q.timer) clearTimeout(q.timer);
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
      let bytes = 64;
      while (n < q.pending.length && n < this.#o.maxBlockEvents) {
        const next = bytes + q.pending[n]!.size;
        if (n > 0 && next > this.#o.maxBlockBytes) break;
        bytes = next;
        n++;
      }
      const batch = q.pending.splice(0, n);
      await this.#acquire();
      try {
        const stored = await this.#writeBlock(sessionId, batch);
        batch.forEach((p, i) => p.resolve(stored[i]!));
      } catch (e) {
        const err = e instanceof WritError ? e : new WritError('WRIT_INTERNAL', `audit block for session ${sessionId} could not be stored`, { cause: e });
        this.#log?.error({ err: e, sessionId, events: batch.length }, 'audit block could not be stored');
        for (const p of batch) p.reject(err);
      } finally {
        this.#release();
      }
    }
  }

  /** Chains `batch` onto the session's head and stores it; retries on conflicts. Returns the events as stored. */
  async #writeBlock(sessionId: string, batch: Pending[]): Promise<AuditEvent[]> {
    const subject = this.#names.audit(sessionId);
    const blockId = randomUUID();
    let lastError: unknown;
    let known = this.#contended.has(sessionId) ? undefined : this.#cachedHead(sessionId);
    for (let attempt = 1; attempt <= this.#o.maxAttempts; attempt++) {
      const head = known ?? (await this.#loadHead(sessionId)).head;
      const events = chain(batch, head.hash);
      const h = headers();
      h.set(CHAIN_LENGTH_HEADER, String(head.count + events.length));
      let ack: PubAck;
      try {
        ack = await this.#js.publish(subject, blockJson(events), {
          msgID: blockId, headers: h, timeout: this.#o.publishTimeoutMs, expect: { lastSubjectSequence: head.seq },
        });
      } catch (e) {
        lastError = e;
        this.#heads.delete(sessionId);
        if (!isRetryable(e)) throw e;
        if (this.#contended.size > this.#o.maxCachedSessions) this.#contended.clear();
        this.#contended.add(sessionId);
        // Another writer appended, or the ack was lost: our block may be the one stored.
        const fresh = await this.#loadHead(sessionId).catch(() => undefined);
        if (fresh?.events && fresh.events[0]?.id === batch[0]!.event.id) {
          this.#remember(sessionId, fresh.head);
          return fresh.events;
        }
        this.#log?.debug({ sessionId, attempt, err: (e as Error).message }, 'audit append conflict: re-chaining');
        known = fresh?.head;
        // The first retry goes at once onto the head just read; repeated conflicts back off with jitter.
        if (attempt > 1) await sleep(Math.min(200, 2 ** attempt) * Math.random());
        continue;
      }
      if (ack.duplicate) {
        // An earlier attempt of this block was stored after all (its ack was lost); it is the truth.
        const stored = await this.#jsm.streams.getMessage(this.#names.streams.audit, { seq: ack.seq });
        const parsed = stored ? decodeBlock(stored.data, sessionId) : undefined;
        if (!parsed || typeof parsed === 'string') throw new WritError('WRIT_INTERNAL', `audit: duplicate block ${ack.seq} of ${sessionId} could not be read back`);
        return parsed;
      }
      if (attempt === 1 && known !== undefined) this.#contended.delete(sessionId);
      this.#remember(sessionId, { seq: ack.seq, hash: events[events.length - 1]!.hash, count: head.count + events.length });
      return events;
    }
    throw new WritError('WRIT_INTERNAL', `audit: block for session ${sessionId} not stored after ${this.#o.maxAttempts} attempts`, { cause: lastError });
  }

  async #loadHead(sessionId: string): Promise<LastBlock> {
    const last = await loadLastBlock(this.#jsm, this.#names, sessionId);
    // A broken tail is for verify to report; new evidence is still written, chained after it.
    if (last.malformed) this.#log?.error({ sessionId, seq: last.head.seq, reason: last.malformed }, 'audit: last block of the session is malformed');
    return last;
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
      actor: e.actor, at: e.at, ...(e.digest !== undefined ? { digest: e.digest } : {}), hash: ZERO_HASH, id: e.id,
      ...(e.intentId !== undefined ? { intentId: e.intentId } : {}), ...(e.payload !== undefined ? { payload: e.payload } : {}),
      ...(e.policyVersion !== undefined ? { policyVersion: e.policyVersion } : {}), prev, sessionId: e.sessionId, type: e.type, v: 1,
    };
    ev.hash = eventHash(ev);
    prev = ev.hash;
    out.push(ev);
  }
  return out;
}

/** Conflicts and transport hiccups are retried; a refusal such as a permission error or an oversized block is not. */
function isRetryable(e: unknown): boolean {
  if (e instanceof JetStreamApiError) return e.code === JetStreamApiCodes.StreamWrongLastSequence || e.status === 503;
  const name = (e as { name?: string } | null)?.name;
  // JetStreamNotEnabled is how the client reports "no responders": the stream leader is moving.
  return name === 'TimeoutError' || name === 'JetStreamNotEnabled';
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
