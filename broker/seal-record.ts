/**
 * The part of a pending intent that decides what an approval runs (command, digest, target,
 * principal, mode, limits, masking, the approval spec and rule) is written only by the
 * broker, and signed by it: workers can write the intents bucket (every run needs its
 * compare-and-set), so a record planted or edited there (an approver group of `analysts`, a
 * `write` mode) would otherwise be trusted at vote and at dispatch. Votes and dispatch verify
 * the signature first. The votes are inside it, re-signed with each vote the broker counts: a
 * vote added by anyone else (a worker's login adding `{ sub: 'nobody' }`) made the count.
 *
 * A `dispatched` record is signed too, over what a grant is built from (identity, command
 * digest, grant spec and expiry, reply): the broker re-sends an order from a record it finds on
 * a resubmission, and one planted or edited there (state `dispatched`, a `write` grant) had it
 * sign a grant no decision made.
 *
 * Only brokers ever check these seals, so they are MACs (HMAC-SHA256), not signatures: the key
 * is derived (HKDF) from the grant-signing key, which every broker replica holds and no worker
 * does, so it rotates with that key. A MAC costs a few microseconds where an Ed25519 signature
 * cost about 50 per dispatched intent.
 */
import { createHmac, createPrivateKey, hkdfSync, timingSafeEqual } from 'node:crypto';
import { canonicalJson, WritError, type IntentRecord } from '../schemas/index.ts';

const CONTEXT = 'writ.pending.v2\n';
const DISPATCH_CONTEXT = 'writ.dispatch.v1\n';

/** What both signatures cover: the intent's identity, what it runs, and where it is answered. */
function identityOf(rec: IntentRecord): Record<string, unknown> {
  return {
    intentId: rec.intentId,
    sessionId: rec.sessionId,
    target: rec.target,
    kind: rec.kind,
    principal: rec.principal,
    commandSha256: rec.commandSha256,
    grant: rec.grant ?? null,
    reply: rec.reply ?? null,
    // The policy version a window granted on this record is bound to (approvals windowScopeOf).
    policyVersion: rec.decision?.policyVersion ?? null,
  };
}

function signedPart(rec: IntentRecord): string {
  const p = rec.pending!;
  return CONTEXT + canonicalJson({ ...identityOf(rec), rule: p.rule, spec: p.spec, expiresAt: p.expiresAt, order: p.order, votes: p.votes });
}

function dispatchPart(rec: IntentRecord): string {
  return DISPATCH_CONTEXT + canonicalJson({ ...identityOf(rec), grantId: rec.grantId ?? null, grantExp: rec.grantExp ?? null });
}

export class RecordSealer {
  readonly #key: Buffer;

  constructor(privateKeyPem: string) {
    const d = createPrivateKey(privateKeyPem).export({ format: 'jwk' }).d;
    if (!d) throw new WritError('WRIT_INTERNAL', 'the grant key has no private part');
    this.#key = Buffer.from(hkdfSync('sha256', Buffer.from(d, 'base64url'), Buffer.alloc(0), 'writ.record-seal.v1', 32));
  }

  #mac(part: string): string {
    return createHmac('sha256', this.#key).update(part).digest('base64url');
  }

  #matches(part: string, sig: string | undefined): boolean {
    if (!sig) return false;
    const want = Buffer.from(this.#mac(part), 'latin1');
    const got = Buffer.from(sig, 'latin1');
    return got.length === want.length && timingSafeEqual(got, want);
  }

  /** The record with its pending part sealed. */
  seal(rec: IntentRecord): IntentRecord {
    return { ...rec, pending: { ...rec.pending!, sig: this.#mac(signedPart(rec)) } };
  }

  /** The record with its dispatch sealed (state `dispatched`). */
  sealDispatch(rec: IntentRecord): IntentRecord {
    return { ...rec, dispatchSig: this.#mac(dispatchPart(rec)) };
  }

  /** Throws WRIT_RECORD_TAMPERED unless the record's dispatch is the broker's, unchanged. */
  checkDispatch(rec: IntentRecord): void {
    if (rec.state !== 'dispatched' || !this.#matches(dispatchPart(rec), rec.dispatchSig)) {
      throw new WritError('WRIT_RECORD_TAMPERED', 'the dispatched intent was not written by a broker, or was changed since; no order is sent');
    }
  }

  /** Throws WRIT_RECORD_TAMPERED unless the pending part is the broker's, unchanged. */
  check(rec: IntentRecord): void {
    if (!rec.pending || !this.#matches(signedPart(rec), rec.pending.sig)) {
      throw new WritError('WRIT_RECORD_TAMPERED', 'the pending intent was not written by a broker, or was changed since; nothing is approved or run');
    }
  }
}
