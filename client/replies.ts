/**
 * Reply boxes: the subjects a client's receipts and outcomes arrive on, served by one
 * wildcard subscription per client and principal inbox instead of one subscription per run.
 *
 * Each run used to subscribe twice (its outcome's inbox, and its intent's receipt through a
 * request with its own inbox) and unsubscribe twice: four protocol operations per intent, each
 * an insert into or removal from the server's subject index, and a subscription object built
 * and torn down in the agent. A box is a subject `<inboxPrefix>.<inboxId>.<client>.<box>`
 * (still under the principal's own inbox, the only kind the broker answers) whose messages
 * the client's one subscription on `<inboxPrefix>.<inboxId>.<client>.*` hands to it by its
 * last token. The subscription is made when the first box opens and ends a while after the
 * last one closes, so a client on a long-lived connection holds none while idle.
 */
import { randomBytes } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';

/** How long the subscription outlives its last box (the next run of a busy agent reuses it). */
const LINGER_MS = 5_000;

/** What a box delivers: a message, or nothing more (the box or the subscription closed, or the wait timed out). */
type BoxResult = { msg: Msg } | { closed: true } | { timedOut: true };

export interface ReplyBox {
  /** The subject to name as a reply (`reply`, `replyTo`). */
  readonly subject: string;
  /** The next message on the subject, in order; waits at most `timeoutMs` when given. */
  next(timeoutMs?: number): Promise<BoxResult>;
  /** Stops delivery to this box; a pending `next` resolves `closed`. */
  close(): void;
}

class Box implements ReplyBox {
  readonly #queue: Msg[] = [];
  #waiter: ((r: BoxResult) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    readonly subject: string,
    private readonly onClose: () => void,
  ) {}

  deliver(m: Msg): void {
    if (this.#closed) return;
    if (this.#waiter) this.#settle({ msg: m });
    else if (this.#queue.length < 64) this.#queue.push(m); // bounded: a flood on the subject is dropped, not held
  }

  next(timeoutMs?: number): Promise<BoxResult> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve({ msg: queued });
    if (this.#closed) return Promise.resolve({ closed: true });
    if (this.#waiter) return Promise.reject(new Error('a reply box has one reader'));
    return new Promise((resolve) => {
      this.#waiter = resolve;
      if (timeoutMs !== undefined) this.#timer = setTimeout(() => this.#settle({ timedOut: true }), Math.max(0, timeoutMs));
    });
  }

  /** Ends the box; the client's subscription ends with its last box. */
  close(): void {
    if (this.#closed) return;
    this.end();
    this.onClose();
  }

  /** Ends the box without telling the mux (the mux is ending it). */
  end(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#settle({ closed: true });
  }

  #settle(r: BoxResult): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    w?.(r);
  }
}

interface Route {
  sub: Subscription;
  boxes: Map<string, Box>;
  linger: NodeJS.Timeout | undefined;
}

/** One client's reply boxes, per principal inbox (a client's token function may name another principal later). */
export class ReplyMux {
  /** This client's token in its subjects: its subscription sees its own boxes only, never another client's on the connection. */
  readonly #client = randomBytes(9).toString('base64url');
  readonly #routes = new Map<string, Route>();
  readonly #lingerMs: number;

  constructor(
    private readonly nc: NatsConnection,
    opts: { lingerMs?: number } = {},
  ) {
    this.#lingerMs = opts.lingerMs ?? LINGER_MS;
  }

  /** A new box under `<inboxPrefix>.<inboxId>` (both checked by the caller). */
  open(inboxPrefix: string, inboxId: string): ReplyBox {
    const base = `${inboxPrefix}.${inboxId}.${this.#client}`;
    let route = this.#routes.get(base);
    if (!route || route.sub.isClosed()) route = this.#subscribe(base);
    clearTimeout(route.linger);
    route.linger = undefined;
    const token = randomBytes(12).toString('base64url');
    const r = route;
    const box = new Box(`${base}.${token}`, () => {
      r.boxes.delete(token);
      if (r.boxes.size === 0 && this.#routes.get(base) === r) {
        r.linger = setTimeout(() => this.#end(base, r), this.#lingerMs);
        r.linger.unref();
      }
    });
    route.boxes.set(token, box);
    return box;
  }

  #subscribe(base: string): Route {
    const boxes = new Map<string, Box>();
    const prefixLength = base.length + 1;
    const sub = this.nc.subscribe(`${base}.*`, {
      callback: (err, m) => {
        if (err) return;
        boxes.get(m.subject.slice(prefixLength))?.deliver(m);
      },
    });
    const route: Route = { sub, boxes, linger: undefined };
    this.#routes.set(base, route);
    // The subscription ends with the connection (closed, or refused by the server): every box
    // waiting on it learns so at once instead of at its timeout.
    void sub.closed.then(
      () => this.#end(base, route),
      () => this.#end(base, route),
    );
    return route;
  }

  #end(base: string, route: Route): void {
    clearTimeout(route.linger);
    if (this.#routes.get(base) === route) this.#routes.delete(base);
    if (!route.sub.isClosed()) route.sub.unsubscribe();
    for (const b of route.boxes.values()) b.end();
    route.boxes.clear();
  }
}
