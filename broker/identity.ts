/**
 * Identity: verifies short-lived OIDC JWTs with jose against the configured issuers.
 *
 * Two kinds of token, told apart by audience: agents' (`verify`) and approvers'
 * (`verifyApprover`). A token that names both audiences is neither, so one stolen
 * kind can never stand in for the other.
 *
 * Verification results are cached by the SHA-256 of the exact token until it expires,
 * because agents reuse one token for many intents and verification is the largest
 * crypto cost per intent. A cached result is only reused while the key that signed the
 * token is still in its issuer's current, fresh JWKS: a key removed at the issuer ends
 * its cached tokens too (within `jwksCacheMaxAgeSec`).
 */
import { LRUCache } from 'lru-cache';
import { readFileSync } from 'node:fs';
import * as oidc from 'openid-client';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwksCache,
  jwtVerify,
  type ExportedJWKSCache,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { WritError, sha256Hex, type Config, type IssuerConfig, type Principal } from '../schemas/index.ts';

/** An issuer's settings with its audiences resolved from the identity defaults. */
type ResolvedIssuer = Omit<IssuerConfig, 'audience' | 'approverAudience'> & { audience: string; approverAudience?: string | undefined };

export type TokenKind = 'agent' | 'approver';

export interface VerifiedIdentity {
  principal: Principal;
  /** Token expiry, epoch seconds. */
  exp: number;
  /** Digest of the token: the only form of it that is audited. */
  tokenSha256: string;
}

/**
 * Where an issuer's keys come from. `stillValid` says whether a token verified earlier
 * (with key `kid`, under key set `ref`) may be reused without verifying again.
 */
interface KeySource {
  getKey: JWTVerifyGetKey;
  ref(): unknown;
  stillValid(kid: string | undefined, ref: unknown): boolean;
}

function localKeys(jwks: JSONWebKeySet): KeySource {
  const getKey = createLocalJWKSet(jwks);
  return { getKey, ref: () => jwks, stillValid: () => true };
}

