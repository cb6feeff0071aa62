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

export class SessionOwners {
  readonly #kv: KV;
  readonly #cache = new LRUCache<string, string>({ max: 100_000 });

  constructor(kv: KV) {
    this.#kv = kv;
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
