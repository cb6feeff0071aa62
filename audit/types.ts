/** Public types of audit/: options and results. Implementation lives beside them. */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { AuditEvent, Names } from '../schemas/index.ts';
import type { BlockSigner, KeyRegistry } from './keys.ts';

type ActorKind = AuditEvent['actor']['kind'];
export interface Actor {
  kind: ActorKind;
  id: string;
}

/** Where a session's chain ends: what a checkpoint signs. */
export interface SessionHead {
  sessionId: string;
  /** Stream sequence of the block that holds the head event. */
  seq: number;
  /** Hash of the head event. */
  hash: string;
  /** Events in the chain up to and including the head. */
  count: number;
}

export interface AuditWriterOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: Names;
  /** Recorded on every event this writer appends. */
  actor: Actor;
  /**
   * Signs every block with this writer's own key (audit/keys.ts: loadOrCreateAuditKey). The
   * key must be in the operator's key registry under this actor's kind, or `writ audit
   * verify` refuses the blocks. Without it blocks are unsigned (logs from before signing).
   */
  signer?: BlockSigner | undefined;
  /** How long events of one session are gathered into one block, ms. Default 2; 0 writes on the next tick. */
  flushMs?: number | undefined;
  /** Most events in one block. Default 64. */
  maxBlockEvents?: number | undefined;
  /** Most bytes of one block's JSON (NATS max_payload is 1 MiB by default). Default 512 KiB. */
  maxBlockBytes?: number | undefined;
  /**
   * Payloads whose canonical JSON is longer than this (UTF-8 bytes) are not stored: the event
   * keeps only `digest` (SHA-256 hex of that canonical JSON). Default 8192.
   */
  maxInlinePayloadBytes?: number | undefined;
  /** Sessions whose last (seq, hash) is cached; others are read from the stream before the next append. Default 10 000. */
  maxCachedSessions?: number | undefined;
  /** Sessions whose changed heads are remembered for the next checkpoint. Default 100 000 (beyond it the oldest are dropped, with a warning). */
  maxChangedHeads?: number | undefined;
  /**
   * Cap of the jittered back-off between attempts to store one block, ms. Default 250. There
   * is no cap on attempts: a block is retried until stored, or until close()'s deadline.
   */
  maxBackoffMs?: number | undefined;
  /** How long close() keeps retrying what is unstored before rejecting it (and logging it in full), ms. Default 10 000. */
  closeTimeoutMs?: number | undefined;
  /** Blocks being published at once, across sessions. Default 512. */
  maxInFlight?: number | undefined;
  /** PubAck timeout, ms. Default 5000. */
  publishTimeoutMs?: number | undefined;
  /**
   * Events of input no verified sender stands behind (`appendUnattributed`) stored one by one
   * per second, with a burst of ten seconds' worth; past that they are counted into one
   * `audit.suppressed` event every `unattributedSummaryMs`. Default 20.
   */
  unattributedPerSec?: number | undefined;
  /** How often counted unattributed events are summed up in one `audit.suppressed` event, ms. Default 10 000. */
  unattributedSummaryMs?: number | undefined;
  logger?: Logger | undefined;
  /**
   * Heads shared with the other writers of this process (`writ up` runs a broker and a worker in
   * one): a head another of them stored is as trusted as this writer's own, so the next block of
   * a session both write chains onto it without reading the head from the stream.
   */
  board?: HeadBoard | undefined;
}

/** The last (seq, hash, count) of sessions' chains as this process's writers stored them, keyed by audit subject. */
export interface HeadBoard {
  get(subject: string): { seq: number; hash: string; count: number } | undefined;
  offer(subject: string, head: { seq: number; hash: string; count: number }): void;
}

/** Where the readers read from: a JetStream client, or a connection to make one on. */
export interface AuditSource {
  names: Names;
  js?: JetStreamClient | undefined;
  nc?: NatsConnection | undefined;
}

/** What a caller appends; the writer adds id, actor, prev and hash. */
export interface AppendInput {
  sessionId: string;
  intentId?: string | undefined;
  type: string;
  payload?: Record<string, unknown> | undefined;
  policyVersion?: string | undefined;
  /** Epoch ms. Default: now. */
  at?: number | undefined;
}

/** One event as read back, with the stream sequence of its block. */
export interface StoredEvent {
  seq: number;
  event: AuditEvent;
}

export interface BrokenLink {
  sessionId: string;
  /** Stream sequence of the block where the break shows. */
  seq: number;
  /** The event that breaks the chain ('' when the whole block is unreadable). */
  eventId: string;
  reason: string;
}

