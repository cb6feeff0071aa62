/**
 * The log checked against what ran (`verify --against-state`): a chain can be intact and
 * still lack events that were never written. Every intent record in the intents bucket and
 * every claim in the claims bucket implies events in its session's chain; each one missing
 * is a finding, with the intent, its session and its state.
 *
 * What each state implies follows what the broker, the workers and the sweeper write:
 * - every record: intent.received (the broker records nothing it has not received);
 * - denied: intent.denied; pending and every end of an approval: approval.requested, and
 *   approval.rejected / approval.expired / approval.cancelled for those ends;
 * - dispatched, running, succeeded, failed, unknown: intent.dispatched;
 * - a claim: exec.claimed, or exec.lost (the sweeper's event carries the claim when the
 *   worker died before writing its own);
 * - succeeded: exec.finished; failed: exec.finished, or exec.expired when nothing claimed it;
 *   unknown: exec.lost or exec.finished (a worker that lost its connection during COMMIT);
 * - succeeded and unknown need a claim in the claims bucket (nothing runs unclaimed).
 *
 * No Writ service ever deletes a record or a claim (both buckets keep one value per key and
 * no age limit): a delete or purge marker in either is a finding of its own, since a worker's
 * login may publish one and would otherwise take the key out of this check. So is a record
 * stored under a key other than its own intent id (a copy of another intent's record).
 *
 * State is read before the log, so evidence written meanwhile is seen; records changed (and
 * claims taken) within `graceMs` of the start are skipped and counted, since their events may
 * still be on their way. Records older than the retained part of the stream (max_age) are
 * skipped too.
 */
import { DeliverPolicy, type JetStreamClient } from '@nats-io/jetstream';
import { WritError, type Names } from '../schemas/index.ts';
import type { MissingEvidence, StateCheckResult } from './types.ts';

const BIT: Readonly<Record<string, number>> = {
  'intent.received': 1,
  'intent.dispatched': 2,
  'intent.denied': 4,
  'approval.requested': 8,
  'approval.rejected': 16,
  'approval.expired': 32,
  'approval.cancelled': 64,
  'exec.claimed': 128,
  'exec.finished': 256,
  'exec.lost': 512,
  'exec.expired': 1024,
  /** A vote the broker counted (block-check.mjs marks the others). */
  'approval.vote': 2048,
};
const RAN = new Set(['dispatched', 'running', 'succeeded', 'failed', 'unknown']);
const APPROVAL_ENDS: Readonly<Record<string, string>> = { rejected: 'approval.rejected', expired: 'approval.expired', cancelled: 'approval.cancelled' };
/** Findings kept in full; beyond it only counted. */
const MAX_FINDINGS = 1000;
/** A claim is not in the claims bucket: not an event type, so it has no bit. */
const NO_CLAIM = 'a claim in the claims bucket';

interface Rec {
  sessionId: string;
  state: string;
  createdAt: number;
  updatedAt: number;
  grantId: string;
  claimAt?: number | undefined;
  claimed: boolean;
  seen: number;
}

export interface StateCheckOptions {
  sessionId?: string | undefined;
  /** Records changed (claims taken) this recently are not checked, ms. Default 60 000. */
  graceMs?: number | undefined;
}

export class StateCheck {
  readonly #records = new Map<string, Rec>();
  readonly #findings: MissingEvidence[] = [];
  #missing = 0;
  #claims = 0;
  readonly #startedAt = Date.now();

  private constructor(readonly opts: StateCheckOptions) {}

  /** Reads both buckets (current values only). Throws when either does not exist. */
  static async load(js: JetStreamClient, n: Names, opts: StateCheckOptions): Promise<StateCheck> {
    const c = new StateCheck(opts);
    const byGrant = new Map<string, string>();
    // A deleted key's session is unknown: only a check of the whole log reports it.
    const deleted = (what: string) => (key: string) => {
      if (opts.sessionId === undefined) c.#find({ intentId: key, sessionId: '?', state: 'deleted', missing: [`the ${what} (a delete marker stands in its place; no Writ service deletes one)`] });
    };
    await readBucket(
      js,
      n.buckets.intents,
      (key, data) => {
        let r: Record<string, unknown>;
        try {
          r = JSON.parse(data) as Record<string, unknown>;
        } catch {
          return c.#find({ intentId: key, sessionId: '?', state: '?', missing: ['a readable intent record'] });
        }
        const sessionId = typeof r['sessionId'] === 'string' ? r['sessionId'] : '?';
        if (opts.sessionId !== undefined && sessionId !== opts.sessionId) return;
        if (r['intentId'] !== key)
          return c.#find({ intentId: key, sessionId, state: '?', missing: [`a record of this intent (the one stored here is of ${JSON.stringify(String(r['intentId']).slice(0, 64))})`] });
        const state = typeof r['state'] === 'string' ? r['state'] : '?';
        const grantId = typeof r['grantId'] === 'string' ? r['grantId'] : key;
        c.#records.set(key, { sessionId, state, createdAt: num(r['createdAt']), updatedAt: num(r['updatedAt']), grantId, claimed: false, seen: 0 });
        byGrant.set(grantId, key);
      },
      deleted('intent record'),
    );
    await readBucket(
      js,
      n.buckets.claims,
      (key, data) => {
        let claim: { iid?: unknown; at?: unknown } = {};
        try {
          claim = JSON.parse(data) as typeof claim;
        } catch {
          /* an unreadable claim still claims */
        }
        const intentId = byGrant.get(key) ?? (typeof claim.iid === 'string' ? claim.iid : key);
        const rec = c.#records.get(intentId);
        if (rec) {
          c.#claims++;
          rec.claimed = true;
          rec.claimAt = num(claim.at);
        } else if (opts.sessionId === undefined) {
          // Something was claimed (so may have run) for an intent the broker has no record of.
          c.#claims++;
          c.#find({ intentId, sessionId: '?', state: 'claimed', missing: ['an intent record for this claim'] });
        }
      },
      deleted('claim'),
    );
    return c;
  }

