/** Durations as people type them on a command line; no dependencies, so the CLI loads it at once. */

/** Parses `10m`, `1h`, `90s`, `3600` into seconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new Error(`not a duration: ${JSON.stringify(s)} (use 90s, 10m, 1h)`);
  const n = Number(m[1]);
  return n * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}
