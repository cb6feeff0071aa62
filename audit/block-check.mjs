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
import { createHash, hash as oneShotHash, verify as verifySignature } from 'node:crypto';

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
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
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
 * The hash of a stored event, or undefined when it has none: canonical JSON refuses a number
 * JSON.parse made infinite (`1e400`), and nesting deep enough exhausts the stack. Anyone who
 * may publish a block can store such an event, so a reader gets a break to report, never an
 * exception (one such block made verify and the Checkpointer throw on every run).
 * @param {any} ev @returns {string | undefined}
 */
export function storedEventHash(ev) {
  try {
    return eventHash(ev);
  } catch {
    return undefined;
  }
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
      case 'v':
        if (x !== 1) return 'v must be 1';
        break;
      case 'id':
      case 'sessionId':
      case 'type':
      case 'intentId':
      case 'policyVersion':
        if (typeof x !== 'string') return `${k} must be a string`;
        break;
      case 'at':
        if (!Number.isSafeInteger(x)) return 'at must be an integer';
        break;
      case 'actor': {
        const err = actorError(x);
        if (err) return err;
        break;
      }
      case 'payload':
        if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'payload must be an object';
        break;
      case 'digest':
        if (typeof x !== 'string' || !HEX64.test(x)) return 'digest must be 64 hex';
        break;
      case 'prev':
      case 'hash':
        if (typeof x !== 'string' || (hexChainFields && !HEX64.test(x))) return `${k} must be 64 hex`;
        break;
      default:
        return `unknown field ${JSON.stringify(k.slice(0, 40))}`;
    }
  }
  if (
    ev.v === undefined ||
    ev.id === undefined ||
    ev.sessionId === undefined ||
    ev.type === undefined ||
    ev.at === undefined ||
    ev.actor === undefined ||
    ev.prev === undefined ||
    ev.hash === undefined
  ) {
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
  const signed = o.sig !== undefined;
  if (n !== (signed ? 4 : 3) || o.v !== 1 || o.type !== 'audit.block' || !Array.isArray(o.events) || o.events.length === 0) {
    return 'not an audit.block {v:1, type, events[1+], sig?}';
  }
  if (signed) {
    const g = /** @type {Record<string, unknown>} */ (o.sig);
    let k = 0;
    if (g !== null && typeof g === 'object' && !Array.isArray(g)) for (const _ in g) k++;
    const batched = g?.p !== undefined;
    if (k !== (batched ? 3 : 2) || typeof g.kid !== 'string' || !KID.test(g.kid) || typeof g.s !== 'string' || !SIG.test(g.s)) return 'block signature is not {kid, s} or {kid, p, s}';
    if (batched && !(Array.isArray(g.p) && g.p.length > 0 && g.p.length <= MAX_BATCH_DEPTH && g.p.every((x) => typeof x === 'string' && PATH_STEP.test(x)))) {
      return `block signature's batch path is not 1-${MAX_BATCH_DEPTH} steps of l|r and a base64url SHA-256`;
    }
  }
  return undefined;
}

const KID = /^[0-9a-f]{16}$/;
/** A step of a batch path: the side the sibling is on, then its 32-byte hash in base64url. */
const PATH_STEP = /^[lr][A-Za-z0-9_-]{43}$/;
/** Deeper than any batch a writer makes (it signs at most 2^MAX_BATCH_DEPTH blocks at once). */
const MAX_BATCH_DEPTH = 16;
/** Domain separation of a batch signature, and of leaves from inner nodes in its hash tree. */
const BATCH_SIG_CONTEXT = 'writ-audit-batch-v1\n';
const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);
/** An Ed25519 signature is 64 bytes: 86 base64url characters. */
const SIG = /^[A-Za-z0-9_-]{86}$/;
/** Domain separation: a block signature can never read as a grant or a checkpoint signed with the same key. */
const BLOCK_SIG_CONTEXT = 'writ-audit-block-v1\n';

/**
 * What a writer signs for a block: the session, its key id and every event's hash in order.
 * Each hash covers all of its event's other fields, prev included, so this commits to the
 * block's canonical bytes and to where it sits in the chain, and costs nothing extra to
 * rebuild for a verifier that checks those hashes anyway.
 * @param {string} sessionId @param {string} kid @param {readonly string[]} hashes @returns {string}
 */
export function blockSigningText(sessionId, kid, hashes) {
  return `${BLOCK_SIG_CONTEXT}${sessionId}\n${kid}\n${hashes.join('\n')}`;
}

/**
 * Blocks signed together (a writer's blocks of one turn, of any sessions) share one signature
 * over the root of a hash tree whose leaves are the blocks' signing texts; each block carries
 * the path from its leaf to that root, so it is checked on its own, as a block signed alone is.
 * A leaf is SHA-256(0x00 ‖ blockSigningText), an inner node SHA-256(0x01 ‖ left ‖ right): no
 * leaf can pass for a node. The signed text has its own context, so a batch signature never
 * reads as a block's, a grant's or a checkpoint's.
 * @param {string} sessionId @param {string} kid @param {readonly string[]} hashes @returns {Buffer}
 */
