/**
 * Agent identity: verifies short-lived OIDC JWTs with jose against the configured
 * issuers. Verification results are cached by the SHA-256 of the exact token until
 * shortly before it expires, because agents reuse one token for many intents and jose
 * verification is the largest crypto cost per intent.
 */
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { WritError, sha256Hex, type Config, type IssuerConfig, type Principal } from '../schemas/index.ts';

interface TrustedIssuer {
  readonly cfg: IssuerConfig;
  readonly keys: JWTVerifyGetKey;
}

export interface VerifiedIdentity {
  principal: Principal;
  /** Token expiry, epoch seconds. */
  exp: number;
  /** Digest of the token: the only form of it that is audited. */
  tokenSha256: string;
}

function claimAt(payload: JWTPayload, path: string): unknown {
  let cur: unknown = payload;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function mapJoseError(e: unknown): WritError {
  if (e instanceof WritError) return e;
  if (e instanceof joseErrors.JWTExpired) return new WritError('WRIT_TOKEN_EXPIRED', undefined, { cause: e });
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return new WritError('WRIT_TOKEN_AUDIENCE', undefined, { cause: e });
    if (e.claim === 'iss') return new WritError('WRIT_TOKEN_ISSUER', undefined, { cause: e });
    return new WritError('WRIT_TOKEN_INVALID', `token claim ${e.claim} is not acceptable`, { cause: e });
  }
  return new WritError('WRIT_TOKEN_INVALID', undefined, { cause: e });
}

export class IdentityVerifier {
  readonly #issuers = new Map<string, TrustedIssuer>();
  readonly #cache = new Map<string, VerifiedIdentity>();
  readonly #maxCache: number;

  constructor(issuers: readonly TrustedIssuer[], maxCache = 10_000) {
    for (const i of issuers) this.#issuers.set(i.cfg.issuer, i);
    this.#maxCache = maxCache;
  }

  static fromConfig(config: Config, devIssuer?: { issuer: string; jwks: JSONWebKeySet }): IdentityVerifier {
    const list: TrustedIssuer[] = config.identity.issuers.map((cfg) => ({
      cfg,
      keys: cfg.jwksUrl
        ? createRemoteJWKSet(new URL(cfg.jwksUrl))
        : createLocalJWKSet(JSON.parse(readFileSync(cfg.jwksFile!, 'utf8')) as JSONWebKeySet),
    }));
    if (devIssuer) {
      list.push({
        cfg: {
          issuer: devIssuer.issuer,
          audience: config.identity.devIssuer.audience,
          jwksFile: '(dev issuer)',
          algorithms: ['EdDSA'],
          clockSkewSec: 30,
          maxLifetimeSec: 24 * 3600,
          groupsClaim: 'groups',
          actForClaim: 'act.sub',
        },
        keys: createLocalJWKSet(devIssuer.jwks),
      });
    }
    return new IdentityVerifier(list);
  }

  /** Verifies signature, iss, aud, algorithm, exp/nbf with skew, and the maximum lifetime. */
  async verify(token: string, nowMs = Date.now()): Promise<VerifiedIdentity> {
    const digest = sha256Hex(token);
    const cached = this.#cache.get(digest);
    const nowSec = Math.floor(nowMs / 1000);
    if (cached) {
      if (cached.exp > nowSec) return cached;
      this.#cache.delete(digest);
    }
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch (e) {
      throw new WritError('WRIT_TOKEN_INVALID', 'the token is not a JWT', { cause: e });
    }
    const trusted = typeof iss === 'string' ? this.#issuers.get(iss) : undefined;
    if (!trusted) throw new WritError('WRIT_TOKEN_ISSUER');
    const { cfg } = trusted;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, trusted.keys, {
        issuer: cfg.issuer,
        audience: cfg.audience,
        algorithms: cfg.algorithms,
        clockTolerance: cfg.clockSkewSec,
        currentDate: new Date(nowMs),
        requiredClaims: ['exp', 'iat', 'sub'],
      }));
    } catch (e) {
      throw mapJoseError(e);
    }
    const exp = payload.exp!;
    const iat = payload.iat!;
    if (exp - iat > cfg.maxLifetimeSec) throw new WritError('WRIT_TOKEN_LIFETIME');
    if (iat > nowSec + cfg.clockSkewSec) throw new WritError('WRIT_TOKEN_INVALID', 'the token was issued in the future');
    const groupsRaw = claimAt(payload, cfg.groupsClaim);
    const groups = Array.isArray(groupsRaw) ? groupsRaw.filter((g): g is string => typeof g === 'string') : typeof groupsRaw === 'string' ? [groupsRaw] : [];
    const actFor = claimAt(payload, cfg.actForClaim);
    const principal: Principal = { sub: payload.sub!, iss: cfg.issuer, groups };
    if (typeof actFor === 'string') principal.actFor = actFor;
    // Cache only until the token's own expiry (skew not included: the cache never extends a token).
    const verified: VerifiedIdentity = { principal, exp, tokenSha256: digest };
    if (this.#cache.size >= this.#maxCache) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(digest, verified);
    return verified;
  }
}