export interface VerifyOptions {
  /** Verify only this session (and the checkpoints' claims about it). */
  sessionId?: string | undefined;
  /** PEM (SPKI) public keys allowed to sign checkpoints. Without any, checkpoint signatures are not checked and the result says so. */
  publicKeyPem?: string | readonly string[] | undefined;
  /** Fail unless at least one valid checkpoint is found. Default: true when a key is given. */
  requireCheckpoint?: boolean | undefined;
  /**
   * A checkpoint known out of band (from the broker's log, a ticket, a notary): the stream
   * must hold a checkpoint event with this hash (at this seq when given). This is what makes
   * truncation to an older, self-consistent copy detectable.
   */
  anchor?: { hash: string; seq?: number | undefined } | undefined;
  /**
   * The operator's registry of writer keys (audit/keys.ts). With it every block must carry a
   * signature by a registered key whose actor kind (and id, when registered) matches every
   * event in the block and may write its type; unknown keys and unsigned blocks are breaks.
   * Without it block signatures are not checked and `blockSignaturesChecked` says so.
   */
  signers?: KeyRegistry | undefined;
  /**
   * With signers: unsigned blocks at stream sequences below this are accepted (a log written
   * before writers signed); they still count in `unsignedBlocks`. Signed blocks are always
   * checked. Default 0: none accepted.
   */
  allowUnsignedBefore?: number | undefined;
  /** Fail when the newest checkpoint is older than this (ms before now): a log cut off after it. */
  maxCheckpointAgeMs?: number | undefined;
  /**
   * Worker threads for the per-block work of a whole-stream verify (0: all on the calling
   * thread). Default: 0 below 20 000 messages or under 4 cores, else min(3, cores - 2).
   */
  threads?: number | undefined;
  /** With threads: messages read ahead of the linking before reading pauses (bounds memory). Default 20 000. */
  readAheadMessages?: number | undefined;
  /**
   * How long after the oldest retained message a bound worker key's report may be stored and
   * still be excused a receipt that aged out (ms; default 7 days). See verify.ts.
   */
  receiptWindowMs?: number | undefined;
  /** Called every 100 000 events with the count so far. */
  onProgress?: ((events: number) => void) | undefined;
  /**
   * Also check the log against the broker's state (the intents and claims buckets): every
   * record and claim must have its events in its session's chain (see state-check.ts).
   * Default false here; `writ audit verify` does it unless `--no-against-state`.
   */
  againstState?: boolean | undefined;
  /** With againstState: records changed (claims taken) this recently are skipped, ms. Default 60 000. */
  stateGraceMs?: number | undefined;
}

/** An intent whose state implies events its session's chain does not hold. */
export interface MissingEvidence {
  intentId: string;
  /** '?' when no record names it (a claim without a record, an unreadable record). */
  sessionId: string;
  state: string;
  claimed?: boolean | undefined;
  /** What is missing: event types (`a or b`: either would do), or the state that should be there. */
  missing: string[];
}

export interface StateCheckResult {
  /** Intent records read (of the session, with --session). */
  records: number;
  claims: number;
  /** Records checked: not changed within the grace period, not older than the retained log. */
  checked: number;
  recent: number;
  agedOut: number;
  /** Findings in total; `findings` holds the first 1000. */
  missing: number;
  findings: MissingEvidence[];
}

export interface VerifyResult {
  ok: boolean;
  sessions: number;
  events: number;
  /** Block messages read. */
  blocks: number;
  /** Checkpoint events whose signature and claims were checked. */
  checkpoints: number;
  /** Sessions' heads that some checkpoint vouches for. */
  coveredHeads: number;
  /** False when no public key was given: checkpoints were chain-checked only. */
  signaturesChecked: boolean;
  /** False when no key registry was given: block signatures and their signers' rights were not checked. */
  blockSignaturesChecked: boolean;
  /** Blocks without a signature (allowed only below allowUnsignedBefore when signatures are checked). */
  unsignedBlocks: number;
  lastCheckpoint?: { seq: number; hash: string; at: number } | undefined;
  /** Stream sequences read, first to last. */
  firstSeq?: number | undefined;
  lastSeq?: number | undefined;
  /** Sessions whose start was aged out of the stream (max_age): verified from their first retained event. */
  truncatedSessions: number;
  /** Bound worker keys' exec events in aged-out sessions whose receipt may have aged out too: not checked. */
  uncheckedExec?: number | undefined;
  /** The break at the lowest stream sequence (seq 0: a finding about the log as a whole, reported only when nothing else broke). */
  firstBreak?: BrokenLink | undefined;
  /** Breaks found in total (each session is re-synchronized after a break). */
  breaks: number;
  /** With againstState: what the state implies and the log lacks (any makes `ok` false). */
  state?: StateCheckResult | undefined;
}

/** A row of `listSessions`. */
export interface SessionSummary {
  sessionId: string;
  firstAt: number;
  lastAt: number;
  events: number;
  intents: number;
  /** Principal subjects seen on intent.received events. */
  principals: string[];
  targets: string[];
  /** State of the session's latest intent, from its last state event (see outcomeOf). */
  outcome?: string | undefined;
  lastType: string;
}

export interface SessionFilter {
  principal?: string | undefined;
  target?: string | undefined;
  /** Sessions with an event at or after this epoch ms. */
  since?: number | undefined;
  /** Sessions with an event before this epoch ms. */
  until?: number | undefined;
  outcome?: string | undefined;
}

/** Something JSON Lines can be written to: a Node Writable, or any object with write(). */
export interface LineSink {
  write(chunk: string): boolean | void;
  once?(event: 'drain', listener: () => void): unknown;
}
