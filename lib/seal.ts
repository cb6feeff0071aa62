/**
 * Sealed outcomes and per-principal inboxes: the two halves of agent isolation on a shared bus.
 *
 * - An outcome's data (result rows, decision, error text) is encrypted to an X25519 public key
 *   the agent put in its intent or API request: the sender's ephemeral key, ECDH, HKDF-SHA256
 *   to an AES-256-GCM key, a fresh IV per box. The ephemeral key is the sender process's, new
 *   every minute (and after 2^20 boxes), not one per box: a key pair, an ECDH and an HKDF per
 *   box were the largest single CPU cost of an intent (two boxes each: the agent's and the
 *   durable copy's). What it changes: the AES key to one recipient repeats within the minute,
 *   with 96-bit IVs that are a random prefix of the ephemeral key's and a count of its boxes (GCM's
 *   deterministic construction: never one IV twice under one key, with no random draw per box); and a copy of the sender's
 *   memory opens that minute's boxes, which the sender held in clear anyway. A recipient's own
 *   key opens all its boxes either way. The ids and status stay in clear so services can route,
 *   and are bound as additional data, so a relay cannot move a sealed body to another intent
 *   or flip its status. Whoever else subscribes to the inbox, or reads the durable results
 *   stream, gets ciphertext only.
 * - Every principal has one inbox id, derived from its verified issuer and subject; replies go
 *   only to subjects under it (lib/reply.ts enforces it). The SDK derives the same id from its
 *   own token, so a request names its own inbox and nobody else's.
 *
 * Client and services share this file; it depends on node:crypto and the wire schemas only.
 */
import { LRUCache } from 'lru-cache';
import { SealedOutcomeBodySchema, type Outcome } from '../schemas/messages.ts';
import { createHash, createPrivateKey, createPublicKey, createCipheriv, createDecipheriv, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';

const SEAL_ALG = 'X25519-HKDF-SHA256-A256GCM';
const INFO = Buffer.from('writ/outcome/v1');
/** PKCS#8 prefix of a raw X25519 private key (RFC 8410): node imports raw keys only this way or as a JWK with x. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export interface SealedBox {
  alg: typeof SEAL_ALG;
  /** SHA-256 (16 bytes, base64url) of the recipient's public key, so a holder of several keys picks the right one. */
  kid: string;
  epk: string;
  iv: string;
  ct: string;
  tag: string;
}

/** The fields a sealed body is bound to (kept in clear for routing). */
export interface SealBinding {
  intentId: string;
  sessionId: string;
  status: string;
  /** When an outcome was made: bound, so a stored copy cannot be made to look younger (results.maxAgeSec). */
  at?: number | undefined;
}

export interface SealKeyPair {
  privateKey: KeyObject;
  /** Raw 32-byte public key, base64url: what goes into an intent's `replyKey`. */
  publicKey: string;
}

export function generateSealKeyPair(): SealKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: publicKey.export({ format: 'jwk' }).x! };
}

/** An X25519 key pair derived from secret bytes (the broker derives its results key from its grant key). */
export function sealKeyPairFromSecret(secret: Uint8Array, label: string): SealKeyPair {
  const raw = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), Buffer.from(`writ/seal-key/${label}`), 32));
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: createPublicKey(privateKey).export({ format: 'jwk' }).x! };
}

/**
 * Recipients seen recently, with their key object and key id: an agent seals every intent to
 * the same key, so importing it and hashing it once saves both on every outcome. Bounded.
 */
const recipients = new LRUCache<string, { key: KeyObject; kid: string }>({ max: 4096 });

