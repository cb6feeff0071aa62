/**
 * verify(): checks every chain in the audit stream, and the signed checkpoints' claims.
 *
 * Per session: each block's shape, each event's fields, its hash, its link to the event
 * before it (the first links to zeros), and the block's chain-length header. Event times
 * need NOT increase: writers on different hosts have different clocks, and the chain
 * order (not `at`) is the order of record.
 *
 * Checkpoints (session `_checkpoints`): structure, signed back-link to the previous
 * checkpoint, Ed25519 signature (when public keys are given), and for every head it signs:
 * the stream holds, at that sequence, a block of that session whose last event has that
 * hash and that chain length. A history rewritten with recomputed hashes, a dropped or
 * reordered block and a missing session all fail there. A copy cut off cleanly after an
 * older checkpoint is self-consistent; `anchor` (a checkpoint kept out of band) or
 * `maxCheckpointAgeMs` catch that.
 *
 * Speed: one ordered consumer over the whole stream, per-session heads in a Map,
 * JSON.parse plus a hand-written structural check per event (no zod in the loop).
 */
import type { KeyObject } from 'node:crypto';
import type { AuditEvent, Names } from '../schemas/index.ts';
import { blockShapeError, CHAIN_LENGTH_HEADER, CHECKPOINT_SESSION, eventHash, eventShapeError, ZERO_HASH } from './chain.ts';
import { checkpointError, checkpointKeys, type CheckpointPayload } from './checkpoint.ts';
import { clientOf, scanBlocks, sessionOf, type RawBlock } from './read.ts';
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

const decoder = new TextDecoder();

class Verifier {
  readonly chains = new Map<string, Chain>();
  /** BlockRef per stream sequence, indexed from `base` (kept for checkpoint claims). */
  readonly refs: Array<BlockRef | undefined> = [];
  base = 0;
  readonly r: VerifyResult;
  readonly keys: ReadonlyMap<string, KeyObject> | undefined;
  /** Stream sequence below which messages were aged out (max_age): chains may start there. */
  horizon = 1;
  lastSeq = 0;
  anchorSeen = false;
  /** Session-mode: claims about the one session, by seq, checked as its blocks go by. */
  claims: Map<number, { head: CheckpointPayload['heads'][number]; cpSeq: number }> | undefined;

  constructor(readonly n: Names, readonly opts: VerifyOptions) {
    this.keys = opts.publicKeyPem !== undefined && opts.publicKeyPem.length > 0 ? checkpointKeys(opts.publicKeyPem) : undefined;
    this.r = { ok: true, sessions: 0, events: 0, blocks: 0, checkpoints: 0, coveredHeads: 0, signaturesChecked: this.keys !== undefined, truncatedSessions: 0, breaks: 0 };
  }

  fail(b: BrokenLink): void {
    this.r.breaks++;
    if (!this.r.firstBreak) this.r.firstBreak = b;
    this.r.ok = false;
  }

