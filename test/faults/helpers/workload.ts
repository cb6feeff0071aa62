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
}

/** Makes COMMIT take `sec` seconds for rows tagged `c-…`: the trigger runs at commit time. */
export const slowCommitSql = (sec: number) => `
  CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN PERFORM pg_sleep(${sec}); RETURN NULL; END $$;
  CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON runs DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.tag LIKE 'c-%') EXECUTE FUNCTION slow_commit();
`;

const SUBMIT_TIMEOUT_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Workload {
  readonly subs: Submission[] = [];
  #n = 0;

  constructor(readonly clients: readonly WritClient[], readonly slowSec = 2) {}

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
        c.submit({ target: 'db', sql: this.sql(kind, tag), intentId: sub.intentId }),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('submit timed out (harness)')), SUBMIT_TIMEOUT_MS))),
      ]);
      sub.accepted = true;
    } catch (e) {
      sub.error = (e as Error).message;
    } finally {
      clearTimeout(timer);
    }
    return sub;
  }

  /** `n` submissions, `concurrency` at a time; `kindOf(i)` picks each one's kind. */
  async burst(n: number, kindOf: (i: number) => Kind = () => 'fast', concurrency = 8): Promise<void> {
    let i = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (i < n) await this.one(kindOf(i++));
    }));
  }

  /** Submits continuously (`concurrency` lanes, `pauseMs` between a lane's submissions) until stopped. */
  load(kindOf: (i: number) => Kind = () => 'fast', concurrency = 4, pauseMs = 50): { stop(): Promise<void> } {
    let stopped = false;
    let i = 0;
    const lanes = Promise.all(Array.from({ length: concurrency }, async () => {
      while (!stopped) {
        await this.one(kindOf(i++));
        await sleep(pauseMs);
      }
    }));
    return { stop: async () => { stopped = true; await lanes; } };
  }

  accepted(): Submission[] {
    return this.subs.filter((s) => s.accepted);
  }
}
