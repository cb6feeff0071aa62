/**
 * Creates or updates, idempotently, the streams and buckets of the design. Every
 * broker replica runs it at start; concurrent runs converge on the same config.
 */
import { JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ensureAuditStream } from '../audit/index.ts';
import { approverTokenLifeSec, WritError, type Config, type Names } from '../schemas/index.ts';

const NS = 1_000_000_000;

function streamConfigs(n: Names, config: Config): (Partial<StreamConfig> & { name: string })[] {
  const replicas = config.nats.replicas;
  return [
    {
      name: n.streams.exec,
      subjects: [n.execAll()],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: 120 * NS,
      max_age: 3600 * NS,
      num_replicas: replicas,
    },
    {
      // Approval requests, decisions and outcomes: kept by age, for bots, the CLI and the record.
      name: n.streams.approvals,
      // Requests and outcomes only: votes carry tokens and are never stored (broker/approvals.ts).
      subjects: [n.approvalRequestAll(), n.approvalOutcomeAll()],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      duplicate_window: 120 * NS,
      max_age: 7 * 86_400 * NS,
      num_replicas: replicas,
    },
  ];
}

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.add(cfg);
  } catch (e) {
    // Exists with another config: update it in place (same name, new limits).
    if (/already in use|already exists/i.test(String((e as Error).message))) await jsm.streams.update(cfg.name, cfg);
    else throw e;
  }
}

export interface Buckets {
  intents: KV;
  claims: KV;
  policy: KV;
  windows: KV;
  sessions: KV;
  /** Approver tokens spent on a vote: each entry outlives the token it names (see provision). */
  voteTokens: KV;
}

/**
 * The first nats-server release whose replicated streams refuse a second publish carrying the
 * same Nats-Expected-Last-Subject-Sequence (nats-server#4320, fixed by #4319 in 2.9.21). Before
 * it, the check ran on the leader before the Raft proposal only, so concurrent publishes all
 * passed it (test/faults/cluster.test.ts measures this on the installed server).
 */
const SERIALIZED_SUBJECT_SEQUENCE_SINCE = '2.9.21';

/** Whether a nats-server of this version serializes expected-last-subject-sequence on R>1 streams; unknown is no. */
export function serializesSubjectSequence(version: string | undefined): boolean {
  const have = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version ?? '');
  if (!have) return false;
  const want = SERIALIZED_SUBJECT_SEQUENCE_SINCE.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = Number(have[i + 1]) - want[i]!;
    if (d !== 0) return d > 0;
  }
  return true;
}

export async function provision(nc: NatsConnection, jsm: JetStreamManager, n: Names, config: Config): Promise<Buckets> {
  const auditReplicas = config.audit.replicas ?? config.nats.replicas;
  // The audit chain stays linear only because the stream refuses a block chained on a stale
  // head: on a replicated audit stream of an older server, two writers fork a session silently.
  if (auditReplicas > 1 && !serializesSubjectSequence(nc.info?.version)) {
    throw new WritError(
      'WRIT_CONFIG_INVALID',
      `audit.replicas is ${auditReplicas} (from ${config.audit.replicas === undefined ? 'nats.replicas' : 'audit.replicas'}), but nats-server ${nc.info?.version ?? '(version unknown)'} ` +
        `does not serialize Nats-Expected-Last-Subject-Sequence on a replicated stream (fixed in ${SERIALIZED_SUBJECT_SEQUENCE_SINCE}, nats-server#4320): ` +
        "concurrent audit writers would fork a session's chain. Run nats-server 2.9.21 or later, or set audit.replicas: 1",
    );
  }
  await retireIntentsStream(jsm, n);
  for (const cfg of streamConfigs(n, config)) await ensureStream(jsm, cfg);
  await ensureAuditStream(jsm, n, { replicas: auditReplicas, maxAgeSec: config.audit.maxAgeSec });
  const buckets = await openBuckets(nc, n, config, true);
  for (const kv of Object.values(buckets)) await ensureBucketReplicas(jsm, kv, config.nats.replicas);
  await ensureBucketMinAge(jsm, buckets.voteTokens, approverTokenLifeSec(config));
  return buckets;
}

/**
 * Intents were once stored in a work-queue stream on their way to the broker; they are core
 * requests now (docs/ARCHITECTURE.md, "The path of one intent"). A stream left from then would
 * still capture every intent, store the agent's token in it, and answer the agent's request with
 * its own publish ack before the broker's receipt, so it is removed when it is empty. One that
 * still holds intents is left for a broker of the previous release to finish, and this one
 * refuses to start: deleting it would drop intents whose agents were told they were stored.
 */
async function retireIntentsStream(jsm: JetStreamManager, n: Names): Promise<void> {
  const info = await jsm.streams.info(n.retiredIntentsStream).catch((e: unknown) => {
    if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw e;
  });
  if (!info) return;
  if (info.state.messages > 0) {
    throw new WritError(
      'WRIT_CONFIG_INVALID',
      `${info.state.messages} intents still wait in ${n.retiredIntentsStream}, the intake stream of an earlier release: let a broker of that release finish them, then start this one (it removes the empty stream)`,
    );
  }
  try {
    await jsm.streams.delete(n.retiredIntentsStream);
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `the empty stream ${n.retiredIntentsStream} of an earlier release could not be removed (delete it as the operator): ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * Kvm.create leaves an existing bucket as it finds it, so a deployment moved from one node
 * (R1) to a cluster with `nats.replicas: 3` would keep its intent state and claims on one
 * server: the bucket's stream is scaled to the configured replicas here, as the streams are.
 */
async function ensureBucketReplicas(jsm: JetStreamManager, kv: KV, replicas: number): Promise<void> {
  const { streamInfo } = await kv.status();
  if (streamInfo.config.num_replicas === replicas) return;
  await jsm.streams.update(streamInfo.config.name, { ...streamInfo.config, num_replicas: replicas });
}

/**
 * A spent approver token must stay spent for as long as the token still verifies: a config that
 * now allows longer-lived approver tokens raises the bucket's max_age (nats-server 2.9 has no
 * per-message TTL, so the bucket's age is the one bound). A longer age, or none, is kept.
 */
async function ensureBucketMinAge(jsm: JetStreamManager, kv: KV, minSec: number): Promise<void> {
  const { streamInfo } = await kv.status();
  const age = streamInfo.config.max_age;
  if (age === 0 || age >= minSec * NS) return;
  await jsm.streams.update(streamInfo.config.name, { ...streamInfo.config, max_age: minSec * NS });
}

/** Opens (or with `create`, creates) the buckets; workers open, brokers create. */
export async function openBuckets(nc: NatsConnection, n: Names, config: Config, create: boolean): Promise<Buckets> {
  const kvm = new Kvm(nc);
  const replicas = config.nats.replicas;
  const open = (name: string, history: number) => (create ? kvm.create(name, { history, replicas, storage: StorageType.File }) : kvm.open(name));
  return {
    intents: await open(n.buckets.intents, 1),
    claims: await open(n.buckets.claims, 1),
    policy: await open(n.buckets.policy, 16),
    windows: await open(n.buckets.windows, 1),
    sessions: await open(n.buckets.sessions, 1),
    voteTokens: create ? await kvm.create(n.buckets.voteTokens, { history: 1, replicas, storage: StorageType.File, ttl: approverTokenLifeSec(config) * 1000 }) : await kvm.open(n.buckets.voteTokens),
  };
}
