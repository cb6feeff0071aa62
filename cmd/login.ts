/**
 * `writ login`: a human (approver, auditor) gets a token from the organisation's OpenID
 * provider with the device-authorization grant (RFC 8628, openid-client): the CLI prints a
 * URL and a code, the human confirms in a browser, the CLI polls for the token.
 *
 * The token and its refresh token are kept in `<data dir>/login.json` (mode 0600, the
 * folder 0700), where `loginToken()` finds them and refreshes the access token shortly
 * before it expires. The file holds bearer secrets: it is never printed, and `--print`
 * prints only the short-lived access token.
 *
 * A human's approver token votes once (the broker spends it): `freshLoginToken()` (and
 * `writ login --print --fresh`) refreshes on every call, so each vote has a token of its own.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as oidc from 'openid-client';
import { loadConfigFile, WritError } from '../schemas/index.ts';
import { DATA_DIR, defaultConfigFile } from './paths.ts';

export const LOGIN_FILE = join(DATA_DIR, 'login.json');
/** Refresh this long before expiry, so a token does not expire between reading it and the broker verifying it. */
const REFRESH_MARGIN_SEC = 60;

export interface StoredLogin {
  issuer: string;
  clientId: string;
  resource?: string;
  accessToken: string;
  refreshToken?: string;
  /** Epoch seconds. */
  expiresAt: number;
}

export interface LoginTarget {
  issuer: string;
  clientId: string;
  /** The approver audience, as an RFC 8707 resource indicator. */
  resource?: string;
  scope?: string;
}

/** The provider's URL and code reach a terminal: no control characters or bidi overrides from it. */
const safe = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '?');

function isLoopbackHttp(u: URL): boolean {
  return u.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname);
}

async function discover(t: { issuer: string; clientId: string }): Promise<oidc.Configuration> {
  const url = new URL(t.issuer);
  if (url.protocol !== 'https:' && !isLoopbackHttp(url)) throw new WritError('WRIT_BAD_REQUEST', `the issuer must be https (http only on loopback): ${t.issuer}`);
  // A public client: the CLI holds no secret. http is allowed only for a loopback issuer (tests, a local IdP).
  return oidc.discovery(url, t.clientId, undefined, oidc.None(), isLoopbackHttp(url) ? { execute: [oidc.allowInsecureRequests] } : {});
}

function save(file: string, s: StoredLogin): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // Written aside and renamed: a reader never sees half a file, and the mode is set before the secret lands.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

function toStored(t: LoginTarget, tokens: oidc.TokenEndpointResponse, previousRefresh?: string): StoredLogin {
  const expiresIn = tokens.expires_in ?? 300;
  const refresh = tokens.refresh_token ?? previousRefresh;
  return {
    issuer: t.issuer,
    clientId: t.clientId,
    ...(t.resource ? { resource: t.resource } : {}),
    accessToken: tokens.access_token,
    ...(refresh ? { refreshToken: refresh } : {}),
    expiresAt: Math.floor(Date.now() / 1000) + expiresIn,
  };
}

/** Runs the device flow; `say` shows the human what to open and which code to enter. */
export async function deviceLogin(t: LoginTarget, o: { file?: string; say: (line: string) => void; signal?: AbortSignal }): Promise<StoredLogin> {
  const conf = await discover(t);
  const params: Record<string, string> = { scope: t.scope ?? 'openid offline_access' };
  if (t.resource) params.resource = t.resource;
  const device = await oidc.initiateDeviceAuthorization(conf, params);
  o.say(`Open ${safe(device.verification_uri)} and enter the code ${safe(device.user_code)}`);
  if (device.verification_uri_complete) o.say(`(or open ${safe(device.verification_uri_complete)})`);
  const tokens = await oidc.pollDeviceAuthorizationGrant(conf, device, undefined, o.signal ? { signal: o.signal } : undefined);
  const stored = toStored(t, tokens);
  save(o.file ?? LOGIN_FILE, stored);
  return stored;
}

/**
 * The stored login's access token, refreshed first when it expires within a minute.
 * Undefined when nobody logged in; an error when the login can no longer be refreshed.
 */
