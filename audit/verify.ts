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
 * Speed: the checkpoint session is read first, so signed heads are checked as their blocks
 * go by; then one ordered consumer reads the whole stream, per-session heads in a Map. The
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
import { clientOf, openConsumer, scanBlocks, sessionOf, type RawBlock } from './read.ts';
import { StateCheck } from './state-check.ts';
import type { KeyRegistry } from './keys.ts';
import type { AuditSource, BrokenLink, VerifyOptions, VerifyResult } from './types.ts';

interface Chain {
  head: string;
  count: number;
  /** The session began before the retained part of the stream: its early events are gone. */
  truncated?: true;
}

type Head = CheckpointPayload['heads'][number];
/** A signed head, waiting for its block to go by. */
interface Claim {
  head: Head;
  cpSeq: number;
}

class Verifier {
  readonly chains = new Map<string, Chain>();
  readonly r: VerifyResult;
  readonly keys: ReadonlyMap<string, KeyObject> | undefined;
  /** Registered writer keys: every block must be signed by one (from allowUnsignedBefore on). */
  readonly signers: KeyRegistry | undefined;
  /** First retained stream sequence; above 1, messages aged out (max_age) and chains may start mid-way. */
  horizon = 1;
  /** Stream time of the first retained message, when messages aged out. */
  retainedFromMs: number | undefined;
  lastSeq = 0;
  anchorSeen = false;
  /**
   * Signed heads by stream sequence, read from the checkpoint session before the main pass
   * and checked as their blocks go by: no per-block record has to be kept.
   */
  readonly claims = new Map<number, Claim[]>();
  /** True during the main pass: checkpoint blocks were verified in the first one. */
  mainPass = false;
  /** With againstState: the records and claims whose events the scan looks for. */
  state: StateCheck | undefined;
  /**
   * Targets each intent was received for (the broker's intent.received), by session and intent,
   * when a registered key is bound to targets: its exec events are checked against them. Every
   * target an intent id was received for counts (an agent may send one id twice), so a worker
   * key is refused only for intents never sent to any of its targets.
   */
  readonly #targets = new Map<string, string | string[]>();
  #sinceProgress = 0;

  constructor(
    readonly n: Names,
    readonly opts: VerifyOptions,
  ) {
    this.keys = opts.publicKeyPem !== undefined && opts.publicKeyPem.length > 0 ? checkpointKeys(opts.publicKeyPem) : undefined;
    this.signers = opts.signers;
    this.r = {
      ok: true,
      sessions: 0,
      events: 0,
      blocks: 0,
      checkpoints: 0,
      coveredHeads: 0,
      signaturesChecked: this.keys !== undefined,
      blockSignaturesChecked: this.signers !== undefined,
      unsignedBlocks: 0,
      truncatedSessions: 0,
      breaks: 0,
    };
  }

  /** Records a break; the first broken link is the one at the lowest stream sequence (seq 0: the log as a whole). */
  fail(b: BrokenLink): void {
    this.r.breaks++;
    this.r.ok = false;
    const f = this.r.firstBreak;
    if (!f || (b.seq > 0 && (f.seq === 0 || b.seq < f.seq))) this.r.firstBreak = b;
  }