export function blockLeaf(sessionId, kid, hashes) {
  return createHash('sha256')
    .update(LEAF)
    .update(blockSigningText(sessionId, kid, hashes))
    .digest();
}

/** @param {Buffer} left @param {Buffer} right @returns {Buffer} */
export function batchNode(left, right) {
  return createHash('sha256').update(NODE).update(left).update(right).digest();
}

/** What a batch's writer signs. @param {string} kid @param {Buffer} root @returns {string} */
export function batchSigningText(kid, root) {
  return `${BATCH_SIG_CONTEXT}${kid}\n${root.toString('base64url')}`;
}

/** The root a leaf and its path lead to (path shape already checked). @param {Buffer} leaf @param {readonly string[]} path @returns {Buffer} */
function batchRoot(leaf, path) {
  let h = leaf;
  for (const step of path) {
    const sibling = Buffer.from(step.slice(1), 'base64url');
    h = step[0] === 'l' ? batchNode(sibling, h) : batchNode(h, sibling);
  }
  return h;
}

/**
 * Batch roots whose signature verified, per key: the other blocks of a batch are checked by
 * their path alone. Keyed by the key object (not its id), so a registry that maps an id to
 * another key never reuses a result. Bounded: cleared when full.
 * @type {WeakMap<object, Map<string, true>>}
 */
const verifiedRoots = new WeakMap();
const MAX_VERIFIED_ROOTS = 4096;

/** @param {import('node:crypto').KeyObject} key @param {string} kid @param {Buffer} root @param {string} s @returns {boolean} */
function verifyBatchRoot(key, kid, root, s) {
  let seen = verifiedRoots.get(key);
  const id = `${root.toString('base64url')}.${s}`;
  if (seen?.has(id)) return true;
  if (!verifySignature(null, Buffer.from(batchSigningText(kid, root)), key, Buffer.from(s, 'base64url'))) return false;
  if (!seen) verifiedRoots.set(key, (seen = new Map()));
  if (seen.size >= MAX_VERIFIED_ROOTS) seen.clear();
  seen.set(id, true);
  return true;
}

/**
 * Whether a writer registered as `kind` may sign an event of `type`. Workers report on
 * execution only (never exec.lost / exec.expired: those are the broker's verdicts about a
 * worker); the broker writes everything else and no execution report of a worker; any
 * other kind only events named after itself (`operator.…`). Unknown is refused.
 * @param {string} kind @param {string} type @returns {boolean}
 */
function typeAllowedFor(kind, type) {
  const brokerExec = type === 'exec.lost' || type === 'exec.expired';
  if (kind === 'worker') return type.startsWith('exec.') && !brokerExec;
  if (kind === 'broker') return !type.startsWith('exec.') || brokerExec;
  return ACTOR_KINDS.has(kind) && type.startsWith(`${kind}.`);
}

/**
 * Why `events` (well-formed, of one block) may not carry signature `sig`, per event:
 * unknown key, bad signature, or an event its signer's registered kind, id or validity
 * period does not cover. `hashes` are the events' stored hashes (checked by the caller).
 * @param {any[]} events @param {{kid: string, s: string, p?: string[]}} sig @param {string} sessionId
 * @param {ReadonlyMap<string, import('./block-check.d.mts').Signer>} signers
 * @param {(index: number, eventId: string, reason: string) => void} fail
 */
