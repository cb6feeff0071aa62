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
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
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
  readonly #priv: KeyObject;
  readonly #pub: KeyObject;

  constructor(privateKeyPem: string) {
    this.#priv = createPrivateKey(privateKeyPem);
    this.#pub = createPublicKey(this.#priv);
  }

  /** The record with its pending part signed. */
  seal(rec: IntentRecord): IntentRecord {
    const sig = sign(null, Buffer.from(signedPart(rec)), this.#priv).toString('base64url');
    return { ...rec, pending: { ...rec.pending!, sig } };
  }

  /** The record with its dispatch signed (state `dispatched`). */
  sealDispatch(rec: IntentRecord): IntentRecord {
    return { ...rec, dispatchSig: sign(null, Buffer.from(dispatchPart(rec)), this.#priv).toString('base64url') };
  }

  /** Throws WRIT_RECORD_TAMPERED unless the record's dispatch is the broker's, unchanged. */
  checkDispatch(rec: IntentRecord): void {
    const sig = rec.dispatchSig;
    if (rec.state !== 'dispatched' || !sig || !verify(null, Buffer.from(dispatchPart(rec)), this.#pub, Buffer.from(sig, 'base64url'))) {
      throw new WritError('WRIT_RECORD_TAMPERED', 'the dispatched intent was not written by a broker, or was changed since; no order is sent');
    }
  }

  /** Throws WRIT_RECORD_TAMPERED unless the pending part is the broker's, unchanged. */
  check(rec: IntentRecord): void {
    const sig = rec.pending?.sig;
    if (!sig || !verify(null, Buffer.from(signedPart(rec)), this.#pub, Buffer.from(sig, 'base64url'))) {
      throw new WritError('WRIT_RECORD_TAMPERED', 'the pending intent was not written by a broker, or was changed since; nothing is approved or run');
    }
  }
}
