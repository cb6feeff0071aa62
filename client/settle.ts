/**
 * How the SDK waits for an intent's outcome without missing it.
 *
 * The answer on the agent's own inbox is the fast path, but core NATS delivers it at most
 * once and only to a live subscription: an outcome sent while the agent's connection is
 * reconnecting is gone, and the sweeper's `unknown` is stored (the intent record and
 * `writ.result.<id>`) but never sent there. So the SDK also asks the broker: `writ.api.wait`
 * answers from the durable record, as soon as it turns terminal. It asks
 *   - once the intent has been out for a moment without an answer (`askAfterMs`), and keeps
 *     asking, one long-poll after the other, until the deadline: a lost worker's `unknown`
 *     is reported when the broker writes it, not when the agent's timeout runs out;
 *   - again at every reconnect, because the reply to a request sent before it may be lost;
 *   - a last time just before the deadline (`writ.api.result`), so a timeout says where the
 *     intent stands, and a pending intent is reported as pending.
 * Agents never read JetStream themselves: the API is the only way in.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { TERMINAL_STATES, WritError, type ApiReply, type IntentState, type Outcome } from '../schemas/index.ts';

/** How long a single `writ.api.wait` long-poll lasts before the next one is sent. */
const SLICE_MS = 30_000;
/** Pause after a failed request (no broker, connection down), doubled up to the max. */
const BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;

export interface SettleDeps {
  nc: NatsConnection;
  /** One broker API request (`wait` long-polls for `timeoutMs`); rejects with a WritError for a coded reply. */
  api(op: 'wait' | 'result', intentId: string, timeoutMs: number): Promise<ApiReply>;
}

export interface SettleOptions {
  intentId: string;
  sessionId: string;
  /** Epoch ms: the caller's timeout. */
  deadline: number;
  signal?: AbortSignal | undefined;
  /** The first answer on the intent's own inbox (`run`); absent when only the API can answer (`wait`). */
  direct?: Promise<Outcome | undefined>;
  /** When to start asking the API, in ms from now; a reconnect or a non-final direct answer starts it at once. */
  askAfterMs: number;
  /**
   * `wait`: a coded refusal from the broker (not found, token expired …) is the answer and is
   * thrown. `run`: the intent's own inbox may still answer (a refusal at intake has no record), so
   * the broker is asked again after a pause.
   */
  refusalsEnd: boolean;
}

/** `pending` ends a `run` (the agent decides whether to wait for the approvers); the rest are terminal. */
function isFinal(o: Outcome): boolean {
  return o.status === 'pending' || TERMINAL_STATES.has(o.status);
}

interface Defer {
  promise: Promise<void>;
  resolve: () => void;
}
function defer(): Defer {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function sleep(ms: number, ...wakeups: Promise<unknown>[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, ms)))), ...wakeups.map((w) => w.then(() => undefined))]).finally(() => clearTimeout(timer));
}

/**
 * Resolves with the intent's final outcome (terminal, or `pending`), or rejects with
 * WRIT_TIMEOUT naming the intent and its last known state once `deadline` passed.
 */