function importKey(publicKey: string): KeyObject {
  if (Buffer.from(publicKey, 'base64url').length !== 32) throw new Error('an X25519 public key is 32 bytes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: publicKey }, format: 'jwk' });
}

function recipient(publicKey: string): { key: KeyObject; kid: string } {
  let r = recipients.get(publicKey);
  if (!r) {
    r = { key: importKey(publicKey), kid: createHash('sha256').update(Buffer.from(publicKey, 'base64url')).digest().subarray(0, 16).toString('base64url') };
    recipients.set(publicKey, r);
  }
  return r;
}

function keyId(publicKey: string): string {
  return recipient(publicKey).kid;
}

function aad(b: SealBinding): Buffer {
  return Buffer.from(`${SEAL_ALG}\0${b.intentId}\0${b.sessionId}\0${b.status}${b.at === undefined ? '' : `\0${b.at}`}`);
}

function deriveKey(shared: Buffer, epk: string, recipient: string): Buffer {
  const salt = Buffer.concat([Buffer.from(epk, 'base64url'), Buffer.from(recipient, 'base64url')]);
  return Buffer.from(hkdfSync('sha256', shared, salt, INFO, 32));
}

/** How long, and for how many boxes, one ephemeral sender key serves (see the file's comment). */
const EPHEMERAL_MS = 60_000;
const EPHEMERAL_MAX_BOXES = 1 << 20;

interface Ephemeral {
  privateKey: KeyObject;
  epk: string;
  until: number;
  boxes: number;
  /** AES keys derived for each recipient under this ephemeral key. */
  keys: Map<string, Buffer>;
  /** The IVs' fixed field: random, one per ephemeral key; the box count is the rest. */
  ivPrefix: Buffer;
}
let ephemeral: Ephemeral | undefined;

function currentEphemeral(now: number): Ephemeral {
  if (!ephemeral || now >= ephemeral.until || ephemeral.boxes >= EPHEMERAL_MAX_BOXES) {
    const eph = generateKeyPairSync('x25519');
    ephemeral = { privateKey: eph.privateKey, epk: eph.publicKey.export({ format: 'jwk' }).x!, until: now + EPHEMERAL_MS, boxes: 0, keys: new Map(), ivPrefix: randomBytes(8) };
  }
  ephemeral.boxes++;
  return ephemeral;
}

/** Encrypts `body` (JSON) to `recipient` (raw base64url X25519 public key). */
export function seal(body: unknown, recipientKey: string, binding: SealBinding): SealedBox {
  return sealBytes(Buffer.from(JSON.stringify(body), 'utf8'), recipientKey, binding);
}

/** Encrypts a plaintext already encoded as JSON: a body sealed to two recipients is encoded once. */
function sealBytes(plain: Uint8Array, recipientKey: string, binding: SealBinding): SealedBox {
  const { key: rpk, kid } = recipient(recipientKey);
  const eph = currentEphemeral(Date.now());
  const epk = eph.epk;
  let key = eph.keys.get(recipientKey);
  if (!key) {
    key = deriveKey(diffieHellman({ privateKey: eph.privateKey, publicKey: rpk }), epk, recipientKey);
    // Bounded like the recipient cache: a flood of new recipients cannot grow it past that.
    if (eph.keys.size >= 4096) eph.keys.clear();
    eph.keys.set(recipientKey, key);
  }
  // Every key this ephemeral key derives gets IVs from its one counter: unique per key by construction.
  const iv = Buffer.allocUnsafe(12);
  eph.ivPrefix.copy(iv, 0);
  iv.writeUInt32BE(eph.boxes, 8);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(binding));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  const box: SealedBox = { alg: SEAL_ALG, kid, epk, iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: c.getAuthTag().toString('base64url') };
  ownBoxes.add(box);
  return box;
}

/** Boxes sealed here: their `ct` is base64url from Buffer#toString, ASCII only (outcomeBytes relies on it). */
const ownBoxes = new WeakSet<object>();
/** Below this a ciphertext goes through JSON.stringify with the rest. */
const SPLICE_MIN = 4096;

/**
 * An outcome as the JSON bytes that go on the bus. The ciphertext of a box sealed here is copied
 * in as it is (base64url needs no escaping and is one byte a character) instead of being scanned
 * by JSON.stringify and encoded to UTF-8 again with everything else: for a 1,000-row result that
 * was two passes over about 170 KB per copy, and the worker sends two copies.
 */
