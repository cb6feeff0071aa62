/**
 * The sweeper: ends intents whose worker was lost. A `dispatched` intent whose grant was
 * claimed but which has not finished by its run deadline (grant expiry + time limit +
 * margin) becomes `unknown` and is never re-run: the claim stays, so no worker can run
 * it again. One whose grant expired unclaimed never ran, and no worker will ever claim
 * it (workers refuse expired grants), so it ends `failed` with WRIT_GRANT_EXPIRED.
 * Every broker replica sweeps; the compare-and-set on the record makes one of them win.
 *
 * What it sweeps comes from a watch of the intents bucket, so two things must never stall it
 * silently, or intents stay `dispatched` for ever: the watch (checked against the bucket's last
 * sequence every `watchCheckMs`, and started again when it fell behind: its ordered consumer can
 * be lost with the cluster member that carried it, and nats.js notices only after two missed
 * 30 s heartbeats; one stuck behind while its heartbeats still come would never be noticed),
 * and the sweep itself (every awaited call has a deadline, so one call that never answers
 * cannot hold every later sweep).
 */
import { randomUUID } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KvEntry } from '@nats-io/kv';
import type { AuditWriter } from '../audit/index.ts';
import { getRecord, glanceRecord, principalKey, recordOf, updateRecord, type Logger } from '../lib/index.ts';
import { buildOutcome, WritError, type IntentRecord, type Names } from '../schemas/index.ts';
import type { Buckets } from './provision.ts';
import type { Approvals } from './approvals.ts';

/**
 * The pending intents a broker knows of, fleet-wide: from the sweeper's watch of the intents
 * bucket, and from this broker's own approvals as it opens them (before the watch brings them
 * back). What it knows: when each approval request expires, and whose intent it is, so one
 * principal's pending intents can be counted (approvals.maxPendingPerPrincipal).
 */
export class PendingIndex {
  readonly #byId = new Map<string, { expiresAt: number; who: string; revision: number }>();
  readonly #byWho = new Map<string, Set<string>>();

  /** `who`: the principal's key (lib/records.ts principalKey); `revision`: the record's, 0 when not known yet. */
  set(id: string, expiresAt: number, who: string, revision = 0): void {
    this.delete(id);
    this.#byId.set(id, { expiresAt, who, revision });
    let ids = this.#byWho.get(who);
    if (!ids) this.#byWho.set(who, (ids = new Set()));
    ids.add(id);
  }

  delete(id: string): void {
    const e = this.#byId.get(id);
    if (!e) return;
    this.#byId.delete(id);
    const ids = this.#byWho.get(e.who);
    ids?.delete(id);
    if (ids?.size === 0) this.#byWho.delete(e.who);
  }