  /** Evidence from one block: flat [intentId, type] pairs of events in session `sessionId`. */
  note(sessionId: string, evidence: readonly string[]): void {
    for (let i = 0; i < evidence.length; i += 2) {
      const rec = this.#records.get(evidence[i]!);
      // Only the intent's own session counts: an event elsewhere is not this chain's evidence.
      if (rec && rec.sessionId === sessionId) rec.seen |= BIT[evidence[i + 1]!] ?? 0;
    }
  }

  /** The findings, once the log has been read; `retainedFrom`: time of the oldest retained message when the stream aged out. */
  result(retainedFrom: number | undefined): StateCheckResult {
    const grace = this.opts.graceMs ?? 60_000;
    const cutoff = this.#startedAt - grace;
    let checked = 0;
    let recent = 0;
    let agedOut = 0;
    for (const [intentId, r] of this.#records) {
      if (r.updatedAt > cutoff || (r.claimAt !== undefined && r.claimAt > cutoff)) {
        recent++;
        continue;
      }
      if (retainedFrom !== undefined && r.createdAt < retainedFrom) {
        agedOut++;
        continue;
      }
      checked++;
      const missing = missingFor(r);
      if (missing.length > 0) this.#find({ intentId, sessionId: r.sessionId, state: r.state, ...(r.claimed ? { claimed: true } : {}), missing });
    }
    return { records: this.#records.size, claims: this.#claims, checked, recent, agedOut, missing: this.#missing, findings: this.#findings };
  }

  #find(f: MissingEvidence): void {
    this.#missing++;
    if (this.#findings.length < MAX_FINDINGS) this.#findings.push(f);
  }
}

/** What the record's state and claim imply and the chain lacks; each entry names the events any one of which would do. */
function missingFor(r: Rec): string[] {
  const need: string[][] = [['intent.received']];
  if (r.state === 'denied') need.push(['intent.denied']);
  if (r.state === 'pending' || r.state in APPROVAL_ENDS) need.push(['approval.requested']);
  if (r.state in APPROVAL_ENDS) need.push([APPROVAL_ENDS[r.state]!]);
  if (RAN.has(r.state)) need.push(['intent.dispatched']);
  // An intent that asked for approval and then ran was approved: a dispatch with no counted vote
  // in the chain is a record someone else moved on (a worker's login can write the bucket).
  if (RAN.has(r.state) && (r.seen & BIT['approval.requested']!) !== 0) need.push(['approval.vote']);
  if (r.claimed) need.push(['exec.claimed', 'exec.lost']);
  if (r.state === 'succeeded') need.push(['exec.finished']);
  if (r.state === 'failed') need.push(r.claimed ? ['exec.finished'] : ['exec.finished', 'exec.expired']);
  if (r.state === 'unknown') need.push(['exec.lost', 'exec.finished']);
  if (!RAN.has(r.state) && !(r.state in APPROVAL_ENDS) && r.state !== 'denied' && r.state !== 'pending') need.push(['a known intent state']);
  const out = need.filter((any) => !any.some((t) => (r.seen & (BIT[t] ?? 0)) !== 0)).map((any) => any.join(' or '));
  if (!r.claimed && (r.state === 'succeeded' || r.state === 'unknown')) out.push(NO_CLAIM);
  return out;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/**
 * The current value of every key of a KV bucket, read through one ordered consumer on its
 * stream (last message per subject): one pass, no request per key. A key whose last message is
 * a delete or purge marker goes to `onDeleted`.
 */
async function readBucket(js: JetStreamClient, bucket: string, onEntry: (key: string, data: string) => void, onDeleted: (key: string) => void): Promise<void> {
  const stream = `KV_${bucket}`;
  const prefix = `$KV.${bucket}.`;
  let c;
  try {
    c = await js.consumers.get(stream, { filter_subjects: `${prefix}>`, deliver_policy: DeliverPolicy.LastPerSubject });
  } catch (e) {
    throw new WritError(
      'WRIT_CONFIG_INVALID',
      `verify against state: the ${bucket} bucket could not be read (${(e as Error).message}); without the broker's state, run verify with --no-against-state`,
      { cause: e },
    );
  }
  if ((await c.info(true)).num_pending === 0) {
    await c.delete().catch(() => undefined);
    return;
  }
  const decoder = new TextDecoder();
  let failure: unknown;
  const msgs = await c.consume({
    max_messages: 1024,
    callback: (m) => {
      const op = m.headers?.get('KV-Operation');
      try {
        if (op === 'DEL' || op === 'PURGE') onDeleted(m.subject.slice(prefix.length));
        else onEntry(m.subject.slice(prefix.length), decoder.decode(m.data));
      } catch (e) {
        failure ??= e;
      }
      if (m.info.pending === 0) void msgs.stop();
    },
  });
  await msgs.closed();
  if (failure !== undefined) throw failure;
}
