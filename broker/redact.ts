/**
 * What the broker writes to the audit log and shows approvers never carries a secret that an
 * agent put into its command text (`echo ghp_…`, tokens, keys, card numbers and the like; a
 * password no detector knows is not caught): the masking engine's value detectors run over
 * it. For commands they run **inside literal tokens only** (SQL string constants and
 * comments, shell words and strings), by the classifier's own tokens, and a literal with a
 * finding is replaced whole by a marker that holds no quote, backslash or dollar: a mask can
 * never span a token boundary, so what an approver reads has the structure of what runs. A
 * final check compares the token shapes of both texts; if they differ, the text is withheld
 * rather than shown wrong. The SHA-256 of the exact text is recorded beside it.
 */
import { LRUCache } from 'lru-cache';
import { compileMasking, maskText, type CompiledMasking } from '../masking/index.ts';
import { shellLiterals, shellTokenShape, sqlLiterals, sqlTokenShape, type LiteralSpan } from '../classify/index.ts';
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

/** The kinds a detector finds in `s` (empty: nothing to mask). */
function findings(s: string): string[] {
  const r = maskText(s, SPEC);
  if (r.text === s) return [];
  const kinds = [...new Set([...r.text.matchAll(/\[MASKED:([a-z0-9_]+)\]|\[REDACTED:([a-z0-9_]+)\]/gi)].map((m) => (m[1] ?? m[2] ?? 'secret').toLowerCase()))];
  return kinds.length ? kinds : ['secret'];
}

/**
 * Rewrites the inner part of each literal with a finding; shape-checks the result. A finding
 * in a token that is not a literal (a quoted identifier, say) withholds the whole text. A
 * detector match that only exists across tokens is no token's secret, and is left alone.
 */
function redactLiterals(text: string, spans: LiteralSpan[], shape: (t: string) => string[], marker: (kinds: string[], span: LiteralSpan) => string): string {
  let out = '';
  let at = 0;
  for (const sp of spans) {
    const inner = text.slice(sp.innerStart, sp.innerEnd);
    const kinds = findings(inner);
    if (kinds.length === 0) continue;
    if (sp.kind === 'other') return WITHHELD;
    out += text.slice(at, sp.innerStart) + marker(kinds, sp);
    at = sp.innerEnd;
  }
  if (at === 0) return text;
  out += text.slice(at);
  return sameShape(shape, text, out) ? out : WITHHELD;
}

const WITHHELD = '[withheld: the command could not be masked without changing its structure; its SHA-256 is recorded]';

function sameShape(shape: (t: string) => string[], a: string, b: string): boolean {
  try {
    const x = shape(a);
    const y = shape(b);
    return x.length === y.length && x.every((t, i) => t === y[i]);
  } catch {
    return false;
  }
}

export function redactSql(sql: string): string {
  try {
    return redactLiterals(sql, sqlLiterals(sql), sqlTokenShape, (kinds) => `[MASKED:${kinds.join(',')}]`);
  } catch {
    // Not scannable: shown only when no detector finds anything in it.
    return redactText(sql) === sql ? sql : WITHHELD;
  }
}

export function redactShell(command: string): string {
  try {
    // An unquoted word's marker is a bare word (no glob or quote characters in it).
    return redactLiterals(command, shellLiterals(command), shellTokenShape, (kinds, sp) => (sp.kind === 'word' ? `MASKED_${kinds.join('_')}` : `[MASKED:${kinds.join(',')}]`));
  } catch {
    return redactText(command) === command ? command : WITHHELD;
  }
}

/**
 * Redacted texts by command: agents repeat their statements, and scanning a text's literals
 * and running every detector over them is a visible part of an intent's CPU. Bounded by the
 * characters held (keys and values), so a stream of distinct texts cannot grow it.
 */
const redacted = new LRUCache<string, string>({ maxSize: 4 * 1024 * 1024, sizeCalculation: (v, k) => k.length + v.length + 64 });

export function redactCommand(c: Command): Command {
  const key = c.kind === 'sql' ? `s${c.sql}` : `h${c.command}`;
  let text = redacted.get(key);
  if (text === undefined) {
    text = c.kind === 'sql' ? redactSql(c.sql) : redactShell(c.command);
    // A text too large for the cache is redacted each time rather than evicting everything else.
    if (key.length < 64 * 1024) redacted.set(key, text);
  }
  return c.kind === 'sql' ? { kind: 'sql', sql: text } : { kind: 'shell', command: text };
}

/**
 * A decision with its reasons masked. Reasons quote the command (a parse error near a token,
 * the statement a deny rule matched), and they are audited, stored in the record, sent to
 * approvers and put in the agent's error: they are masked once, where the decision is made.
 */
export function withRedactedReasons<T extends { reasons: readonly string[] }>(d: T): T {
  return d.reasons.length === 0 ? d : { ...d, reasons: d.reasons.map(redactText) };
}

/** redactDeep of an object the caller keeps unchanged (the classifier's cached facts): computed once per object. */
const deepOnce = new WeakMap<object, unknown>();
export function redactDeepOnce<T extends object>(v: T): T {
  let r = deepOnce.get(v) as T | undefined;
  if (r === undefined) {
    r = redactDeep(v);
    deepOnce.set(v, r);
  }
  return r;
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
