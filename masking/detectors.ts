/**
 * Value detectors. scanString finds every hit in one string; cheap gates decide which
 * detectors run at all, so a typical cell costs two or three native scans.
 *
 * ReDoS: every pattern either starts with a literal, starts behind a lookbehind that
 * refuses a start inside a run of the characters it then consumes, or is bounded; the
 * e-mail and PEM (pem.ts) scanners are hand-written linear loops.
 */
import type { DetectorName, Hit } from './types.ts';
import { ibanLength, validCard, validIban, validSsn } from './checks.ts';
import { findPrivateKeys, isWs } from './pem.ts';

export type DetectorSet = Readonly<Record<DetectorName, boolean>>;

/** What a JSON key or field name says about the value under it. */
export const KeyHint = { none: 0, ssn: 1, awsSecret: 2, awsSession: 3 } as const;
export type KeyHint = (typeof KeyHint)[keyof typeof KeyHint];

// ---- gates --------------------------------------------------------------------------

/** Seven digits anywhere (anchored, so one linear attempt; slower than the pairs, so second): the fewest any card, SSN, phone or IBAN holds. */
const SEVEN_DIGITS = /^(?:\D*\d){7}/;
/** Three digit pairs close together: every card, SSN, phone and IBAN shape holds them. */
const DIGIT_GATE = /\d\d\D{0,2}\d\d\D{0,2}\d\d/;
/** A whole value that is an ISO date/timestamp or a UUID holds nothing any detector finds. */
const HARMLESS = /^(?:\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d(?::?\d\d)?)?)?|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;
/** The shortest token any token detector matches (`xoxb-` and ten characters). */
const MIN_TOKEN = 15;
/** Any token prefix or key-name context; case-insensitive so a mixed-case key name is not missed. */
const TOKEN_GATE = /A[KS]IA|ABIA|ACCA|A3T|AIza|gh[pousr]_|github_pat_|xox[a-z]-|xapp-|hooks\.slack\.com|eyJ|-----(?:BEGIN|END) |secret_?(?:access_?)?key|session_?token|private_key/i;

// ---- digit detectors ----------------------------------------------------------------

const CARD = /(?<![\d+])\d(?:[ -]?\d){12,18}(?!\d)/g;
const SSN_SEP = /(?<!\d|\d-)(\d{3})([- ])(\d{2})\2(\d{4})(?!\d|-\d)/g;
/** A bare nine-digit SSN is only trusted next to its keyword; nine-digit ids are everywhere. */
const SSN_CTX = /(?<![A-Za-z])(?:ssn|social[\s_-]*security(?:[\s_-]*(?:number|num|no))?)(?![a-z])[^\w\n]{0,5}(?:is[\s:]+)?(\d{9})(?!\d)/gi;
/**
 * Three shapes: `+` international; trunk-prefixed national (`030 1234567`, `020 7946 0958`);
 * NANP with separators (`(415) 555-2671`, `415.555.2671`). Bare digit runs never match.
 */
const PHONE = /(?<![\w+]|\d[.\/-])(?:(\+[1-9][\d ().\/-]{5,22}\d)|(0\d{1,4}(?:[ .-]|\/ ?)\d{2,8}(?:[ .-]\d{2,8}){0,4})|((?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}))(?!\w)/g;
const IBAN_START = /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?= ?[A-Z0-9])/g;

// ---- token detectors ----------------------------------------------------------------

