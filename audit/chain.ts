/**
 * The hash chain's arithmetic, shared by the writer and the verifier: the hash of an
 * event, the wire form of a block, and the light structural check of a parsed event.
 *
 * `hash = sha256Hex(canonicalJson(event without hash))` (schemas/canonical.ts). The
 * verifier re-derives it for every event, so this file is the hot loop of `verify`: it
 * avoids the generic serializer where a cheaper route gives the same bytes, and a unit
 * test holds both routes to the same output.
 */
import { hash as oneShotHash } from 'node:crypto';
import { canonicalJson } from '../schemas/index.ts';
import type { AuditEvent } from '../schemas/index.ts';

/** `prev` of the first event of every chain. */
export const ZERO_HASH = '0'.repeat(64);

/** The session that holds the signed checkpoints; no other writer may append to it. */
export const CHECKPOINT_SESSION = '_checkpoints';

/** Header on every block message: the session's chain length after this block. */
export const CHAIN_LENGTH_HEADER = 'Writ-Chain-Length';

const HEX64 = /^[0-9a-f]{64}$/;
const ACTOR_KINDS: ReadonlySet<string> = new Set(['agent', 'broker', 'worker', 'approver', 'operator', 'system']);

/** SHA-256 hex, one-shot (`crypto.hash` avoids a Hash object per call; same digest as `sha256Hex`). */
export function sha256(data: string): string {
  return oneShotHash('sha256', data, 'hex');
}

/** The canonical JSON an event's hash covers: every field but `hash`, keys sorted. */
export function hashInput(ev: AuditEvent): string {
  // Parsed events whose keys (at every depth) are already sorted serialize canonically
  // with the native JSON.stringify; only then is the `"hash":…` member cut out.
  if (isSortedDeep(ev)) {
    const s = JSON.stringify(ev);
    const at = s.indexOf(',"hash":"');
    if (at > 0 && s.charCodeAt(at + 73) === 34 /* " */) return s.slice(0, at) + s.slice(at + 74);
  }
  return canonicalEvent(ev);
}

/** The hash an event must carry. */
export function eventHash(ev: AuditEvent): string {
  return sha256(hashInput(ev));
}

/** Canonical JSON of an event without its hash, written out field by field (the keys in sorted order). */
function canonicalEvent(e: AuditEvent): string {
  let s = `{"actor":${canonicalJson(e.actor)},"at":${canonicalJson(e.at)}`;
  if (e.digest !== undefined) s += `,"digest":${JSON.stringify(e.digest)}`;
  s += `,"id":${JSON.stringify(e.id)}`;
  if (e.intentId !== undefined) s += `,"intentId":${JSON.stringify(e.intentId)}`;
  if (e.payload !== undefined) s += `,"payload":${canonicalJson(e.payload)}`;
  if (e.policyVersion !== undefined) s += `,"policyVersion":${JSON.stringify(e.policyVersion)}`;
  return `${s},"prev":${JSON.stringify(e.prev)},"sessionId":${JSON.stringify(e.sessionId)},"type":${JSON.stringify(e.type)},"v":${canonicalJson(e.v)}}`;
}

/**
 * True when every object in `v` lists its keys in ascending code-unit order, so that
 * JSON.stringify already yields canonical JSON. Integer-like keys, which JS enumerates
 * first whatever their order, make this false and send the caller to the slow path.
 */
export function isSortedDeep(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return typeof v !== 'number' || Number.isFinite(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!isSortedDeep(v[i])) return false;
    return true;
  }
  let prev: string | undefined;
  for (const k in v) {
    if (prev !== undefined && !(prev < k)) return false;
    prev = k;
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || !isSortedDeep(x)) return false;
  }
  return true;
}

/** Serializes a block with events in canonical key order, so the verifier takes its fast path. */
export function blockJson(events: readonly AuditEvent[]): string {
  return `{"events":[${events.map((e) => (isSortedDeep(e) ? JSON.stringify(e) : canonicalJson(e))).join(',')}],"type":"audit.block","v":1}`;
}

/**
 * Why a parsed event is not a well-formed AuditEvent, or undefined when it is. The same
 * rules as AuditEventSchema (strict keys, types, hex hashes), checked by hand because the
 * verifier runs it on every event and zod would be its largest cost.
 */
export function eventShapeError(e: unknown): string | undefined {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) return 'event is not an object';
  const ev = e as Record<string, unknown>;
  for (const k in ev) {
    const x = ev[k];
    switch (k) {
      case 'v': if (x !== 1) return 'v must be 1'; break;
      case 'id': case 'sessionId': case 'type': if (typeof x !== 'string') return `${k} must be a string`; break;
      case 'intentId': case 'policyVersion': if (typeof x !== 'string') return `${k} must be a string`; break;
      case 'at': if (!Number.isSafeInteger(x)) return 'at must be an integer'; break;
      case 'actor': { const err = actorError(x); if (err) return err; break; }
      case 'payload': if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'payload must be an object'; break;
      case 'digest': if (typeof x !== 'string' || !HEX64.test(x)) return 'digest must be 64 hex'; break;
      case 'prev': case 'hash': if (typeof x !== 'string' || !HEX64.test(x)) return `${k} must be 64 hex`; break;
      default: return `unknown field ${JSON.stringify(k.slice(0, 40))}`;
    }
  }
  if (ev['v'] === undefined || ev['id'] === undefined || ev['sessionId'] === undefined || ev['type'] === undefined
    || ev['at'] === undefined || ev['actor'] === undefined || ev['prev'] === undefined || ev['hash'] === undefined) {
    return 'a required field is missing';
  }
  return undefined;
}

function actorError(x: unknown): string | undefined {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'actor must be an object';
  const a = x as Record<string, unknown>;
  let n = 0;
  for (const _ in a) n++;
  if (n !== 2 || typeof a['kind'] !== 'string' || !ACTOR_KINDS.has(a['kind']) || typeof a['id'] !== 'string') return 'actor must be {kind, id}';
  return undefined;
}

/** Why a parsed message body is not a block, or undefined. Events are checked one by one by the caller. */
export function blockShapeError(b: unknown): string | undefined {
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return 'block is not an object';
  const o = b as Record<string, unknown>;
  let n = 0;
  for (const _ in o) n++;
  if (n !== 3 || o['v'] !== 1 || o['type'] !== 'audit.block' || !Array.isArray(o['events']) || o['events'].length === 0) {
    return 'not an audit.block {v:1, type, events[1+]}';
  }
  return undefined;
}
