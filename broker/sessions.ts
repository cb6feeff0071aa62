/**
 * Sessions belong to the principal that opened them. A session is one audit chain; letting
 * another principal's intent (or `explain`) write into it would let one agent plant events in
 * another's evidence. The owner is recorded once (`create` in the sessions bucket: only one
 * can win) and cached, so the check costs a KV round trip only the first time a broker sees
 * a session.
 */
import type { KV } from '@nats-io/kv';
import { LRUCache } from 'lru-cache';
import { WritError, type Principal } from '../schemas/index.ts';

const enc = new TextEncoder();
const ownerKey = (p: Pick<Principal, 'iss' | 'sub'>) => `${p.iss}\u0000${p.sub}`;

/**
 * Default for limits.sessionOwnersMax: measured at 260-400 bytes an entry (an 8-128 character
 * session id, the owner, the LRU's slots), so 50,000 sessions hold 13-20 MB at most. A session
 * that fell out costs one KV read when it comes back.
 */
const SESSION_OWNERS_MAX = 50_000;

export class SessionOwners {
  readonly #kv: KV;
  readonly #cache: LRUCache<string, string>;

  constructor(kv: KV, max = SESSION_OWNERS_MAX) {
    this.#kv = kv;
    this.#cache = new LRUCache<string, string>({ max });
  }

  /** Sessions whose owner is cached now (for the soak benchmark and metrics). */
  get cachedSessions(): number {
    return this.#cache.size;
  }

  /**
   * Whether `p` owns `sessionId`, without claiming it: false when the session has no owner yet;
   * throws WRIT_SESSION_FORBIDDEN when another principal owns it. For what writes into a session
   * only when it already exists (`explain`: a new session id per request made a session each).
   */
  async owns(sessionId: string, p: Pick<Principal, 'iss' | 'sub'>): Promise<boolean> {
    let owner = this.#cache.get(sessionId);
    if (owner === undefined) {
      const entry = await this.#kv.get(sessionId);
      if (!entry || entry.operation !== 'PUT') return false;
      owner = ownerKey(entry.json<{ iss: string; sub: string }>());
      this.#cache.set(sessionId, owner);
    }
    if (owner !== ownerKey(p)) throw new WritError('WRIT_SESSION_FORBIDDEN');
    return true;
  }

  /** Resolves when `p` owns `sessionId` (claiming it when new); throws WRIT_SESSION_FORBIDDEN otherwise. */
  async check(sessionId: string, p: Pick<Principal, 'iss' | 'sub'>): Promise<void> {
    const me = ownerKey(p);
    let owner = this.#cache.get(sessionId);
    if (owner === undefined) {
      try {
        await this.#kv.create(sessionId, enc.encode(JSON.stringify({ iss: p.iss, sub: p.sub, at: Date.now() })));
        owner = me;
      } catch (e) {
        const entry = await this.#kv.get(sessionId);
        if (!entry || entry.operation !== 'PUT') throw e;
        const o = entry.json<{ iss: string; sub: string }>();
        owner = ownerKey(o);
      }
      this.#cache.set(sessionId, owner);
    }
    if (owner !== me) throw new WritError('WRIT_SESSION_FORBIDDEN');
  }
}
