/**
 * Signed checkpoints. A hash chain alone shows edits, but not a log rewritten with fresh
 * hashes, cut short, or missing a whole session. At intervals (and at close) the
 * Checkpointer appends a `checkpoint` event to the `_checkpoints` session whose payload
 * lists the head {sessionId, seq, hash, count} of every session its writers changed since
 * the last one, names the previous checkpoint's hash, and is signed with Ed25519. verify()
 * then requires each signed head to be in the stream at that sequence with that hash and
 * chain length, so a rewritten, reordered or dropped history before a checkpoint fails.
 */
import { createPrivateKey, createPublicKey, randomUUID, sign, verify as verifySignature, type KeyObject } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { canonicalJson, keyId, WritError, type AuditEvent, type Names } from '../schemas/index.ts';
import { analyzeBlock, blockJson, CHAIN_LENGTH_HEADER, CHECKPOINT_SESSION, eventHash, ZERO_HASH } from './chain.ts';
import type { BlockSigner, KeyRegistry } from './keys.ts';
import { loadLastBlock, type AuditWriter, type Head } from './writer.ts';
import type { Actor, SessionHead } from './types.ts';

/** The payload of a `checkpoint` event. Everything but `signature` is signed. */
export interface CheckpointPayload {
  /** The audit stream the heads belong to. */
  stream: string;
  alg: 'Ed25519';
  /** schemas' keyId(): first 16 hex of the SHA-256 of the public key's SPKI DER. */
  keyId: string;
  /** Epoch ms when signed (signed, unlike the event's `at`). */
  issuedAt: number;
  /** Hash of the previous checkpoint event (zeros for the first): signed, so no checkpoint can be dropped or reordered. */
  prevCheckpoint: string;
  /** Heads of the sessions changed since the previous checkpoint, by session id. */
  heads: SessionHead[];
  /** base64url Ed25519 signature over CONTEXT + canonicalJson(payload without signature). */
  signature: string;
}

/** Domain separation: the same key also signs grants, and a checkpoint must never read as one. */
const CONTEXT = 'writ-audit-checkpoint-v1\n';
const HEX64 = /^[0-9a-f]{64}$/;
/** Sessions whose last checked head is remembered (others are re-read from their start). */
const VERIFIED_HEADS = 100_000;

function signCheckpoint(unsigned: Omit<CheckpointPayload, 'signature'>, key: KeyObject): CheckpointPayload {
  const signature = sign(null, Buffer.from(CONTEXT + canonicalJson(unsigned)), key).toString('base64url');
  return { ...unsigned, signature };
}

/** Public keys by key id, from PEM (SPKI) texts. */
export function checkpointKeys(pems: string | readonly string[]): Map<string, KeyObject> {
  const out = new Map<string, KeyObject>();
  for (const pem of typeof pems === 'string' ? [pems] : pems) {
    const k = createPublicKey(pem);
    out.set(keyId(k), k);
  }
  return out;
}

/**
 * Why `ev` is not a valid checkpoint, or undefined. With `keys`, the signature must verify
 * with one of them; without, only the structure and the signed back-link are checked.
 */
