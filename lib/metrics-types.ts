/**
 * What a service reports per intent, as an interface: services call it (when given one), and
 * only the process that serves `/metrics` loads prom-client (lib/metrics.ts). Every call is a
 * counter or histogram update; labels come from bounded sets (configured targets, outcomes,
 * masking reason kinds), never from what an agent wrote.
 */

/** What the broker did with an intent. */
export type BrokerOutcome =
  | 'dispatched' // decided allow (or covered by an approval window) and the order went out
  | 'pending' // sent to approval
  | 'denied' // denied by policy, an unknown target, a refused reply subject or session
  | 'duplicate' // the id was known: a resubmission (a resend after a lost receipt), nothing new ran
  | 'refused' // not an intent: malformed, too large, an unverifiable token
  | 'retried' // a failure a resend can finish: answered as retryable, the agent sends it again
  | 'failed'; // an error that ended the intent (terminated)

/** How a worker ended an order. */
export type WorkerOutcome = 'succeeded' | 'failed' | 'unknown' | 'refused';

export interface ServiceMetrics {
  /** The broker finished handling one intent message, `seconds` after it received it. */
  intentHandled(target: string, outcome: BrokerOutcome, seconds: number): void;
  /** A worker ended an order; `seconds` is the execution time (none for a refused order). */
  executionEnded(target: string, outcome: WorkerOutcome, seconds?: number): void;
  /** A worker masked a field (or a stream) of a result, for `reason` (masking's reason string). */
  fieldMasked(target: string, reason: string): void;
  /** The broker sent an order: handed to a worker directly, or queued in the exec stream. */
  orderSent(target: string, path: OrderPath): void;
}

/** How an order reached its workers: `direct` (a worker took it at once), `queued` (the exec stream). */
export type OrderPath = 'direct' | 'queued';

/** Audit writer counters since start (audit/writer.ts `stats`). */
export interface AuditStats {
  /** Blocks stored. */
  blocks: number;
  /** Appends refused because another writer had moved the session's head (re-chained and retried). */
  conflicts: number;
  /** Attempts retried for any reason (conflicts included). */
  retries: number;
}
