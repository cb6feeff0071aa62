/**
 * Runs a handler for each message of a JetStream consumer without awaiting one before
 * taking the next (PERFORMANCE.md: 2.5-3x the throughput of a serial loop), with a
 * bound on the handlers in flight. Drains on stop: takes nothing new, waits for the rest.
 */
import { JetStreamApiCodes, JetStreamApiError, type Consumer, type ConsumerConfig, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
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

export async function consumeConcurrently(consumer: Consumer, handler: (m: JsMsg) => Promise<void>, opts: { maxInFlight: number; log: Logger }): Promise<ConsumeLoop> {
  // Pulls expire after 10 s (the client's default is 30 s), so the idle heartbeat comes every
  // 5 s: a pull lost with a failed cluster member is noticed and sent again within about 10 s,
  // not 30 s, while the grants of the orders behind it run out (seen in the cluster kill tests).
  const messages: ConsumerMessages = await consumer.consume({ max_messages: Math.max(opts.maxInFlight, 16), expires: PULL_EXPIRES_MS });
  const running = new Set<Promise<void>>();
  let slot: (() => void) | undefined;
  let stopping = false;
  const loop = (async () => {
    for await (const m of messages) {
      if (stopping) {
        // Not started: leave it for another replica (or this one after restart).
        m.nak();
        continue;
      }
      const p = handler(m)
        .catch((e: unknown) => opts.log.error({ err: e }, 'handler failed'))
        .finally(() => {
          running.delete(p);
          slot?.();
        });
      running.add(p);
      while (running.size >= opts.maxInFlight) await new Promise<void>((r) => (slot = r));
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
