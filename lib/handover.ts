/**
 * Orders handed from a broker to a worker of the same process (`writ up`, the benchmark's default
 * stack), without the bus. A broker offers each order it would hand over directly
 * (`writ.dispatch.<kind>.<target>`) here first; when a worker of this process serves that subject
 * and has a free place, it takes the order as it takes one from the bus: it checks the order's
 * grant, stores the claim, and answers `claimed` (or `taken`, `refused`, `retry`) once the
 * claim's fate is known. Otherwise the broker asks over the bus, and then queues the order, as
 * before.
 *
 * The order is never encoded: the worker takes its own copy of what the broker built (typed code,
 * from a parsed intent) and skips only the JSON and schema parse. Its grant is not signed
 * (schemas/grant.ts LocalGrant: made only by the signer, taken once, under the key the worker
 * trusts). Everything else it checks of an order from the bus it checks here too: expiry, and the
 * order's intent, session, target and command against the grant. The claim in `writ_claims` keeps
 * it at most once.
 *
 * What it saves is the request and its answer through nats-server (four of the 22 messages an
 * intent sends through the server, two hops of its path) and the order's encoding and parse
 * (docs/ARCHITECTURE.md, "Orders handed over in one process").
 */
import type { MsgHdrs } from '@nats-io/nats-core';
import type { LocalGrant, OrderBody } from '../schemas/index.ts';

/** A worker's answer to an order it took (as DispatchReply's types; a worker with no free place takes none). */
export type HandoverAnswer = 'claimed' | 'taken' | 'refused' | 'retry';

/** An order as the worker of this process receives it. */
export interface LocalOrder {
  readonly subject: string;
  /** The order as the broker built it, never encoded, and its grant unsigned (schemas/grant.ts LocalGrant). */
  readonly order: OrderBody;
  readonly grant: LocalGrant;
  readonly headers?: MsgHdrs | undefined;
}

/** Takes an order now (its answer, once known), or returns undefined: no free place, or stopping. */
export type OrderTaker = (order: LocalOrder) => Promise<HandoverAnswer> | undefined;

export class LocalHandover {
  readonly #takers = new Map<string, OrderTaker>();
  #offered = 0;
  #taken = 0;

  /** Serves `subject`'s orders in this process until the returned function is called. One taker per subject. */
  serve(subject: string, take: OrderTaker): () => void {
    if (this.#takers.has(subject)) throw new Error(`LocalHandover: ${subject} is served already`);
    this.#takers.set(subject, take);
    return () => {
      if (this.#takers.get(subject) === take) this.#takers.delete(subject);
    };
  }

  /** Whether a worker of this process serves `subject`. */
  serves(subject: string): boolean {
    return this.#takers.has(subject);
  }

  /** The order offered to this process's worker: its answer, or undefined when none serves `subject` or it has no free place. */
  offer(order: LocalOrder): Promise<HandoverAnswer> | undefined {
    const take = this.#takers.get(order.subject);
    if (!take) return undefined;
    this.#offered++;
    const answer = take(order);
    if (answer) this.#taken++;
    return answer;
  }

  /** Orders offered to a worker of this process, and of those the ones it took. */
  get stats(): { offered: number; taken: number } {
    return { offered: this.#offered, taken: this.#taken };
  }
}