const AWS_ID = /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])/g;
const AWS_SECRET = /(?<![A-Za-z0-9])(?:aws_?)?secret_?(?:access_?)?key["']?\s*(?::|=>?)\s*["']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])/gi;
const AWS_SESSION = /(?<![A-Za-z0-9])(?:aws_?)?session_?token["']?\s*(?::|=>?)\s*["']?([A-Za-z0-9/+=]{100,})/gi;
const GCP_API = /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/g;
const GCP_PK = /"private_key"\s*:\s*"((?:[^"\\]|\\.)*)("?)/g;
const GITHUB = /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})/g;
const SLACK = /(?<![A-Za-z0-9])(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})/g;
const SLACK_HOOK = /hooks\.slack\.com\/(?:services|workflows|triggers)\/([A-Za-z0-9/_-]+)/g;
const JWT = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}/g;
const URL_PW = /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}:\/\/[^\s:/?#"'<>]{0,512}:([^\s"'<>]{0,512})@/g;

// ---- key hints ------------------------------------------------------------------------

const HINT_SSN = /(?:^|[^A-Za-z])(?:ssn|SSN|Ssn)(?![a-z])|[a-z]S(?:sn|SN)(?![a-z])|social_?security|SOCIAL_?SECURITY|[Ss]ocial[Ss]ecurity/;
const HINT_SECRET = /secret_?(?:access_?)?key/i;
const HINT_SESSION = /session_?token/i;
const hintCache = new Map<string, KeyHint>();

/** What a JSON key or result field name says about its value; cached, keys repeat row after row. */
export function keyHintOf(key: string): KeyHint {
  let h = hintCache.get(key);
  if (h !== undefined) return h;
  h = HINT_SSN.test(key) ? KeyHint.ssn : HINT_SECRET.test(key) ? KeyHint.awsSecret : HINT_SESSION.test(key) ? KeyHint.awsSession : KeyHint.none;
  if (hintCache.size > 10_000) hintCache.clear();
  hintCache.set(key, h);
  return h;
}

// ---- the scan -------------------------------------------------------------------------

function add(hits: Hit[] | null, start: number, end: number, detector: DetectorName, ctx = start, open = false): Hit[] {
  const h: Hit = open ? { start, end, detector, ctx, open } : { start, end, detector, ctx };
  if (hits === null) return [h];
  hits.push(h);
  return hits;
}

/**
 * Every detector hit in `s`, sorted and merged so spans never overlap (a merged span takes
 * the reason of its longest part). Null when nothing was found.
 */
export function scanString(s: string, on: DetectorSet, hint: KeyHint = KeyHint.none): Hit[] | null {
  if (s.length < 6) return null;
  let hits: Hit[] | null = null;
  if (hint !== KeyHint.none) hits = hinted(s, on, hint, hits);
  if ((on.card || on.ssn || on.phone || on.iban) && DIGIT_GATE.test(s) && SEVEN_DIGITS.test(s) && !HARMLESS.test(s)) {
    if (on.card) hits = findCards(s, hits);
    if (on.ssn) hits = findSsns(s, hits);
    if (on.phone) hits = findPhones(s, hits);
    if (on.iban) hits = findIbans(s, hits);
  }
  if (on.email || on.url_password) {
    const at = s.indexOf('@');
    if (at !== -1) {
      const url = on.url_password && s.indexOf('://') !== -1;
      if (url) hits = findUrlPasswords(s, hits);
      if (on.email) hits = findEmails(s, at, url, hits);
    }
  }
  const tokens = on.aws_key || on.gcp_key || on.github_token || on.slack_token || on.jwt || on.private_key;
  if (tokens && s.length >= MIN_TOKEN && TOKEN_GATE.test(s)) hits = findTokens(s, on, hits);
  if (hits !== null && hits.length > 1) hits = mergeHits(hits);
  return hits;
}

function hinted(s: string, on: DetectorSet, hint: KeyHint, hits: Hit[] | null): Hit[] | null {
  const t = s.trim();
  const lead = s.indexOf(t);
  switch (hint) {
    case KeyHint.none:
      return hits;
    case KeyHint.ssn:
      return on.ssn && /^\d{9}$/.test(t) && validSsn(t.slice(0, 3), t.slice(3, 5), t.slice(5)) ? add(hits, lead, lead + 9, 'ssn') : hits;
    case KeyHint.awsSecret:
      return on.aws_key && /^[A-Za-z0-9/+=]{40}$/.test(t) ? add(hits, lead, lead + 40, 'aws_key') : hits;
    case KeyHint.awsSession:
      return on.aws_key && /^[A-Za-z0-9/+=]{100,}$/.test(t) ? add(hits, lead, lead + t.length, 'aws_key') : hits;
  }
}

const isSep = (c: number) => c === 32 || c === 45 || c === 46 || c === 47 || c === 40 || c === 41; // space - . / ( )
const isDigit = (c: number) => c >= 48 && c <= 57;

/** Which shape a digit candidate must have. */
const Shape = { card: 0, intl: 1, trunk: 2, nanp: 3 } as const;
type Shape = (typeof Shape)[keyof typeof Shape];

function validShape(shape: Shape, s: string, digits: string, start: number, end: number, stop: number): boolean {
  switch (shape) {
    case Shape.card:
      return validCard(digits);
    case Shape.intl:
      return validIntlPhone(s, start, end, digits);
    case Shape.trunk:
      return validTrunkPhone(s, start, end, digits);
    case Shape.nanp:
      return end === stop && validNanp(s, start, end, digits);
  }
}

/**
 * A candidate may run on into a neighbouring number (`4111 1111 1111 1111 12/25`): try the
 * longest prefix first, ending only where a digit group ends, until the shape accepts one.
 * Returns the end of the accepted span, or -1.
 */
function longestValid(s: string, start: number, stop: number, shape: Shape): number {
  let digits = '';
  const ends: number[] = [];
  for (let i = start; i < stop; i++) {
    if (isDigit(s.charCodeAt(i))) {
      digits += s[i];
      ends.push(i + 1);
    }
  }
  for (let n = digits.length; n > 0; n--) {
    const e = ends[n - 1]!;
    if (e !== stop && !isSep(s.charCodeAt(e))) continue;
    if (validShape(shape, s, digits.slice(0, n), start, e, stop)) return e;
  }
  return -1;
}

function findCards(s: string, hits: Hit[] | null): Hit[] | null {
  CARD.lastIndex = 0;
  for (let m = CARD.exec(s); m !== null; m = CARD.exec(s)) {
    const end = longestValid(s, m.index, m.index + m[0].length, Shape.card);
    if (end === -1) {
      CARD.lastIndex = m.index + 1;
      continue;
    }
    hits = add(hits, m.index, end, 'card');
    CARD.lastIndex = end;
  }
  return hits;
}

function findSsns(s: string, hits: Hit[] | null): Hit[] | null {
  SSN_SEP.lastIndex = 0;
  for (let m = SSN_SEP.exec(s); m !== null; m = SSN_SEP.exec(s)) {
    if (validSsn(m[1]!, m[3]!, m[4]!)) hits = add(hits, m.index, m.index + m[0].length, 'ssn');
  }
  SSN_CTX.lastIndex = 0;
  for (let m = SSN_CTX.exec(s); m !== null; m = SSN_CTX.exec(s)) {
    const d = m[1]!;
    const end = m.index + m[0].length;
    if (validSsn(d.slice(0, 3), d.slice(3, 5), d.slice(5))) hits = add(hits, end - 9, end, 'ssn', m.index);
  }
  return hits;
}

function validIntlPhone(s: string, start: number, end: number, digits: string): boolean {
  if (digits.length < 7 || digits.length > 15) return false;
  // Country codes 1 (NANP) and 7 are followed by exactly ten digits.
  if ((digits[0] === '1' || digits[0] === '7') && digits.length !== 11) return false;
  let depth = 0;
  let pairs = 0;
  for (let i = start + 1; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 40) {
      if (depth > 0 || pairs > 0) return false;
      depth = 1;
    } else if (c === 41) {
      if (depth !== 1) return false;
      depth = 0;
      pairs++;
    } else if (!isDigit(c) && !isDigit(s.charCodeAt(i + 1)) && s.charCodeAt(i + 1) !== 40) return false; // two separators in a row
  }
  return depth === 0;
}

