/**
 * Slack's request signing: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>">`
 * keyed with the app's signing secret, and `X-Slack-Request-Timestamp` in epoch seconds.
 * A request older (or newer) than five minutes is refused so a captured one cannot be replayed.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const SLACK_MAX_SKEW_SEC = 300;

/** The `X-Slack-Signature` value Slack computes for `body` at `timestamp`. */
export function slackSignature(secret: string, timestamp: string, body: string | Buffer): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:`).update(body).digest('hex')}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: 'missing' | 'stale' | 'mismatch' };

export function verifySlackSignature(o: {
  secret: string;
  timestamp: string | undefined;
  signature: string | undefined;
  body: Buffer;
  /** Epoch ms; for tests. */
  now?: number;
}): SignatureCheck {
  if (!o.timestamp || !o.signature || !/^\d{1,12}$/.test(o.timestamp)) return { ok: false, reason: 'missing' };
  const age = Math.abs((o.now ?? Date.now()) / 1000 - Number(o.timestamp));
  if (age > SLACK_MAX_SKEW_SEC) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(slackSignature(o.secret, o.timestamp, o.body));
  const given = Buffer.from(o.signature);
  // The expected length is public (v0= and 64 hex digits); only the content needs a constant-time compare.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'mismatch' };
  return { ok: true };
}