  /** One block; `gapCheck` when the scan covers the whole stream, so every sequence must be present. */
  block(b: RawBlock, gapCheck: boolean): void {
    const seq = b.seq;
    const sid = sessionOf(this.n, b.subject);
    if (this.r.firstSeq === undefined) this.r.firstSeq = seq;
    if (gapCheck && this.lastSeq !== 0 && seq !== this.lastSeq + 1) {
      this.fail({ sessionId: sid, seq, eventId: '', reason: `stream sequences ${this.lastSeq + 1}-${seq - 1} are missing (messages deleted)` });
    }
    this.lastSeq = seq;
    this.r.blocks++;
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(b.data));
    } catch {
      return this.fail({ sessionId: sid, seq, eventId: '', reason: 'block is not JSON' });
    }
    const shape = blockShapeError(parsed);
    if (shape) return this.fail({ sessionId: sid, seq, eventId: '', reason: shape });
    const events = (parsed as { events: AuditEvent[] }).events;
    let chain = this.chains.get(sid);
    if (!chain) {
      chain = { head: ZERO_HASH, count: 0 };
      this.chains.set(sid, chain);
      if (this.horizon > 1 && events[0] && (events[0] as { prev?: unknown }).prev !== ZERO_HASH && seq >= this.horizon) {
        // The session began before the retained part of the stream: anchor on what is there.
        chain.head = String(events[0].prev);
        chain.count = NaN;
        this.r.truncatedSessions++;
      }
    }
    for (const ev of events) {
      const why = eventShapeError(ev);
      if (why) {
        this.fail({ sessionId: sid, seq, eventId: typeof (ev as { id?: unknown })?.id === 'string' ? ev.id : '', reason: why });
        continue;
      }
      this.r.events++;
      if (ev.sessionId !== sid) this.fail({ sessionId: sid, seq, eventId: ev.id, reason: `event names session ${ev.sessionId} but is stored under ${sid}` });
      if (ev.prev !== chain.head) {
        this.fail({ sessionId: sid, seq, eventId: ev.id, reason: chain.count === 0 ? 'first event of the session does not link to zeros' : `prev ${ev.prev.slice(0, 12)}… does not match the previous event's hash ${chain.head.slice(0, 12)}…` });
      }
      if (eventHash(ev) !== ev.hash) this.fail({ sessionId: sid, seq, eventId: ev.id, reason: 'hash does not match the event (altered)' });
      chain.head = ev.hash;
      chain.count++;
      if (sid === CHECKPOINT_SESSION) this.checkpoint(ev, seq);
      else if (ev.type === 'checkpoint') this.fail({ sessionId: sid, seq, eventId: ev.id, reason: 'checkpoint outside the checkpoint session' });
    }
    const last = events[events.length - 1]!;
    const header = b.msg.headers?.get(CHAIN_LENGTH_HEADER);
    if (!Number.isNaN(chain.count) && String(chain.count) !== header) {
      this.fail({ sessionId: sid, seq, eventId: last.id ?? '', reason: `block says the chain has ${header || 'no'} events, it has ${chain.count}` });
      chain.count = Number(header) || chain.count;
    } else if (Number.isNaN(chain.count)) {
      chain.count = Number(header);
    }
    const ref: BlockRef = { sessionId: sid, hash: last.hash, count: chain.count, eventId: last.id };
    if (this.claims) this.checkClaim(ref, seq);
    else {
      if (this.refs.length === 0) this.base = seq;
      this.refs[seq - this.base] = ref;
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

function claimMismatch(cpSeq: number, h: CheckpointPayload['heads'][number], ref: BlockRef | undefined): string {
  const claim = `checkpoint ${cpSeq} signs session ${h.sessionId} at seq ${h.seq} with head ${h.hash.slice(0, 12)}… (${h.count} events)`;
  if (!ref) return `${claim}, but the stream has no such block (missing, reordered or restored from an older copy)`;
  if (ref.sessionId !== h.sessionId) return `${claim}, but that sequence holds session ${ref.sessionId} (reordered or rewritten)`;
  return `${claim}, but the stream has ${ref.hash.slice(0, 12)}… (${ref.count} events) there (history rewritten)`;
}

/** Verifies the whole stream, or one session with `opts.sessionId`. */
export async function verify(opts: AuditSource & VerifyOptions): Promise<VerifyResult> {
  const n = opts.names;
  const js = clientOf(opts);
  const v = new Verifier(n, opts);
  const info = await (await js.streams.get(n.streams.audit)).info();
  v.horizon = info.state.first_seq;
  let sinceProgress = 0;
  const onBlock = (gapCheck: boolean) => (b: RawBlock) => {
    v.block(b, gapCheck);
    if (opts.onProgress && v.r.events - sinceProgress >= 100_000) {
      sinceProgress = v.r.events;
      opts.onProgress(v.r.events);
    }
  };
  if (opts.sessionId === undefined) {
    // A stream aged out at the front starts mid-way: the first retained sequence is no gap.
    v.lastSeq = info.state.first_seq > 1 ? info.state.first_seq - 1 : 0;
    await scanBlocks(js, n, {}, onBlock(true));
    return v.finish();
  }
  n.audit(opts.sessionId); // validates the token
  v.claims = new Map();
  await scanBlocks(js, n, { filter: n.audit(CHECKPOINT_SESSION) }, onBlock(false));
  if (opts.sessionId !== CHECKPOINT_SESSION) {
    // Count only the session's own events and blocks; the checkpoints were read for their claims.
    const { events, blocks } = v.r;
    await scanBlocks(js, n, { filter: n.audit(opts.sessionId) }, onBlock(false));
    v.r.events -= events;
    v.r.blocks -= blocks;
  }
  return v.finish();
}
