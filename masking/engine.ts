/**
 * Masking one string: scan it, replace each hit by its detector's strategy. Shared by rows,
 * text and streams so all three mask a value identically.
 */
import { WritError } from '../schemas/errors.ts';
import { KeyHint, scanString } from './detectors.ts';
import type { CompiledMasking } from './spec.ts';
import { renderHit } from './strategies.ts';
import type { Hit } from './types.ts';

/** Receives one reason (`detector:email`) per masked span. */
export interface HitSink {
  add(reason: string): void;
}

/** Replaces the given hits (sorted, disjoint) inside s[from, to). */
export function renderHits(s: string, hits: readonly Hit[], c: CompiledMasking, sink: HitSink | null, from = 0, to = s.length): string {
  let out = '';
  let pos = from;
  for (const h of hits) {
    if (h.start < from || h.end > to) continue;
    const strategy = c.detectors[h.detector];
    if (strategy === undefined) throw new WritError('WRIT_MASKING_FAILED', `detector ${h.detector} hit while disabled`);
    out += s.slice(pos, h.start) + renderHit(s.slice(h.start, h.end), h.detector, strategy, c.hmacKey);
    pos = h.end;
    sink?.add(`detector:${h.detector}`);
  }
  return out + s.slice(pos, to);
}

/** The masked string, or `s` itself (same reference) when nothing was found. */
export function maskString(s: string, c: CompiledMasking, sink: HitSink | null, hint: KeyHint = KeyHint.none): string {
  const hits = scanString(s, c.enabled, hint);
  return hits === null ? s : renderHits(s, hits, c, sink);
}

/** A sink that appends reasons to an array. */
export function arraySink(arr: string[]): HitSink {
  return { add: (r) => void arr.push(r) };
}

/** Any failure while masking becomes WRIT_MASKING_FAILED: the data is withheld, never passed through. */
export function maskingFailure(e: unknown, details?: Record<string, unknown>): WritError {
  if (e instanceof WritError && e.code === 'WRIT_MASKING_FAILED') return e;
  return new WritError('WRIT_MASKING_FAILED', undefined, { cause: e, ...(details ? { details } : {}) });
}