function validTrunkPhone(s: string, start: number, end: number, digits: string): boolean {
  const max = digits.startsWith('00') ? 15 : 12;
  if (digits.length < 9 || digits.length > max) return false;
  // After the area code, one separator throughout: `05.01.2024 1030` is a date and a time.
  let first = -1;
  let sep = -1;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) continue;
    if (first === -1) {
      first = c;
      if (c === 47 && s.charCodeAt(i + 1) === 32) i++;
      continue;
    }
    if (sep === -1) sep = c;
    else if (c !== sep) return false;
  }
  return true;
}

function validNanp(s: string, start: number, end: number, digits: string): boolean {
  // Area code and exchange never start with 0 or 1.
  return digits.length === 10 && digits[0]! >= '2' && digits[3]! >= '2' && (s[start] === '(' || end - start === 12);
}

function findPhones(s: string, hits: Hit[] | null): Hit[] | null {
  PHONE.lastIndex = 0;
  for (let m = PHONE.exec(s); m !== null; m = PHONE.exec(s)) {
    const start = m.index;
    const stop = start + m[0].length;
    const shape = m[1] !== undefined ? Shape.intl : m[2] !== undefined ? Shape.trunk : Shape.nanp;
    const end = longestValid(s, start, stop, shape);
    if (end === -1) {
      PHONE.lastIndex = start + 1;
      continue;
    }
    hits = add(hits, start, end, 'phone');
    PHONE.lastIndex = end;
  }
  return hits;
}

