/**
 * The policy lifecycle: the active policy lives under one key of the `writ_policy` KV
 * bucket (its history is the version log); publishing validates first, so an invalid
 * policy never becomes active; brokers watch the key and swap engines atomically.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import { z } from 'zod';
import { toWritError, WritError, type Principal, type TargetConfig } from '../../schemas/index.ts';
import type { PolicyEngine, PolicyInput, TargetAccess } from '../policy.ts';
import { RulePolicy, type Explanation, type RuleDecision } from './engine.ts';
import { parsePolicyText } from './schema.ts';

/** Who published a policy and why; stored beside it and shown in `policy.loaded` audit events. */
const PolicyMetaSchema = z.strictObject({
  /** Who published it (a user or a pipeline). */
  author: z.string().max(256).optional(),
  /** Free text: a change ticket, a commit. */
  comment: z.string().max(2_000).optional(),
  /** Where the text came from (a file path, a URL). */
  source: z.string().max(1_000).optional(),
});
export type PolicyMeta = z.infer<typeof PolicyMetaSchema>;

const StoredPolicySchema = z.strictObject({
  v: z.literal(1),
  /** The policy text exactly as published. */
  yaml: z.string(),
  version: z.string(),
  hash: z.string(),
  publishedAt: z.number().int(),
  meta: PolicyMetaSchema,
});
type StoredPolicy = z.infer<typeof StoredPolicySchema>;

/** A policy read from the bucket. */
export interface LoadedPolicy {
  readonly policy: RulePolicy;
  /** KV revision of the entry. */
  readonly revision: number;
  readonly publishedAt: number;
  readonly meta: PolicyMeta;
  readonly yaml: string;
}

/** The key the active policy is stored under. */
const ACTIVE_KEY = 'active';

/** Keeps the text so a broker can re-validate it: the bucket is a boundary, not a trusted source. */
function decodeEntry(e: KvEntry): LoadedPolicy {
  let stored: StoredPolicy;
  try {
    stored = StoredPolicySchema.parse(e.json());
  } catch (err) {
    throw new WritError('WRIT_POLICY_INVALID', `policy entry revision ${e.revision} is not a stored policy`, { cause: err });
  }
  const policy = RulePolicy.fromText(stored.yaml, `policy revision ${e.revision}`);
  return { policy, revision: e.revision, publishedAt: stored.publishedAt, meta: stored.meta, yaml: stored.yaml };
}

/** A running watch; stop() ends it. */
export interface PolicyWatch {
  stop(): void;
  /** Resolves when the watch has ended. */
  readonly closed: Promise<void>;
}

export class PolicyStore {
  readonly #kv: KV;
  readonly #key: string;

  /** `kv` is the `writ_policy` bucket (schemas' names().buckets.policy). */
  constructor(kv: KV, opts: { key?: string } = {}) {
    this.#kv = kv;
    this.#key = opts.key ?? ACTIVE_KEY;
  }

  /**
   * Validates and stores a policy as the active one. Throws WRIT_POLICY_INVALID (the
   * active policy stays) naming each problem's path. Publishing the same content again
   * is a no-op that returns the current revision. With `expectRevision`, the put is a
   * compare-and-set against that revision of the active entry (0: none may exist yet).
   */
  async publish(yamlText: string, meta: PolicyMeta = {}, opts: { expectRevision?: number } = {}): Promise<{ version: string; revision: number; changed: boolean }> {
    const parsed = parsePolicyText(yamlText, meta.source ?? 'policy');
    const m = PolicyMetaSchema.safeParse(meta);
    if (!m.success) throw new WritError('WRIT_BAD_REQUEST', `policy meta: ${m.error.message}`);
    const current = await this.#kv.get(this.#key);
    if (current && current.operation === 'PUT' && opts.expectRevision === undefined) {
      try {
        const old = StoredPolicySchema.parse(current.json());
        if (old.hash === parsed.hash && old.version === parsed.version) return { version: parsed.version, revision: current.revision, changed: false };
      } catch {
        // An unreadable entry is simply replaced.
      }
    }
    const stored: StoredPolicy = { v: 1, yaml: yamlText, version: parsed.version, hash: parsed.hash, publishedAt: Date.now(), meta: m.data };
    const body = JSON.stringify(stored);
    let revision: number;
    if (opts.expectRevision === undefined) revision = await this.#kv.put(this.#key, body);
    else if (opts.expectRevision === 0) revision = await this.#kv.create(this.#key, body);
    else revision = await this.#kv.update(this.#key, body, opts.expectRevision);
    return { version: parsed.version, revision, changed: true };
  }

  /** The active policy, or null when none was published. Throws WRIT_POLICY_INVALID if the stored entry does not validate. */
  async load(): Promise<LoadedPolicy | null> {
    const e = await this.#kv.get(this.#key);
    if (!e || e.operation !== 'PUT') return null;
    return decodeEntry(e);
  }

