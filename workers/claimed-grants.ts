/**
 * The grants this worker process claimed, each kept until it can no longer run anywhere (its
 * expiry plus a margin): a second run of one grant is then refused here even if the claims
 * bucket lost the claim (an OS crash under lazy fsync, docs/operations.md).
 *
 * Expired entries are dropped as new ones come in, so the set holds about (claims per second)
 * × (grant TTL + margin) entries, not everything the process ever claimed: an LRU bounded only
 * by count kept every entry until the count was reached, and grew the worker by ~190 bytes per
 * intent up to its 200,000 entries (bench soak). `max` is the hard bound (limits.claimedGrantsMax);
 * reaching it with entries still live drops the oldest, which then rest on the bucket's claim alone.
 */
export class ClaimedGrants {
  /** gid → epoch ms after which it is forgotten; Map order is insertion order, oldest first. */
  readonly #until = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;
  #nextPurge = 0;
  /** Live entries dropped because `max` was reached. */
  evictedLive = 0;

  constructor(max: number, now: () => number = Date.now) {
    this.#max = max;
    this.#now = now;
  }

  get size(): number {
    return this.#until.size;
  }

  has(gid: string): boolean {
    const t = this.#until.get(gid);
    return t !== undefined && t > this.#now();
  }

  /** Forgets `gid` (a claim that could not be confirmed, so nothing ran). */
  delete(gid: string): void {
    this.#until.delete(gid);
  }

  /** Records `gid` until `untilMs` (epoch ms); drops what expired, then the oldest beyond `max`. */
  add(gid: string, untilMs: number): void {
    this.#until.delete(gid);
    this.#until.set(gid, untilMs);
    const now = this.#now();
    // Entries come in roughly in expiry order (one grant TTL for most), so expired ones are
    // dropped from the oldest end until the first live one. At most once a second: a Map walks
    // over the holes its deletions leave at the front until it rehashes, so a walk per add would
    // cost far more than the entries it drops. A longer-lived entry at the head only delays the
    // rest until it expires; `max` bounds them meanwhile.
    if (now >= this.#nextPurge) {
      this.#nextPurge = now + 1000;
      for (const [k, t] of this.#until) {
        if (t > now) break;
        this.#until.delete(k);
      }
    }
    if (this.#until.size > this.#max) {
      for (const [k, t] of this.#until) {
        this.#until.delete(k);
        if (t > now) this.evictedLive++;
        if (this.#until.size <= this.#max) break;
      }
    }
  }
}
