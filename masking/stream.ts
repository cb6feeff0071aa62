/**
 * Masking a byte stream (SSH stdout/stderr) line by line. Chunks arrive cut anywhere, so
 * the incomplete last line is held back until its newline: a token split across chunks
 * is masked as if it had arrived whole.
 *
 * Private keys span lines. A line opening a `-----BEGIN … PRIVATE KEY-----` block, and a
 * run of long base64 lines (a key printed from its middle, `tail key.pem`), are held until
 * the block ends, then masked as one unit.
 *
 * Bounds, and what they cost:
 * - a line with no newline is held up to `maxHeldBytes`; past it the held text is cut and
 *   the part before the cut is emitted masked. The cut keeps the last quarter (at most
 *   16 KiB) back, never falls inside a detected secret or between a secret and its
 *   context (`aws_secret_access_key=`), and prefers a delimiter. A secret longer than that
 *   overlap which straddles the cut, and was not yet recognisable from its first part,
 *   can be split and missed. A private key cut this way keeps masking its continuation.
 * - a key block held past `maxHeldBytes` is emitted masked (redacted as a partial key) and
 *   its remaining body lines are dropped until the END line or a non-body line; a base64
 *   run held that long is not a key and is emitted as ordinary lines.
 */
import { StringDecoder } from 'node:string_decoder';
import { WritError } from '../schemas/errors.ts';
import { scanString } from './detectors.ts';
import { pemBodyEnd } from './pem.ts';
import { maskingFailure, renderHits, type HitSink } from './engine.ts';
import { compileMasking, type CompiledMasking, type MaskingSpecInput } from './spec.ts';
import type { Hit, LineMaskerOptions } from './types.ts';

const DEFAULT_MAX_HELD = 65_536;
const MIN_MAX_HELD = 4_096;
const MAX_OVERLAP = 16_384;
/** How far back from the cut a delimiter is looked for. */
const DELIMITER_LOOKBACK = 256;

const BEGIN_MARK = /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const END_MARK = /-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/;
/** Inside a BEGIN block: base64 (or empty) lines and RFC 1421 headers. */
const BODY_LINE = /^(?:[A-Za-z0-9+/=]*|(?:Proc-Type|DEK-Info|Comment|Version|Hash|Charset): .*)\r?$/;
/** A line that may be the middle of a key printed without its BEGIN line. */
const LONG_B64_LINE = /^[A-Za-z0-9+/]{40,}={0,2}\r?$/;
const B64_LINE = /^[A-Za-z0-9+/]*={0,2}\r?$/;
const DELIMITERS = new Set([' ', '\t', ',', ';', '"', "'", '<', '>', '(', ')', '{', '}', '[', ']', '|']);

type Held = 'none' | 'begin' | 'body';

/** Does this line open a private-key block it does not also close? */
function opensBlock(line: string): boolean {
  let last = -1;
  BEGIN_MARK.lastIndex = 0;
  for (let m = BEGIN_MARK.exec(line); m !== null; m = BEGIN_MARK.exec(line)) last = m.index + m[0].length;
  return last !== -1 && !END_MARK.test(line.slice(last));
}

export class LineMasker {
  readonly #c: CompiledMasking;
  readonly #max: number;
  readonly #overlap: number;
  readonly #decoder = new StringDecoder('utf8');
  readonly #counts = new Map<string, number>();
  readonly #sink: HitSink = { add: (r) => void this.#counts.set(r, (this.#counts.get(r) ?? 0) + 1) };
  /** The incomplete last line. */
  #tail = '';
  /** Complete lines (with their newline) held as a possible key block. */
  #held: string[] = [];
  #heldChars = 0;
  #heldKind: Held = 'none';
  /** A key block overflowed: its body lines are dropped until END or a non-body line. */
  #dropping = false;
  /** A cut ended inside an open private key: leading body characters of what follows are key too. */
  #keyContinues: 'private_key' | 'gcp_key' | null = null;
  #ended = false;

  constructor(spec: MaskingSpecInput | CompiledMasking, opts: LineMaskerOptions = {}) {
    try {
      this.#c = compileMasking(spec, opts);
    } catch (e) {
      throw maskingFailure(e);
    }
    const max = opts.maxHeldBytes ?? DEFAULT_MAX_HELD;
    if (!Number.isSafeInteger(max) || max < MIN_MAX_HELD) {
      throw new WritError('WRIT_MASKING_FAILED', `maxHeldBytes must be an integer of at least ${MIN_MAX_HELD}`);
    }
    this.#max = max;
    this.#overlap = Math.min(MAX_OVERLAP, Math.floor(max / 4));
  }