  /** Each pending intent's id and when its request expires (epoch ms). */
  *expiries(): IterableIterator<[string, number]> {
    for (const [id, e] of this.#byId) yield [id, e.expiresAt];
  }

  ids(): string[] {
    return [...this.#byId.keys()];
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** The record revision last seen pending (0 when not known yet), or undefined when not pending. */
  revisionOf(id: string): number | undefined {
    return this.#byId.get(id)?.revision;
  }

  /** How many of a principal's intents are pending and not yet past their expiry. */
  countOf(principal: { iss: string; sub: string }, nowMs = Date.now()): number {
    let n = 0;
    for (const id of this.#byWho.get(principalKey(principal)) ?? []) if (this.#byId.get(id)!.expiresAt > nowMs) n++;
    return n;
  }
}

interface Watched {
  deadline: number;
  grantExp: number;
}

/** How far ahead of this broker's clock another sweeper's mark may be dated and still count as fresh. */
const MARK_CLOCK_SKEW_MS = 60_000;

/** Longest wait on one NATS call of a sweep (get, compare-and-set, stream info). */
const STEP_MS = 10_000;

class StepTimeout extends Error {}

/** `p`, or a rejection after `ms`: the sweep moves on (what `p` does goes on in the background). */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StepTimeout(`${what} did not answer within ${ms} ms`)), ms);
    timer.unref();
  });
  p.catch(() => undefined); // a late rejection is not an unhandled one
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class Sweeper {
  readonly #watched = new Map<string, Watched>();
  #timer?: NodeJS.Timeout;
  #stopWatch?: () => void;
  #sweeping = false;
  #stopped = true;
  #watchRestarts = 0;
  /** The highest revision the current watch delivered. */
  #seenRev = 0;
  /** The bucket's last sequence at the previous liveness check: by now the watch must have delivered it. */
  #mustHaveSeen = 0;
  #checkTimer?: NodeJS.Timeout;
  #checking = false;
  /** The watch in use; replaced when it ends or falls behind. */
  #watch?: Awaited<ReturnType<Buckets['intents']['watch']>>;
  /** Ids whose ending is still under way (a step that passed its deadline goes on in the background). */
  readonly #ending = new Set<string>();
  readonly #stepMs: number;
  readonly #watchCheckMs: number;
  /** This sweeper, in the mark it leaves on a record it is ending. */
  readonly #self = `sweeper-${randomUUID()}`;
  /** After this long another sweeper's mark is stale and taken over. */
  readonly #takeoverMs: number;

  constructor(
    private readonly d: {
      kv: Buckets;
      js: JetStreamClient;
      names: Names;
      audit: AuditWriter;
      log: Logger;
      intervalMs: number;
      approvals: Approvals;
      /** Pending intents and when their approval requests expire, shared with the broker's approvals. */
      pending: PendingIndex;
      /** How often the watch is checked against the bucket (default: 10 sweeps, at least 5 s). */
      watchCheckMs?: number;
      /** Deadline of each NATS call in a sweep (default 10 s). */
      stepMs?: number;
    },
  ) {
    this.#stepMs = d.stepMs ?? STEP_MS;
    this.#takeoverMs = Math.max(60_000, 6 * this.#stepMs);
    this.#watchCheckMs = d.watchCheckMs ?? Math.max(5_000, d.intervalMs * 10);
  }

  async start(): Promise<void> {
    // The watch replays the current value of every key, then follows changes.
    const first = await this.d.kv.intents.watch();
    this.#stopped = false;
    void this.#follow(first);
    // A failed sweep is logged and the next tick tries again; it never becomes an unhandled rejection.
    this.#timer = setInterval(() => this.sweep().catch((e: unknown) => this.d.log.error({ err: e }, 'sweep failed')), this.d.intervalMs);
    this.#timer.unref();
    this.#checkTimer = setInterval(() => void this.checkWatch(), this.#watchCheckMs);
    this.#checkTimer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#checkTimer);
    this.#stopWatch?.();
  }

  /**
   * The watch's heartbeat check: the bucket's last sequence one check ago must have been
   * delivered by now. A watch that fell behind (its consumer lost or stuck on a member, while
   * the client still sees heartbeats, or none yet missed) is stopped; #follow starts a new one,
   * whose replay re-seeds what is tracked. One stream-info request per check.
   * Public for tests; resolves with whether the watch was found behind.
   */
  async checkWatch(): Promise<boolean> {
    if (this.#checking || this.#stopped) return false;
    this.#checking = true;
    try {
      const last = (await bounded(this.d.kv.intents.status(), this.#stepMs, 'intents bucket info')).streamInfo.state.last_seq;
      const behind = this.#seenRev < this.#mustHaveSeen;
      if (behind) {
        this.d.log.warn({ seen: this.#seenRev, expected: this.#mustHaveSeen, last }, 'sweeper watch fell behind the intents bucket; watching again');
        this.#mustHaveSeen = 0;
        this.#watch?.stop();
        return true;
      }
      this.#mustHaveSeen = last;
      return false;
    } catch (e) {
      // The bucket did not answer: nothing to compare with; the next check tries again.
      this.d.log.warn({ err: e }, 'sweeper could not check its watch');
      return false;
    } finally {
      this.#checking = false;
    }
  }

  /**
   * Follows the records, and starts a new watch whenever one ends while the sweeper runs (a
   * stream leader lost on a cluster, a consumer gone): an intent nobody watches is never
   * ended, so a dead watch would leave lost intents `dispatched` for ever. The new watch
   * replays every record, which re-seeds what is tracked.
   */
  async #follow(w: Awaited<ReturnType<Buckets['intents']['watch']>>): Promise<void> {
    let backoff = 100;
    for (;;) {
      this.#watch = w;
      this.#stopWatch = () => w.stop();
      try {
        for await (const e of w) {
          if (e.revision > this.#seenRev) this.#seenRev = e.revision;
          this.#track(e);
          backoff = 100;
        }
        if (this.#stopped) return;
        this.d.log.warn('sweeper watch ended; watching again');
      } catch (e) {
        if (this.#stopped) return;
        this.d.log.error({ err: e }, 'sweeper watch failed; watching again');
      }
      for (;;) {
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5_000);
        if (this.#stopped) return;
        try {
          w = await bounded(this.d.kv.intents.watch(), this.#stepMs, 'intents watch');
          this.#watchRestarts++;
          break;
        } catch (e) {
          this.d.log.warn({ err: e }, 'sweeper watch could not start; retrying');
        }
      }
    }
  }

  /** How many times the watch was started again after it ended (for tests and metrics). */
  get watchRestarts(): number {
    return this.#watchRestarts;
  }

  #track(e: KvEntry): void {
    if (e.operation !== 'PUT') {
      this.#watched.delete(e.key);
      this.d.pending.delete(e.key);
      return;
    }
    const id = e.key;
    // A record is told by its first bytes (lib/records.ts): an outcome, which may be a megabyte
    // of sealed rows, is never parsed here, nor a dispatch's whole record. Only a pending record
    // (its expiry is inside) and bytes the glance does not read are parsed.
    const glance = glanceRecord(e.value);
    // (A dispatch whose first bytes do not name its grant's expiry is parsed in full below.)
    if (glance && glance.state !== 'pending' && (glance.state !== 'dispatched' || glance.grantExp !== undefined)) {
      this.d.pending.delete(id);
      if (glance.grantExp !== undefined && glance.state === 'dispatched') {
        this.#watched.set(id, { grantExp: glance.grantExp, deadline: glance.runDeadline ?? glance.grantExp + 60 });
      } else this.#watched.delete(id);
      return;
    }
    // What the watch learns is only where to look: every action re-reads the record through
    // the schema (getRecord). So it reads the few fields it needs, not a full schema parse of
    // every record change of the fleet (the largest part of the sweeper's CPU per intent).
    let rec: { state?: unknown; pending?: { expiresAt?: unknown } | null; principal?: { iss?: unknown; sub?: unknown }; grantExp?: unknown; runDeadline?: unknown };
    try {
      rec = e.json();
    } catch {
      return;
    }
    if (typeof rec !== 'object' || rec === null) return;
    // Pending: counted against its principal, listed to approvers and expired only when it is a
    // record whose pending part a broker sealed. A holder of worker credentials planted pending
    // records naming another agent, and that agent's approval requests were refused as too many
    // (an attack helper's finding); unsealed ones are neither counted nor listed.
    const pending = rec.state === 'pending' ? this.#sealedPending(e) : undefined;
    if (pending) this.d.pending.set(id, pending.expiresAt, principalKey(pending.principal), e.revision);
    else this.d.pending.delete(id);
    if (rec.state === 'dispatched' && typeof rec.grantExp === 'number') {
      this.#watched.set(id, { grantExp: rec.grantExp, deadline: typeof rec.runDeadline === 'number' ? rec.runDeadline : rec.grantExp + 60 });
    } else this.#watched.delete(id);
  }

  /** A pending record that parses and whose pending part a broker sealed; undefined otherwise. */
  #sealedPending(e: KvEntry): { expiresAt: number; principal: { iss: string; sub: string } } | undefined {
    const stored = (() => {
      try {
        return recordOf(e);
      } catch {
        return undefined;
      }
    })();
    const rec = stored?.rec;
    if (!rec || rec.state !== 'pending' || !rec.pending || !this.d.approvals.sealedByBroker(rec)) return undefined;
    return { expiresAt: rec.pending.expiresAt, principal: rec.principal };
  }

  /** Ids of pending intents this broker knows of. */
  pendingIds(): string[] {
    return this.d.pending.ids();
  }

  /** The revision of a pending intent's record as last seen (0 when not known yet; undefined when not pending). */
  pendingRevision(id: string): number | undefined {
    return this.d.pending.revisionOf(id);
  }

  /**
   * One pass; public for tests. Every step has a deadline (#stepMs): a call that never answers
   * costs one step, never the sweeper (a step past its deadline goes on in the background, and
   * its intent is not taken up again until it settles).
   */
  async sweep(nowMs = Date.now()): Promise<number> {
    if (this.#sweeping) return 0;
    this.#sweeping = true;
    let ended = 0;
    try {
      // Expiry is read from the records, so it holds even when every broker restarted meanwhile.
      for (const [id, expiresAt] of [...this.d.pending.expiries()]) {
        if (expiresAt > nowMs) continue;
        if (await this.#step(id, () => this.d.approvals.end(id, 'expired', 'system'), 'approval expiry').catch(() => false)) ended++;
        this.d.pending.delete(id);
      }
      const now = nowMs / 1000;
      for (const [id, w] of this.#watched) {
        if (now <= w.grantExp || this.#ending.has(id)) continue;
        const claimed = await bounded(this.d.kv.claims.get(id), this.#stepMs, 'claim lookup')
          .then((c) => c?.operation === 'PUT')
          .catch(() => undefined);
        if (claimed === undefined) continue;
        if (claimed && now <= w.deadline) continue;
        if (
          await this.#step(id, () => this.#end(id, claimed), 'ending').catch((e: unknown) => {
            this.d.log.warn({ err: e, intentId: id }, 'sweeper could not end an intent yet; next sweep tries again');
            return false;
          })
        )
          ended++;
      }
    } finally {
      this.#sweeping = false;
    }
    return ended;
  }

  /** `f` for intent `id` under the step deadline; `id` counts as being ended until `f` settles. */
  #step<T>(id: string, f: () => Promise<T>, what: string): Promise<T> {
    this.#ending.add(id);
    const p = f().finally(() => this.#ending.delete(id));
    return bounded(p, this.#stepMs, what);
  }

  async #end(id: string, claimed: boolean): Promise<boolean> {
    const entry = await bounded(getRecord(this.d.kv.intents, id), this.#stepMs, 'record read');
    if (!entry) {
      this.#watched.delete(id);
      return false;
    }
    const rec = entry.rec;
    if (rec.state !== 'dispatched') {
      // It ended meanwhile; a watch that is behind would otherwise have it read again every sweep.
      this.#watched.delete(id);
      return false;
    }
    // The evidence is stored before the end is written, and one sweeper of the fleet writes it:
    // a sweeper first marks the record as being ended by it (compare-and-set, so one wins); a
    // crash after the mark leaves the record dispatched, and the mark is taken over once stale.
    // (The end written first and the evidence after lost the evidence to a crash in between.)
    const now = Date.now();
    // A mark dated further ahead than brokers' clocks may differ is stale too: one dated ten years
    // ahead (written by a holder of worker credentials) was never taken over (an attack helper's finding).
    if (rec.ending && rec.ending.by !== this.#self && now - rec.ending.at < this.#takeoverMs && rec.ending.at - now <= MARK_CLOCK_SKEW_MS) return false;
    let marked = rec;
    let revision = entry.revision;
    if (rec.ending?.by !== this.#self) {
      marked = { ...rec, ending: { by: this.#self, at: now } };
      try {
        revision = await bounded(updateRecord(this.d.kv.intents, marked, entry.revision), this.#stepMs, 'record mark');
      } catch {
        return false; // another sweeper, or the worker ending it, was first (or no answer: next sweep)
      }
    }
    const error = claimed ? new WritError('WRIT_OUTCOME_UNKNOWN') : new WritError('WRIT_GRANT_EXPIRED', 'the grant expired before any worker claimed it; nothing ran');
    const state = claimed ? 'unknown' : 'failed';
    // The claim names the worker and when it started: the evidence of the lost run, even if the
    // worker died before its own claim event was written.
    const claim = claimed
      ? await bounded(this.d.kv.claims.get(id), this.#stepMs, 'claim read')
          .then((c) => (c?.operation === 'PUT' ? c.json<Record<string, unknown>>() : undefined))
          .catch(() => undefined)
      : undefined;
    // The audit writer retries until the event is stored; the step's deadline only stops the
    // sweep from waiting on it (the intent is not taken up again until this step settles).
    await this.d.audit.append({
      sessionId: rec.sessionId,
      intentId: id,
      type: claimed ? 'exec.lost' : 'exec.expired',
      payload: { state, code: error.code, grantId: rec.grantId, ...(claim ? { claim } : {}) },
    });
    // The pending part of an approved intent (its raw command among it) is not kept past the end.
    const { pending: _p, ending: _e, ...kept } = marked;
    const next: IntentRecord = { ...kept, state, error: error.toReply(), updatedAt: Date.now() };
    // Its durable outcome, in the same write: a status and a code, no data (nothing to seal).
    next.outcome = buildOutcome({ intentId: id, sessionId: rec.sessionId, status: state, error: error.toReply() });
    try {
      await bounded(updateRecord(this.d.kv.intents, next, revision), this.#stepMs, 'record update');
    } catch {
      // The worker ended it at the last moment (its end stands; the log keeps both), or no answer: next sweep.
      return false;
    }
    this.#watched.delete(id);
    this.d.log.warn({ intentId: id, state }, claimed ? 'worker lost mid-run: intent is unknown and will not be re-run' : 'grant expired unclaimed');
    return true;
  }
}
