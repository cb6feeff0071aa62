/**
 * What the broker writes to the audit log and to approvers never carries a secret that an
 * agent put into its command text (`echo ghp_…`, `… WHERE password = 'hunter2'` is not
 * caught, but tokens, keys, card numbers and the like are): strings are passed through the
 * masking engine's value detectors first. The SHA-256 of the exact text is recorded beside
 * it, so the evidence still pins exactly what ran.
 */
import { compileMasking, maskText, type CompiledMasking } from '../masking/index.ts';
import type { Command } from '../schemas/index.ts';

// Every detector, redact strategy: the audit keeps the kind of secret, never the value.
const SPEC: CompiledMasking = compileMasking({});

export function redactText(s: string): string {
  try {
    return maskText(s, SPEC).text;
  } catch {
    return '[withheld: could not be masked]';
  }
}

export function redactCommand(c: Command): Command {
  return c.kind === 'sql' ? { kind: 'sql', sql: redactText(c.sql) } : { kind: 'shell', command: redactText(c.command) };
}

/** Deep copy with every string masked. */
export function redactDeep<T>(v: T): T {
  if (typeof v === 'string') return redactText(v) as T;
  if (Array.isArray(v)) return v.map((x) => redactDeep(x)) as T;
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = redactDeep(x);
    return out as T;
  }
  return v;
}