export function outcomeBytes(o: Outcome): Buffer {
  const box = o.sealed;
  if (!box || !ownBoxes.has(box) || box.ct.length < SPLICE_MIN) return Buffer.from(JSON.stringify(o), 'utf8');
  const json = JSON.stringify({ ...o, sealed: { ...box, ct: '' } });
  // Quotes inside string values are escaped, so an unescaped "ct":"" is the box's own key.
  const at = json.indexOf('"ct":""', json.indexOf('"sealed":{'));
  if (at < 0) return Buffer.from(JSON.stringify(o), 'utf8');
  const head = json.slice(0, at + 6);
  const tail = json.slice(at + 6);
  const headLen = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(headLen + box.ct.length + Buffer.byteLength(tail, 'utf8'));
  out.write(head, 0, 'utf8');
  out.write(box.ct, headLen, 'latin1');
  out.write(tail, headLen + box.ct.length, 'utf8');
  return out;
}

/** AES keys derived when opening, by sender ephemeral key and own key; bounded, and short-lived like the senders' keys. */
const openKeys = new LRUCache<string, Buffer>({ max: 1024, ttl: 2 * EPHEMERAL_MS });

/** Decrypts a box sealed to `kp`; throws when it is not for this key, or was altered or moved. */
export function open(box: SealedBox, kp: SealKeyPair, binding: SealBinding): unknown {
  if (box.alg !== SEAL_ALG) throw new Error(`unsupported seal ${String(box.alg)}`);
  if (box.kid !== keyId(kp.publicKey)) throw new Error('sealed to another key');
  // A sender reuses its ephemeral key for a minute: the key derived for it is kept as long.
  const cacheKey = `${box.epk}\0${kp.publicKey}`;
  let key = openKeys.get(cacheKey);
  if (!key) {
    key = deriveKey(diffieHellman({ privateKey: kp.privateKey, publicKey: importKey(box.epk) }), box.epk, kp.publicKey);
    openKeys.set(cacheKey, key);
  }
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(box.iv, 'base64url'));
  d.setAAD(aad(binding));
  d.setAuthTag(Buffer.from(box.tag, 'base64url'));
  return JSON.parse(Buffer.concat([d.update(Buffer.from(box.ct, 'base64url')), d.final()]).toString('utf8'));
}

/**
 * The part of an outcome that is sealed (decision, result, error) as JSON bytes. A sender that
 * seals one outcome to several keys (the worker: the agent and the durable copy) encodes it once
 * with this and seals the bytes with sealOutcomeBody.
 */
export function outcomeBodyBytes(o: Outcome): Buffer {
  const { decision, error } = o;
  const result = o.result && { ...o.result, rows: datesEncoded(o.result.rows) };
  return Buffer.from(JSON.stringify({ ...(decision ? { decision } : {}), ...(result ? { result } : {}), ...(error ? { error } : {}) }), 'utf8');
}

/**
 * The rows with each Date cell replaced by what JSON.stringify writes for it (its toJSON: the ISO
 * string, or null for an invalid date); other rows as they are. The same JSON, made faster:
 * JSON.stringify leaves its fast path to call toJSON for every Date, and a 1,000-row result with
 * one timestamp column took 1.5 ms to encode against 0.3 ms for the same rows with strings.
 */
function datesEncoded(rows: readonly unknown[]): unknown[] {
  const out = new Array<unknown>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    let copy: unknown[] | null = null;
    if (Array.isArray(row)) {
      for (let j = 0; j < row.length; j++) {
        const v: unknown = row[j];
        // toJSON's own result, without its generic steps (twice as slow as toISOString here).
        if (v instanceof Date) (copy ??= row.slice())[j] = Number.isFinite(v.getTime()) ? v.toISOString() : null;
      }
    }
    out[i] = copy ?? row;
  }
  return out;
}

