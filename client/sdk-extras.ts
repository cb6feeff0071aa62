/**
 * Planner-friendly additions to the agent SDK (client/sdk.ts): error classes per way an
 * intent can end, typed results, a `Session` that groups a planner run, deterministic
 * intent ids for safe resubmission, and a token source that renews itself.
 *
 * `WritClient.run` never throws on a denial (a denial is an outcome); the helpers here
 * turn outcomes into typed values or typed errors, for code that prefers `try/catch`.
 */
import { createHash } from 'node:crypto';
import { ErrorCodes, TERMINAL_STATES, WritError, isErrorCode, type ApiReply, type Decision, type IntentState, type Outcome, type ResultBody } from '../schemas/index.ts';
import { WritClient, WritOutcomeError, newId, type IntentRequest } from './sdk.ts';

// ───────────────────────────── error classes ─────────────────────────────

/** Base of the typed outcome errors: `code`, the intent, and the policy's decision when there was one. */
export class WritIntentError extends WritOutcomeError {
  /** The intent this error is about. */
  readonly intentId: string;
  /** The intent's state when the error was raised. */
  readonly status: IntentState;
  /** The policy decision, when the broker got that far (absent for token or input errors). */
  readonly decision: Decision | undefined;
  /** Whether trying again can help (from the error catalogue; false for unknown codes). */
  readonly retryable: boolean;
  constructor(outcome: Outcome) {
    super(outcome);
    this.name = new.target.name;
    this.intentId = outcome.intentId;
    this.status = outcome.status;
    this.decision = outcome.decision;
    this.retryable = isErrorCode(this.code) ? ErrorCodes[this.code].retryable : false;
  }
  /** The rule ids that decided (empty when no rule was reached). */
  get rules(): string[] {
    return this.decision?.rules ?? [];
  }
  /** The policy's human-readable reasons. */
  get reasons(): string[] {
    return this.decision?.reasons ?? [];
  }
}

/** The broker refused the intent: policy, identity, or a command it could not classify. Nothing ran. */
export class WritDeniedError extends WritIntentError {}
/** The intent waits for human approval; `intentId` is what to wait on (`Session.wait`) or cancel. */
export class WritApprovalRequiredError extends WritIntentError {}
/** An approver rejected the intent. Nothing ran. */
export class WritRejectedError extends WritIntentError {}
/** No approver decided before the approval request expired. Nothing ran. */
export class WritApprovalExpiredError extends WritIntentError {}
/** The owner cancelled the pending intent. Nothing ran. */
export class WritCancelledError extends WritIntentError {}
/** The command ran and failed on the target (for SQL, its transaction was rolled back). */
export class WritExecutionError extends WritIntentError {}
/** The worker was lost mid-run: whether the command took effect is unknown; it is never re-run. */
export class WritOutcomeUnknownError extends WritIntentError {}
/** The intent was still under way when the caller stopped waiting. */
export class WritInProgressError extends WritIntentError {}

/**
 * The typed error for an outcome that is not a success, or undefined for `succeeded`.
 * The switch has no default, so a new intent state breaks the build here.
 */
export function outcomeError(o: Outcome): WritIntentError | undefined {
  switch (o.status) {
    case 'succeeded':
      return undefined;
    case 'denied':
      return new WritDeniedError(o);
    case 'pending':
      return new WritApprovalRequiredError(o);
    case 'rejected':
      return new WritRejectedError(o);
    case 'expired':
      return new WritApprovalExpiredError(o);
    case 'cancelled':
      return new WritCancelledError(o);
    case 'failed':
      return new WritExecutionError(o);
    case 'unknown':
      return new WritOutcomeUnknownError(o);
    case 'received':
    case 'dispatched':
    case 'running':
      return new WritInProgressError(o);
  }
}

/** An outcome that succeeded, with its (masked) result. */
export type SucceededOutcome = Outcome & { status: 'succeeded'; result: ResultBody };

/** Returns the outcome when it succeeded, otherwise throws its typed error. */
export function expectSuccess(o: Outcome): SucceededOutcome {
  const err = outcomeError(o);
  if (err) throw err;
  return { ...o, status: 'succeeded', result: o.result ?? { columns: [], rows: [], rowCount: 0, truncated: false } };
}

