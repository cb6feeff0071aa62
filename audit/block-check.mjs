// @ts-check
/**
 * The per-block checks of the hash chain: parse, shape, session, hashes, links inside the
 * block. Plain JavaScript (types in block-check.d.mts) because verify() also runs it in
 * worker threads, which load modules without the TypeScript loader (under vitest too).
 * It imports nothing from the project; chain.test.ts holds its canonical JSON to the
 * bytes of schemas/canonical.ts.
 *
 * `hash = sha256Hex(canonicalJson(event without hash))`. Writers store events with their
 * keys in canonical order, so the native JSON.stringify yields the canonical text and only
 * the `"hash":…` member has to be cut out; anything else goes the generic way.
 */
import { hash as oneShotHash } from 'node:crypto';

export const ZERO_HASH = '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const ACTOR_KINDS = new Set(['agent', 'broker', 'worker', 'approver', 'operator', 'system']);
const decoder = new TextDecoder();

/** SHA-256 hex, one-shot (no Hash object per call; same digest as sha256Hex). @param {string} data */
export function sha256(data) {
  return oneShotHash('sha256', data, 'hex');
}

/**
 * Canonical JSON, byte for byte the same as schemas/canonical.ts: keys sorted, no
 * whitespace, undefined members dropped. @param {unknown} value @returns {string}
 */
export function canonicalJson(value) {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('canonicalJson: non-finite number');
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const o = /** @type {Record<string, unknown>} */ (value);
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/**
 * True when every object in `v` lists its keys in ascending code-unit order (so
 * JSON.stringify is already canonical). Integer-like keys, which JS enumerates first
 * whatever their order, make it false. @param {unknown} v @returns {boolean}
 */
export function isSortedDeep(v) {
  if (v === null || typeof v !== 'object') return typeof v !== 'number' || Number.isFinite(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!isSortedDeep(v[i])) return false;
    return true;
  }
  /** @type {string | undefined} */
  let prev;
  const o = /** @type {Record<string, unknown>} */ (v);
  for (const k in o) {
    if (prev !== undefined && !(prev < k)) return false;
    prev = k;
    const x = o[k];
    if (x === undefined || !isSortedDeep(x)) return false;
  }
  return true;
}

/** The canonical JSON an event's hash covers: every field but `hash`. @param {any} ev @returns {string} */
export function hashInput(ev) {
  if (isSortedDeep(ev)) {
    // JSON.stringify leaves out undefined members: blanking `hash` for the call (instead of
    // deleting it, which would slow the object down) yields the hash input directly.
    const hash = ev.hash;
    ev.hash = undefined;
    try {
      return JSON.stringify(ev);
    } finally {
      ev.hash = hash;
    }
  }
  let s = `{"actor":${canonicalJson(ev.actor)},"at":${canonicalJson(ev.at)}`;
  if (ev.digest !== undefined) s += `,"digest":${JSON.stringify(ev.digest)}`;
  s += `,"id":${JSON.stringify(ev.id)}`;
  if (ev.intentId !== undefined) s += `,"intentId":${JSON.stringify(ev.intentId)}`;
  if (ev.payload !== undefined) s += `,"payload":${canonicalJson(ev.payload)}`;
  if (ev.policyVersion !== undefined) s += `,"policyVersion":${JSON.stringify(ev.policyVersion)}`;
  return `${s},"prev":${JSON.stringify(ev.prev)},"sessionId":${JSON.stringify(ev.sessionId)},"type":${JSON.stringify(ev.type)},"v":${canonicalJson(ev.v)}}`;
}

/** The hash an event must carry. @param {any} ev @returns {string} */
export function eventHash(ev) {
  return sha256(hashInput(ev));
}

/**
 * Why a parsed event is not a well-formed AuditEvent, or undefined: AuditEventSchema's
 * rules (strict keys, types, hex hashes) by hand, because zod would be the verifier's
 * largest cost. `hexChainFields` false leaves the hex check of prev and hash to a caller
 * that compares them with computed hashes anyway.
 * @param {unknown} e @param {boolean} [hexChainFields] @returns {string | undefined}
 */