/** The outcome's clear part (ids, status, time) with `body` (outcomeBodyBytes of it) sealed to `recipient`. */
export function sealOutcomeBody(o: Outcome, body: Uint8Array, recipient: string): Outcome {
  const { decision: _d, result: _r, error: _e, sealed: _s, ...clear } = o;
  return { ...clear, sealed: sealBytes(body, recipient, o) };
}

/**
 * The outcome with its decision, result and error sealed to `recipient`; ids, status and time
 * stay in clear. An outcome already sealed is returned as is only when sealed to this key.
 */
export function sealOutcome(o: Outcome, recipient: string): Outcome {
  if (o.sealed) {
    if (o.sealed.kid === keyId(recipient)) return o;
    throw new Error('the outcome is sealed to another key');
  }
  return sealOutcomeBody(o, outcomeBodyBytes(o), recipient);
}

/** Opens a sealed outcome; throws when it is unsealed, sealed to another key, or altered. */
export function openOutcome(o: Outcome, kp: SealKeyPair): Outcome {
  if (!o.sealed) throw new Error('the outcome is not sealed');
  const body = SealedOutcomeBodySchema.parse(open(o.sealed as SealedBox, kp, o));
  const { sealed: _s, decision: _d, result: _r, error: _e, ...clear } = o;
  return { ...clear, ...body };
}

// ───────────────────────────── inboxes ─────────────────────────────

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/**
 * The principal's inbox id: 20 base32 characters (100 bits) of SHA-256 over issuer NUL subject.
 * Lower case, so it is one safe subject token.
 */
export function inboxIdFor(iss: string, sub: string): string {
  const h = createHash('sha256').update(`${iss}\0${sub}`).digest();
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const byte of h) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 20) {
      out += B32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= 20) break;
    acc &= (1 << bits) - 1;
  }
  return out;
}

/** The inbox id a token's holder replies under (payload decoded, not verified: the broker verifies). */
export function inboxIdOfToken(token: string): string {
  let p: { iss?: unknown; sub?: unknown };
  try {
    p = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as typeof p;
  } catch {
    throw new Error('the token is not a JWT');
  }
  if (typeof p.iss !== 'string' || typeof p.sub !== 'string') throw new Error('the token has no iss or sub');
  return inboxIdFor(p.iss, p.sub);
}

const TOKEN = '[A-Za-z0-9_-]{1,64}';
// The role segment is shorter than an inbox id, so a subject parses one way only.
const REPLY = new RegExp(`^_INBOX\\.(?:[a-z][a-z0-9-]{0,15}\\.)?([a-z2-7]{20})(?:\\.${TOKEN}){1,4}$`);

/**
 * True when `subject` is a reply subject under the inbox of `inboxId`:
 * `_INBOX[.<role>].<inboxId>.<1-4 tokens>`, no wildcards, nothing else. The optional role
 * segment (`agent`, `approver`) is what a deployment's NATS permissions key on; the inbox id is
 * what binds the subject to one principal.
 */
export function isReplySubjectOf(subject: unknown, inboxId: string): subject is string {
  if (typeof subject !== 'string' || subject.length > 256) return false;
  const m = REPLY.exec(subject);
  return m !== null && m[1] === inboxId;
}

/** A fresh reply subject under this token's inbox: `<prefix>.<inboxId>.<random>`. */
export function replySubjectFor(inboxId: string, inboxPrefix = '_INBOX'): string {
  return `${inboxPrefix}.${inboxId}.${randomBytes(12).toString('base64url')}`;
}

/** A subject or other attacker-chosen text, safe for a log line or an audit payload (no control or bidi characters, bounded). */
export function sanitizeSubject(s: unknown): string {
  if (typeof s !== 'string') return `(${typeof s})`;
  const clean = s.slice(0, 200).replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return s.length > 200 ? `${clean}…(${s.length} chars)` : clean;
}
