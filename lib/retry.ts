/**
 * Retries a write that NATS did not take while the failure is transient (a reconnect, a
 * leader election: WRIT_TRANSPORT), with jittered backoff, until it succeeds, the deadline
 * passes, or `keepGoing` says stop. Anything else is thrown at once: an answer is not an
 * outage. Used where dropping the write would lose evidence or an outcome.
 */
import { toWritError } from '../schemas/index.ts';
import type { Logger } from './log.ts';

export async function retryTransient<T>(what: string, fn: () => Promise<T>, o: { log: Logger; deadlineMs?: number; keepGoing?: () => boolean; context?: Record<string, unknown> }): Promise<T> {
  const until = Date.now() + (o.deadlineMs ?? 120_000);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const err = toWritError(e);
      if (err.code !== 'WRIT_TRANSPORT' || Date.now() > until || (o.keepGoing && !o.keepGoing())) throw e;
      if (attempt === 0 || attempt % 10 === 0) o.log.warn({ ...o.context, err: e, attempt }, `${what}: NATS did not take it; retrying`);
      const ms = Math.min(2000, 50 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, ms));
    }
  }
}