const kidSets = new WeakMap<object, Set<string>>();
function kidsOf(jwks: JSONWebKeySet): Set<string> {
  let s = kidSets.get(jwks);
  if (!s) kidSets.set(jwks, (s = new Set(jwks.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string'))));
  return s;
}

/** A remote JWKS (jose's, which refetches on an unknown kid and when stale), found by URL or by OIDC discovery. */
class RemoteKeys implements KeySource {
  // jose writes every fetched key set here; its identity changes on each fetch.
  readonly #cache: Partial<ExportedJWKSCache> = {};
  #remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  #discovering: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  constructor(private readonly cfg: ResolvedIssuer) {
    if (cfg.jwksUrl) this.#remote = this.#create(new URL(cfg.jwksUrl));
  }

  #create(url: URL) {
    return createRemoteJWKSet(url, {
      cacheMaxAge: this.cfg.jwksCacheMaxAgeSec * 1000,
      cooldownDuration: this.cfg.jwksCooldownSec * 1000,
      [jwksCache]: this.#cache as ExportedJWKSCache,
    });
  }

  /** Discovery runs on first use and again after a failure (never cached as failed). */
  async #ensure() {
    if (this.#remote) return this.#remote;
    this.#discovering ??= (async () => {
      const issuer = new URL(this.cfg.issuer);
      // openid-client checks that the document's `issuer` is exactly the one asked for (OIDC Discovery 4.3).
      const conf = await oidc.discovery(issuer, 'writ-broker', undefined, undefined, issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {});
      const uri = conf.serverMetadata().jwks_uri;
      if (!uri) throw new Error(`${this.cfg.issuer} publishes no jwks_uri`);
      this.#remote = this.#create(new URL(uri));
      return this.#remote;
    })().finally(() => (this.#discovering = undefined));
    return this.#discovering;
  }

  getKey: JWTVerifyGetKey = async (header, token) => {
    let remote;
    try {
      remote = await this.#ensure();
    } catch (e) {
      throw new WritError('WRIT_TOKEN_INVALID', `the keys of ${this.cfg.issuer} cannot be discovered`, { cause: e });
    }
    return remote(header, token);
  };

  ref(): unknown {
    return this.#cache.jwks;
  }

  stillValid(kid: string | undefined, ref: unknown): boolean {
    // A stale key set means: verify again, which refetches (and fails closed if the issuer is unreachable).
    if (!this.#remote?.fresh || !this.#cache.jwks) return false;
    if (ref === this.#cache.jwks) return true;
    return kid !== undefined && kidsOf(this.#cache.jwks).has(kid);
  }
}

interface TrustedIssuer {
  readonly cfg: ResolvedIssuer;
  readonly keys: KeySource;
}

interface CacheEntry {
  verified: VerifiedIdentity;
  issuer: TrustedIssuer;
  kid: string | undefined;
  keysRef: unknown;
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
  if (e instanceof joseErrors.JWKSNoMatchingKey) return new WritError('WRIT_TOKEN_INVALID', "the token's signing key is not among its issuer's current keys", { cause: e });
  return new WritError('WRIT_TOKEN_INVALID', undefined, { cause: e });
}

/** How long a demoted token is not taken for known (IdentityVerifier.demote), and how many are remembered. */
const DEMOTE_MS = 10 * 60_000;
const MAX_DEMOTED = 10_000;

export interface IdentityOptions {
  maxTokenBytes?: number;
  maxCache?: number;
}

export class IdentityVerifier {
  readonly #issuers = new Map<string, TrustedIssuer>();
  /** Verified tokens by kind and SHA-256, least recently used out first; never past a token's own expiry. */
  readonly #cache: LRUCache<string, CacheEntry>;
  /** Tokens `demote`d, by SHA-256, until when (epoch ms); the oldest forgotten past MAX_DEMOTED. */
  readonly #demoted = new Map<string, number>();
  readonly #maxTokenBytes: number;

  constructor(issuers: readonly { cfg: ResolvedIssuer; keys: KeySource }[], o: IdentityOptions = {}) {
    for (const i of issuers) this.#issuers.set(i.cfg.issuer, i);
    this.#cache = new LRUCache({ max: o.maxCache ?? 10_000 });
    this.#maxTokenBytes = o.maxTokenBytes ?? 8192;
  }

  static fromConfig(config: Config, devIssuer?: { issuer: string; jwks: JSONWebKeySet }): IdentityVerifier {
    const id = config.identity;
    const list: TrustedIssuer[] = id.issuers.map((raw) => {
      // The schema refuses an issuer without an agent audience; this only fills defaults.
      const cfg: ResolvedIssuer = { ...raw, audience: raw.audience ?? id.audience!, approverAudience: raw.approverAudience ?? id.approverAudience };
      return { cfg, keys: cfg.jwksFile ? localKeys(JSON.parse(readFileSync(cfg.jwksFile, 'utf8')) as JSONWebKeySet) : new RemoteKeys(cfg) };
    });
    if (devIssuer) {
      list.push({
        cfg: {
          issuer: devIssuer.issuer,
          audience: id.devIssuer.audience,
          approverAudience: id.devIssuer.approverAudience,
          discovery: false,
          jwksFile: '(dev issuer)',
          jwksCacheMaxAgeSec: 0,
          jwksCooldownSec: 0,
          algorithms: ['EdDSA'],
          clockSkewSec: 30,
          maxLifetimeSec: 24 * 3600,
          groupsClaim: 'groups',
          actForClaim: 'act.sub',
        },
        keys: localKeys(devIssuer.jwks),
      });
    }
    return new IdentityVerifier(list, { maxTokenBytes: id.maxTokenBytes });
  }

  /** An agent's token: signature, iss, the agent audience, algorithm, exp/nbf with skew, the maximum lifetime. */
  verify(token: string, nowMs = Date.now()): Promise<VerifiedIdentity> {
    return this.#verify('agent', token, nowMs);
  }

  /**
   * Who an agent's (or an approver's) token was verified as, when that was here and still holds, from the cache
   * alone: no parsing, no signature check, nothing awaited (undefined otherwise). The broker's
   * intake uses it to tell a sender it already knows from anyone else, and one known principal
   * from another, before the token is verified (lib/consume.ts lanes). The key is the
   * principal's issuer and subject, so one principal's tokens share its turns.
   */
  knownAs(token: string, kinds: 'agent' | 'agent-or-approver' = 'agent', nowMs = Date.now()): string | undefined {
    if (token.length === 0 || token.length > this.#maxTokenBytes) return undefined;
    const digest = sha256Hex(token);
    const demoted = this.#demoted.get(digest);
    if (demoted !== undefined) {
      if (demoted > nowMs) return undefined;
      this.#demoted.delete(digest);
    }
    // The API serves approvers too; intents are an agent's only.
    const hit = this.#cache.peek(`agent:${digest}`) ?? (kinds === 'agent-or-approver' ? this.#cache.peek(`approver:${digest}`) : undefined);
    if (hit === undefined || !(hit.verified.exp > Math.floor(nowMs / 1000)) || !hit.issuer.keys.stillValid(hit.kid, hit.keysRef)) return undefined;
    return `${hit.verified.principal.iss}\n${hit.verified.principal.sub}`;
  }

  /**
   * A token that got an intent into the intake's first lane without carrying it (the bytes named
   * it first, the intent was malformed or carried another): `knows` says no for it for
   * DEMOTE_MS, so a copied token cannot keep a flood in the first lane.
   */
  demote(token: string, nowMs = Date.now()): void {
    const digest = sha256Hex(token);
    this.#demoted.delete(digest);
    this.#demoted.set(digest, nowMs + DEMOTE_MS);
    if (this.#demoted.size > MAX_DEMOTED) this.#demoted.delete(this.#demoted.keys().next().value!);
  }

  /** An approver's (a human's) token: as `verify`, against the issuer's approver audience. */
  verifyApprover(token: string, nowMs = Date.now()): Promise<VerifiedIdentity> {
    return this.#verify('approver', token, nowMs);
  }

  async #verify(kind: TokenKind, token: string, nowMs: number): Promise<VerifiedIdentity> {
    if (typeof token !== 'string' || token.length === 0) throw new WritError('WRIT_TOKEN_MISSING');
    // Before hashing or parsing: every path that takes a token goes through here.
    if (Buffer.byteLength(token, 'utf8') > this.#maxTokenBytes) {
      throw new WritError('WRIT_PAYLOAD_TOO_LARGE', `the token is longer than ${this.#maxTokenBytes} bytes`);
    }
    const digest = sha256Hex(token);
    const cacheKey = `${kind}:${digest}`;
    const nowSec = Math.floor(nowMs / 1000);
    const hit = this.#cache.get(cacheKey);
    if (hit) {
      if (hit.verified.exp > nowSec && hit.issuer.keys.stillValid(hit.kid, hit.keysRef)) return hit.verified;
      this.#cache.delete(cacheKey);
    }
    let iss: unknown;
    let kid: unknown;
    try {
      iss = decodeJwt(token).iss;
      kid = decodeProtectedHeader(token).kid;
    } catch (e) {
      throw new WritError('WRIT_TOKEN_INVALID', 'the token is not a JWT', { cause: e });
    }
    const trusted = typeof iss === 'string' ? this.#issuers.get(iss) : undefined;
    if (!trusted) throw new WritError('WRIT_TOKEN_ISSUER');
    const { cfg } = trusted;
    const audience = kind === 'agent' ? cfg.audience : cfg.approverAudience;
    const other = kind === 'agent' ? cfg.approverAudience : cfg.audience;
    if (!audience) throw new WritError('WRIT_TOKEN_AUDIENCE', `${cfg.issuer} has no approver audience configured: its tokens cannot approve`);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, trusted.keys.getKey, {
        issuer: cfg.issuer,
        audience,
        algorithms: cfg.algorithms,
        clockTolerance: cfg.clockSkewSec,
        currentDate: new Date(nowMs),
        requiredClaims: ['exp', 'iat', 'sub'],
      }));
    } catch (e) {
      throw mapJoseError(e);
    }
    const auds = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (other !== undefined && auds.includes(other)) throw new WritError('WRIT_TOKEN_AUDIENCE', 'the token names both the agent and the approver audience');
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
    this.#cache.set(cacheKey, { verified, issuer: trusted, kid: typeof kid === 'string' ? kid : undefined, keysRef: trusted.keys.ref() });
    return verified;
  }
}