  /** Masked complete lines (each with its newline); the incomplete tail is held back. */
  push(chunk: Buffer | string): string {
    if (this.#ended) throw new WritError('WRIT_MASKING_FAILED', 'push after end');
    try {
      return this.#feed(typeof chunk === 'string' ? chunk : this.#decoder.write(chunk));
    } catch (e) {
      throw maskingFailure(e);
    }
  }

  /** Flushes everything held, masked. The masker cannot be used afterwards. */
  end(): string {
    if (this.#ended) return '';
    try {
      let out = this.#feed(this.#decoder.end());
      if (this.#tail.length > 0) out += this.#line(this.#tail);
      this.#tail = '';
      out += this.#flushHeld();
      this.#ended = true;
      return out;
    } catch (e) {
      throw maskingFailure(e);
    }
  }

  /** Masked spans so far, by reason (`detector:github_token` → 2). */
  summary(): { maskedSpans: number; reasons: Record<string, number> } {
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return { maskedSpans: n, reasons: Object.fromEntries(this.#counts) };
  }

  #feed(text: string): string {
    if (text.length === 0) return '';
    const from = this.#tail.length;
    this.#tail += text;
    let out = '';
    let start = 0;
    for (let nl = this.#tail.indexOf('\n', from); nl !== -1; nl = this.#tail.indexOf('\n', start)) {
      out += this.#line(this.#tail.slice(start, nl + 1));
      start = nl + 1;
    }
    if (start > 0) this.#tail = this.#tail.slice(start);
    while (this.#tail.length > this.#max) out += this.#cut();
    return out;
  }

  /** One line (with its newline, unless it is the stream's last). */
  #line(line: string): string {
    const content = line.endsWith('\n') ? line.slice(0, -1) : line;
    if (this.#dropping) {
      const e = END_MARK.exec(content);
      if (e) {
        this.#dropping = false;
        return this.#line(line.slice(e.index + e[0].length)); // the rest may open another key
      }
      if (BODY_LINE.test(content)) return '';
      this.#dropping = false;
    }
    if (this.#heldKind !== 'none') {
      if (END_MARK.test(content)) {
        this.#hold(line);
        // Another key opening after the END on the same line keeps the whole run held.
        if (opensBlock(content)) {
          this.#heldKind = 'begin';
          return '';
        }
        return this.#flushHeld();
      }
      if (this.#heldKind === 'begin' ? BODY_LINE.test(content) : B64_LINE.test(content)) {
        if (this.#heldChars + line.length <= this.#max) {
          this.#hold(line);
          return '';
        }
        const kind = this.#heldKind;
        const out = this.#flushHeld();
        if (kind === 'begin') {
          this.#dropping = true;
          return out;
        }
        return out + this.#line(line);
      }
      return this.#flushHeld() + this.#line(line);
    }
    if (this.#c.enabled.private_key) {
      if (content.includes('-----BEGIN ') && opensBlock(content)) return this.#startHold('begin', line);
      if (LONG_B64_LINE.test(content)) return this.#startHold('body', line);
    }
    return this.#mask(line);
  }

  #startHold(kind: Held, line: string): string {
    this.#heldKind = kind;
    this.#hold(line);
    return '';
  }

  #hold(line: string): void {
    this.#held.push(line);
    this.#heldChars += line.length;
  }

  #flushHeld(): string {
    if (this.#heldKind === 'none') return '';
    const text = this.#held.join('');
    this.#held = [];
    this.#heldChars = 0;
    this.#heldKind = 'none';
    return this.#mask(text);
  }

  /** Hits in `text`, with the continuation of a key cut earlier as a hit at its start. */
  #scan(text: string): Hit[] {
    const hits = scanString(text, this.#c.enabled) ?? [];
    const detector = this.#keyContinues;
    if (detector === null) return hits;
    this.#keyContinues = null;
    const body = pemBodyEnd(text, 0);
    if (body.end === 0) return hits;
    const first: Hit = { start: 0, end: body.end, detector, ctx: 0, ...(body.closed ? {} : { open: true }) };
    return [first, ...hits.filter((h) => h.start >= body.end)];
  }

  #mask(text: string): string {
    if (text.length === 0) return '';
    return renderHits(text, this.#scan(text), this.#c, this.#sink);
  }

  /** The held line passed the bound: emit a masked prefix, keep the rest. */
  #cut(): string {
    const t = this.#tail;
    const hits = this.#scan(t);
    let c = t.length - this.#overlap;
    for (let i = hits.length - 1; i >= 0; i--) {
      const h = hits[i]!;
      if (h.ctx < c && c < h.end) c = h.ctx;
    }
    let forced = false;
    if (c <= 0) {
      // One secret (with its context) runs from the start past the cut: emit it whole, masked.
      forced = true;
      c = hits[0]!.end;
      for (const h of hits) if (h.ctx < c && c < h.end) c = h.end;
    } else {
      const floor = Math.max(
        c - DELIMITER_LOOKBACK,
        hits.filter((h) => h.end <= c).reduce((m, h) => Math.max(m, h.end), 0),
      );
      for (let i = c - 1; i >= floor; i--) {
        if (DELIMITERS.has(t[i]!)) {
          c = i + 1;
          break;
        }
      }
    }
    const code = t.charCodeAt(c - 1);
    if (!forced && code >= 0xd800 && code <= 0xdbff && c > 1) c--; // never split a surrogate pair
    const before = hits.filter((h) => h.end <= c);
    const out = renderHits(t, before, this.#c, this.#sink, 0, c);
    const last = before[before.length - 1];
    const open = last !== undefined && last.open === true && last.end === c;
    this.#keyContinues = open && (last.detector === 'private_key' || last.detector === 'gcp_key') ? last.detector : null;
    this.#tail = t.slice(c);
    return out;
  }
}