export async function settle(d: SettleDeps, o: SettleOptions): Promise<Outcome> {
  const done = defer();
  const start = defer();
  // Replaced at every reconnect; whoever waits on the current one wakes up.
  let reconnected = defer();
  const status = d.nc.status();
  void (async () => {
    for await (const s of status) {
      if (s.type !== 'reconnect') continue;
      const r = reconnected;
      reconnected = defer();
      r.resolve();
    }
  })().catch(() => undefined);

  const total = Math.max(0, o.deadline - Date.now());
  // The last question (`result`) gets a short slice of the budget at its end.
  const lastAskMs = Math.min(1_000, Math.max(100, Math.floor(total / 10)));
  const pollEnd = o.deadline - lastAskMs;

  const direct = o.direct?.then(
    (out) => {
      if (out && isFinal(out)) return out;
      // A resubmitted id reports where it stands (`dispatched`, `running`): only the API knows its end.
      start.resolve();
      return done.promise.then(() => undefined);
    },
    () => {
      start.resolve();
      return done.promise.then(() => undefined);
    },
  );

  // Set once settle() returns: a wake-up by `done` then asks the broker nothing (an answer on
  // the inbox must not cost the broker a `wait` request afterwards).
  let settled = false;
  const poll = async (): Promise<Outcome | undefined> => {
    await sleep(o.askAfterMs, start.promise, reconnected.promise, done.promise);
    let backoff = BACKOFF_MS;
    for (;;) {
      if (settled) return undefined;
      const left = pollEnd - Date.now();
      if (left <= 0 || o.signal?.aborted) return undefined;
      const kicked = reconnected.promise;
      const req = d.api('wait', o.intentId, Math.min(left, SLICE_MS));
      req.catch(() => undefined); // abandoned after a reconnect or once settled: its late failure is no one's
      let reply: ApiReply | 'again' | 'done';
      try {
        reply = await Promise.race([req, kicked.then(() => 'again' as const), done.promise.then(() => 'done' as const)]);
      } catch (e) {
        if (e instanceof WritError && e.code === 'WRIT_TIMEOUT') continue; // one slice ended: ask again
        if (e instanceof WritError && o.refusalsEnd && e.code !== 'WRIT_TRANSPORT' && e.code !== 'WRIT_INTERNAL' && e.code !== 'WRIT_BUSY') throw e;
        if (d.nc.isClosed()) throw e;
        await sleep(Math.min(backoff, left), kicked, done.promise);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        continue;
      }
      if (reply === 'done') return undefined;
      if (reply === 'again') continue; // the reply to a request sent before the reconnect may be lost
      if (reply.type === 'outcome' && isFinal(reply.outcome)) return reply.outcome;
      backoff = BACKOFF_MS;
    }
  };

  let aborted: ((e: unknown) => void) | undefined;
  const abort = new Promise<never>((_, reject) => (aborted = reject));
  const onAbort = () => aborted?.(o.signal?.reason);
  if (o.signal?.aborted) onAbort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const first = await Promise.race([
      ...(direct ? [direct] : []),
      poll().then((out) => out ?? done.promise.then(() => undefined)),
      sleep(pollEnd - Date.now(), done.promise).then(() => undefined),
      abort,
    ]);
    if (first) return first;
    // Just before the deadline: the durable record once more, so the timeout can say where the intent stands.
    let last: IntentState | undefined;
    try {
      const r = await Promise.race([d.api('result', o.intentId, lastAskMs).then((reply) => ({ reply })), ...(direct ? [direct.then((out) => ({ out }))] : []), abort]);
      if ('out' in r && r.out) return r.out;
      if ('reply' in r && r.reply.type === 'outcome') return r.reply.outcome;
      if ('reply' in r && r.reply.type === 'status') last = r.reply.status;
    } catch (e) {
      if (o.signal?.aborted) throw e;
      if (o.refusalsEnd && e instanceof WritError && e.code === 'WRIT_NOT_FOUND') throw e;
    }
    if (last === 'pending') {
      return {
        v: 1,
        type: 'outcome',
        intentId: o.intentId,
        sessionId: o.sessionId,
        status: 'pending',
        at: Date.now(),
        error: { code: 'WRIT_APPROVAL_REQUIRED', message: 'the intent waits for approval' },
      };
    }
    throw new WritError(
      'WRIT_TIMEOUT',
      `no outcome for intent ${o.intentId} within ${total} ms${last ? `; it is ${last}` : ''}. Wait for it by its id (writ wait, client.wait); submitting it again under a new id could run it twice`,
      { details: { intentId: o.intentId, ...(last ? { status: last } : {}) } },
    );
  } finally {
    settled = true;
    o.signal?.removeEventListener('abort', onAbort);
    done.resolve();
    (status as { stop?: () => void }).stop?.();
  }
}
