/**
 * Runs a handler for each message of a JetStream consumer without awaiting one before
 * taking the next (PERFORMANCE.md: 2.5-3x the throughput of a serial loop), with a
 * bound on the handlers in flight. Drains on stop: takes nothing new, waits for the rest.
 */
import { JetStreamApiCodes, JetStreamApiError, type Consumer, type ConsumerConfig, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { WritError } from '../schemas/index.ts';
import { Budgets } from './budgets.ts';
import type { Logger } from './log.ts';

export interface ConsumeLoop {
  /** Resolves when the loop has stopped and every started handler has finished. */
  readonly done: Promise<void>;
  /** Stop taking messages and wait for those in flight. */
  drain(): Promise<void>;
  readonly inFlight: number;
}

const PULL_EXPIRES_MS = 10_000;

/**
 * A limit on how many handlers run at once, shared by loops that serve the same work (a
 * worker's queued and direct orders of one target). A slot freed goes to a waiting loop before
 * anyone else can take it: a loop that must wait (a stream's, with messages pulled) is never
 * starved by one that may refuse instead (a request's, answered `busy`).
 */
export class Slots {
  #used = 0;
  readonly #waiting: Array<() => void> = [];
  constructor(readonly max: number) {}

  get used(): number {
    return this.#used;
  }

  /** A slot now, or false: none free, or a loop is already waiting for one. */
  tryTake(): boolean {
    if (this.#used >= this.max || this.#waiting.length > 0) return false;
    this.#used++;
    return true;
  }

  /** A slot, when one is free. */
  take(): Promise<void> {
    return this.tryTake() ? Promise.resolve() : new Promise<void>((r) => this.#waiting.push(r));
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#used--;
  }
}

export async function consumeConcurrently(
  consumer: Consumer,
  handler: (m: JsMsg) => Promise<void>,
  opts: {
    maxInFlight: number;
    log: Logger;
    /** A limit shared with other loops (at most `slots.max` of their handlers at once); else `maxInFlight` of this loop's. */
    slots?: Slots;
  },
): Promise<ConsumeLoop> {
  // Pulls expire after 10 s (the client's default is 30 s), so the idle heartbeat comes every
  // 5 s: a pull lost with a failed cluster member is noticed and sent again within about 10 s,
  // not 30 s, while the grants of the orders behind it run out (seen in the cluster kill tests).
  const messages: ConsumerMessages = await consumer.consume({ max_messages: Math.max(opts.maxInFlight, 16), expires: PULL_EXPIRES_MS });
  const running = new Set<Promise<void>>();
  const slots = opts.slots ?? new Slots(opts.maxInFlight);
  let stopping = false;
  const loop = (async () => {
    for await (const m of messages) {
      // A slot before it starts: this message waits (pulled, unacknowledged) while the limit is reached.
      let slot = false;
      if (!stopping) {
        await slots.take();
        slot = true;
      }
      if (stopping) {
        if (slot) slots.release();
        // Not started: leave it for another replica (or this one after restart).
        m.nak();
        continue;
      }
      const p = handler(m)
        .catch((e: unknown) => opts.log.error({ err: e }, 'handler failed'))
        .finally(() => {
          running.delete(p);
          slots.release();
        });
      running.add(p);
    }
    await Promise.allSettled([...running]);
  })();
  return {
    done: loop,
    get inFlight() {
      return running.size;
    },
    async drain() {
      stopping = true;
      await messages.close();
      await Promise.allSettled([...running]);
      await loop;
    },
  };
}

/**
 * The size of a core message's headers, read from nats.js's parsed frame without decoding them:
 * decoding grows much faster than the number of keys (one intent with 20,000 header keys held the
 * event loop for seconds), so anything taken from untrusted senders is measured before its
 * headers are read. Undefined when the client's message is not shaped so (not public API): a
 * caller then refuses the message rather than decode what it cannot measure.
 */
export function headerBytes(m: Msg): number | undefined {
  const hdr = (m as unknown as { _msg?: { hdr?: unknown } })._msg?.hdr;
  return typeof hdr === 'number' && Number.isSafeInteger(hdr) ? Math.max(0, hdr) : undefined;
}

/**
 * A request's lane in serveConcurrently: `first` for senders known good, `rest` for the others.
 * `{ first: sender }` is the first lane as one sender (a principal): the first lane's waiting
 * requests are taken in turn by sender, so one known sender's flood waits behind its own.
 */
export type Lane = 'first' | 'rest' | { readonly first: string };

export interface ServeLoop {
  /** Stop taking requests (the queue group's other members get them) and wait for those taken. */
  drain(): Promise<void>;
  readonly inFlight: number;
  /** Requests taken but not started yet (over maxInFlight). */
  readonly backlog: number;
  /** Requests dropped because the backlog was full, or past the rest lane's rate (their senders retry). */
  readonly dropped: number;
  /** Of those, requests of the rest lane dropped past its rate. */
  readonly restDropped: number;
  /** Of those, requests of the first lane dropped past their sender's rate (senderRate). */
  readonly senderDropped: number;
}

/** What one request counts for in the lanes' rate and turns: once per 64 KiB begun (parsing a large one costs as many small ones). */
const costOf = (bytes: number): number => 1 + Math.floor(bytes / 65_536);

/** One sender's waiting requests in the first lane, and the turns it has saved up (deficit round robin). */
interface SenderQueue {
  readonly waiting: Msg[];
  credit: number;
}

/**
 * Core NATS requests on `subject` in queue group `queue`, each handled without awaiting the one
 * before, at most `maxInFlight` at once. A request that arrives while that many run waits in a
 * backlog bounded by count and bytes; past either bound it is dropped unanswered (logged and
 * counted): its sender, which saw no answer, asks again. Nothing is stored here: a request is
 * either answered by its handler or left for the sender's retry, so a backlog lost with the
 * process loses nothing that was acknowledged.
 */
export function serveConcurrently(
  nc: NatsConnection,
  subject: string | readonly string[],
  queue: string,
  handler: (m: Msg) => Promise<void>,
  opts: {
    maxInFlight: number;
    maxBacklog: number;
    maxBacklogBytes: number;
    log: Logger;
    /**
     * A limit shared with other loops, besides `maxInFlight`: a request starts on arrival only
     * with a slot free, else it is dropped (or answered by onDrop). Only with no backlog.
     */
    slots?: Slots;
    /** Answers a request that is neither started nor held (instead of dropping it unanswered, which is logged). */
    onDrop?: (m: Msg) => void;
    /**
     * Which lane a request takes, judged on arrival: `first` (a sender already known good) or
     * `rest`. Requests of the rest may hold at most half the places in flight (rounded up, at
     * least one kept for the first lane when there are two) and half the backlog; a freed place
     * goes to a waiting request of the first lane before the rest. So a flood of the rest is
     * dropped before it can crowd the first lane out. Without it every request is `first`.
     *
     * Within the first lane, senders (`{ first: sender }`) take turns: a freed place goes to the
     * next sender with a request waiting, each turn worth one request (a large one needs one turn
     * per 64 KiB begun). A full backlog makes room for a sender holding fewer waiting requests
     * than another by dropping the rest's newest, then the newest of the sender holding the most.
     * Nothing is reserved: one sender alone may use every place.
     */
    lane?: (m: Msg) => Lane;
    /**
     * How many requests of the rest lane are taken a second (a burst of as many; one counts once
     * per 64 KiB it begins); past that they are dropped on arrival, at the cost of a count. The
     * lanes bound places, not time: a flood of requests that are each quick to refuse kept the
     * event loop busy for seconds. Each request of the rest also starts in a task of its own, so
     * the first lane's I/O is read in between.
     */
    restRate?: number;
    /**
     * How many requests one sender of the first lane (`{ first: sender }`) may start a second,
     * with a burst of twice as many; past that its requests are dropped on arrival and counted.
     * Turns share places among senders, not the work of the requests a sender may start: a
     * principal flooding requests that each cost a bucket read kept the event loop busy.
     */
    senderRate?: number;
  },
): ServeLoop {
  if (opts.slots && opts.maxBacklog > 0) throw new WritError('WRIT_INTERNAL', 'a request loop with a shared limit holds no backlog');
  const running = new Set<Promise<void>>();
  /** The first lane's waiting requests by sender, in the order their turns come (a sender served moves to the end). */
  const senders = new Map<string, SenderQueue>();
  /** The rest's waiting requests, oldest first. */
  const rest: Msg[] = [];
  let waitingCount = 0;
  let waitingBytes = 0;
  let restBytes = 0;
  /** Requests of the rest in flight, and the most of them at once (see `lane`). */
  let restRunning = 0;
  const restMax = opts.maxInFlight > 1 ? Math.min(Math.ceil(opts.maxInFlight / 2), opts.maxInFlight - 1) : 1;
  const restBacklog = Math.ceil(opts.maxBacklog / 2);
  const restBacklogBytes = Math.ceil(opts.maxBacklogBytes / 2);
  let dropped = 0;
  /** Of those, requests of the rest lane dropped past restRate. */
  let restDropped = 0;
  /** Of those, requests of the first lane dropped past their sender's rate. */
  let senderDropped = 0;
  let lastDropLog = 0;
  let idle: (() => void) | undefined;
  // What a waiting message holds: its body and its headers (which count against the bound too).
  const sizeOf = (m: Msg) => m.data.length + (headerBytes(m) ?? 0);
  /** The rest lane's rate (restRate), with a burst of as many. */
  const restBudget = opts.restRate === undefined ? undefined : new Budgets(opts.restRate, opts.restRate);
  const restAdmitted = (m: Msg): boolean => restBudget?.take('', costOf(sizeOf(m))) ?? true;
  /** Each sender's rate (senderRate), with a burst of twice as many. */
  const senderBudgets = opts.senderRate === undefined ? undefined : new Budgets(opts.senderRate, opts.senderRate * 2);
  const senderAdmitted = (sender: string, m: Msg): boolean => senderBudgets?.take(sender, costOf(sizeOf(m))) ?? true;
  const unwait = (m: Msg): void => {
    waitingCount--;
    waitingBytes -= sizeOf(m);
  };
  /**
   * The first lane's next request: deficit round robin over senders. The sender whose turn it is
   * takes its oldest request when its saved turns cover that request's cost, else saves one more
   * turn and goes to the end. Ends: every pass adds a turn to each sender, and a cost is bounded.
   */
  const nextFirst = (): Msg | undefined => {
    for (;;) {
      const it = senders.entries().next();
      if (it.done) return undefined;
      const [sender, q] = it.value;
      const head = q.waiting[0]!;
      const cost = costOf(sizeOf(head));
      if (q.credit >= cost) {
        q.waiting.shift();
        q.credit -= cost;
        if (q.waiting.length === 0) senders.delete(sender);
        unwait(head);
        return head;
      }
      q.credit += 1;
      senders.delete(sender);
      senders.set(sender, q);
    }
  };
  /** Drops the newest waiting request of whoever holds more than `sender` would (the rest first); false when no one does. */
  const evictFor = (sender: string): boolean => {
    const own = senders.get(sender)?.waiting.length ?? 0;
    let victim: Msg | undefined;
    if (rest.length > 0) {
      victim = rest.pop()!;
      restBytes -= sizeOf(victim);
    } else {
      let most: SenderQueue | undefined;
      let mostKey = '';
      for (const [k, q] of senders) {
        if (q.waiting.length > (most?.waiting.length ?? own + 1)) {
          most = q;
          mostKey = k;
        }
      }
      if (!most) return false;
      victim = most.waiting.pop()!;
      if (most.waiting.length === 0) senders.delete(mostKey);
    }
    unwait(victim);
    drop(victim);
    return true;
  };
  const drop = (m: Msg): void => {
    dropped++;
    if (opts.onDrop) return opts.onDrop(m);
    const now = Date.now();
    if (now - lastDropLog > 5_000) {
      lastDropLog = now;
      opts.log.warn({ subject, dropped, backlog: waitingCount, backlogBytes: waitingBytes }, 'request backlog full: dropping requests unanswered (their senders retry)');
    }
  };
  const start = (m: Msg, isRest: boolean): void => {
    if (isRest) restRunning++;
    // The rest start in a task of their own: their place is taken now, their work after pending I/O.
    const p = (isRest ? new Promise<void>((r) => setImmediate(r)).then(() => handler(m)) : handler(m))
      .catch((e: unknown) => opts.log.error({ err: e }, 'handler failed'))
      .finally(() => {
        running.delete(p);
        if (isRest) restRunning--;
        opts.slots?.release();
        const first = nextFirst();
        if (first) return start(first, false);
        if (rest.length > 0 && restRunning < restMax) {
          const n = rest.shift()!;
          restBytes -= sizeOf(n);
          unwait(n);
          return start(n, true);
        }
        if (running.size === 0) idle?.();
      });
    running.add(p);
  };
  const callback = (err: Error | null, m: Msg): void => {
    if (err) {
      opts.log.error({ err, subject }, 'request subscription failed');
      return;
    }
    const lane = opts.lane?.(m) ?? 'first';
    const isRest = lane === 'rest';
    if (isRest && !restAdmitted(m)) {
      dropped++;
      restDropped++;
      return;
    }
    if (!isRest && !senderAdmitted(typeof lane === 'object' ? lane.first : '', m)) {
      dropped++;
      senderDropped++;
      return;
    }
    if (running.size < opts.maxInFlight && (!isRest || restRunning < restMax) && (opts.slots?.tryTake() ?? true)) return start(m, isRest);
    const size = sizeOf(m);
    if (isRest) {
      if (waitingCount >= opts.maxBacklog || waitingBytes + size > opts.maxBacklogBytes || rest.length >= restBacklog || restBytes + size > restBacklogBytes) return drop(m);
      rest.push(m);
      restBytes += size;
    } else {
      const sender = typeof lane === 'object' ? lane.first : '';
      if (size > opts.maxBacklogBytes) return drop(m);
      while (waitingCount >= opts.maxBacklog || waitingBytes + size > opts.maxBacklogBytes) if (!evictFor(sender)) return drop(m);
      const q = senders.get(sender);
      // A sender new to the queue gets its first turn at once.
      if (q) q.waiting.push(m);
      else senders.set(sender, { waiting: [m], credit: 1 });
    }
    waitingCount++;
    waitingBytes += size;
  };
  const subs: Subscription[] = (typeof subject === 'string' ? [subject] : subject).map((sj) => nc.subscribe(sj, { queue, callback }));
  return {
    get inFlight() {
      return running.size;
    },
    get backlog() {
      return waitingCount;
    },
    get dropped() {
      return dropped;
    },
    get restDropped() {
      return restDropped;
    },
    get senderDropped() {
      return senderDropped;
    },
    async drain() {
      await Promise.all(subs.map((sub) => sub.drain().catch(() => undefined)));
      if (running.size === 0 && waitingCount === 0) return;
      await new Promise<void>((r) => (idle = r));
    },
  };
}

/** Consumer settings a running service may change in place (the server allows updating these). */
const UPDATABLE = ['ack_wait', 'max_ack_pending', 'max_deliver', 'description'] as const;
/** Settings that make another consumer: a durable created with other values is refused, never reused. */
const FIXED = ['filter_subject', 'deliver_policy', 'ack_policy'] as const;

/**
 * Creates a durable consumer, or finds the one that exists. "Exists" is told from "differs"
 * by reading the consumer first, never by an error message's text (and nats-server would
 * otherwise quietly rewrite an existing durable with an add): one that differs only in an
 * updatable setting is updated to the asked values; one whose filter, deliver or ack policy
 * differs is a configuration error (another deployment's consumer under the same name).
 */
export async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
  const info = await jsm.consumers.info(stream, cfg.durable_name).catch((e: unknown) => {
    if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound) return undefined;
    throw e;
  });
  if (!info) {
    // Two replicas starting together both create it: an identical add is accepted by the server.
    await jsm.consumers.add(stream, cfg);
    return;
  }
  const have = info.config as Partial<ConsumerConfig>;
  const fixed = FIXED.filter((k) => cfg[k] !== undefined && have[k] !== cfg[k]);
  if (fixed.length) throw new WritError('WRIT_CONFIG_INVALID', `consumer ${cfg.durable_name} on ${stream} exists with another ${fixed.join(', ')}`);
  const changed = UPDATABLE.filter((k) => cfg[k] !== undefined && have[k] !== cfg[k]);
  if (changed.length) await jsm.consumers.update(stream, cfg.durable_name, Object.fromEntries(changed.map((k) => [k, cfg[k]])));
}