  /**
   * Links one analyzed block into its session's chain. `gapCheck` when the scan covers the
   * whole stream, so every sequence must be present; `chainLength` reads the block's header
   * (only needed for sessions whose start aged out).
   */
  apply(seq: number, sid: string, a: BlockAnalysis, gapCheck: boolean, chainLength: () => string | undefined, storedAt: () => number = () => 0): void {
    if (gapCheck) {
      if (this.lastSeq !== 0 && seq !== this.lastSeq + 1) {
        this.fail({ sessionId: sid, seq, eventId: '', reason: `stream sequences ${this.lastSeq + 1}-${seq - 1} are missing (messages deleted)` });
      }
      this.lastSeq = seq;
    }
    if (this.mainPass && sid === CHECKPOINT_SESSION) return;
    this.r.firstSeq ??= seq;
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
        chain.truncated = true;
        this.r.truncatedSessions++;
      }
    }
    if (a.firstPrev !== undefined && a.firstPrev !== chain.head) {
      this.fail({
        sessionId: sid,
        seq,
        eventId: a.firstId ?? '',
        reason: chain.count === 0 ? 'first event of the session does not link to zeros' : `prev ${a.firstPrev.slice(0, 12)}… does not match the previous event's hash ${chain.head.slice(0, 12)}…`,
      });
    }
    if (a.errors) for (const e of a.errors) this.fail({ sessionId: sid, seq, eventId: e.eventId, reason: e.reason });
    if (a.unsigned) {
      // Publish rights on the subject are not authorship: an unsigned block is nobody's
      // evidence, except in a log written before signing existed (below allowUnsignedBefore).
      this.r.unsignedBlocks++;
      if (this.signers && seq >= (this.opts.allowUnsignedBefore ?? 0)) this.fail({ sessionId: sid, seq, eventId: a.firstId ?? '', reason: 'block is not signed by any writer key' });
    }
    if (a.evidence) this.state?.note(sid, a.evidence);
    // Only a block that passed its checks is a receipt a bound worker's report can rest on: a
    // forged one is a break of its own, and must not also excuse the reports it names.
    if (a.received && !a.errors && (!a.unsigned || seq < (this.opts.allowUnsignedBefore ?? 0))) this.#received(sid, a.received);
    if (a.bound) this.#checkBound(seq, sid, a, chain.truncated === true, storedAt);
    if (a.events === 0) return;
    chain.head = a.lastHash!;
    chain.count += a.events;
    if (Number.isNaN(chain.count)) chain.count = Number(chainLength());
    if (a.checkpoints) for (const ev of a.checkpoints) this.checkpoint(ev, seq);
    const claims = this.claims.get(seq);
    if (claims) {
      this.claims.delete(seq);
      for (const c of claims) {
        this.r.coveredHeads++;
        if (c.head.sessionId !== sid || c.head.hash !== a.lastHash || c.head.count !== chain.count) {
          this.fail({ sessionId: c.head.sessionId, seq, eventId: c.head.sessionId === sid ? a.lastId! : '', reason: claimMismatch(c, sid, a.lastHash!, chain.count) });
        }
      }
    }
    if (this.opts.onProgress && this.r.events - this.#sinceProgress >= 100_000) {
      this.#sinceProgress = this.r.events;
      this.opts.onProgress(this.r.events);
    }
  }

  #received(sid: string, pairs: readonly string[]): void {
    for (let i = 0; i < pairs.length; i += 2) {
      const k = `${sid}\n${pairs[i]!}`;
      const target = pairs[i + 1]!;
      const had = this.#targets.get(k);
      if (had === undefined) this.#targets.set(k, target);
      else if (typeof had === 'string') {
        if (had !== target) this.#targets.set(k, [had, target]);
      } else if (!had.includes(target)) had.push(target);
    }
  }

  /** Exec events signed by a key bound to targets: each intent must have been received for one of them. */
  #checkBound(seq: number, sid: string, a: BlockAnalysis, truncated: boolean, storedAt: () => number): void {
    const who = this.signers?.get(a.signer ?? '');
    const bound = who?.targets;
    if (!bound || !a.bound) return;
    for (let i = 0; i < a.bound.length; i += 3) {
      const eventId = String(a.bound[i + 1]);
      const intentId = String(a.bound[i + 2]);
      const got = this.#targets.get(`${sid}\n${intentId}`);
      if (got === undefined) {
        // A session whose start aged out may have lost the intent's receipt, but only when this
        // report was stored soon enough after the oldest retained message for the receipt to be
        // older than it. Anyone can make a session look aged out (a first block whose prev is
        // made up), so a report stored later is held to its receipt like any other.
        const after = truncated && this.retainedFromMs !== undefined ? storedAt() - this.retainedFromMs : Infinity;
        if (after <= (this.opts.receiptWindowMs ?? RECEIPT_WINDOW_MS)) {
          this.r.uncheckedExec = (this.r.uncheckedExec ?? 0) + 1;
          continue;
        }
        this.fail({ sessionId: sid, seq, eventId, reason: `exec event for intent ${intentId}, which the session never received, signed by key ${a.signer} bound to targets ${bound.join(', ')}` });
        continue;
      }
      const targets = typeof got === 'string' ? [got] : got;
      if (!targets.some((t) => bound.includes(t))) {
        this.fail({ sessionId: sid, seq, eventId, reason: `exec event for an intent on target ${targets.join(', ')}, signed by key ${a.signer} bound to targets ${bound.join(', ')}` });
      }
    }
  }

  /** A checkpoint event (first pass): signature, back-link, and its heads as claims to check. */
  checkpoint(ev: AuditEvent, seq: number): void {
    const why = checkpointError(ev, this.n.streams.audit, this.keys);
    if (why) return this.fail({ sessionId: CHECKPOINT_SESSION, seq, eventId: ev.id, reason: why });
    const p = ev.payload as unknown as CheckpointPayload;
    this.r.checkpoints++;
    this.r.lastCheckpoint = { seq, hash: ev.hash, at: p.issuedAt };
    if (this.opts.anchor && this.opts.anchor.hash === ev.hash && (this.opts.anchor.seq === undefined || this.opts.anchor.seq === seq)) this.anchorSeen = true;
    for (const head of p.heads) {
      if (head.seq >= seq) {
        this.fail({
          sessionId: head.sessionId,
          seq: head.seq,
          eventId: '',
          reason: `checkpoint ${seq} signs session ${head.sessionId} at seq ${head.seq}, after itself: the log was reordered, cut or restored from an older copy`,
        });
        continue;
      }
      if (head.seq < this.horizon) continue; // aged out
      if (this.opts.sessionId !== undefined && head.sessionId !== this.opts.sessionId) continue;
      const list = this.claims.get(head.seq);
      if (list) list.push({ head, cpSeq: seq });
      else this.claims.set(head.seq, [{ head, cpSeq: seq }]);
    }
  }

  finish(retainedFrom?: number): VerifyResult {
    if (this.state) {
      this.r.state = this.state.result(retainedFrom);
      if (this.r.state.missing > 0) this.r.ok = false;
    }
    // Heads whose sequence never went by: no such block of that session in the stream.
    for (const [seq, list] of this.claims) {
      for (const c of list) {
        this.r.coveredHeads++;
        this.fail({ sessionId: c.head.sessionId, seq, eventId: '', reason: claimMismatch(c, undefined, '', 0) });
      }
    }
    this.claims.clear();
    const hasEvents = this.r.events > (this.chains.get(CHECKPOINT_SESSION)?.count ?? 0);
    if ((this.opts.requireCheckpoint ?? false) && this.r.checkpoints === 0 && hasEvents) {
      this.fail({ sessionId: CHECKPOINT_SESSION, seq: 0, eventId: '', reason: 'no valid signed checkpoint in the stream' });
    }
    if (this.opts.anchor && !this.anchorSeen) {
      this.fail({
        sessionId: CHECKPOINT_SESSION,
        seq: this.opts.anchor.seq ?? 0,
        eventId: '',
        reason: `the anchored checkpoint ${this.opts.anchor.hash.slice(0, 12)}… is not in the stream (log truncated or replaced)`,
      });
    }
    if (this.opts.maxCheckpointAgeMs !== undefined) {
      const at = this.r.lastCheckpoint?.at;
      if (at === undefined || at < Date.now() - this.opts.maxCheckpointAgeMs) {
        this.fail({
          sessionId: CHECKPOINT_SESSION,
          seq: this.r.lastCheckpoint?.seq ?? 0,
          eventId: '',
          reason: `the newest checkpoint is ${at === undefined ? 'missing' : `from ${new Date(at).toISOString()}`}, older than allowed (log cut off?)`,
        });
      }
    }
    this.r.sessions = this.opts.sessionId ? (this.chains.has(this.opts.sessionId) ? 1 : 0) : this.chains.size;
    this.r.lastSeq = this.lastSeq || this.r.lastSeq;
    return this.r;
  }
}

