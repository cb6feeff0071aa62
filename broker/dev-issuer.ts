/**
 * The local development issuer: an Ed25519 key pair under `.data/dev-issuer/` that
 * `writ up` creates and `writ token` signs with. The broker trusts it only when the
 * config says `identity.devIssuer.enabled: true`.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { replaceFile, writeFileOnce } from '../lib/files.ts';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JSONWebKeySet, type JWK } from 'jose';

export const DEV_ISSUER = 'https://writ.dev.local';

export interface DevIssuer {
  issuer: string;
  jwks: JSONWebKeySet;
  privateJwk: JWK;
}

/** Loads the dev issuer's keys from `dir`, creating them when `create` is true. */
export async function loadDevIssuer(dir: string, create: boolean): Promise<DevIssuer> {
  const privFile = join(dir, 'private.jwk.json');
  const jwksFile = join(dir, 'jwks.json');
  if (!existsSync(privFile)) {
    if (!create) throw new Error(`no development issuer at ${dir}: run \`writ up\` (or \`npm start\`) first`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const kid = `dev-${Date.now().toString(36)}`;
    const priv = { ...(await exportJWK(privateKey)), kid, alg: 'EdDSA', use: 'sig' };
    // Processes starting together (`writ up`, `writ token`) all end up with the first key, whole.
    writeFileOnce(privFile, JSON.stringify(priv), 0o600);
  }
  const privateJwk = JSON.parse(readFileSync(privFile, 'utf8')) as JWK;
  // The key set is the private key's public half, never read back from a file another
  // process may still be writing; the file is for whoever reads the issuer's keys from disk.
  const { d: _d, ...publicJwk } = privateJwk;
  const jwks = { keys: [publicJwk] } as JSONWebKeySet;
  if (!existsSync(jwksFile)) replaceFile(jwksFile, JSON.stringify(jwks), 0o644);
  return { issuer: DEV_ISSUER, privateJwk, jwks };
}

export interface MintOptions {
  sub: string;
  groups: string[];
  audience: string;
  ttlSec: number;
  actFor?: string;
  /** Override issued-at (epoch s), for tests of expiry and lifetime. */
  iat?: number;
}

/** Signs a development token. */
export async function mintDevToken(dev: DevIssuer, o: MintOptions): Promise<string> {
  const key = await importJWK(dev.privateJwk, 'EdDSA');
  const iat = o.iat ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { groups: o.groups };
  if (o.actFor) claims.act = { sub: o.actFor };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: dev.privateJwk.kid! })
    .setIssuer(dev.issuer)
    .setSubject(o.sub)
    .setAudience(o.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + o.ttlSec)
    .setJti(crypto.randomUUID())
    .sign(key);
}

// Moved to lib/duration.ts (the CLI parses durations without loading jose); re-exported for callers here.
export { parseDuration } from '../lib/duration.ts';