function checkBlockSignature(events, sig, sessionId, signers, fail, bound) {
  const who = signers.get(sig.kid);
  if (!who) {
    for (let i = 0; i < events.length; i++) fail(i, events[i].id, `${events[i].type} event in a block signed with unregistered key ${sig.kid}`);
    return;
  }
  let ok = false;
  try {
    const hashes = events.map((e) => e.hash);
    ok = sig.p
      ? verifyBatchRoot(who.key, sig.kid, batchRoot(blockLeaf(sessionId, sig.kid, hashes), sig.p), sig.s)
      : verifySignature(null, Buffer.from(blockSigningText(sessionId, sig.kid, hashes)), who.key, Buffer.from(sig.s, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) {
    for (let i = 0; i < events.length; i++) fail(i, events[i].id, `${events[i].type} event in a block whose signature by key ${sig.kid} does not verify (forged or altered)`);
    return;
  }
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (e.actor.kind !== who.kind) fail(i, e.id, `${e.type} event names a ${e.actor.kind} actor but is signed by ${who.kind} key ${sig.kid}`);
    else if (who.id !== undefined && e.actor.id !== who.id) fail(i, e.id, `${e.type} event names actor ${e.actor.id} but is signed by key ${sig.kid} of ${who.id}`);
    else if (!typeAllowedFor(who.kind, e.type)) fail(i, e.id, `a ${who.kind} key (${sig.kid}) may not sign ${e.type} events`);
    else if ((who.notBefore !== undefined && e.at < who.notBefore) || (who.notAfter !== undefined && e.at > who.notAfter))
      fail(i, e.id, `${e.type} event at ${e.at} is outside key ${sig.kid}'s validity period`);
    // A key bound to targets reports execution only of their intents: which target an intent is
    // for is in the broker's intent.received, another block, so the caller checks it
    // (BlockAnalysis.bound). A refusal says nothing ran, and is written for whatever order came
    // (a forged one may name any intent, or none the broker ever received): it is not bound.
    else if (who.targets !== undefined && e.type !== 'exec.refused') bound.push(i, e.id, e.intentId ?? '');
  }
}

/** Whether any registered key is bound to targets (then intent.received targets are returned). @type {WeakMap<object, boolean>} */
const anyBoundCache = new WeakMap();
/** @param {ReadonlyMap<string, import('./block-check.d.mts').Signer>} signers */
function anyBound(signers) {
  let b = anyBoundCache.get(signers);
  if (b === undefined) {
    b = [...signers.values()].some((k) => k.targets !== undefined);
    anyBoundCache.set(signers, b);
  }
  return b;
}

/**
 * Everything about one block that does not depend on other blocks. The caller links
 * `firstPrev` to the session's head and checks `checkpoints` against the stream. With
 * `evidence`, the intent id and type of every well-formed event that names an intent are
 * returned too, flat (`[intentId, type, intentId, type, …]`), for the check against state.
 * With `signers`, the block's signature and its signer's rights over every event are checked
 * too (an unsigned block is returned as `unsigned`: whether that is allowed depends on its
 * stream sequence, which the caller knows).
 * @param {Uint8Array} data @param {string} sessionId @param {string} checkpointSession @param {boolean} [evidence]
 * @param {ReadonlyMap<string, import('./block-check.d.mts').Signer>} [signers]
 * @returns {import('./block-check.d.mts').BlockAnalysis}
 */
export function analyzeBlock(data, sessionId, checkpointSession, evidence = false, signers = undefined) {
  // Whatever a block holds, it is reported, never thrown: a throw here stopped verify (and the
  // Checkpointer) on every run, and the stream keeps the block for good.
  try {
    return analyzeBlockUnsafe(data, sessionId, checkpointSession, evidence, signers);
  } catch (e) {
    return { events: 0, errors: [{ index: -1, eventId: '', reason: `block could not be checked (${e instanceof Error ? e.message.slice(0, 200) : 'error'})` }] };
  }
}

/** analyzeBlock's work; it may throw. @param {Uint8Array} data @param {string} sessionId @param {string} checkpointSession @param {boolean} evidence @param {ReadonlyMap<string, import('./block-check.d.mts').Signer> | undefined} signers @returns {import('./block-check.d.mts').BlockAnalysis} */
function analyzeBlockUnsafe(data, sessionId, checkpointSession, evidence, signers) {
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
  /** @type {string[] | undefined} */
  let received;
  const bindTargets = signers !== undefined && anyBound(signers);
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
    const computed = storedEventHash(ev);
    if (computed === undefined) fail(i, ev.id, 'the event has no hash (a number out of range, or nesting too deep)');
    else if (computed !== ev.hash) fail(i, ev.id, 'hash does not match the event (altered)');
    if (sessionId === checkpointSession) (checkpoints ??= []).push(ev);
    else if (ev.type === 'checkpoint') fail(i, ev.id, 'checkpoint outside the checkpoint session');
    // A vote is evidence of an approval only when the broker counted it.
    if (evidence && ev.intentId !== undefined) (found ??= []).push(ev.intentId, ev.type === 'approval.vote' && ev.payload?.counted !== true ? 'approval.vote.uncounted' : ev.type);
    // Only a broker's word counts for the target (the caller checks the signer's kind).
    if (bindTargets && ev.type === 'intent.received' && ev.intentId !== undefined && typeof ev.payload?.target === 'string') (received ??= []).push(ev.intentId, ev.payload.target);
    prev = ev.hash;
    lastHash = ev.hash;
    lastId = ev.id;
  }
  const sig = /** @type {{ sig?: { kid: string, s: string, p?: string[] } }} */ (parsed).sig;
  // The signature covers every event: a block with a malformed event is not checked further.
  /** @type {(string | number)[]} */
  const bound = [];
  if (signers && sig && valid === events.length) checkBlockSignature(events, sig, sessionId, signers, fail, bound);
  return {
    events: valid,
    firstPrev,
    firstId,
    firstIndex,
    lastHash,
    lastId,
    ...(sig ? { signer: sig.kid } : { unsigned: true }),
    ...(errors ? { errors } : {}),
    ...(checkpoints ? { checkpoints } : {}),
    ...(found ? { evidence: found } : {}),
    ...(received ? { received } : {}),
    ...(bound.length > 0 ? { bound } : {}),
  };
}