export async function loginToken(o: { file?: string; nowMs?: number; fresh?: boolean } = {}): Promise<string | undefined> {
  const file = o.file ?? LOGIN_FILE;
  if (!existsSync(file)) return undefined;
  const s = JSON.parse(readFileSync(file, 'utf8')) as StoredLogin;
  const nowSec = Math.floor((o.nowMs ?? Date.now()) / 1000);
  const valid = s.expiresAt - REFRESH_MARGIN_SEC > nowSec;
  if (valid && !(o.fresh && s.refreshToken)) return s.accessToken;
  if (!s.refreshToken) throw new WritError('WRIT_TOKEN_EXPIRED', 'the stored login has expired: run `writ login` again');
  const conf = await discover(s);
  let tokens: oidc.TokenEndpointResponse;
  try {
    tokens = await oidc.refreshTokenGrant(conf, s.refreshToken, s.resource ? { resource: s.resource } : undefined);
  } catch (e) {
    throw new WritError('WRIT_TOKEN_EXPIRED', 'the stored login could not be refreshed: run `writ login` again', { cause: e });
  }
  const next = toStored(s, tokens, s.refreshToken);
  save(file, next);
  return next.accessToken;
}

/**
 * A new access token from the stored login's refresh token, whatever the current one's expiry:
 * the token a vote needs, never sent before (the broker spends a human's token on its vote).
 * Without a refresh token (the provider gave none), the stored token, which votes once.
 */
export function freshLoginToken(o: { file?: string } = {}): Promise<string | undefined> {
  return loginToken({ ...o, fresh: true });
}

const USAGE = `writ login [--issuer URL] [--client-id ID] [--resource AUD] [--scope S] [--config FILE]
writ login --print          print the stored (refreshed) access token, e.g. export WRIT_TOKEN=$(writ login --print)
writ login --print --fresh  print a new access token (refreshed now): one per vote, e.g. for WRIT_TOKEN_COMMAND

The issuer defaults to WRIT_OIDC_ISSUER, else the config's first issuer with an approver
audience; the resource to that issuer's approverAudience; the client id to WRIT_OIDC_CLIENT_ID, else writ-cli.`;

export async function loginCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      issuer: { type: 'string' },
      'client-id': { type: 'string' },
      resource: { type: 'string' },
      scope: { type: 'string' },
      config: { type: 'string' },
      print: { type: 'boolean', default: false },
      fresh: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.print) {
    const tok = await loginToken({ fresh: values.fresh });
    if (!tok) throw new WritError('WRIT_TOKEN_MISSING', 'not logged in: run `writ login`');
    process.stdout.write(`${tok}\n`);
    return 0;
  }
  let issuer = values.issuer ?? process.env.WRIT_OIDC_ISSUER;
  let resource = values.resource;
  const configFile = values.config ? resolve(values.config) : defaultConfigFile();
  if ((!issuer || !resource) && existsSync(configFile)) {
    const id = loadConfigFile(configFile).identity;
    const i = id.issuers.find((x) => (issuer ? x.issuer === issuer : (x.approverAudience ?? id.approverAudience) !== undefined));
    issuer ??= i?.issuer;
    resource ??= i?.approverAudience ?? id.approverAudience;
  }
  if (!issuer) throw new WritError('WRIT_BAD_REQUEST', `no issuer: pass --issuer or set WRIT_OIDC_ISSUER\n\n${USAGE}`);
  const s = await deviceLogin(
    { issuer, clientId: values['client-id'] ?? process.env.WRIT_OIDC_CLIENT_ID ?? 'writ-cli', ...(resource ? { resource } : {}), ...(values.scope ? { scope: values.scope } : {}) },
    { say: (l) => process.stderr.write(`${l}\n`) },
  );
  process.stdout.write(`logged in to ${s.issuer}; token kept in ${LOGIN_FILE} until ${new Date(s.expiresAt * 1000).toISOString()}${s.refreshToken ? ' (refreshed as needed)' : ''}\n`);
  return 0;
}
