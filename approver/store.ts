/**
 * The intentId → posted message mapping, with compare-and-set. Shared bots keep it in a
 * KV bucket `<prefix>_approver_<bot>` so any replica can redraw a message another
 * replica posted; a terminal keeps it in memory.
 */
import { JetStreamApiCodes, JetStreamApiError, StorageType } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { StoredApproval } from './types.ts';

export interface Versioned {
  value: StoredApproval;
  revision: number;
}

export interface ApprovalStore {
  get(intentId: string): Promise<Versioned | undefined>;
  /** Resolves undefined when the key exists already. */
  create(intentId: string, value: StoredApproval): Promise<number | undefined>;
  /** Resolves undefined when `revision` is no longer the latest. */
  update(intentId: string, value: StoredApproval, revision: number): Promise<number | undefined>;
}

/** Thrown by a {@link mutate} step to say "not now": another replica holds the claim. */
export class Busy extends Error {
  constructor() {
    super('another replica is posting this request');
    this.name = 'Busy';
  }
}

/**
 * Reads, applies `step` and writes back by compare-and-set, again on conflict. `step`
 * returns undefined for "nothing to change". Resolves the written (or unchanged) record.
 */
export async function mutate(
  store: ApprovalStore,
  intentId: string,
  step: (current: StoredApproval | undefined) => StoredApproval | undefined,
): Promise<{ changed: boolean; record: Versioned | undefined }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const cur = await store.get(intentId);
    const next = step(cur?.value);
    if (!next) return { changed: false, record: cur };
    const rev = cur ? await store.update(intentId, next, cur.revision) : await store.create(intentId, next);
    if (rev !== undefined) return { changed: true, record: { value: next, revision: rev } };
  }
  throw new Error(`too many concurrent changes to ${intentId}`);
}

const enc = new TextEncoder();

function isConflict(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === JetStreamApiCodes.StreamWrongLastSequence || e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

export class KvApprovalStore implements ApprovalStore {
  readonly #kv: KV;

  private constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Creates the bucket if needed (idempotent; replicas race harmlessly). */
  static async open(nc: NatsConnection, bucket: string, o: { replicas?: number; ttlMs?: number } = {}): Promise<KvApprovalStore> {
    // Kept a day longer than the approvals stream (7 days), so a late outcome still finds its message.
    const kv = await new Kvm(nc).create(bucket, { history: 1, replicas: o.replicas ?? 1, storage: StorageType.File, ttl: o.ttlMs ?? 8 * 86_400_000 });
    return new KvApprovalStore(kv);
  }

  async get(intentId: string): Promise<Versioned | undefined> {
    const e = await this.#kv.get(intentId);
    if (!e || e.operation !== 'PUT') return undefined;
    return { value: e.json<StoredApproval>(), revision: e.revision };
  }

  async create(intentId: string, value: StoredApproval): Promise<number | undefined> {
    try {
      return await this.#kv.create(intentId, enc.encode(JSON.stringify(value)));
    } catch (e) {
      if (isConflict(e)) return undefined;
      throw e;
    }
  }

  async update(intentId: string, value: StoredApproval, revision: number): Promise<number | undefined> {
    try {
      return await this.#kv.update(intentId, enc.encode(JSON.stringify(value)), revision);
    } catch (e) {
      if (isConflict(e)) return undefined;
      throw e;
    }
  }
}

/** For a single process that sees every request (the terminal). */
export class MemoryApprovalStore implements ApprovalStore {
  readonly #m = new Map<string, Versioned>();
  #seq = 0;

  async get(intentId: string): Promise<Versioned | undefined> {
    const v = this.#m.get(intentId);
    return v ? { value: structuredClone(v.value), revision: v.revision } : undefined;
  }

  async create(intentId: string, value: StoredApproval): Promise<number | undefined> {
    if (this.#m.has(intentId)) return undefined;
    const revision = ++this.#seq;
    this.#m.set(intentId, { value: structuredClone(value), revision });
    return revision;
  }

  async update(intentId: string, value: StoredApproval, revision: number): Promise<number | undefined> {
    if (this.#m.get(intentId)?.revision !== revision) return undefined;
    const next = ++this.#seq;
    this.#m.set(intentId, { value: structuredClone(value), revision: next });
    return next;
  }
}
