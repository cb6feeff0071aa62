/**
 * The audit stream: one subject per session under `<prefix>.audit.>`, file storage,
 * nothing deletable through the API. Immutability also needs permissions (a whole
 * stream can be deleted despite deny_delete): see deploy/nats/.
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { WritError, type Names } from '../schemas/index.ts';

export interface AuditStreamOptions {
  /** Stream replicas (1, 3 or 5 on a cluster). Default 1. */
  replicas?: number | undefined;
  /** Retention by age in seconds. Default: unset, events are kept forever. */
  maxAgeSec?: number | undefined;
}

/** Window in which a re-sent block (same `Nats-Msg-Id`) is recognized as already stored. */
const DUPLICATE_WINDOW_MS = 120_000;

export function auditStreamConfig(n: Names, opts: AuditStreamOptions = {}): Partial<StreamConfig> & { name: string } {
  const replicas = opts.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new WritError('WRIT_CONFIG_INVALID', `audit.replicas must be an integer 1-5, got ${replicas}`);
  if (opts.maxAgeSec !== undefined && (!Number.isInteger(opts.maxAgeSec) || opts.maxAgeSec <= 0)) {
    throw new WritError('WRIT_CONFIG_INVALID', `audit.maxAgeSec must be a positive integer, got ${opts.maxAgeSec}`);
  }
  return {
    name: n.streams.audit,
    subjects: [n.auditAll()],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    deny_delete: true,
    deny_purge: true,
    // A rollup header would let one publish erase a session's history.
    allow_rollup_hdrs: false,
    // Direct get lets auditors read single messages without a consumer (permissions allow it).
    allow_direct: true,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    num_replicas: replicas,
    ...(opts.maxAgeSec !== undefined ? { max_age: nanos(opts.maxAgeSec * 1000) } : {}),
  };
}

/** Fields ensureAuditStream keeps in line; anything else on the stream is left as found. */
const MANAGED = ['subjects', 'storage', 'retention', 'discard', 'deny_delete', 'deny_purge', 'allow_rollup_hdrs', 'allow_direct', 'num_replicas', 'max_age'] as const;

/**
 * Creates the audit stream, or brings the managed fields of an existing one in line.
 * Idempotent: an equal stream is not touched, so a broker whose NATS user may not update
 * the audit stream (deploy/nats) starts fine as long as the operator provisioned it.
 */
export async function ensureAuditStream(jsm: JetStreamManager, n: Names, opts: AuditStreamOptions = {}): Promise<StreamInfo> {
  const want = auditStreamConfig(n, opts);
  let info = await streamInfo(jsm, want.name);
  if (!info) {
    try {
      return await jsm.streams.add(want);
    } catch (e) {
      info = await streamInfo(jsm, want.name); // created meanwhile by another replica
      if (!info) throw e;
    }
  }
  const drift = MANAGED.filter((k) => !sameValue(k, info.config[k], want[k]));
  if (drift.length === 0) return info;
  try {
    return await jsm.streams.update(want.name, { ...info.config, ...want, ...(opts.maxAgeSec === undefined ? { max_age: 0 } : {}) });
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `audit stream ${want.name} differs in ${drift.join(', ')} and could not be updated (an operator must update it): ${(e as Error).message}`, { cause: e });
  }
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (e) {
    if ((e as { name?: string }).name === 'StreamNotFoundError') return undefined;
    throw e;
  }
}

function sameValue(key: (typeof MANAGED)[number], have: unknown, want: unknown): boolean {
  if (key === 'max_age') return Number(have ?? 0) === Number(want ?? 0);
  if (key === 'allow_rollup_hdrs' || key === 'deny_delete' || key === 'deny_purge' || key === 'allow_direct') return Boolean(have) === Boolean(want);
  if (Array.isArray(have) && Array.isArray(want)) return have.length === want.length && have.every((v, i) => v === want[i]);
  return have === want;
}
