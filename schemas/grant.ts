/**
 * Execution grants on the wire: a compact JWS (RFC 7515) with `alg: EdDSA` over the
 * GrantClaims. Signed and verified with node:crypto's synchronous Ed25519, which costs
 * a fraction of jose's WebCrypto path per operation (PERFORMANCE.md); the format is
 * standard, so any JOSE library verifies it too.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { WritError } from './errors.ts';
import { deepFreeze, jsonCopy } from './canonical.ts';
import { GrantClaimsSchema, type GrantClaims } from './messages.ts';

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export interface GrantSigner {
  readonly kid: string;
  sign(claims: GrantClaims): string;
  /** The claims for a worker of this process, unsigned (lib/handover.ts): see LocalGrant. */
  vouch(claims: GrantClaims): LocalGrant;
}

/**
 * A grant handed to a worker of the same process in memory (`writ up`; lib/handover.ts), not
 * signed: a signature is for a reader that cannot tell who made the claims, and this one is only
 * ever read in the process that made them. Only grantSigner makes one, and records beside it
 * (out of reach of other code) the public key it derives from its own private key; the worker
 * takes it only when that key is the one it trusts under `kid`, and only once (verifyLocalGrant).
 * So it passes exactly where a signed grant from the same signer would, and saves the Ed25519
 * signature, the JWS encoding and its parse per intent.
 */
export interface LocalGrant {
  readonly kid: string;
  readonly claims: GrantClaims;
}

/** Each local grant's signer key, recorded by grantSigner; taken (deleted) by verifyLocalGrant. */
const vouchedBy = new WeakMap<LocalGrant, KeyObject>();

/** The claims of a local grant made by a signer whose key this worker trusts under its kid; once. */
export function verifyLocalGrant(g: LocalGrant, trusted: ReadonlyMap<string, KeyObject>): GrantClaims {
  const key = vouchedBy.get(g);
  vouchedBy.delete(g);
  const pinned = trusted.get(g.kid);
  if (!key || !pinned || !key.equals(pinned)) throw new WritError('WRIT_GRANT_INVALID', 'the grant is not vouched for by a key this worker trusts');
  return g.claims;
}

/**
 * A signer of grants with the Ed25519 key in `privateKeyPem`. With `signedHere`, it records each
 * grant it signs for a worker in the same process (SignedGrants), under the public key it derives
 * from that private key itself: a record can only ever name the key that made the signature.
 */
export function grantSigner(privateKeyPem: string, kid: string, signedHere?: SignedGrants): GrantSigner {
  const key = createPrivateKey(privateKeyPem);
  const header = b64u(JSON.stringify({ alg: 'EdDSA', typ: 'writ-grant+jwt', kid }));
  const record = signedHere && recorders.get(signedHere);
  const publicKey = createPublicKey(key);
  return {
    kid,
    sign(claims) {
      const input = `${header}.${b64u(JSON.stringify(claims))}`;
      const sig = b64u(sign(null, Buffer.from(input), key));
      if (record) record(sig, input, publicKey);
      return `${input}.${sig}`;
    },
    vouch(claims) {
      // A copy of its own, frozen to the leaves: the claims the broker decided, whatever later
      // happens to the objects they were built from (the record's limits, the reply key).
      const g: LocalGrant = Object.freeze({ kid, claims: deepFreeze(jsonCopy(claims)) });
      vouchedBy.set(g, publicKey);
      return g;
    },
  };
}

/** How grantSigner records into a SignedGrants: not reachable from outside this module. */
const recorders = new WeakMap<SignedGrants, (sig: string, input: string, key: KeyObject) => void>();

/**
 * The grants this process signed, for a worker in the same process (`writ up`): a signature
 * this process made over exactly these bytes with the key the worker trusts verifies by
 * construction, so that worker compares the bytes and the key instead of verifying again (one
 * Ed25519 operation per intent instead of two: the verify was 7 % of the process's CPU at 64
 * agents). Only grantSigner records here, with the public key it derives from its own private
 * key. Anything else is verified in full: a grant signed elsewhere, one whose bytes or key
 * differ, a second use (each entry is taken once), and one evicted by the bound.
 */
export class SignedGrants {
  /** Signature → what it signed and with which key; oldest first (Map order). */
  readonly #bySig = new Map<string, { input: string; key: KeyObject }>();
  #vouched = 0;

  constructor(private readonly max = 1024) {
    if (!Number.isInteger(max) || max < 1) throw new WritError('WRIT_INTERNAL', `SignedGrants: max must be an integer >= 1, got ${max}`);
    recorders.set(this, (sig, input, key) => {
      if (this.#bySig.size >= this.max) this.#bySig.delete(this.#bySig.keys().next().value!);
      this.#bySig.set(sig, { input, key });
    });
  }

  /** Signatures recorded and not yet taken. */
  get size(): number {
    return this.#bySig.size;
  }

  /** Grants that needed no second verify. */
  get vouched(): number {
    return this.#vouched;
  }

  /** Whether `sig` is this process's signature of `input` under `trusted`; each record answers once. */
  take(input: string, sig: string, trusted: KeyObject): boolean {
    const e = this.#bySig.get(sig);
    if (!e) return false;
    this.#bySig.delete(sig);
    const ok = e.input === input && e.key.equals(trusted);
    if (ok) this.#vouched++;
    return ok;
  }
}

/** Key id of a public key: the first 16 hex of the SHA-256 of its SPKI DER. */
export function keyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHashHex(der).slice(0, 16);
}

function createHashHex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function publicKeyFromPem(pem: string): KeyObject {
  return createPublicKey(pem);
}

/**
 * Verifies a grant's signature against the trusted keys (by kid, so keys can rotate)
 * and its schema; `signedHere` answers for grants this process signed (SignedGrants). Expiry, target and digest checks are the caller's (they need the order).
 */
export function verifyGrantSignature(jws: string, trusted: ReadonlyMap<string, KeyObject>, signedHere?: SignedGrants): GrantClaims {
  const parts = jws.split('.');
  if (parts.length !== 3) throw new WritError('WRIT_GRANT_INVALID', 'the grant is not a compact JWS');
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: unknown; kid?: unknown };
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  } catch (e) {
    throw new WritError('WRIT_GRANT_INVALID', 'the grant header is unreadable', { cause: e });
  }
  if (header.alg !== 'EdDSA' || typeof header.kid !== 'string') throw new WritError('WRIT_GRANT_INVALID', 'the grant must be EdDSA with a kid');
  const key = trusted.get(header.kid);
  if (!key) throw new WritError('WRIT_GRANT_INVALID', 'the grant is signed by an unknown key');
  const input = `${h}.${p}`;
  if (!signedHere?.take(input, s, key) && !verify(null, Buffer.from(input), key, Buffer.from(s, 'base64url'))) throw new WritError('WRIT_GRANT_INVALID', 'the grant signature does not verify');
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch (e) {
    throw new WritError('WRIT_GRANT_INVALID', 'the grant payload is unreadable', { cause: e });
  }
  const r = GrantClaimsSchema.safeParse(claims);
  if (!r.success) throw new WritError('WRIT_GRANT_INVALID', 'the grant claims do not match the schema');
  return r.data;
}