function claimMismatch(c: Claim, sid: string | undefined, hash: string, count: number): string {
  const h = c.head;
  const claim = `checkpoint ${c.cpSeq} signs session ${h.sessionId} at seq ${h.seq} with head ${h.hash.slice(0, 12)}… (${h.count} events)`;
  if (sid === undefined) return `${claim}, but the stream has no such block (missing, reordered or restored from an older copy)`;
  if (sid !== h.sessionId) return `${claim}, but that sequence holds session ${sid} (reordered or rewritten)`;
  return `${claim}, but the stream has ${hash.slice(0, 12)}… (${count} events) there (history rewritten)`;
}

/** Streams with at least this many messages are verified with worker threads when cores allow. */
const PARALLEL_FROM_MESSAGES = 20_000;

/**
 * Worker threads only pay where cores are left once the main thread (reading, linking) and
 * a local nats-server have theirs: on 2 cores, measured, one worker made verify slower.
 */
function defaultThreads(messages: number): number {
  const cores = availableParallelism();
  return messages >= PARALLEL_FROM_MESSAGES && cores >= 4 ? Math.min(3, cores - 2) : 0;
}

/** Verifies the whole stream, or one session with `opts.sessionId`. */
export async function verify(opts: AuditSource & VerifyOptions): Promise<VerifyResult> {
  const n = opts.names;
  const js = clientOf(opts);
  const v = new Verifier(n, opts);
  const info = await (await js.streams.get(n.streams.audit)).info();
  v.horizon = info.state.first_seq;
  if (info.state.first_seq > 1) v.retainedFromMs = Date.parse(info.state.first_ts);
  const endSeq = info.state.last_seq;
  if (opts.sessionId !== undefined) n.audit(opts.sessionId); // validates the token
  // State first: evidence written while the log is read is then seen, never the other way round.
  if (opts.againstState) v.state = await StateCheck.load(js, n, { sessionId: opts.sessionId, graceMs: opts.stateGraceMs });
  const evidence = v.state !== undefined;
  // Records older than the retained log (max_age) cannot be checked against it.
  const retainedFrom = info.state.first_seq > 1 ? Date.parse(info.state.first_ts) : undefined;
  const inline = (gapCheck: boolean) => (b: RawBlock) => {
    const sid = sessionOf(n, b.subject);
    v.apply(
      b.seq,
      sid,
      analyzeBlock(b.data, sid, CHECKPOINT_SESSION, evidence, opts.signers),
      gapCheck,
      () => b.msg.headers?.get(CHAIN_LENGTH_HEADER),
      () => b.msg.info.timestampNanos / 1e6,
    );
  };
  // First pass: the checkpoint session, whose signed heads the second pass checks.
  await scanBlocks(js, n, { filter: n.audit(CHECKPOINT_SESSION), endSeq }, inline(false));
  if (opts.sessionId === CHECKPOINT_SESSION) return v.finish(retainedFrom);
  v.mainPass = true;
  if (opts.sessionId === undefined) {
    // A stream aged out at the front starts mid-way: the first retained sequence is no gap.
    v.lastSeq = info.state.first_seq > 1 ? info.state.first_seq - 1 : 0;
    const threads = opts.threads ?? defaultThreads(info.state.messages);
    const pool = threads > 0 ? await WorkerPool.start(threads, opts.signers).catch(() => undefined) : undefined;
    if (pool) await parallelScan(js, n, v, pool, info.state.first_seq, endSeq);
    else await scanBlocks(js, n, { endSeq }, inline(true)); // also when worker threads cannot start
    v.r.firstSeq = info.state.messages > 0 ? info.state.first_seq : undefined;
    return v.finish(retainedFrom);
  }
  // Count only the session's own events and blocks; the checkpoints were read for their claims.
  const { events, blocks } = v.r;
  await scanBlocks(js, n, { filter: n.audit(opts.sessionId), endSeq }, inline(false));
  v.r.events -= events;
  v.r.blocks -= blocks;
  return v.finish(retainedFrom);
}

