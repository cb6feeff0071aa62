/**
 * The one catalogue of Writ's error codes. Every code here is documented in
 * docs/errors.md (a test checks it); a retired code is never reused.
 * `retryable` decides nak (retry may help) versus term on JetStream messages.
 */
export const ErrorCodes = {
  // input
  WRIT_BAD_JSON: { retryable: false, message: 'the message is not valid JSON' },
  WRIT_BAD_REQUEST: { retryable: false, message: 'the message does not match its schema' },
  WRIT_PAYLOAD_TOO_LARGE: { retryable: false, message: 'the message is larger than the configured limit' },
  WRIT_DEADLINE_PASSED: { retryable: false, message: 'the intent arrived after its deadline' },
  WRIT_UNKNOWN_TARGET: { retryable: false, message: 'no such target' },
  WRIT_DUPLICATE_INTENT: { retryable: false, message: 'an intent with this id was already received' },
  WRIT_NOT_FOUND: { retryable: false, message: 'no such intent, or not yours' },
  // Not retryable: sending the intent again under a new id could run it twice. Wait again by the same id.
  WRIT_TIMEOUT: { retryable: false, message: 'no outcome before the wait timed out; wait again by the same intent id, do not resubmit under a new one' },
  // identity
  WRIT_TOKEN_MISSING: { retryable: false, message: 'no token was given' },
  WRIT_TOKEN_INVALID: { retryable: false, message: 'the token could not be verified' },
  WRIT_TOKEN_EXPIRED: { retryable: false, message: 'the token has expired' },
  WRIT_TOKEN_AUDIENCE: { retryable: false, message: 'the token is not meant for this broker' },
  WRIT_TOKEN_ISSUER: { retryable: false, message: 'the token comes from an issuer this broker does not trust' },
  WRIT_TOKEN_LIFETIME: { retryable: false, message: 'the token lives longer than the configured maximum' },
  // transport: replies and sealing
  WRIT_REPLY_REFUSED: { retryable: false, message: "the reply subject is not under the requester's own inbox" },
  WRIT_SEAL_REQUIRED: { retryable: false, message: 'no key to seal the outcome to: the intent or request must carry replyKey' },
  WRIT_SEAL_INVALID: { retryable: false, message: "an outcome was not sealed to this client's key, or could not be opened" },
  // classification and policy
  WRIT_SQL_EMPTY: { retryable: false, message: 'the SQL text holds no statement' },
  WRIT_SQL_UNPARSEABLE: { retryable: false, message: 'the SQL text could not be parsed' },
  WRIT_SQL_UNKNOWN: { retryable: false, message: 'the SQL text holds a statement that could not be classified' },
  WRIT_SHELL_EMPTY: { retryable: false, message: 'the command holds nothing to run' },
  WRIT_SHELL_UNPARSEABLE: { retryable: false, message: 'the shell command could not be parsed' },
  WRIT_SHELL_UNKNOWN: { retryable: false, message: 'the shell command holds a part that could not be classified' },
  WRIT_POLICY_DENIED: { retryable: false, message: 'the policy denies this intent' },
  WRIT_POLICY_INVALID: { retryable: false, message: 'the policy is not valid' },
  // approvals
  WRIT_APPROVAL_REQUIRED: { retryable: false, message: 'the intent waits for approval' },
  WRIT_APPROVER_NOT_ALLOWED: { retryable: false, message: "this approver is not in the rule's approver groups" },
  WRIT_SELF_APPROVAL: { retryable: false, message: 'the requester, or the human it acts for, cannot approve their own intent' },
  WRIT_NOT_PENDING: { retryable: false, message: 'the intent is not pending approval (already decided, expired or cancelled)' },
  WRIT_APPROVAL_EXPIRED: { retryable: false, message: 'no decision before the approval request expired' },
  WRIT_APPROVAL_TOO_LARGE: { retryable: false, message: 'the approval request is larger than the message bus carries' },
  WRIT_TOO_MANY_PENDING: { retryable: false, message: 'this principal already has as many intents waiting for approval as it may' },
  WRIT_APPROVAL_REJECTED: { retryable: false, message: 'an approver rejected the intent' },
  WRIT_CANCELLED: { retryable: false, message: 'the owner cancelled the intent' },
  WRIT_VOTE_MISMATCH: { retryable: false, message: 'the vote names another command than the one pending approval' },
  WRIT_VOTE_REPLAYED: { retryable: false, message: 'this decision id was used before; a vote counts once' },
  WRIT_VOTE_STALE: { retryable: false, message: 'the vote was cast outside the allowed clock skew' },
  WRIT_VOTE_TOKEN_SPENT: { retryable: false, message: 'this approver token was already used for a vote; each vote needs a fresh token' },
  WRIT_VOTE_SIGNATURE: { retryable: false, message: "a bot's vote is not signed with the key listed for it" },
  // execution
  WRIT_GRANT_INVALID: { retryable: false, message: 'the execution grant could not be verified' },
  WRIT_GRANT_EXPIRED: { retryable: false, message: 'the execution grant has expired' },
  WRIT_GRANT_MISMATCH: { retryable: false, message: 'the execution grant does not cover this order' },
  WRIT_ALREADY_CLAIMED: { retryable: false, message: 'this grant was already claimed; it runs at most once' },
  WRIT_EXEC_FAILED: { retryable: false, message: 'the command failed on the target' },
  WRIT_EXEC_TIMEOUT: { retryable: false, message: 'the command ran past its time limit' },
  WRIT_ROW_LIMIT: { retryable: false, message: 'the command affected more rows than allowed' },
  WRIT_RESULT_TOO_LARGE: { retryable: false, message: 'the result is larger than allowed' },
  WRIT_TARGET_UNAVAILABLE: { retryable: true, message: 'the target could not be reached' },
  WRIT_MASKING_FAILED: { retryable: false, message: 'the result could not be masked, so it was withheld' },
  WRIT_HOST_KEY_MISMATCH: { retryable: false, message: 'the host key is not the pinned one' },
  WRIT_UNSUPPORTED: { retryable: false, message: 'this kind of command cannot run through Writ on this target' },
  WRIT_MASKED_COPY: { retryable: false, message: 'the statement would store values read from a masked column where a later read gets them back unmasked; nothing ran' },
  WRIT_MASKED_FILTER: { retryable: false, message: 'the statement uses a masked column outside its result (a filter, join, grouping, ordering or row count), which tells its value; nothing ran' },
  WRIT_OUTCOME_UNKNOWN: { retryable: false, message: 'the worker was lost mid-run; the outcome is unknown and it is not re-run' },
  WRIT_COMMIT_UNKNOWN: { retryable: false, message: 'the connection was lost during COMMIT; whether the transaction committed is unknown' },
  // everything else
  WRIT_CONFIG_INVALID: { retryable: false, message: 'the configuration is not valid' },
  WRIT_RECORD_TAMPERED: { retryable: false, message: 'the pending intent was not written by a broker, or was changed since' },
  WRIT_DECISION_CHANGED: { retryable: false, message: 'the current policy would not give the decision this approval was for; nothing ran' },
  WRIT_SESSION_FORBIDDEN: { retryable: false, message: 'this session belongs to another principal; use a session of your own' },
  WRIT_REPLY_TOO_LARGE: { retryable: false, message: 'the reply is larger than the message bus carries' },
  WRIT_TRANSPORT: { retryable: true, message: 'the message bus did not take a write; it is retried' },
  WRIT_BUSY: { retryable: true, message: 'the broker holds as many requests of this kind for this principal as it allows; ask again later' },
  // Not retryable: an unexpected failure repeats; transient bus failures are WRIT_TRANSPORT.
  WRIT_INTERNAL: { retryable: false, message: 'internal error' },
} as const satisfies Record<string, { retryable: boolean; message: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

/** An error with a stable code, a message safe to show the caller, and a cause kept for the logs. */
export class WritError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Optional structured details safe for the caller (never secrets or unmasked values). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ErrorCodes[code].message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'WritError';
    this.code = code;
    this.retryable = ErrorCodes[code].retryable;
    this.details = options?.details;
  }

  /** The wire form: code and safe message only. */
  toReply(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }
}