  /** Earlier versions, newest first (as many as the bucket's history keeps). */
  async history(): Promise<{ revision: number; version: string; publishedAt: number; meta: PolicyMeta }[]> {
    const out: { revision: number; version: string; publishedAt: number; meta: PolicyMeta }[] = [];
    const it = await this.#kv.history({ key: this.#key });
    for await (const e of it) {
      if (e.operation !== 'PUT') continue;
      const s = StoredPolicySchema.safeParse(e.json());
      if (s.success) out.push({ revision: e.revision, version: s.data.version, publishedAt: s.data.publishedAt, meta: s.data.meta });
    }
    return out.reverse();
  }

  /**
   * Calls onPolicy with the current policy (if any) and then with every valid update;
   * an entry that does not validate goes to onInvalid instead (the caller keeps its old one).
   * onEnd is called once when the watch ends, with the error if it failed.
   */
  async watch(onPolicy: (p: LoadedPolicy) => void, onInvalid: (err: WritError, revision: number) => void, onEnd?: (err?: unknown) => void): Promise<PolicyWatch> {
    const it = await this.#kv.watch({ key: this.#key });
    const closed = (async () => {
      try {
        for await (const e of it) {
          if (e.operation !== 'PUT') continue;
          let loaded: LoadedPolicy;
          try {
            loaded = decodeEntry(e);
          } catch (err) {
            onInvalid(toWritError(err), e.revision);
            continue;
          }
          onPolicy(loaded);
        }
        onEnd?.();
      } catch (err) {
        // A watch that dies (connection closed) must not become an unhandled rejection.
        onEnd?.(err);
      }
    })();
    return { stop: () => it.stop(), closed };
  }
}

/** What ReloadingPolicy reports. */
export interface ReloadLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * The engine a broker holds: delegates to the current RulePolicy and swaps it on a valid
 * update. Decisions are synchronous, so a swap never splits one: each sees one policy.
 */
export class ReloadingPolicy implements PolicyEngine {
  #current: RulePolicy;
  #revision = 0;
  #watch: PolicyWatch | undefined;
  readonly #log: ReloadLog | undefined;
  readonly #onChange: ((p: LoadedPolicy) => void) | undefined;

  /** Starts from `initial` (e.g. an empty deny-all policy); call start() to follow the store. */
  constructor(initial: RulePolicy, opts: { log?: ReloadLog; onChange?: (p: LoadedPolicy) => void } = {}) {
    this.#current = initial;
    this.#log = opts.log;
    this.#onChange = opts.onChange;
  }

  /**
   * Loads the active policy and follows updates. When the bucket holds none (or an invalid
   * one), `fallback` is used: a policy from a local file, else an empty policy (deny all).
   */
  static async start(store: PolicyStore, opts: { fallback?: RulePolicy; log?: ReloadLog; onChange?: (p: LoadedPolicy) => void } = {}): Promise<ReloadingPolicy> {
    const engine = new ReloadingPolicy(opts.fallback ?? RulePolicy.fromDocument({}), opts);
    try {
      const loaded = await store.load();
      if (loaded) engine.#swap(loaded);
    } catch (e) {
      engine.#refuse(toWritError(e), -1);
    }
    engine.#watch = await store.watch(
      (p) => engine.#swap(p),
      (err, rev) => engine.#refuse(err, rev),
      (err) => {
        if (err !== undefined) engine.#log?.warn({ err: String(err), keeping: engine.version }, 'policy watch ended; the active policy stays until restart');
      },
    );
    return engine;
  }

  get version(): string {
    return this.#current.version;
  }

  /** The engine decisions go to now. */
  get current(): RulePolicy {
    return this.#current;
  }

  /** KV revision of the active policy; 0 before any was loaded. */
  get revision(): number {
    return this.#revision;
  }

  decide(input: PolicyInput): RuleDecision {
    return this.#current.decide(input);
  }

  explain(input: PolicyInput): Explanation {
    return this.#current.explain(input);
  }

  accessFor(principal: Principal, target: TargetConfig): TargetAccess[] {
    return this.#current.accessFor(principal, target);
  }

  /** Stops following the store; the current policy stays. */
  async stop(): Promise<void> {
    const w = this.#watch;
    this.#watch = undefined;
    if (w) {
      w.stop();
      await w.closed;
    }
  }

  #swap(p: LoadedPolicy): void {
    // The watch replays the current entry first; an older or equal revision changes nothing.
    if (p.revision <= this.#revision) return;
    const from = this.#current.version;
    this.#current = p.policy;
    this.#revision = p.revision;
    this.#log?.info({ policy: p.policy.version, from, revision: p.revision, meta: p.meta }, 'policy loaded');
    this.#onChange?.(p);
  }

  #refuse(err: WritError, revision: number): void {
    this.#log?.warn({ code: err.code, err: err.message, revision, keeping: this.#current.version }, 'policy update refused; keeping the active policy');
  }
}
