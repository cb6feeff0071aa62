/**
 * Runs a handler for each message of a JetStream consumer without awaiting one before
 * taking the next (PERFORMANCE.md: 2.5-3x the throughput of a serial loop), with a
 * bound on the handlers in flight. Drains on stop: takes nothing new, waits for the rest.
 */
import { JetStreamApiCodes, JetStreamApiError, type Consumer, type ConsumerConfig, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { WritError } from '../schemas/index.ts';
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

/** A request's lane in serveConcurrently: `first` for senders known good, `rest` for the others. */
export type Lane = 'first' | 'rest';

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
  subject: string,
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
  },
): ServeLoop {
  if (opts.slots && opts.maxBacklog > 0) throw new WritError('WRIT_INTERNAL', 'a request loop with a shared limit holds no backlog');
  const running = new Set<Promise<void>>();
  /** Waiting requests by lane: the first lane's are started first. */
  const backlog: [Msg[], Msg[]] = [[], []];
  const waitingBytes: [number, number] = [0, 0];
  /** Requests of the rest in flight, and the most of them at once (see `lane`). */
  let restRunning = 0;
  const restMax = opts.maxInFlight > 1 ? Math.min(Math.ceil(opts.maxInFlight / 2), opts.maxInFlight - 1) : 1;
  const restBacklog = Math.ceil(opts.maxBacklog / 2);
  const restBytes = Math.ceil(opts.maxBacklogBytes / 2);
  let dropped = 0;
  /** Of those, requests of the rest lane dropped past restRate. */
  let restDropped = 0;
  let lastDropLog = 0;
  let idle: (() => void) | undefined;
  // What a waiting message holds: its body and its headers (which count against the bound too).
  const sizeOf = (m: Msg) => m.data.length + (headerBytes(m) ?? 0);
  let restTokens = opts.restRate ?? Number.POSITIVE_INFINITY;
  let restRefilled = Date.now();
  // A request counts once per 64 KiB begun: parsing a large one costs as many small ones.
  const restAdmitted = (m: Msg): boolean => {
    if (opts.restRate === undefined) return true;
    const now = Date.now();
    restTokens = Math.min(opts.restRate, restTokens + ((now - restRefilled) * opts.restRate) / 1000);
    restRefilled = now;
    const cost = 1 + Math.floor(sizeOf(m) / 65_536);
    if (restTokens < cost) return false;
    restTokens -= cost;
    return true;
  };
  const start = (m: Msg, lane: Lane): void => {
    if (lane === 'rest') restRunning++;
    // The rest start in a task of their own: their place is taken now, their work after pending I/O.
    const p = (lane === 'rest' ? new Promise<void>((r) => setImmediate(r)).then(() => handler(m)) : handler(m))
      .catch((e: unknown) => opts.log.error({ err: e }, 'handler failed'))
      .finally(() => {
        running.delete(p);
        if (lane === 'rest') restRunning--;
        opts.slots?.release();
        const next = backlog[0].length > 0 ? 0 : backlog[1].length > 0 && restRunning < restMax ? 1 : undefined;
        if (next !== undefined) {
          const n = backlog[next].shift()!;
          waitingBytes[next] -= sizeOf(n);
          start(n, next === 0 ? 'first' : 'rest');
        } else if (running.size === 0) idle?.();
      });
    running.add(p);
  };
  const sub: Subscription = nc.subscribe(subject, {
    queue,
    callback: (err, m) => {
      if (err) {
        opts.log.error({ err, subject }, 'request subscription failed');
        return;
      }
      const lane = opts.lane?.(m) ?? 'first';
      const i: 0 | 1 = lane === 'first' ? 0 : 1;
      if (lane === 'rest' && !restAdmitted(m)) {
        dropped++;
        restDropped++;
        return;
      }
      if (running.size < opts.maxInFlight && (lane === 'first' || restRunning < restMax) && (opts.slots?.tryTake() ?? true)) return start(m, lane);
      const size = sizeOf(m);
      const waiting = backlog[0].length + backlog[1].length;
      const full =
        waiting >= opts.maxBacklog || waitingBytes[0] + waitingBytes[1] + size > opts.maxBacklogBytes || (lane === 'rest' && (backlog[1].length >= restBacklog || waitingBytes[1] + size > restBytes));
      if (full) {
        dropped++;
        if (opts.onDrop) return opts.onDrop(m);
        const now = Date.now();
        if (now - lastDropLog > 5_000) {
          lastDropLog = now;
          opts.log.warn(
            { subject, dropped, backlog: backlog[0].length + backlog[1].length, backlogBytes: waitingBytes[0] + waitingBytes[1] },
            'request backlog full: dropping requests unanswered (their senders retry)',
          );
        }
        return;
      }
      backlog[i].push(m);
      waitingBytes[i] += size;
    },
  });
  return {
    get inFlight() {
      return running.size;
    },
    get backlog() {
      return backlog[0].length + backlog[1].length;
    },
    get dropped() {
      return dropped;
    },
    get restDropped() {
      return restDropped;
    },
    async drain() {
      await sub.drain().catch(() => undefined);
      if (running.size === 0 && backlog[0].length + backlog[1].length === 0) return;
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
