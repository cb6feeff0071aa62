/**
 * A NATS connection whose `request` calls pass through `before` first: the fault tests use it
 * to stall or fail one service's requests on chosen subjects (a record write, an order, a claim)
 * while everything else on the connection works as it does.
 */
import type { NatsConnection } from '@nats-io/transport-node';

/** `before(subject)` runs ahead of each request; it may wait, or throw to fail the request. */
export function interceptRequests(nc: NatsConnection, before: (subject: string, data: unknown) => void | Promise<void>): NatsConnection {
  return new Proxy(nc, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === 'request') {
        return async (subject: string, ...rest: unknown[]) => {
          await before(subject, rest[0]);
          return (target.request as (...x: unknown[]) => unknown)(subject, ...rest);
        };
      }
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
}