const isUpperAlnum = (c: number) => (c >= 65 && c <= 90) || isDigit(c);
const isAlnum = (c: number) => isUpperAlnum(c) || (c >= 97 && c <= 122);

function findIbans(s: string, hits: Hit[] | null): Hit[] | null {
  IBAN_START.lastIndex = 0;
  for (let m = IBAN_START.exec(s); m !== null; m = IBAN_START.exec(s)) {
    const len = ibanLength(m[0].slice(0, 2));
    if (len === undefined) continue;
    // Exactly the country's length of characters, single spaces allowed between them.
    let chars = m[0];
    let i = m.index + 4;
    while (chars.length < len && i < s.length) {
      const c = s.charCodeAt(i);
      if (isUpperAlnum(c)) chars += s[i];
      else if (c !== 32 || !isUpperAlnum(s.charCodeAt(i + 1))) break;
      i++;
    }
    if (chars.length !== len || isAlnum(s.charCodeAt(i)) || !validIban(chars)) continue;
    hits = add(hits, m.index, i, 'iban');
    IBAN_START.lastIndex = i;
  }
  return hits;
}

// ---- e-mail and URL passwords --------------------------------------------------------

const isLocal = (c: number) => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45; // . _ % + -
const isDomain = (c: number) => isAlnum(c) || c === 46 || c === 45;

function validDomain(d: string): boolean {
  const dot = d.lastIndexOf('.');
  if (dot <= 0 || d.includes('..') || d.charCodeAt(0) === 45) return false;
  const tld = d.slice(dot + 1);
  return tld.length >= 2 && tld.length <= 63 && /^[A-Za-z]+$/.test(tld);
}

/** How far back a URL's `://` is looked for (the password detector's user part is at most 512 long). */
const USERINFO_LOOKBACK = 600;

/** Is the `user:` before the local part the userinfo of a URL (`scheme://user:pw@host`)? Bounded scan. */
function inUrlUserinfo(s: string, localStart: number): boolean {
  if (s.charCodeAt(localStart - 1) !== 58) return false;
  const floor = Math.max(0, localStart - USERINFO_LOOKBACK);
  for (let k = localStart - 2; k >= floor; k--) {
    const c = s.charCodeAt(k);
    if (c === 47) return k >= 2 && s.charCodeAt(k - 1) === 47 && s.charCodeAt(k - 2) === 58; // the `//` of `://`
    if (isWs(c)) return false;
  }
  return false;
}

/** Hand-written: each `@` scans left and right at most to the previous/next `@`, so the cost is linear. */
function findEmails(s: string, at: number, urlAware: boolean, hits: Hit[] | null): Hit[] | null {
  let floor = 0;
  for (; at !== -1; at = s.indexOf('@', at + 1)) {
    let i = at;
    while (i > floor && isLocal(s.charCodeAt(i - 1))) i--;
    while (i < at && s.charCodeAt(i) === 46) i++;
    let j = at + 1;
    while (j < s.length && isDomain(s.charCodeAt(j))) j++;
    while (j > at + 1 && (s.charCodeAt(j - 1) === 46 || s.charCodeAt(j - 1) === 45)) j--;
    floor = at + 1;
    if (i === at || !validDomain(s.slice(at + 1, j))) continue;
    if (urlAware && inUrlUserinfo(s, i)) continue; // the password detector owns that span
    hits = add(hits, i, j, 'email');
    floor = j;
  }
  return hits;
}