export function eventShapeError(e, hexChainFields = true) {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) return 'event is not an object';
  const ev = /** @type {Record<string, unknown>} */ (e);
  for (const k in ev) {
    const x = ev[k];
    switch (k) {
      case 'v': if (x !== 1) return 'v must be 1'; break;
      case 'id': case 'sessionId': case 'type': case 'intentId': case 'policyVersion':
        if (typeof x !== 'string') return `${k} must be a string`;
        break;
      case 'at': if (!Number.isSafeInteger(x)) return 'at must be an integer'; break;
      case 'actor': {
        const err = actorError(x);
        if (err) return err;
        break;
      }
      case 'payload': if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'payload must be an object'; break;
      case 'digest': if (typeof x !== 'string' || !HEX64.test(x)) return 'digest must be 64 hex'; break;
      case 'prev': case 'hash': if (typeof x !== 'string' || (hexChainFields && !HEX64.test(x))) return `${k} must be 64 hex`; break;
      default: return `unknown field ${JSON.stringify(k.slice(0, 40))}`;
    }
  }
  if (ev.v === undefined || ev.id === undefined || ev.sessionId === undefined || ev.type === undefined
    || ev.at === undefined || ev.actor === undefined || ev.prev === undefined || ev.hash === undefined) {
    return 'a required field is missing';
  }
  return undefined;
}

/** @param {unknown} x @returns {string | undefined} */
function actorError(x) {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'actor must be an object';
  const a = /** @type {Record<string, unknown>} */ (x);
  let n = 0;
  for (const _ in a) n++;
  if (n !== 2 || typeof a.kind !== 'string' || !ACTOR_KINDS.has(a.kind) || typeof a.id !== 'string') return 'actor must be {kind, id}';
  return undefined;
}

/** Why a parsed message body is not a block, or undefined. @param {unknown} b @returns {string | undefined} */
export function blockShapeError(b) {
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return 'block is not an object';
  const o = /** @type {Record<string, unknown>} */ (b);
  let n = 0;
  for (const _ in o) n++;
  if (n !== 3 || o.v !== 1 || o.type !== 'audit.block' || !Array.isArray(o.events) || o.events.length === 0) {
    return 'not an audit.block {v:1, type, events[1+]}';
  }
  return undefined;
}

/**
 * Everything about one block that does not depend on other blocks. The caller links
 * `firstPrev` to the session's head and checks `checkpoints` against the stream. With
 * `evidence`, the intent id and type of every well-formed event that names an intent are
 * returned too, flat (`[intentId, type, intentId, type, …]`), for the check against state.
 * @param {Uint8Array} data @param {string} sessionId @param {string} checkpointSession @param {boolean} [evidence]
 * @returns {import('./block-check.d.mts').BlockAnalysis}
 */
export function analyzeBlock(data, sessionId, checkpointSession, evidence = false) {
  /** @type {unknown} */
  let parsed;
  try {
    parsed = JSON.parse(decoder.decode(data));
  } catch {
    return { events: 0, errors: [{ index: -1, eventId: '', reason: 'block is not JSON' }] };
  }
  const shape = blockShapeError(parsed);
  if (shape) return { events: 0, errors: [{ index: -1, eventId: '', reason: shape }] };
  const events = /** @type {any[]} */ (/** @type {{ events: unknown[] }} */ (parsed).events);
  /** @type {import('./block-check.d.mts').BlockError[] | undefined} */
  let errors;
  /** @type {any[] | undefined} */
  let checkpoints;
  const fail = (/** @type {number} */ index, /** @type {string} */ eventId, /** @type {string} */ reason) => (errors ??= []).push({ index, eventId, reason });
  /** @type {string | undefined} */
  let firstPrev;
  /** @type {string | undefined} */
  let prev;
  let firstId = '';
  let firstIndex = -1;
  let valid = 0;
  let lastHash = '';
  let lastId = '';
  /** @type {string[] | undefined} */
  let found;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    const why = eventShapeError(ev, false);
    if (why) {
      fail(i, typeof ev?.id === 'string' ? ev.id : '', why);
      continue;
    }
    valid++;
    if (ev.sessionId !== sessionId) fail(i, ev.id, `event names session ${ev.sessionId} but is stored under ${sessionId}`);
    if (prev === undefined) {
      firstPrev = ev.prev;
      firstId = ev.id;
      firstIndex = i;
    } else if (ev.prev !== prev) fail(i, ev.id, `prev ${ev.prev.slice(0, 12)}… does not match the previous event's hash ${prev.slice(0, 12)}…`);
    if (eventHash(ev) !== ev.hash) fail(i, ev.id, 'hash does not match the event (altered)');
    if (sessionId === checkpointSession) (checkpoints ??= []).push(ev);
    else if (ev.type === 'checkpoint') fail(i, ev.id, 'checkpoint outside the checkpoint session');
    if (evidence && ev.intentId !== undefined) (found ??= []).push(ev.intentId, ev.type);
    prev = ev.hash;
    lastHash = ev.hash;
    lastId = ev.id;
  }
  return { events: valid, firstPrev, firstId, firstIndex, lastHash, lastId, ...(errors ? { errors } : {}), ...(checkpoints ? { checkpoints } : {}), ...(found ? { evidence: found } : {}) };
}