// ───────────────────────────── typed results ─────────────────────────────

/** A column of a result; `masked` columns carry redacted values, never the originals. */
export interface ResultColumn {
  name: string;
  masked: boolean;
  /** Why it was masked: 'column:public.customers.email', 'detector:email', … */
  reasons?: string[];
}

/** A SQL result with rows as objects keyed by column name. `Row` is the caller's assertion, not checked. */
export interface QueryResult<Row = Record<string, unknown>> {
  intentId: string;
  sessionId: string;
  columns: ResultColumn[];
  /** Rows as objects; a duplicated column name keeps the last value (see `rawRows`). */
  rows: Row[];
  /** Rows as the worker sent them, in column order. */
  rawRows: unknown[][];
  /** Rows returned, or affected by a write. */
  rowCount: number;
  /** True when the policy's row or byte limit cut the result short. */
  truncated: boolean;
  /** Names of the masked columns. */
  masked: string[];
  /** The SQL command tag (SELECT, INSERT …), when the worker reports it. */
  command: string | undefined;
  decision: Decision | undefined;
}

/** A shell command's result (output already masked line by line). */
export interface ShellResult {
  intentId: string;
  sessionId: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  decision: Decision | undefined;
}

export function toQueryResult<Row = Record<string, unknown>>(o: Outcome): QueryResult<Row> {
  const ok = expectSuccess(o);
  const r = ok.result;
  const rows = r.rows.map((raw) => Object.fromEntries(r.columns.map((c, i) => [c.name, raw[i]])) as Row);
  return {
    intentId: o.intentId,
    sessionId: o.sessionId,
    columns: r.columns,
    rows,
    rawRows: r.rows,
    rowCount: r.rowCount,
    truncated: r.truncated,
    masked: r.columns.filter((c) => c.masked).map((c) => c.name),
    command: r.command,
    decision: o.decision,
  };
}

export function toShellResult(o: Outcome): ShellResult {
  const r = expectSuccess(o).result;
  return {
    intentId: o.intentId,
    sessionId: o.sessionId,
    exitCode: r.exitCode ?? null,
    signal: r.signal ?? null,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    truncated: r.truncated,
    decision: o.decision,
  };
}

/** What `explain` answers, with `allowed` spelled out. */
export type Explanation = Extract<ApiReply, { type: 'explanation' }> & {
  /** True only for `allow`; `require_approval` runs after a human approves. */
  allowed: boolean;
};

// ───────────────────────────── idempotency ─────────────────────────────

/**
 * A deterministic intent id for one step of a session: the same session and key always
 * give the same id, so a planner that re-runs a step after a crash or a timeout
 * resubmits the same intent and gets the first run's outcome; it never runs twice.
 */
export function intentIdFor(sessionId: string, key: string): string {
  return `i_${createHash('sha256').update(`${sessionId}\0${key}`).digest('base64url').slice(0, 32)}`;
}

/**
 * Runs an intent whose id may have been used before (a step key, a retry after a crash),
 * and answers with the first run's outcome when it is the same command. Every resubmission
 * meets the intent's record at the broker, however late: the same command under a used id
 * answers where it stands (a result, or still pending approval) and never runs twice; another
 * command or target under it is denied (`WRIT_DUPLICATE_INTENT`), not answered with the first
 * command's outcome (which told a planner that a step it had changed had run).
 */
