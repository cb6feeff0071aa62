import { describe, expect, it } from 'vitest';
import { ClaimedGrants } from './claimed-grants.ts';

describe('the grants a worker remembers having claimed', () => {
  it('holds claims/s × lifetime under a steady load, not everything ever claimed', () => {
    let now = 1_000_000;
    const claimed = new ClaimedGrants(200_000, () => now);
    // One hour at 50 claims a second, each grant remembered for its 60 s TTL plus 60 s.
    let most = 0;
    for (let s = 0; s < 3600; s++) {
      for (let k = 0; k < 50; k++) claimed.add(`g-${s}-${k}`, now + 120_000);
      most = Math.max(most, claimed.size);
      now += 1000;
    }
    expect(most).toBeLessThanOrEqual(50 * 121);
    expect(claimed.size).toBeLessThanOrEqual(50 * 121);
    expect(claimed.evictedLive).toBe(0);
    // What it holds is what is still live: the last two minutes' grants are refused again.
    expect(claimed.has('g-3599-0')).toBe(true);
    expect(claimed.has('g-3481-0')).toBe(true);
    expect(claimed.has('g-0-0')).toBe(false);
  });

  it('keeps a grant until its time, then forgets it', () => {
    let now = 0;
    const claimed = new ClaimedGrants(10, () => now);
    claimed.add('a', 5000);
    now = 4999;
    expect(claimed.has('a')).toBe(true);
    now = 5000;
    expect(claimed.has('a')).toBe(false);
    claimed.add('b', 9000);
    expect(claimed.size).toBe(1);
  });

  it('never holds more than its bound, and counts the live grants it had to drop', () => {
    const claimed = new ClaimedGrants(100, () => 0);
    for (let i = 0; i < 250; i++) claimed.add(`g${i}`, 60_000);
    expect(claimed.size).toBe(100);
    expect(claimed.evictedLive).toBe(150);
    expect(claimed.has('g249')).toBe(true);
    expect(claimed.has('g0')).toBe(false);
  });
});
