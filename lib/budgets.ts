/**
 * Token buckets by key (a principal, a sender): each key's budget refills at `perSec` up to
 * `burst`, and the least recently used key is forgotten past `maxKeys` (it starts again full).
 * One mechanism for every per-sender bound: intake's and the API's rate per sender, the audit of
 * refused input per principal, and classification time per principal.
 */
export class Budgets {
  readonly #byKey = new Map<string, { tokens: number; at: number }>();
  constructor(
    readonly perSec: number,
    readonly burst: number,
    readonly maxKeys = 10_000,
  ) {}

  /** The key's budget, refilled to `nowMs`: spend from `tokens` (it may go below zero for a cost known only afterwards). */
  of(key: string, nowMs = Date.now()): { tokens: number } {
    const b = this.#byKey.get(key) ?? { tokens: this.burst, at: nowMs };
    this.#byKey.delete(key);
    this.#byKey.set(key, b);
    if (this.#byKey.size > this.maxKeys) this.#byKey.delete(this.#byKey.keys().next().value!);
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.at) / 1000) * this.perSec);
    b.at = nowMs;
    return b;
  }

  /** Takes `cost` from the key's budget when it holds that much; false (nothing taken) otherwise. */
  take(key: string, cost = 1, nowMs = Date.now()): boolean {
    const b = this.of(key, nowMs);
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }
}