export async function runIdempotent(client: WritClient, req: IntentRequest & { intentId: string }, o: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Outcome> {
  return client.run(req, o);
}

// ───────────────────────────── tokens ─────────────────────────────

/**
 * Wraps a function that fetches a fresh token (an OIDC client-credentials call, the
 * development issuer …) so the SDK gets a cached token, renewed `renewBeforeSec` before
 * its `exp`. Concurrent callers share one renewal. Pass the result as `WritClient`'s `token`.
 */
export function refreshingToken(fetchToken: () => Promise<string>, o: { renewBeforeSec?: number } = {}): () => Promise<string> {
  const margin = (o.renewBeforeSec ?? 60) * 1000;
  let current: { token: string; expMs: number } | undefined;
  let inflight: Promise<string> | undefined;
  return async () => {
    if (current && Date.now() < current.expMs - margin) return current.token;
    inflight ??= fetchToken().then(
      (token) => {
        current = { token, expMs: jwtExpMs(token) };
        inflight = undefined;
        return token;
      },
      (e: unknown) => {
        inflight = undefined;
        throw e;
      },
    );
    return inflight;
  };
}

/** The `exp` of a JWT in epoch ms (not verified: only for deciding when to renew); 0 when absent. */
function jwtExpMs(token: string): number {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

// ───────────────────────────── waiting ─────────────────────────────

/** The broker answers one wait for at most 10 minutes; longer waits are a loop of these. */
const MAX_WAIT_SLICE_MS = 600_000;

export interface LongWaitOptions {
  /** Total time to wait; default 10 minutes. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Longest single broker wait; shorter slices give `onTick` more often. Default 10 minutes. */
  sliceMs?: number;
  /** Called between slices while the intent is still open, e.g. to report progress. */
  onTick?: (elapsedMs: number) => void | Promise<void>;
}

/**
 * Waits for an intent's outcome beyond the broker's 10-minute limit per request.
 * Resolves with the terminal outcome, or undefined when `timeoutMs` passed first.
 */
export async function waitLong(client: WritClient, intentId: string, o: LongWaitOptions = {}): Promise<Outcome | undefined> {
  const start = Date.now();
  const deadline = start + (o.timeoutMs ?? MAX_WAIT_SLICE_MS);
  const slice = Math.min(o.sliceMs ?? MAX_WAIT_SLICE_MS, MAX_WAIT_SLICE_MS);
  for (;;) {
    o.signal?.throwIfAborted();
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    try {
      const out = await client.wait(intentId, { timeoutMs: Math.max(1, Math.min(left, slice)), ...(o.signal ? { signal: o.signal } : {}) });
      if (TERMINAL_STATES.has(out.status)) return out;
    } catch (e) {
      if (!(e instanceof WritError && e.code === 'WRIT_TIMEOUT')) throw e;
    }
    if (Date.now() < deadline) await o.onTick?.(Date.now() - start);
  }
}

// ───────────────────────────── sessions ─────────────────────────────

export interface SessionOptions {
  /** The session id (8-128 of A-Z a-z 0-9 _ -); one is made when absent. One audit chain per session. */
  id?: string;
  /** Aborting it stops every wait of the session (and `close` cancels what is still pending). */
  signal?: AbortSignal;
  /** How long `query`/`exec` wait for an approval before giving up; default 10 minutes. */
  approvalTimeoutMs?: number;
  /** Called once when a step has to wait for approval, e.g. to tell a human whom to ask. */
  onPending?: (outcome: Outcome) => void | Promise<void>;
}

export interface StepOptions {
  /** Why; shown to approvers and audited. */
  justification?: string;
  /** Idempotency key: the step's intent id is derived from the session id and this key. */
  key?: string;
  /** Or the intent id itself. Resubmitting the same id never runs twice. */
  intentId?: string;
  /** How long to wait for the outcome once dispatched; default 30 s. */
  timeoutMs?: number;
  /** `wait` (default): wait for approval; `throw`: throw WritApprovalRequiredError at once. */
  approval?: 'wait' | 'throw';
  signal?: AbortSignal;
}

type Command = { sql: string; command?: never } | { command: string; sql?: never };

/**
 * One planner run: every intent carries the session's id (one audit chain, one
 * `writ audit replay --session`), the session remembers what it submitted, and its
 * steps resolve to typed results or throw typed errors.
 */
export class Session {
  /** The session id every intent of this session carries. */
  readonly id: string;
  readonly client: WritClient;
  readonly #o: SessionOptions;
  readonly #intents = new Map<string, { target: string; status: IntentState }>();

  constructor(client: WritClient, o: SessionOptions = {}) {
    this.client = client;
    this.#o = o;
    this.id = o.id ?? newId('s');
  }

  /** Intents submitted in this session, with their last known state. */
  get intents(): ReadonlyMap<string, { target: string; status: IntentState }> {
    return this.#intents;
  }

  /** The intent id a step with this idempotency key has in this session. */
  intentId(key: string): string {
    return intentIdFor(this.id, key);
  }

  /** Would it be allowed, and why? Nothing runs; the question is audited in this session. */
  async explain(req: { target: string } & Command): Promise<Explanation> {
    const r = await this.client.explain({ ...req, sessionId: this.id });
    return { ...r, allowed: r.decision.effect === 'allow' };
  }

  /** Runs an intent and returns its outcome as is (a denial is an outcome, not an exception). */
  async run(req: Omit<IntentRequest, 'sessionId'>, o: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Outcome> {
    const intentId = req.intentId ?? newId();
    this.#intents.set(intentId, { target: req.target, status: 'received' });
    const signal = this.#signal(o.signal);
    const opts = { ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}), ...(signal ? { signal } : {}) };
    // A caller-chosen id may have run before: never twice, and always with its first outcome.
    const out = req.intentId !== undefined ? await runIdempotent(this.client, { ...req, intentId, sessionId: this.id }, opts) : await this.client.run({ ...req, intentId, sessionId: this.id }, opts);
    this.#intents.set(intentId, { target: req.target, status: out.status });
    return out;
  }

  /** Runs SQL and resolves with typed rows; waits for approval when the policy asks for it. */
  async query<Row = Record<string, unknown>>(target: string, sql: string, o: StepOptions = {}): Promise<QueryResult<Row>> {
    return toQueryResult<Row>(await this.#step({ target, sql }, o));
  }

  /** Runs a shell command on an SSH target; waits for approval when the policy asks for it. */
  async exec(target: string, command: string, o: StepOptions = {}): Promise<ShellResult> {
    return toShellResult(await this.#step({ target, command }, o));
  }

  /** Waits for an intent of any age, beyond the broker's 10-minute limit per request. */
  async wait(intentId: string, o: LongWaitOptions = {}): Promise<Outcome | undefined> {
    const signal = this.#signal(o.signal);
    const out = await waitLong(this.client, intentId, { ...o, ...(signal ? { signal } : {}) });
    const known = this.#intents.get(intentId);
    if (out && known) this.#intents.set(intentId, { ...known, status: out.status });
    return out;
  }

  /** Withdraws a pending intent of this principal. */
  async cancel(intentId: string): Promise<IntentState> {
    const state = await this.client.cancel(intentId);
    const known = this.#intents.get(intentId);
    if (known) this.#intents.set(intentId, { ...known, status: state });
    return state;
  }

  /** Cancels every intent of this session still waiting for approval; returns their ids. */
  async close(): Promise<string[]> {
    const pending = [...this.#intents].filter(([, v]) => v.status === 'pending').map(([id]) => id);
    const done: string[] = [];
    for (const id of pending) {
      try {
        await this.cancel(id);
        done.push(id);
      } catch (e) {
        // Decided meanwhile: nothing left to cancel.
        if (!(e instanceof WritError && e.code === 'WRIT_NOT_PENDING')) throw e;
      }
    }
    return done;
  }

  async #step(cmd: { target: string } & Command, o: StepOptions): Promise<Outcome> {
    const intentId = o.intentId ?? (o.key !== undefined ? this.intentId(o.key) : newId());
    const req = { ...cmd, intentId, ...(o.justification ? { justification: o.justification } : {}) } as Omit<IntentRequest, 'sessionId'>;
    const first = await this.run(req, { ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}), ...(o.signal ? { signal: o.signal } : {}) });
    if (first.status !== 'pending' || o.approval === 'throw') return first;
    await this.#o.onPending?.(first);
    const out = await this.wait(intentId, { timeoutMs: this.#o.approvalTimeoutMs ?? MAX_WAIT_SLICE_MS, ...(o.signal ? { signal: o.signal } : {}) });
    return out ?? first;
  }

  #signal(s: AbortSignal | undefined): AbortSignal | undefined {
    const mine = this.#o.signal;
    if (mine && s) return AbortSignal.any([mine, s]);
    return mine ?? s;
  }
}
