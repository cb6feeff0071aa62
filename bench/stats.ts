/** Small helpers for benchmark figures: percentiles and a fixed-concurrency load loop. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface LoadFigures {
  n: number;
  p50: number;
  p99: number;
  perSec: number;
  errors: number;
}

/** Runs `op(slot)` with `concurrency` slots in flight until `durationMs` passes (or `maxOps`), timing each. */
export async function load(op: (slot: number) => Promise<unknown>, concurrency: number, durationMs: number, maxOps = Infinity): Promise<LoadFigures> {
  const times: number[] = [];
  let errors = 0;
  let started = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, slot) => {
      while (performance.now() < end && started < maxOps) {
        started++;
        const a = performance.now();
        try {
          await op(slot);
          times.push(performance.now() - a);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = performance.now() - t0;
  times.sort((x, y) => x - y);
  return { n: times.length, p50: percentile(times, 50), p99: percentile(times, 99), perSec: (times.length / elapsed) * 1000, errors };
}

export const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
