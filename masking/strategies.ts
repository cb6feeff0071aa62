/**
 * The three strategies, for a detector hit inside a string and for a whole value.
 * `partial` never reveals secret material: for tokens it keeps only the kind prefix.
 */
import { createHmac } from 'node:crypto';
import { WritError } from '../schemas/errors.ts';
import { DETECTOR_NAMES, type DetectorName, type Strategy } from './types.ts';

/** What a whole-value mask says in place of a detector name. */
export type WholeLabel = 'column' | 'derived' | 'row';

/**
 * `hmac:` and the first 16 hex digits (64 bits) of HMAC-SHA-256 over the UTF-8 bytes: the same
 * value hashes the same wherever it is found (a column rule or a detector), so joins still work.
 */
function hmacTag(key: Buffer | undefined, data: string | Uint8Array): string {
  if (key === undefined) throw new WritError('WRIT_MASKING_FAILED', 'the hash strategy needs a deployment key');
  return `hmac:${createHmac('sha256', key).update(data).digest('hex').slice(0, 16)}`;
}

const REDACTED = Object.fromEntries(DETECTOR_NAMES.map((d) => [d, `[MASKED:${d}]`])) as Readonly<Record<DetectorName, string>>;

/** Replacement for one detector hit. */
export function renderHit(text: string, detector: DetectorName, strategy: Strategy, key: Buffer | undefined): string {
  switch (strategy) {
    case 'redact':
      return REDACTED[detector];
    case 'hash':
      return hmacTag(key, text);
    case 'partial':
      return partialHit(text, detector);
  }
}

function partialHit(text: string, detector: DetectorName): string {
  switch (detector) {
    case 'email':
      return partialEmail(text);
    case 'card':
    case 'phone':
    case 'ssn':
      return keepLastDigits(text, 4);
    case 'iban':
      return partialIban(text);
    case 'aws_key':
      return /^(?:AKIA|ASIA|ABIA|ACCA|A3T)/.test(text) ? `${text.slice(0, 4)}***` : '***';
    case 'gcp_key':
      return text.startsWith('AIza') ? 'AIza***' : '***';
    case 'github_token':
      return text.startsWith('github_pat_') ? 'github_pat_***' : `${text.slice(0, 4)}***`;
    case 'slack_token':
      return /^(?:xox[a-z]|xapp)-/.test(text) ? `${text.slice(0, text.indexOf('-') + 1)}***` : '***';
    case 'jwt':
      // The header (alg, kid) is public; claims and signature are not.
      return `${text.slice(0, text.indexOf('.'))}.***`;
    case 'private_key':
      return '[MASKED:private_key]';
    case 'url_password':
      return '***';
  }
}

/** `j***@example.com`. */
function partialEmail(text: string): string {
  const at = text.lastIndexOf('@');
  const first = String.fromCodePoint(text.codePointAt(0) ?? 42);
  return `${at > 1 ? first : ''}***${text.slice(at)}`;
}

const STARS = Array.from({ length: 20 }, (_, n) => '*'.repeat(n));

/** Every digit but the last `keep` becomes `*`; separators stay: `***-**-1120`. */
function keepLastDigits(text: string, keep: number): string {
  let end = text.length;
  for (let seen = 0; end > 0 && seen < keep;) if (isDigit(text.charCodeAt(--end))) seen++;
  // Replace digit runs by star runs: a handful of slices, not one string per character.
  let out = '';
  let last = 0;
  for (let i = 0; i < end; i++) {
    if (!isDigit(text.charCodeAt(i))) continue;
    let j = i + 1;
    while (j < end && isDigit(text.charCodeAt(j))) j++;
    out += text.slice(last, i) + (STARS[j - i] ?? '*'.repeat(j - i));
    last = i = j;
  }
  return out + text.slice(last);
}

const isDigit = (c: number) => c >= 48 && c <= 57;

/** Country code and the last four characters: `DE** **** **** **** **30 00`. */
function partialIban(text: string): string {
  const alnum = text.replace(/ /g, '').length;
  let seen = 0;
  let out = '';
  for (const ch of text) {
    if (ch === ' ') out += ch;
    else out += ++seen <= 2 || seen > alnum - 4 ? ch : '*';
  }
  return out;
}

/** Partial for a value a column rule names, whose kind is unknown: guess from its shape. */
function partialGeneric(s: string): string {
  // One pass: count digits, and see whether anything but digits and phone punctuation occurs.
  let digits = 0;
  let other = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) digits++;
    else if (c !== 32 && c !== 40 && c !== 41 && c !== 43 && c !== 45 && c !== 46 && c !== 47) other = true; // space ( ) + - . /
  }
  if (!other && digits > 0 && s.length <= 64) return keepLastDigits(s, digits >= 7 ? 4 : 0);
  if (other && /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s)) return partialEmail(s);
  return s.length > 2 ? `${String.fromCodePoint(s.codePointAt(0)!)}***` : '***';
}

/** The bytes a whole value is hashed over; the same text hashes alike in any column. */
function canonical(v: unknown): string | Uint8Array {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(v);
    case 'object': {
      if (v instanceof Date) return v.toISOString(); // an invalid date throws: fail closed
      if (v instanceof Uint8Array) return v;
      const j = JSON.stringify(v);
      if (typeof j !== 'string') break;
      return j;
    }
    case 'undefined':
    case 'symbol':
    case 'function':
      break;
  }
  throw new WritError('WRIT_MASKING_FAILED', `a ${typeof v} value cannot be hashed`);
}

/** Interned replacement texts, so masking a million cells allocates no strings for them. */
const WHOLE_REDACTED: Readonly<Record<WholeLabel, string>> = { column: '[MASKED:column]', derived: '[MASKED:derived]', row: '[MASKED:row]' };

/**
 * Masks a whole value of any type. A masked column's null stays null (it tells only that the
 * column is empty), but a derived value's null is masked too: an expression over a masked
 * column can choose null or not by any condition on it (`CASE WHEN email LIKE 'a%' THEN 1
 * END`, `nullif(email, '…')`), one bit per row and field.
 */
export function maskWhole(v: unknown, label: WholeLabel, strategy: Strategy, key: Buffer | undefined): unknown {
  if (v === null || v === undefined) return label === 'derived' ? WHOLE_REDACTED.derived : v;
  switch (strategy) {
    case 'redact':
      return WHOLE_REDACTED[label];
    case 'hash':
      return hmacTag(key, canonical(v));
    case 'partial':
      // Only text and numbers have a meaningful partial form; a record, JSON or a date is redacted.
      if (label !== 'row' && typeof v === 'string') return partialGeneric(v);
      if (label !== 'row' && (typeof v === 'number' || typeof v === 'bigint')) return partialGeneric(String(v));
      return WHOLE_REDACTED[label];
  }
}
