/**
 * Every reply a service sends on a subject someone else named (a request's reply subject, an
 * intent's `replyTo`) goes through here: the payload is size-checked against what the server
 * carries, and a reply too large becomes a coded error instead of an exception thrown out of
 * a handler. A failing publish is logged, never thrown: one agent's oversize request cannot
 * take a broker down (a thrown `respond` used to end the subscription's loop).
 *
 * No confused deputy: a reply goes out only when its subject is under the inbox of the
 * principal it answers (`inboxId`, from the verified token, or the one the broker recorded
 * in a signed grant). Anything else (`$KV.…`, `$JS.API.…`, `writ.audit.…`, another
 * principal's inbox) is not published; the caller audits the attempt. This is the only
 * function in Writ that publishes to a subject taken from a message.
 */
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { WritError } from '../schemas/index.ts';
import type { Logger } from './log.ts';
import { isReplySubjectOf, sanitizeSubject } from './seal.ts';

const enc = new TextEncoder();
/** Room for the protocol line and headers that the server counts against max_payload. */
const HEADROOM = 1024;
/** nats-server's default, used until the connection has seen the server's INFO. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** The largest body this connection's server accepts, less headroom. */
export function maxBody(nc: NatsConnection): number {
  const max = nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  return Math.max(1024, max - HEADROOM);
}

/** Encodes `body`; when it would exceed the server's max payload, `tooLarge(bytes, max)` is sent instead. */
export function encodeReply(nc: NatsConnection, body: unknown, tooLarge: (e: WritError) => unknown): Uint8Array {
  const bytes = body instanceof Uint8Array ? body : enc.encode(JSON.stringify(body));
  const max = maxBody(nc);
  if (bytes.length <= max) return bytes;
  return enc.encode(JSON.stringify(tooLarge(replyTooLarge(bytes.length, max))));
}

/** The error of a reply of `bytes` where the server carries at most `max`. */
export function replyTooLarge(bytes: number, max: number): WritError {
  return new WritError('WRIT_REPLY_TOO_LARGE', `the reply would be ${bytes} bytes; the server carries at most ${max}`, { details: { bytes, max } });
}

/**
 * Publishes a reply, size-checked; returns false when it was not sent: the subject is not
 * under `inboxId`'s inbox (refused, logged sanitised), or the publish failed (logged). The
 * caller decides the error shape of `tooLarge`, so an outcome stays an outcome. `headers`
 * (the trace context, lib/tracing.ts) go with it.
 */
export function sendReply(nc: NatsConnection, subject: string, body: unknown, tooLarge: (e: WritError) => unknown, log: Logger, inboxId: string | undefined, headers?: MsgHdrs): boolean {
  if (!inboxId || !isReplySubjectOf(subject, inboxId)) {
    log.warn({ subject: sanitizeSubject(subject) }, "reply refused: the subject is not under the requester's inbox");
    return false;
  }
  try {
    nc.publish(subject, encodeReply(nc, body, tooLarge), headers ? { headers } : undefined);
    return true;
  } catch (e) {
    log.warn({ err: e, subject: sanitizeSubject(subject) }, 'could not publish a reply');
    return false;
  }
}

export {
  inboxIdFor,
  inboxIdOfToken,
  isReplySubjectOf,
  sanitizeSubject,
  seal,
  open as openSealed,
  sealOutcome,
  sealOutcomeBody,
  outcomeBodyBytes,
  outcomeBytes,
  openOutcome,
  sealKeyPairFromSecret,
  type SealKeyPair,
} from './seal.ts';