export function isErrorCode(s: string): s is ErrorCode {
  return Object.hasOwn(ErrorCodes, s);
}

/** Anything thrown becomes a WritError; unknown throwables become WRIT_INTERNAL with the original as cause. */
/**
 * NATS client errors that a later attempt can get past (a reconnect, a leader election), by
 * the error classes' `name`: nats.js sets one per class. JetStream API errors count only with
 * status 503 (no leader, no responders); other API codes are answers, not outages.
 */
const TRANSIENT_NATS_ERRORS = new Set(['TimeoutError', 'ConnectionError', 'DrainingConnectionError', 'ClosedConnectionError', 'RequestError', 'NoResponders', 'JetStreamNotEnabled']);

function isTransientBusError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (TRANSIENT_NATS_ERRORS.has(e.name)) return true;
  const status = (e as { status?: unknown; code?: unknown }).status ?? (e as { code?: unknown }).code;
  return (e.name === 'JetStreamApiError' || e.name === 'JetStreamStatusError' || e.name === 'JetStreamError') && (status === 503 || status === '503');
}

export function toWritError(e: unknown): WritError {
  if (e instanceof WritError) return e;
  if (isTransientBusError(e)) return new WritError('WRIT_TRANSPORT', undefined, { cause: e });
  return new WritError('WRIT_INTERNAL', undefined, { cause: e });
}
