/**
 * The sweeper: ends intents whose worker was lost. A `dispatched` intent whose grant was
 * claimed but which has not finished by its run deadline (grant expiry + time limit +
 * margin) becomes `unknown` and is never re-run: the claim stays, so no worker can run
 * it again. One whose grant expired unclaimed never ran, and no worker will ever claim
 * it (workers refuse expired grants), so it ends `failed` with WRIT_GRANT_EXPIRED.
 * Every broker replica sweeps; the compare-and-set on the record makes one of them win.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KvEntry } from '@nats-io/kv';
import type { AuditWriter } from '../audit/index.ts';
import type { Logger } from '../lib/index.ts';
import { IntentRecordSchema, WritError, type IntentRecord, type Names, type Outcome } from '../schemas/index.ts';
import type { Buckets } from './provision.ts';
import type { Approvals } from './approvals.ts';

const enc = new TextEncoder();

interface Watched {
  deadline: number;
  grantExp: number;
}

export class Sweeper {
  readonly #watched = new Map<string, Watched>();
  /** Pending intents and when their approval requests expire (epoch ms). */
  readonly #pending = new Map<string, number>();
  #timer?: NodeJS.Timeout;
  #stopWatch?: () => void;
  #sweeping = false;
  #stopped = true;
  #watchRestarts = 0;

  constructor(
    private readonly d: { kv: Buckets; js: JetStreamClient; names: Names; audit: AuditWriter; log: Logger; intervalMs: number; approvals: Approvals },
  ) {}

  async start(): Promise<void> {
    // The watch replays the current value of every key, then follows changes.
    const first = await this.d.kv.intents.watch();
    this.#stopped = false;
    void this.#follow(first);
    // A failed sweep is logged and the next tick tries again; it never becomes an unhandled rejection.
    this.#timer = setInterval(() => this.sweep().catch((e: unknown) => this.d.log.error({ err: e }, "sweep failed")), this.d.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#stopWatch?.();
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
      this.#stopWatch = () => w.stop();
      try {
        for await (const e of w) {
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
          w = await this.d.kv.intents.watch();
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
      this.#pending.delete(e.key);
      return;
    }
    let rec: IntentRecord;
    try {
      rec = IntentRecordSchema.parse(e.json());
    } catch {
      return;
    }
    if (rec.state === 'pending' && rec.pending) this.#pending.set(rec.intentId, rec.pending.expiresAt);
    else this.#pending.delete(rec.intentId);
    if (rec.state === 'dispatched' && rec.grantExp !== undefined) {
      this.#watched.set(rec.intentId, { grantExp: rec.grantExp, deadline: rec.runDeadline ?? rec.grantExp + 60 });
    } else this.#watched.delete(rec.intentId);
  }

  /** Ids of pending intents this broker knows of. */
  pendingIds(): string[] {
    return [...this.#pending.keys()];
  }

  /** One pass; public for tests. */
  async sweep(nowMs = Date.now()): Promise<number> {
    if (this.#sweeping) return 0;
    this.#sweeping = true;
    let ended = 0;
    try {
      // Expiry is read from the records, so it holds even when every broker restarted meanwhile.
      for (const [id, expiresAt] of this.#pending) {
        if (expiresAt > nowMs) continue;
        if (await this.d.approvals.end(id, 'expired', 'system').catch(() => false)) ended++;
        this.#pending.delete(id);
      }
      const now = nowMs / 1000;
      for (const [id, w] of this.#watched) {
        if (now <= w.grantExp) continue;
        const claimed = await this.d.kv.claims.get(id).then((c) => c?.operation === 'PUT').catch(() => undefined);
        if (claimed === undefined) continue;
        if (claimed && now <= w.deadline) continue;
        if (await this.#end(id, claimed)) ended++;
      }
    } finally {
      this.#sweeping = false;
    }
    return ended;
  }

  async #end(id: string, claimed: boolean): Promise<boolean> {
    const entry = await this.d.kv.intents.get(id);
    if (!entry || entry.operation !== 'PUT') return false;
    const rec = IntentRecordSchema.parse(entry.json());
    if (rec.state !== 'dispatched') return false;
    const error = claimed ? new WritError('WRIT_OUTCOME_UNKNOWN') : new WritError('WRIT_GRANT_EXPIRED', 'the grant expired before any worker claimed it; nothing ran');
    const next: IntentRecord = { ...rec, state: claimed ? 'unknown' : 'failed', error: error.toReply(), updatedAt: Date.now() };
    try {
      await this.d.kv.intents.update(id, enc.encode(JSON.stringify(next)), entry.revision);
    } catch {
      return false; // another replica, or the worker finishing at the last moment, won
    }
    this.#watched.delete(id);
    const outcome: Outcome = { v: 1, type: 'outcome', intentId: id, sessionId: rec.sessionId, status: next.state, error: error.toReply(), at: Date.now() };
    // The claim names the worker and when it started: the evidence of the lost run, even if the
    // worker died before its own claim event was written.
    const claim = claimed ? await this.d.kv.claims.get(id).then((c) => (c?.operation === 'PUT' ? c.json<Record<string, unknown>>() : undefined)).catch(() => undefined) : undefined;
    await Promise.all([
      this.d.js.publish(this.d.names.result(id), enc.encode(JSON.stringify(outcome)), { msgID: `r-${id}` }).catch(() => undefined),
      this.d.audit.append({ sessionId: rec.sessionId, intentId: id, type: claimed ? 'exec.lost' : 'exec.expired', payload: { state: next.state, code: error.code, grantId: rec.grantId, ...(claim ? { claim } : {}) } }),
    ]);
    this.d.log.warn({ intentId: id, state: next.state }, claimed ? 'worker lost mid-run: intent is unknown and will not be re-run' : 'grant expired unclaimed');
    return true;
  }
}
