/**
 * A fresh approver token for each vote. The broker spends a human's approver token on its first
 * vote (docs/security.md, "Votes"), so `writ approve`/`deny` never vote with a token that was
 * used before, nor with the one they just listed the pending requests with:
 * - a `writ login`: the refresh token gets a new access token for the vote;
 * - a token from the local development issuer (`writ token --approver`): the issuer, whose key
 *   this machine holds, signs a fresh copy of its claims (after checking the given one);
 * - any other token: voted with as given, once (the broker refuses it a second time).
 */
import { existsSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { WritClient } from '../client/sdk.ts';
import { WritError } from '../schemas/errors.ts';
import { loadConfigFile, type Config, type NatsConfig } from '../schemas/index.ts';
import { natsForRole } from './paths.ts';

/** How long a re-minted vote token lives: long enough to reach the broker, short enough to be worth nothing after. */
const VOTE_TOKEN_TTL_SEC = 120;

/**
 * A client on `nc` that votes with a fresh token (see {@link voteToken}): `given` is the command's
 * `--token`/WRIT_TOKEN, `configFile` the config that may name the development issuer and whose
 * `nats` section (when WRIT_CONFIG is set) gives the approver's inbox prefix.
 */
export async function voteClient(nc: NatsConnection, given: string | undefined, configFile: string): Promise<WritClient> {
  const config = (): Config | undefined => {
    try {
      return loadConfigFile(configFile);
    } catch {
      return undefined;
    }
  };
  const section: Partial<NatsConfig> | undefined = process.env.WRIT_CONFIG ? config()?.nats : undefined;
  const { inboxPrefix } = natsForRole('approver', section);
  const token = await voteToken(given || undefined, config);
  return new WritClient({ nc, token, prefix: process.env.WRIT_PREFIX ?? 'writ', ...(inboxPrefix ? { inboxPrefix } : {}) });
}

/**
 * The token to vote with. `given` is the `--token`/WRIT_TOKEN the command runs with (undefined:
 * the stored login); `config` is loaded only when `given` names the development issuer.
 */
export async function voteToken(given: string | undefined, config: () => Config | undefined): Promise<string> {
  if (given === undefined) {
    const { freshLoginToken } = await import('./login.ts');
    const t = await freshLoginToken();
    if (!t) throw new WritError('WRIT_TOKEN_MISSING', 'no token: set WRIT_TOKEN, pass --token, or run `writ login`');
    return t;
  }
  return (await remintDevToken(given, config)) ?? given;
}

/** A fresh development-issuer token with the claims of `token`, when `token` verifies with the local dev issuer; else undefined. */
async function remintDevToken(token: string, config: () => Config | undefined): Promise<string | undefined> {
  const { decodeJwt, createLocalJWKSet, jwtVerify } = await import('jose');
  const { DEV_ISSUER, loadDevIssuer, mintDevToken } = await import('../broker/dev-issuer.ts');
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    return undefined;
  }
  if (iss !== DEV_ISSUER) return undefined;
  const dir = config()?.identity.devIssuer.dir;
  if (!dir || !existsSync(dir)) return undefined;
  const dev = await loadDevIssuer(dir, false);
  let payload;
  try {
    ({ payload } = await jwtVerify(token, createLocalJWKSet(dev.jwks), { issuer: dev.issuer, algorithms: ['EdDSA'] }));
  } catch {
    // Not this issuer's (or expired): sent as given, and the broker says why it is refused.
    return undefined;
  }
  const aud = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
  const groups = Array.isArray(payload.groups) ? payload.groups.filter((g): g is string => typeof g === 'string') : [];
  const act = (payload.act as { sub?: unknown } | undefined)?.sub;
  if (typeof payload.sub !== 'string' || typeof aud !== 'string') return undefined;
  return mintDevToken(dev, { sub: payload.sub, groups, audience: aud, ttlSec: VOTE_TOKEN_TTL_SEC, ...(typeof act === 'string' ? { actFor: act } : {}) });
}
