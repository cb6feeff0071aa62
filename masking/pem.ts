/**
 * PEM private keys: BEGIN…END blocks, including partial ones. Hand-written walks over the
 * body (base64, whitespace, escaped newlines of JSON, RFC 1421 headers), linear in the input.
 */
import type { Hit } from './types.ts';

const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END = /-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END_AT = /-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/y;
const PEM_HEADER_AT = /(?:Proc-Type|DEK-Info|Comment|Version|Hash|Charset): [^\r\n\\]*/y;

const isAlnum = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isB64 = (c: number) => isAlnum(c) || c === 43 || c === 47 || c === 61; // + / =
export const isWs = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;
/** `\n`, `\r`, `\t` written as escapes, as in JSON or a single-line env value. */
const isEscapedWs = (s: string, i: number) => s.charCodeAt(i) === 92 && /[nrt]/.test(s[i + 1] ?? '');

/**
 * From just after a BEGIN marker, walk the PEM body: base64, whitespace, escaped newlines and
 * RFC 1421 headers. Closed when an END marker follows; otherwise the block is partial and ends
 * after its last base64 character (later words without punctuation may be taken with it).
 */
export function pemBodyEnd(s: string, p: number): { end: number; closed: boolean } {
  let last = p;
  let atLineStart = true;
  while (p < s.length) {
    const c = s.charCodeAt(p);
    if (atLineStart && (c === 80 || c === 68 || c === 67 || c === 86 || c === 72)) {
      PEM_HEADER_AT.lastIndex = p;
      if (PEM_HEADER_AT.test(s)) {
        p = last = PEM_HEADER_AT.lastIndex;
        continue;
      }
    }
    if (isB64(c)) {
      p = last = p + 1;
      atLineStart = false;
    } else if (isWs(c)) {
      p++;
      atLineStart = true;
    } else if (isEscapedWs(s, p)) {
      p += 2;
      atLineStart = true;
    } else if (c === 45) {
      PEM_END_AT.lastIndex = p;
      if (PEM_END_AT.test(s)) return { end: PEM_END_AT.lastIndex, closed: true };
      break;
    } else break;
  }
  return { end: last, closed: false };
}

/** Length of the line break (`\n`, `\r\n`, or the escaped `\\n` of JSON) that ends just before p; 0 if none. */
function breakBefore(s: string, p: number): number {
  const c = s.charCodeAt(p - 1);
  if (c === 10) return s.charCodeAt(p - 2) === 13 ? 2 : 1;
  return c === 110 && s.charCodeAt(p - 2) === 92 ? 2 : 0;
}

/** Start of the base64 run ending at p, not crossing an escaped newline. */
function b64RunStart(s: string, p: number, floor: number): number {
  let k = p;
  while (k > floor && isB64(s.charCodeAt(k - 1)) && breakBefore(s, k) === 0) k--;
  return k;
}

/**
 * From just before an END marker with no BEGIN (a key printed from its middle), walk back
 * over the body: base64 tokens on the END line, then whole lines that are base64 only. A
 * line with anything else (`$ tail key.pem`) is not key material and stops the walk.
 */
function pemBodyStart(s: string, q: number, floor: number): number {
  let first = q;
  let p = q;
  while (p > floor && breakBefore(s, p) === 0) {
    const c = s.charCodeAt(p - 1);
    if (c === 32 || c === 9 || c === 13) {
      p--;
      continue;
    }
    const k = b64RunStart(s, p, floor);
    if (k === p || (k > floor && !isWs(s.charCodeAt(k - 1)) && breakBefore(s, k) === 0)) return first;
    first = p = k;
  }
  for (let nl = breakBefore(s, p); p > floor && nl > 0; nl = breakBefore(s, p)) {
    const lineEnd = p - nl;
    const k = b64RunStart(s, lineEnd, floor);
    if (k === lineEnd || (k > floor && breakBefore(s, k) === 0)) break;
    first = p = k;
  }
  return first;
}

/** Every private-key block in `s`, complete or partial, appended to `out` in order. */
export function findPrivateKeys(s: string, out: Hit[]): void {
  const blocks: Array<[number, number]> = [];
  PEM_BEGIN.lastIndex = 0;
  for (let m = PEM_BEGIN.exec(s); m !== null; m = PEM_BEGIN.exec(s)) {
    const body = pemBodyEnd(s, m.index + m[0].length);
    const end = Math.max(body.end, m.index + m[0].length);
    out.push(body.closed ? { start: m.index, end, detector: 'private_key', ctx: m.index } : { start: m.index, end, detector: 'private_key', ctx: m.index, open: true });
    blocks.push([m.index, end]);
    PEM_BEGIN.lastIndex = end;
  }
  if (s.indexOf('-----END ') === -1) return;
  // END markers outside every BEGIN block close a body printed from its middle (`tail key.pem`).
  let floor = 0;
  let k = 0;
  PEM_END.lastIndex = 0;
  for (let m = PEM_END.exec(s); m !== null; m = PEM_END.exec(s)) {
    while (k < blocks.length && blocks[k]![1] <= m.index) floor = Math.max(floor, blocks[k++]![1]);
    const inside = blocks[k];
    if (inside !== undefined && inside[0] <= m.index) {
      PEM_END.lastIndex = inside[1];
      continue;
    }
    const start = pemBodyStart(s, m.index, floor);
    const end = m.index + m[0].length;
    out.push({ start, end, detector: 'private_key', ctx: start });
    floor = end;
  }
}
