/**
 * Publishes a vote on behalf of a chat user: the bot's own Writ token plus the approver
 * identity it mapped from the platform's signed request (`onBehalfOf`), signed with the bot's
 * own Ed25519 key. The broker accepts it only from a bot listed in `approvals.trustedBots` by
 * issuer and subject, whose listed public key verifies the signature. The broker answers on the
 * `replyTo` inbox with `{accepted, status}` or `{accepted: false, code, message}`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { inboxIdOfToken, replySubjectFor } from '../client/index.ts';
import { ApprovalDecisionSchema, voteSigningBytes, WritError, type ApprovalDecision, type Names } from '../schemas/index.ts';

/** The bot's vote-signing key from a PKCS#8 PEM (file or secret); never sent anywhere. */
export function botSigningKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', 'signingKey: not a PEM private key', { cause: e });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new WritError('WRIT_CONFIG_INVALID', "signingKey: the bot's vote key must be an Ed25519 private key");
  return key;
}

/** The raw public key (base64url) to list in the broker's `approvals.trustedBots[].publicKey`. */
export function botPublicKey(key: KeyObject): string {
  return createPublicKey(key).export({ format: 'jwk' }).x!;
}

/** A new vote-signing key pair: the private key as PKCS#8 PEM, the public key as listed in the broker's config. */
export function generateBotKey(): { privateKeyPem: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: botPublicKey(privateKey) };
}

export type DecisionAnswer = { accepted: true; status: string } | { accepted: false; code: string; message: string };

interface OnBehalfOf {
  sub: string;
  groups: string[];
  /** The platform (`slack`); the broker records `<via>:<bot sub>`. */
  via: string;
}

export interface PublishDecisionOptions {
  nc: NatsConnection;
  names: Names;
  intentId: string;
  /** The hash of the command the approver was shown (the request's `commandSha256`): the vote counts only for it. */
  commandSha256: string;
  verdict: 'approve' | 'reject';
  reason?: string;
  windowSec?: number;
  /** The bot's own Writ JWT. */
  token: string;
  /** The bot's Ed25519 key (botSigningKey): the vote is signed with it. */
  signingKey: KeyObject;
  onBehalfOf: OnBehalfOf;
  /** How long to wait for a broker's answer. Default 10 s. */
  timeoutMs?: number;
  inboxPrefix?: string;
}

const enc = new TextEncoder();

/** Resolves the broker's answer; rejects with WRIT_TIMEOUT when no broker answered (the vote may still count later). */
export async function publishDecision(o: PublishDecisionOptions): Promise<DecisionAnswer> {
  const unsigned: Omit<ApprovalDecision, 'token' | 'sig'> = {
    v: 1,
    type: 'approval.decision',
    intentId: o.intentId,
    commandSha256: o.commandSha256,
    verdict: o.verdict,
    onBehalfOf: o.onBehalfOf,
    decisionId: `d_${randomBytes(12).toString('base64url')}`,
    at: Date.now(),
    ...(o.reason ? { reason: o.reason } : {}),
    ...(o.windowSec ? { windowSec: o.windowSec } : {}),
  };
  // Signed over what the vote decides; the token only says which bot sent it.
  const sig = sign(null, voteSigningBytes(unsigned), o.signingKey).toString('base64url');
  const decision: ApprovalDecision = ApprovalDecisionSchema.parse({ ...unsigned, token: o.token, sig });
  // The broker answers only under the voter's own inbox (derived from the token's issuer and subject).
  const inbox = replySubjectFor(inboxIdOfToken(o.token), o.inboxPrefix ?? '_INBOX');
  const sub = o.nc.subscribe(inbox, { max: 1, timeout: o.timeoutMs ?? 10_000 });
  const answer = (async () => {
    for await (const m of sub) return m.json<Record<string, unknown>>();
    return undefined;
  })().catch(() => undefined);
  try {
    // Core NATS, not a stream: the vote carries the voter's token, which must never be stored.
    o.nc.publish(o.names.approvalDecision(o.intentId), enc.encode(JSON.stringify({ ...decision, replyTo: inbox })));
  } catch (e) {
    sub.unsubscribe();
    throw e;
  }
  const a = await answer;
  if (!a) throw new WritError('WRIT_TIMEOUT', 'no answer from a broker; the vote is stored and counts when a broker reads it');
  if (a.accepted === true) return { accepted: true, status: typeof a.status === 'string' ? a.status : 'pending' };
  return { accepted: false, code: typeof a.code === 'string' ? a.code : 'WRIT_INTERNAL', message: typeof a.message === 'string' ? a.message : 'refused' };
}
