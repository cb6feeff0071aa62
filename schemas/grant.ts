/**
 * Execution grants on the wire: a compact JWS (RFC 7515) with `alg: EdDSA` over the
 * GrantClaims. Signed and verified with node:crypto's synchronous Ed25519, which costs
 * a fraction of jose's WebCrypto path per operation (PERFORMANCE.md); the format is
 * standard, so any JOSE library verifies it too.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { WritError } from './errors.ts';
import { GrantClaimsSchema, type GrantClaims } from './messages.ts';

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export interface GrantSigner {
  readonly kid: string;
  sign(claims: GrantClaims): string;
}

export function grantSigner(privateKeyPem: string, kid: string): GrantSigner {
  const key = createPrivateKey(privateKeyPem);
  const header = b64u(JSON.stringify({ alg: 'EdDSA', typ: 'writ-grant+jwt', kid }));
  return {
    kid,
    sign(claims) {
      const input = `${header}.${b64u(JSON.stringify(claims))}`;
      return `${input}.${b64u(sign(null, Buffer.from(input), key))}`;
    },
  };
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
 * and its schema. Expiry, target and digest checks are the caller's (they need the order).
 */
export function verifyGrantSignature(jws: string, trusted: ReadonlyMap<string, KeyObject>): GrantClaims {
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
  if (!verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) throw new WritError('WRIT_GRANT_INVALID', 'the grant signature does not verify');
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
