/**
 * The fault suite's workload: intents that each insert one row with a unique tag into `runs`,
 * so the target counts how often each one ran. `slow` ones sleep inside the statement (to be
 * mid-statement when a fault hits), `commit` ones carry a tag that a deferred constraint
 * trigger makes slow at COMMIT (see SLOW_COMMIT_SQL). Every submission is recorded, accepted
 * or not: only an accepted one (the SDK's submit resolved) is owed an end state, but every
 * tag is counted on the target.
 */
import { randomBytes } from 'node:crypto';
import { newId, type WritClient } from '../../../client/index.ts';

export type Kind = 'fast' | 'slow' | 'commit';

export interface Submission {
  tag: string;
  kind: Kind;
  intentId: string;
  sessionId: string;
  /** Index of the submitting client in `Workload.clients` (outcomes are sealed to its key). */
  client: number;
  accepted: boolean;
  error?: string;
  submittedAt: number;
  /**
   * Set for a submission the agent ran and waited for (`burst`'s `waitEvery`: SDK run(), submit
   * and wait in one): the status it ended with, or why it failed. invariants.ts compares it with the bucket.
   */
  waited?: { status: string } | { error: string };
}

/** Makes COMMIT take `sec` seconds for rows tagged `c-…`: the trigger runs at commit time. */
export const slowCommitSql = (sec: number) => `
  CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN PERFORM pg_sleep(${sec}); RETURN NULL; END $$;
  CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON runs DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.tag LIKE 'c-%') EXECUTE FUNCTION slow_commit();
`;

/** How long the SDK's submit keeps trying a publish the bus did not take, unless `submitTimeoutMs` says otherwise. */
const SUBMIT_TIMEOUT_MS = 10_000;
/** The harness's own bound on a submission, past the SDK's: a submit that never settles is a failure. */
const HARNESS_MARGIN_MS = 5_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Workload {
  readonly subs: Submission[] = [];
  #n = 0;
  /** Runs started by `burst(…, { waitEvery })`, still waiting or done. */
  readonly #waits: Promise<void>[] = [];

  /**
   * How long each submit retries a publish the bus did not take (the SDK's `timeoutMs`): a
   * reconnect, a stream electing its leader. The SDK retries under the same intent id; the
   * harness never submits again itself, so what the agents see is what the SDK does.
   */
  submitTimeoutMs = SUBMIT_TIMEOUT_MS;

  constructor(
    readonly clients: readonly WritClient[],
    readonly slowSec = 2,
  ) {}

  sql(kind: Kind, tag: string): string {
    return kind === 'slow' ? `INSERT INTO runs (tag) SELECT '${tag}' FROM pg_sleep(${this.slowSec})` : `INSERT INTO runs (tag) VALUES ('${tag}')`;
  }

  /** Submits one intent; never rejects, never waits longer than SUBMIT_TIMEOUT_MS. */
  async one(kind: Kind): Promise<Submission> {
    const n = this.#n++;
    const client = n % this.clients.length;
    const c = this.clients[client]!;
    const tag = `${kind === 'fast' ? 't' : kind === 'slow' ? 's' : 'c'}-${n}-${randomBytes(4).toString('hex')}`;
    const sub: Submission = { tag, kind, intentId: newId(), sessionId: c.sessionId, client, accepted: false, submittedAt: Date.now() };
    this.subs.push(sub);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        c.submit({ target: 'db', sql: this.sql(kind, tag), intentId: sub.intentId }, { timeoutMs: this.submitTimeoutMs }),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('submit timed out (harness)')), this.submitTimeoutMs + HARNESS_MARGIN_MS))),
      ]);
      sub.accepted = true;
    } catch (e) {
      sub.error = (e as Error).message;
    } finally {
      clearTimeout(timer);
    }
    return sub;
  }

  /**
   * `n` submissions, `concurrency` at a time; `kindOf(i)` picks each one's kind. With
   * `waitEvery: k`, every k-th is instead run by its agent (SDK run(): submit, then wait up to
   * `waitMs` for the outcome) alongside the other submissions, not holding a lane; `waits()`
   * resolves when those runs have ended.
   */
  async burst(n: number, kindOf: (i: number) => Kind = () => 'fast', concurrency = 8, o: { waitEvery?: number; waitMs?: number } = {}): Promise<void> {
    let i = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (i < n) {
          const k = i++;
          if (o.waitEvery && k % o.waitEvery === 0) this.#waits.push(this.#run(kindOf(k), o.waitMs ?? 90_000));
          else await this.one(kindOf(k));
        }
      }),
    );
  }

  /** One intent through SDK run(). An outcome proves it was accepted; a failure leaves that open (its tag is still counted). */
  async #run(kind: Kind, timeoutMs: number): Promise<void> {
    const n = this.#n++;
    const client = n % this.clients.length;
    const c = this.clients[client]!;
    const tag = `${kind === 'fast' ? 't' : kind === 'slow' ? 's' : 'c'}-${n}-${randomBytes(4).toString('hex')}`;
    const sub: Submission = { tag, kind, intentId: newId(), sessionId: c.sessionId, client, accepted: false, submittedAt: Date.now() };
    this.subs.push(sub);
    try {
      const o = await c.run({ target: 'db', sql: this.sql(kind, tag), intentId: sub.intentId }, { timeoutMs });
      sub.accepted = true;
      sub.waited = { status: o.status };
    } catch (e) {
      sub.waited = { error: (e as Error).message };
    }
  }

  /** Resolves once every wait `burst` started has ended (each is bounded by its `waitMs`). */
  async waits(): Promise<void> {
    await Promise.all(this.#waits);
  }

  /** Submits continuously (`concurrency` lanes, `pauseMs` between a lane's submissions) until stopped. */
  load(kindOf: (i: number) => Kind = () => 'fast', concurrency = 4, pauseMs = 50): { stop(): Promise<void> } {
    let stopped = false;
    let i = 0;
    const lanes = Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (!stopped) {
          await this.one(kindOf(i++));
          await sleep(pauseMs);
        }
      }),
    );
    return {
      stop: async () => {
        stopped = true;
        await lanes;
      },
    };
  }

  accepted(): Submission[] {
    return this.subs.filter((s) => s.accepted);
  }
}
