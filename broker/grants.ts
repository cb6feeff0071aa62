/**
 * The one place grant claims are built. Every order for an intent (first dispatch, a re-sent
 * order after a failed publish, an approved dispatch) signs claims built here from the
 * GrantSpec stored in the intent's record when the decision was made, so a re-sent order can
 * never lose its masking or pick up other limits from a policy that changed meanwhile.
 */
import { WritError, type GrantClaims, type GrantSpec, type IntentRecord } from '../schemas/index.ts';
import { inboxIdFor } from '../lib/seal.ts';
import type { PolicyDecision } from './policy.ts';

/** What a decision grants; `mask` is always explicit (`{}` when the policy masks nothing). */
export function grantSpecOf(d: Pick<PolicyDecision, 'mode' | 'limits' | 'masking'>): GrantSpec {
  return { mode: d.mode, limits: d.limits, mask: d.masking ?? {} };
}

/**
 * Claims for the record's grant. `exp` defaults to now + ttl; a re-sent order passes the
 * first grant's expiry so re-sending never extends it. A record without a GrantSpec (never
 * decided to run) cannot be granted: that is an internal error, not a default.
 */
export function buildGrantClaims(rec: IntentRecord, o: { nowSec: number; ttlSec: number; exp?: number; policyVersion: string; storeKey?: string }): GrantClaims {
  const g = rec.grant;
  if (!g) throw new WritError('WRIT_INTERNAL', `intent ${rec.intentId} has no recorded grant`);
  return {
    gid: rec.grantId ?? rec.intentId,
    iid: rec.intentId,
    sid: rec.sessionId,
    tgt: rec.target,
    kind: rec.kind,
    mode: g.mode,
    sha256: rec.commandSha256,
    iat: o.nowSec,
    exp: o.exp ?? o.nowSec + o.ttlSec,
    limits: g.limits,
    mask: g.mask,
    policyVersion: rec.decision?.policyVersion ?? o.policyVersion,
    sub: rec.principal.sub,
    // Where the worker may answer, as the broker validated it (signed, so an order cannot redirect it).
    // The inbox is the principal's own, recomputed here, whatever the stored record says.
    ...(rec.reply ? { rpl: { inbox: inboxIdFor(rec.principal.iss, rec.principal.sub), key: rec.reply.key } } : {}),
    ...(o.storeKey ? { stk: o.storeKey } : {}),
  };
}