export function checkpointError(ev: AuditEvent, stream: string, keys: ReadonlyMap<string, KeyObject> | undefined): string | undefined {
  if (ev.type !== 'checkpoint') return `event of type ${JSON.stringify(ev.type)} in the checkpoint session`;
  const p = ev.payload as Partial<CheckpointPayload> | undefined;
  if (
    !p ||
    p.alg !== 'Ed25519' ||
    typeof p.keyId !== 'string' ||
    typeof p.signature !== 'string' ||
    !Number.isSafeInteger(p.issuedAt) ||
    typeof p.prevCheckpoint !== 'string' ||
    !HEX64.test(p.prevCheckpoint) ||
    !Array.isArray(p.heads)
  ) {
    return 'checkpoint payload is malformed';
  }
  if (p.stream !== stream) return `checkpoint is for stream ${JSON.stringify(p.stream)}`;
  if (p.prevCheckpoint !== ev.prev) return 'checkpoint names another previous checkpoint than the one it follows';
  for (const h of p.heads) {
    if (!h || typeof h.sessionId !== 'string' || !Number.isSafeInteger(h.seq) || h.seq < 1 || typeof h.hash !== 'string' || !HEX64.test(h.hash) || !Number.isSafeInteger(h.count) || h.count < 1)
      return 'checkpoint head is malformed';
  }
  if (keys) {
    const key = keys.get(p.keyId);
    if (!key) return `checkpoint signed with unknown key ${p.keyId}`;
    const { signature, ...unsigned } = p as CheckpointPayload;
    let ok = false;
    try {
      ok = verifySignature(null, Buffer.from(CONTEXT + canonicalJson(unsigned)), key, Buffer.from(signature, 'base64url'));
    } catch {
      ok = false;
    }
    if (!ok) return 'checkpoint signature does not verify';
  }
  return undefined;
}

export interface CheckpointerOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: Names;
  /** Recorded as the checkpoint events' actor. */
  actor: Actor;
  /** Ed25519 private key (PKCS8 PEM or KeyObject): the broker's grant key serves. */
  privateKey: string | KeyObject;
  /** Writers whose heads are signed. */
  writers: AuditWriter | readonly AuditWriter[];
  /** Signs the checkpoint blocks like any writer's (the broker's writer key). */
  signer?: BlockSigner | undefined;
  /**
   * The operator's key registry (or a getter, e.g. watchedKeyRegistry()). With it a head is
   * signed only once every block of the session up to it has been read back and found signed
   * by a registered key allowed to write its events, and linked: a forged block (and all that
   * follows it in its session) is never covered, and is logged at error level. Without it the
   * Checkpointer vouches for chains, not for who wrote them.
   */
  signers?: KeyRegistry | (() => KeyRegistry) | undefined;
  /** With signers: unsigned blocks below this stream sequence are accepted (logs from before signing). Default 0. */
  allowUnsignedBefore?: number | undefined;
  /** Interval between checkpoints, ms. Default 60 000. A checkpoint is only written when some head changed. */
  intervalMs?: number | undefined;
  /** Heads per checkpoint event (larger sets are split into consecutive checkpoints). Default 1000. */
  maxHeads?: number | undefined;
  logger?: Logger | undefined;
}

/** A checkpoint as stored: what an operator keeps out of band as the anchor for verify. */
export interface CheckpointRecord {
  seq: number;
  hash: string;
  heads: number;
  issuedAt: number;
}

export class Checkpointer {
  readonly #o: CheckpointerOptions;
  readonly #key: KeyObject;
  readonly #keyId: string;
  readonly #writers: readonly AuditWriter[];
  readonly #intervalMs: number;
  readonly #maxHeads: number;
  /** Heads taken from the writers and not yet in a stored checkpoint. */
  readonly #pending = new Map<string, SessionHead>();
  #head: Head | undefined;
  /** Per session, the last head whose blocks were all checked (LRU, bounded). */
  readonly #verified = new Map<string, SessionHead>();
  /** Per session, the stream sequence of a refused block already logged. */
  readonly #refused = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<CheckpointRecord[]> = Promise.resolve([]);
  #closed = false;