interface Batch {
  seqs: number[];
  sessions: string[];
  lengths: (string | undefined)[];
  /** Stream times (ms) of the blocks, when the stream aged out (needed only then). */
  times: number[];
  result: Promise<BlockAnalysis[]>;
}

/**
 * How long after its receipt an intent may still be reported run: the longest approval wait, the
 * grant's life and the run together. A bound key's report with no receipt retained in an aged-out
 * session is accepted only when stored within this of the oldest retained message.
 */
const RECEIPT_WINDOW_MS = 7 * 86_400_000;

/** Bytes of block data gathered before a batch goes to a worker. */
const BATCH_BYTES = 256 * 1024;
/** Messages read ahead of the linking before the consumer is paused (bounds memory). */
const READ_AHEAD = 20_000;

/**
 * Reads the whole stream and has `threads` workers analyze the blocks in batches; results
 * are linked in stream order. When the workers fall behind, the consumer is stopped and a
 * new one resumes after the last message read, so memory stays bounded.
 */
async function parallelScan(js: JetStreamClient, n: Names, v: Verifier, pool: WorkerPool, firstSeq: number, endSeq: number): Promise<void> {
  const readAhead = v.opts.readAheadMessages ?? READ_AHEAD;
  const queue: Batch[] = [];
  let queued = 0;
  let failure: unknown;
  const needLength = v.horizon > 1;
  // Links finished batches in order; runs beside the reading.
  let linking = Promise.resolve();
  // Resolved when the read-ahead has shrunk to half: reading resumes while the workers still have work.
  let lowWater: (() => void) | undefined;
  const wake = () => {
    lowWater?.();
    lowWater = undefined;
  };
  const link = () => {
    linking = linking
      .then(async () => {
        while (queue.length > 0) {
          const b = queue[0]!;
          const results = await b.result;
          queue.shift();
          queued -= b.seqs.length;
          for (let i = 0; i < results.length; i++) {
            const len = b.lengths[i];
            const at = b.times[i] ?? 0;
            v.apply(
              b.seqs[i]!,
              b.sessions[i]!,
              results[i]!,
              true,
              () => len,
              () => at,
            );
          }
          if (queued <= readAhead / 2) wake();
        }
      })
      .catch((e: unknown) => {
        failure ??= e;
      })
      .finally(wake);
  };
  try {
    let next = firstSeq;
    while (next <= endSeq && failure === undefined) {
      const c = await openConsumer(js, n, { startSeq: next });
      if (!c) break;
      let buf = new Uint8Array(BATCH_BYTES);
      let used = 0;
      let pending: Omit<Batch, 'result'> & { ends: number[] } = { seqs: [], sessions: [], lengths: [], times: [], ends: [] };
      const flush = () => {
        if (pending.seqs.length === 0) return;
        const out = buf.buffer.slice(0, used);
        queue.push({ ...pending, result: pool.run(out, pending.ends, pending.sessions, v.state !== undefined) });
        queued += pending.seqs.length;
        buf = new Uint8Array(BATCH_BYTES);
        used = 0;
        pending = { seqs: [], sessions: [], lengths: [], times: [], ends: [] };
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
          if (needLength) pending.times.push(m.info.timestampNanos / 1e6);
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
      // Let the workers and the linking catch up (to half the read-ahead) before reading on.
      if (queued > readAhead / 2 && failure === undefined) await new Promise<void>((r) => (lowWater = r));
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

  /** Starts `size` workers; rejects when one cannot start (the caller then works inline). */
  static async start(size: number, signers?: KeyRegistry): Promise<WorkerPool> {
    const pool = new WorkerPool(size, signers);
    try {
      await Promise.all(
        pool.#workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              const ready = (m: { ready?: boolean }) => {
                if (m.ready) {
                  w.off('message', ready);
                  resolve();
                }
              };
              w.on('message', ready);
              w.once('error', reject);
              w.once('exit', () => reject(new Error('verify worker exited')));
            }),
        ),
      );
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  private constructor(size: number, signers?: KeyRegistry) {
    // Keys travel as PEM: each worker builds its own KeyObjects.
    const workerData = { signers: signers && [...signers.values()].map(({ key: _, ...rest }) => rest) };
    this.#workers = Array.from({ length: size }, () => {
      const w = new Worker(new URL('./verify-worker.mjs', import.meta.url), { workerData });
      w.on('message', (m: { id?: number; out?: BlockAnalysis[] }) => {
        if (m.id === undefined || !m.out) return;
        this.#waiting.get(m.id)?.resolve(m.out);
        this.#waiting.delete(m.id);
      });
      const failAll = (e: unknown) => {
        for (const p of this.#waiting.values()) p.reject(e);
        this.#waiting.clear();
      };
      w.on('error', failAll);
      w.on('exit', (code) => failAll(new Error(`verify worker exited with code ${code}`)));
      return w;
    });
  }

  run(buf: ArrayBuffer, ends: number[], sessions: string[], evidence: boolean): Promise<BlockAnalysis[]> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#workers[id % this.#workers.length]!.postMessage({ id, buf, ends, sessions, checkpointSession: CHECKPOINT_SESSION, evidence }, [buf]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