function findUrlPasswords(s: string, hits: Hit[] | null): Hit[] | null {
  URL_PW.lastIndex = 0;
  for (let m = URL_PW.exec(s); m !== null; m = URL_PW.exec(s)) {
    const pw = m[1]!;
    if (pw.length === 0) continue;
    // `https://host:8080/x?to=a@b.com` is a port and a path, not a password.
    const cut = pw.search(/[/?#]/);
    if (cut !== -1 && /^\d{1,5}$/.test(pw.slice(0, cut))) continue;
    const end = m.index + m[0].length - 1;
    hits = add(hits, end - pw.length, end, 'url_password', m.index);
  }
  return hits;
}

// ---- tokens ---------------------------------------------------------------------------

function findAll(re: RegExp, s: string, detector: DetectorName, hits: Hit[] | null, valueFromEnd = 0): Hit[] | null {
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const end = m.index + m[0].length;
    const start = valueFromEnd > 0 ? end - valueFromEnd : m.index;
    hits = add(hits, start, end, detector, m.index);
  }
  return hits;
}

function findTokens(s: string, on: DetectorSet, hits: Hit[] | null): Hit[] | null {
  if (on.aws_key) {
    hits = findAll(AWS_ID, s, 'aws_key', hits);
    hits = findAll(AWS_SECRET, s, 'aws_key', hits, 40);
    AWS_SESSION.lastIndex = 0;
    for (let m = AWS_SESSION.exec(s); m !== null; m = AWS_SESSION.exec(s)) {
      const end = m.index + m[0].length;
      hits = add(hits, end - m[1]!.length, end, 'aws_key', m.index);
    }
  }
  if (on.gcp_key) {
    hits = findAll(GCP_API, s, 'gcp_key', hits);
    GCP_PK.lastIndex = 0;
    for (let m = GCP_PK.exec(s); m !== null; m = GCP_PK.exec(s)) {
      const v = m[1]!;
      const end = m.index + m[0].length - m[2]!.length;
      if (v.length > 0) hits = add(hits, end - v.length, end, 'gcp_key', m.index, m[2] === '');
    }
  }
  if (on.github_token) hits = findAll(GITHUB, s, 'github_token', hits);
  if (on.slack_token) {
    hits = findAll(SLACK, s, 'slack_token', hits);
    SLACK_HOOK.lastIndex = 0;
    for (let m = SLACK_HOOK.exec(s); m !== null; m = SLACK_HOOK.exec(s)) {
      const end = m.index + m[0].length;
      hits = add(hits, end - m[1]!.length, end, 'slack_token', m.index);
    }
  }
  if (on.jwt) {
    JWT.lastIndex = 0;
    for (let m = JWT.exec(s); m !== null; m = JWT.exec(s)) {
      if (jwtHeaderOk(m[0].slice(0, m[0].indexOf('.')))) hits = add(hits, m.index, m.index + m[0].length, 'jwt');
    }
  }
  if (on.private_key) hits = findKeys(s, hits);
  return hits;
}

function jwtHeaderOk(b64: string): boolean {
  const text = Buffer.from(b64, 'base64url').toString('utf8');
  if (!text.includes('"alg"')) return false; // cheap refusal before a parse that would throw
  try {
    const h: unknown = JSON.parse(text);
    return typeof h === 'object' && h !== null && typeof (h as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

// ---- private keys ---------------------------------------------------------------------

function findKeys(s: string, hits: Hit[] | null): Hit[] | null {
  const found: Hit[] = [];
  findPrivateKeys(s, found);
  return found.length === 0 ? hits : hits === null ? found : hits.concat(found);
}

// ---- merging --------------------------------------------------------------------------

/** Sorts and unites overlapping hits: nothing of any detected span may survive. */
function mergeHits(hits: Hit[]): Hit[] {
  hits.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: Hit[] = [hits[0]!];
  for (let i = 1; i < hits.length; i++) {
    const h = hits[i]!;
    const prev = out[out.length - 1]!;
    if (h.start >= prev.end) {
      out.push(h);
      continue;
    }
    const longer = h.end - h.start > prev.end - prev.start;
    out[out.length - 1] = {
      start: prev.start,
      end: Math.max(prev.end, h.end),
      detector: longer ? h.detector : prev.detector,
      ctx: Math.min(prev.ctx, h.ctx),
      ...((h.end >= prev.end ? h.open : prev.open) ? { open: true } : {}),
    };
  }
  return out;
}