  constructor(opts: CheckpointerOptions) {
    this.#o = opts;
    this.#key = typeof opts.privateKey === 'string' ? createPrivateKey(opts.privateKey) : opts.privateKey;
    if (this.#key.asymmetricKeyType !== 'ed25519') throw new WritError('WRIT_CONFIG_INVALID', 'Checkpointer: the key must be an Ed25519 private key');
    this.#keyId = keyId(createPublicKey(this.#key));
    this.#writers = Array.isArray(opts.writers) ? opts.writers : [opts.writers as AuditWriter];
    this.#intervalMs = opts.intervalMs ?? 60_000;
    this.#maxHeads = opts.maxHeads ?? 1000;
  }

  get keyId(): string {
    return this.#keyId;
  }

  /** Starts the interval timer. */
  start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => {
      this.checkpoint().catch((e: unknown) => this.#o.logger?.error({ err: e }, 'audit checkpoint failed; its heads are kept for the next one'));
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /**
   * Signs and appends the heads changed since the last checkpoint (nothing when none changed,
   * unless `force`). Calls are serialized. Resolves with the checkpoints written.
   */
  checkpoint(force = false): Promise<CheckpointRecord[]> {
    const run = this.#running.catch(() => []).then(() => this.#write(force));
    this.#running = run;
    return run;
  }

  /** Stops the timer, flushes the writers and writes a last checkpoint. */
  async close(): Promise<CheckpointRecord[]> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all(this.#writers.map((w) => w.flush()));
    return this.checkpoint();
  }

  async #write(force: boolean): Promise<CheckpointRecord[]> {
    for (const w of this.#writers) {
      for (const h of w.takeChangedHeads()) {
        const had = this.#pending.get(h.sessionId);
        if (!had || had.seq < h.seq) this.#pending.set(h.sessionId, h);
      }
    }
    if (this.#pending.size === 0 && !force) return [];
    if (this.#o.signers) {
      // Only what was read back and found signed by its registered writer is vouched for.
      for (const sessionId of [...this.#pending.keys()]) {
        const good = await this.#vouch(sessionId);
        if (good) this.#pending.set(sessionId, good);
        else this.#pending.delete(sessionId);
      }
      if (this.#pending.size === 0 && !force) return [];
    } else
      for (const [sessionId, h] of this.#pending) {
        // Sign each session's actual tail, not only what this process wrote: a worker's block that
        // follows the broker's last one in a session is then covered too.
        const tail = await loadLastBlock(this.#o.jsm, this.#o.names, sessionId).catch(() => undefined);
        if (tail && !tail.malformed && tail.head.seq > h.seq) this.#pending.set(sessionId, { sessionId, ...tail.head });
      }
    const all = [...this.#pending.values()].sort((a, b) => (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
    const out: CheckpointRecord[] = [];
    for (let i = 0; i === 0 || i < all.length; i += this.#maxHeads) {
      const chunk = all.slice(i, i + this.#maxHeads);
      const rec = await this.#store(chunk);
      for (const h of chunk) if (this.#pending.get(h.sessionId) === h) this.#pending.delete(h.sessionId);
      out.push(rec);
      // The anchor: an auditor who keeps the latest of these lines can detect a log cut off before it.
      this.#o.logger?.info({ auditCheckpoint: rec }, 'audit checkpoint');
    }
    return out;
  }

  /**
   * Reads the session's blocks after the last checked head and checks each: parse, hashes,
   * links, signature by a registered key whose kind may write every event in it. Returns the
   * last head up to which everything holds (undefined: none); stops at the first block that
   * fails, which is logged once.
   */
  async #vouch(sessionId: string): Promise<SessionHead | undefined> {
    const { jsm, names: n } = this.#o;
    const reg = typeof this.#o.signers === 'function' ? this.#o.signers() : this.#o.signers!;
    const subject = n.audit(sessionId);
    let at: SessionHead = this.#verified.get(sessionId) ?? { sessionId, seq: 0, hash: ZERO_HASH, count: 0 };
    let moved = false;
    for (;;) {
      const m = await jsm.streams.getMessage(n.streams.audit, { seq: at.seq + 1, next_by_subj: subject } as unknown as { seq: number });
      if (!m) break;
      const a = analyzeBlock(m.data, sessionId, CHECKPOINT_SESSION, false, reg);
      let why = a.errors?.[0] ? `${a.errors[0].reason}${a.errors[0].eventId ? ` (event ${a.errors[0].eventId})` : ''}` : undefined;
      if (!why && a.unsigned && m.seq >= (this.#o.allowUnsignedBefore ?? 0)) why = `block is not signed by any writer key (event ${a.firstId})`;
      let count = at.count + a.events;
      if (!why && a.firstPrev !== at.hash) {
        // A session whose start aged out of the stream (max_age) begins mid-chain: take the writer's count.
        const length = Number(m.header?.get(CHAIN_LENGTH_HEADER) || NaN);
        if (at.seq === 0 && Number.isSafeInteger(length)) count = length;
        else why = `block does not link to the session's previous block (event ${a.firstId})`;
      }
      if (why) {
        if (this.#refused.get(sessionId) !== m.seq) {
          this.#refused.set(sessionId, m.seq);
          this.#o.logger?.error({ sessionId, seq: m.seq, reason: why }, 'AUDIT BLOCK REFUSED: not covered by checkpoints (nor is anything after it in its session)');
        }
        break;
      }
      at = { sessionId, seq: m.seq, hash: a.lastHash!, count };
      moved = true;
    }
    if (moved) {
      this.#verified.delete(sessionId);
      this.#verified.set(sessionId, at);
      if (this.#verified.size > VERIFIED_HEADS) this.#verified.delete(this.#verified.keys().next().value!);
    }
    return at.seq > 0 ? at : undefined;
  }

  /** Appends one signed checkpoint after the current last one; re-signs on a conflict. */
  async #store(heads: SessionHead[]): Promise<CheckpointRecord> {
    const { js, jsm, names: n } = this.#o;
    const subject = n.audit(CHECKPOINT_SESSION);
    const msgID = randomUUID();
    let lastError: unknown;
    for (let attempt = 1; attempt <= 12; attempt++) {
      const head = this.#head ?? (await loadLastBlock(jsm, n, CHECKPOINT_SESSION)).head;
      const payload = signCheckpoint({ stream: n.streams.audit, alg: 'Ed25519', keyId: this.#keyId, issuedAt: Date.now(), prevCheckpoint: head.hash, heads }, this.#key);
      const ev = {
        v: 1,
        id: msgID,
        sessionId: CHECKPOINT_SESSION,
        type: 'checkpoint',
        at: payload.issuedAt,
        actor: { kind: this.#o.actor.kind, id: this.#o.actor.id },
        payload: payload as unknown as Record<string, unknown>,
        prev: head.hash,
        hash: '',
      } as AuditEvent;
      ev.hash = eventHash(ev);
      const h = headers();
      h.set(CHAIN_LENGTH_HEADER, String(head.count + 1));
      try {
        const ack = await js.publish(subject, blockJson([ev], this.#o.signer?.sign(CHECKPOINT_SESSION, [ev])), { msgID, headers: h, expect: { lastSubjectSequence: head.seq } });
        if (ack.duplicate) {
          this.#head = undefined;
          const last = await loadLastBlock(jsm, n, CHECKPOINT_SESSION);
          return { seq: ack.seq, hash: last.head.seq === ack.seq ? last.head.hash : '', heads: heads.length, issuedAt: payload.issuedAt };
        }
        this.#head = { seq: ack.seq, hash: ev.hash, count: head.count + 1 };
        return { seq: ack.seq, hash: ev.hash, heads: heads.length, issuedAt: payload.issuedAt };
      } catch (e) {
        lastError = e;
        this.#head = undefined;
        const conflict = e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamWrongLastSequence;
        const transient = (e as { name?: string }).name === 'TimeoutError';
        if (!conflict && !transient) throw e;
        await new Promise((r) => setTimeout(r, Math.min(200, 2 ** attempt) * Math.random()));
      }
    }
    throw new WritError('WRIT_INTERNAL', 'audit checkpoint could not be stored', { cause: lastError });
  }
}
