/**
 * verify(): checks every chain in the audit stream, and the signed checkpoints' claims.
 *
 * Per session: each block's shape, each event's fields, its hash, its link to the event
 * before it (the first links to zeros), and that no stream sequence is missing. Event
 * times need NOT increase: writers on different hosts have different clocks, and the
 * chain order (not `at`) is the order of record.
 *
 * Checkpoints (session `_checkpoints`): structure, signed back-link to the previous
 * checkpoint, Ed25519 signature (when public keys are given), and for every head it signs:
 * the stream holds, at that sequence, a block of that session whose last event has that
 * hash and that chain length. A history rewritten with recomputed hashes, a dropped or
 * reordered block and a missing session all fail there. A copy cut off cleanly after an
 * older checkpoint is self-consistent; `anchor` (a checkpoint kept out of band) or
 * `maxCheckpointAgeMs` catch that.
 *
 * Speed: one ordered consumer over the whole stream and per-session heads in a Map. The
 * per-block work (JSON.parse, a hand-written structural check, hashing) runs in worker
 * threads for large streams while the main thread reads and links.
 */
import type { KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { AuditEvent, Names } from '../schemas/index.ts';
import { analyzeBlock, CHAIN_LENGTH_HEADER, CHECKPOINT_SESSION, ZERO_HASH, type BlockAnalysis } from './chain.ts';
import { checkpointError, checkpointKeys, type CheckpointPayload } from './checkpoint.ts';
import { clientOf, openConsumer, scanBlocks, sessionOf } from './read.ts';
import type { AuditSource, BrokenLink, VerifyOptions, VerifyResult } from './types.ts';

interface Chain {
  head: string;
  count: number;
}

/** What the stream holds at one sequence: enough to check a checkpoint's claim about it. */
interface BlockRef {
  sessionId: string;
  hash: string;
  count: number;
  eventId: string;
}

type Head = CheckpointPayload['heads'][number];

class Verifier {
  readonly chains = new Map<string, Chain>();
  /** BlockRef per stream sequence, indexed from `base` (kept for checkpoint claims). */
  readonly refs: Array<BlockRef | undefined> = [];
  base = 0;
  readonly r: VerifyResult;
  readonly keys: ReadonlyMap<string, KeyObject> | undefined;
  /** First retained stream sequence; above 1, messages aged out (max_age) and chains may start mid-way. */
  horizon = 1;
  lastSeq = 0;
  anchorSeen = false;
  /** Session mode: claims about the one session, by seq, checked as its blocks go by. */
  claims: Map<number, { head: Head; cpSeq: number }> | undefined;
  #sinceProgress = 0;

  constructor(readonly n: Names, readonly opts: VerifyOptions) {
    this.keys = opts.publicKeyPem !== undefined && opts.publicKeyPem.length > 0 ? checkpointKeys(opts.publicKeyPem) : undefined;
    this.r = { ok: true, sessions: 0, events: 0, blocks: 0, checkpoints: 0, coveredHeads: 0, signaturesChecked: this.keys !== undefined, truncatedSessions: 0, breaks: 0 };
  }

  fail(b: BrokenLink): void {
    this.r.breaks++;
    if (!this.r.firstBreak) this.r.firstBreak = b;
    this.r.ok = false;
  }

  /**
   * Links one analyzed block into its session's chain. `gapCheck` when the scan covers the
   * whole stream, so every sequence must be present; `chainLength` reads the block's header
   * (only needed for sessions whose start aged out).
   */
  apply(seq: number, sid: string, a: BlockAnalysis, gapCheck: boolean, chainLength: () => string | undefined): void {
    if (this.r.firstSeq === undefined) this.r.firstSeq = seq;
    if (gapCheck && this.lastSeq !== 0 && seq !== this.lastSeq + 1) {
      this.fail({ sessionId: sid, seq, eventId: '', reason: `stream sequences ${this.lastSeq + 1}-${seq - 1} are missing (messages deleted)` });
    }
    this.lastSeq = seq;
    this.r.blocks++;
    this.r.events += a.events;
    let chain = this.chains.get(sid);
    if (!chain) {
      chain = { head: ZERO_HASH, count: 0 };
      this.chains.set(sid, chain);
      if (this.horizon > 1 && a.firstPrev !== undefined && a.firstPrev !== ZERO_HASH) {
        // The session began before the retained part of the stream: anchor on what is there.
        chain.head = a.firstPrev;
        chain.count = NaN;
        this.r.truncatedSessions++;
      }
    }
    const errors = a.errors ?? [];
    let linked = false;
    const link = () => {
      linked = true;
      if (a.firstPrev !== undefined && a.firstPrev !== chain.head) {
        this.fail({ sessionId: sid, seq, eventId: a.firstId ?? '', reason: chain.count === 0 ? 'first event of the session does not link to zeros' : `prev ${a.firstPrev.slice(0, 12)}… does not match the previous event's hash ${chain.head.slice(0, 12)}…` });
      }
    };
    // Report in event order: the link of the first good event sits among the block's own findings.
    for (const e of errors) {
      if (!linked && e.index >= (a.firstIndex ?? -1) && e.index !== -1 && !e.reason.startsWith('event names session')) link();
      this.fail({ sessionId: sid, seq, eventId: e.eventId, reason: e.reason });
    }
    if (!linked) link();
    if (a.events === 0) return;
    chain.head = a.lastHash!;
    chain.count += a.events;
    if (Number.isNaN(chain.count)) chain.count = Number(chainLength());
    if (a.checkpoints) for (const ev of a.checkpoints) this.checkpoint(ev, seq);
    const ref: BlockRef = { sessionId: sid, hash: a.lastHash!, count: chain.count, eventId: a.lastId! };
    if (this.claims) this.checkClaim(ref, seq);
    else {
      if (this.refs.length === 0) this.base = seq;
      this.refs[seq - this.base] = ref;
    }
    if (this.opts.onProgress && this.r.events - this.#sinceProgress >= 100_000) {
      this.#sinceProgress = this.r.events;
      this.opts.onProgress(this.r.events);
    }
  }

  checkpoint(ev: AuditEvent, seq: number): void {
    const why = checkpointError(ev, this.n.streams.audit, this.keys);
    if (why) return this.fail({ sessionId: CHECKPOINT_SESSION, seq, eventId: ev.id, reason: why });
    const p = ev.payload as unknown as CheckpointPayload;
    this.r.checkpoints++;
    this.r.lastCheckpoint = { seq, hash: ev.hash, at: p.issuedAt };
    if (this.opts.anchor && this.opts.anchor.hash === ev.hash && (this.opts.anchor.seq === undefined || this.opts.anchor.seq === seq)) this.anchorSeen = true;
    for (const h of p.heads) {
      if (h.seq >= seq) {
        this.fail({ sessionId: h.sessionId, seq: h.seq, eventId: '', reason: `checkpoint ${seq} signs session ${h.sessionId} at seq ${h.seq}, after itself: the log was reordered, cut or restored from an older copy` });
        continue;
      }
      if (h.seq < this.horizon) continue; // aged out
      if (this.claims) {
        if (h.sessionId === this.opts.sessionId) this.claims.set(h.seq, { head: h, cpSeq: seq });
        continue;
      }
      this.r.coveredHeads++;
      const ref = this.refs[h.seq - this.base];
      if (!ref || ref.sessionId !== h.sessionId || ref.hash !== h.hash || ref.count !== h.count) {
        this.fail({ sessionId: h.sessionId, seq: h.seq, eventId: ref?.sessionId === h.sessionId ? ref.eventId : '', reason: claimMismatch(seq, h, ref) });
      }
    }
  }

  /** Session mode: the block at `seq` against what the checkpoints signed about it. */
  checkClaim(ref: BlockRef, seq: number): void {
    const c = this.claims!.get(seq);
    if (!c) return;
    this.claims!.delete(seq);
    this.r.coveredHeads++;
    if (ref.hash !== c.head.hash || ref.count !== c.head.count) this.fail({ sessionId: ref.sessionId, seq, eventId: ref.eventId, reason: claimMismatch(c.cpSeq, c.head, ref) });
  }

  finish(): VerifyResult {
    if (this.claims) {
      for (const [seq, c] of this.claims) {
        this.r.coveredHeads++;
        this.fail({ sessionId: c.head.sessionId, seq, eventId: '', reason: claimMismatch(c.cpSeq, c.head, undefined) });
      }
    }
    const hasEvents = this.r.events > (this.chains.get(CHECKPOINT_SESSION)?.count ?? 0);
    if ((this.opts.requireCheckpoint ?? false) && this.r.checkpoints === 0 && hasEvents) {
      this.fail({ sessionId: CHECKPOINT_SESSION, seq: 0, eventId: '', reason: 'no valid signed checkpoint in the stream' });
    }
    if (this.opts.anchor && !this.anchorSeen) {
      this.fail({ sessionId: CHECKPOINT_SESSION, seq: this.opts.anchor.seq ?? 0, eventId: '', reason: `the anchored checkpoint ${this.opts.anchor.hash.slice(0, 12)}… is not in the stream (log truncated or replaced)` });
    }
    if (this.opts.maxCheckpointAgeMs !== undefined) {
      const at = this.r.lastCheckpoint?.at;
      if (at === undefined || at < Date.now() - this.opts.maxCheckpointAgeMs) {
        this.fail({ sessionId: CHECKPOINT_SESSION, seq: this.r.lastCheckpoint?.seq ?? 0, eventId: '', reason: `the newest checkpoint is ${at === undefined ? 'missing' : `from ${new Date(at).toISOString()}`}, older than allowed (log cut off?)` });
      }
    }
    this.r.sessions = this.opts.sessionId ? (this.chains.has(this.opts.sessionId) ? 1 : 0) : this.chains.size;
    this.r.lastSeq = this.lastSeq || undefined;
    return this.r;
  }
}

function claimMismatch(cpSeq: number, h: Head, ref: BlockRef | undefined): string {
  const claim = `checkpoint ${cpSeq} signs session ${h.sessionId} at seq ${h.seq} with head ${h.hash.slice(0, 12)}… (${h.count} events)`;
  if (!ref) return `${claim}, but the stream has no such block (missing, reordered or restored from an older copy)`;
  if (ref.sessionId !== h.sessionId) return `${claim}, but that sequence holds session ${ref.sessionId} (reordered or rewritten)`;
  return `${claim}, but the stream has ${ref.hash.slice(0, 12)}… (${ref.count} events) there (history rewritten)`;
}

/** Streams with at least this many messages are verified with worker threads (unless `threads` says otherwise). */
const PARALLEL_FROM_MESSAGES = 20_000;

/** Verifies the whole stream, or one session with `opts.sessionId`. */
export async function verify(opts: AuditSource & VerifyOptions): Promise<VerifyResult> {
  const n = opts.names;
  const js = clientOf(opts);
  const v = new Verifier(n, opts);
  const info = await (await js.streams.get(n.streams.audit)).info();
  v.horizon = info.state.first_seq;
  const endSeq = info.state.last_seq;
  const inline = (gapCheck: boolean) => (b: { seq: number; subject: string; data: Uint8Array; msg: { headers?: { get(k: string): string } | undefined } }) => {
    const sid = sessionOf(n, b.subject);
    v.apply(b.seq, sid, analyzeBlock(b.data, sid, CHECKPOINT_SESSION), gapCheck, () => b.msg.headers?.get(CHAIN_LENGTH_HEADER));
  };
  if (opts.sessionId === undefined) {
    // A stream aged out at the front starts mid-way: the first retained sequence is no gap.
    v.lastSeq = info.state.first_seq > 1 ? info.state.first_seq - 1 : 0;
    const threads = opts.threads ?? (info.state.messages >= PARALLEL_FROM_MESSAGES ? Math.min(2, Math.max(1, availableParallelism() - 1)) : 0);
    if (threads > 0) await parallelScan(js, n, v, threads, info.state.first_seq, endSeq);
    else await scanBlocks(js, n, { endSeq }, inline(true));
    return v.finish();
  }
  n.audit(opts.sessionId); // validates the token
  v.claims = new Map();
  await scanBlocks(js, n, { filter: n.audit(CHECKPOINT_SESSION), endSeq }, inline(false));
  if (opts.sessionId !== CHECKPOINT_SESSION) {
    // Count only the session's own events and blocks; the checkpoints were read for their claims.
    const { events, blocks } = v.r;
    await scanBlocks(js, n, { filter: n.audit(opts.sessionId), endSeq }, inline(false));
    v.r.events -= events;
    v.r.blocks -= blocks;
  }
  return v.finish();
}

interface Batch {
  seqs: number[];
  sessions: string[];
  lengths: (string | undefined)[];
  result: Promise<BlockAnalysis[]>;
}

/** Bytes of block data gathered before a batch goes to a worker. */
const BATCH_BYTES = 256 * 1024;
/** Messages read ahead of the linking before the consumer is paused (bounds memory). */
const READ_AHEAD = 20_000;

/**
 * Reads the whole stream and has `threads` workers analyze the blocks in batches; results
 * are linked in stream order. When the workers fall behind, the consumer is stopped and a
 * new one resumes after the last message read, so memory stays bounded.
 */
async function parallelScan(js: JetStreamClient, n: Names, v: Verifier, threads: number, firstSeq: number, endSeq: number): Promise<void> {
  const readAhead = v.opts.readAheadMessages ?? READ_AHEAD;
  const pool = new WorkerPool(threads);
  const queue: Batch[] = [];
  let queued = 0;
  let failure: unknown;
  const needLength = v.horizon > 1;
  // Links finished batches in order; runs beside the reading.
  let linking = Promise.resolve();
  const link = () => {
    linking = linking.then(async () => {
      while (queue.length > 0) {
        const b = queue[0]!;
        const results = await b.result;
        queue.shift();
        queued -= b.seqs.length;
        for (let i = 0; i < results.length; i++) {
          const len = b.lengths[i];
          v.apply(b.seqs[i]!, b.sessions[i]!, results[i]!, true, () => len);
        }
      }
    }).catch((e: unknown) => {
      failure ??= e;
    });
  };
  try {
    let next = firstSeq;
    while (next <= endSeq && failure === undefined) {
      const c = await openConsumer(js, n, { startSeq: next });
      if (!c) break;
      let buf = new Uint8Array(BATCH_BYTES);
      let used = 0;
      let pending: Omit<Batch, 'result'> & { ends: number[] } = { seqs: [], sessions: [], lengths: [], ends: [] };
      const flush = () => {
        if (pending.seqs.length === 0) return;
        const out = buf.buffer.slice(0, used);
        queue.push({ ...pending, result: pool.run(out, pending.ends, pending.sessions) });
        queued += pending.seqs.length;
        buf = new Uint8Array(BATCH_BYTES);
        used = 0;
        pending = { seqs: [], sessions: [], lengths: [], ends: [] };
        link();
      };
      let stopped = false;
      const msgs = await c.consume({
        max_messages: 1024,
        callback: (m) => {
          if (stopped) return;
          const data = m.data;
          if (used + data.length > buf.length) {
            flush();
            if (data.length > buf.length) buf = new Uint8Array(data.length);
          }
          buf.set(data, used);
          used += data.length;
          pending.seqs.push(m.seq);
          pending.sessions.push(sessionOf(n, m.subject));
          pending.lengths.push(needLength ? m.headers?.get(CHAIN_LENGTH_HEADER) : undefined);
          pending.ends.push(used);
          next = m.seq + 1;
          if (m.seq >= endSeq || m.info.pending === 0 || queued + pending.seqs.length >= readAhead) {
            stopped = true;
            void msgs.stop();
          }
        },
      });
      await msgs.closed();
      flush();
      if (next > endSeq) break;
      // Let the workers and the linking catch up before reading on.
      await linking;
    }
    link();
    await linking;
    if (failure !== undefined) throw failure;
  } finally {
    await pool.close();
  }
}

/** Worker threads running block-check.mjs, each fed batches round-robin. */
class WorkerPool {
  readonly #workers: Worker[];
  readonly #waiting = new Map<number, { resolve(r: BlockAnalysis[]): void; reject(e: unknown): void }>();
  #nextId = 0;

  constructor(size: number) {
    this.#workers = Array.from({ length: size }, () => {
      const w = new Worker(new URL('./verify-worker.mjs', import.meta.url));
      w.on('message', (m: { id: number; out: BlockAnalysis[] }) => {
        this.#waiting.get(m.id)?.resolve(m.out);
        this.#waiting.delete(m.id);
      });
      w.on('error', (e) => {
        for (const p of this.#waiting.values()) p.reject(e);
        this.#waiting.clear();
      });
      return w;
    });
  }

  run(buf: ArrayBuffer, ends: number[], sessions: string[]): Promise<BlockAnalysis[]> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#workers[id % this.#workers.length]!.postMessage({ id, buf, ends, sessions, checkpointSession: CHECKPOINT_SESSION }, [buf]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
