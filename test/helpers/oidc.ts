/**
 * A real OpenID Connect provider (`oidc-provider`, a certified implementation) in process,
 * on a random loopback port: discovery, JWKS, client credentials for CI agents (with
 * `groups` and `act` claims), device authorization for humans, JWT access tokens whose
 * audience is a resource indicator. Its signing keys can be rotated and removed while it
 * runs: a new provider instance with the new key set takes over the same port and issuer
 * (oidc-provider's keystore is fixed per instance; its in-memory store is shared).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { errors as oidcErrors } from 'oidc-provider';

interface CiClient {
  secret: string;
  groups: string[];
  /** The human a CI agent acts for (RFC 8693 `act.sub`). */
  actFor?: string;
}

export interface StartOidcOptions {
  /** client_credentials clients, by client id. */
  ciClients?: Record<string, CiClient>;
  /** Humans who can log in through the device flow, by account id, with their groups. */
  accounts?: Record<string, { groups: string[] }>;
  agentAudience?: string;
  approverAudience?: string;
  accessTokenTtlSec?: number;
}

export interface OidcHandle {
  issuer: string;
  agentAudience: string;
  approverAudience: string;
  /** A resource the provider also serves, which no Writ config names. */
  otherAudience: string;
  /** The public device-flow client used by `writ login`. */
  humanClientId: string;
  /** A client-credentials access token (JWT) for `clientId`, for `resource` (default the agent audience). */
  clientCredentialsToken(clientId: string, o?: { resource?: string }): Promise<string>;
  /** Plays the human: enters `userCode` at the verification page, confirms, and logs in as `accountId`. */
  approveDevice(userCode: string, accountId: string): Promise<void>;
  /** Adds a new signing key, which signs from now on; the old ones stay published. Returns its kid. */
  rotateKey(): Promise<string>;
  /** Stops publishing (and signing with) the key `kid`. */
  removeKey(kid: string): void;
  kids(): string[];
  stop(): Promise<void>;
}

async function newSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: `k-${crypto.randomUUID().slice(0, 8)}`, alg: 'ES256', use: 'sig' };
}

export async function startOidcProvider(o: StartOidcOptions = {}): Promise<OidcHandle> {
  const ciClients = o.ciClients ?? {};
  const accounts = o.accounts ?? {};
  const agentAudience = o.agentAudience ?? 'https://writ.test/agents';
  const approverAudience = o.approverAudience ?? 'https://writ.test/approvers';
  const otherAudience = 'https://other.test/api';
  const ttl = o.accessTokenTtlSec ?? 600;
  const humanClientId = 'writ-cli';
  const cookieKeys = [crypto.randomUUID()];
  let keys: JWK[] = [await newSigningKey()];
  let provider: Provider;
  let approvingAs: string | undefined;

  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/interaction/')) {
      interaction(req, res).catch((e: unknown) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    void provider.callback()(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  function build(): Provider {
    const p = new Provider(issuer, {
      jwks: { keys: keys.map((k) => ({ ...k })) },
      cookies: { keys: cookieKeys },
      clients: [
        ...Object.entries(ciClients).map(([id, c]) => ({
          client_id: id,
          client_secret: c.secret,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          id_token_signed_response_alg: 'ES256' as const,
        })),
        {
          client_id: humanClientId,
          token_endpoint_auth_method: 'none',
          response_types: [],
          redirect_uris: [],
          grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
          id_token_signed_response_alg: 'ES256' as const,
        },
      ],
      scopes: ['openid', 'offline_access', 'writ'],
      claims: { openid: ['sub'], groups: ['groups'] },
      findAccount: (_ctx, id) => (accounts[id] ? { accountId: id, claims: () => ({ sub: id, groups: accounts[id]!.groups }) } : undefined),
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        deviceFlow: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: (_ctx, client) => (client.clientId === humanClientId ? approverAudience : agentAudience),
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => {
            if (![agentAudience, approverAudience, otherAudience].includes(resource)) throw new oidcErrors.InvalidTarget();
            return { scope: 'writ', audience: resource, accessTokenTTL: ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
          },
        },
      },
      extraTokenClaims: (_ctx, token) => {
        const t = token as unknown as { kind: string; clientId: string; accountId?: string };
        if (t.kind === 'ClientCredentials') {
          const c = ciClients[t.clientId];
          return c ? { groups: c.groups, ...(c.actFor ? { act: { sub: c.actFor } } : {}) } : undefined;
        }
        return t.accountId && accounts[t.accountId] ? { groups: accounts[t.accountId]!.groups } : undefined;
      },
      issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      ttl: { DeviceCode: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600, AccessToken: ttl, ClientCredentials: ttl },
      interactions: { url: (_ctx, i) => `/interaction/${i.uid}` },
    });
    // Quiet: the provider logs deprecation notes and server errors to the console.
    p.on('server_error', () => undefined);
    return p;
  }
  provider = build();

  /** The login and consent screens, answered for the account `approveDevice` named. */
  async function interaction(req: Parameters<Provider['interactionDetails']>[0], res: Parameters<Provider['interactionDetails']>[1]) {
    const details = await provider.interactionDetails(req, res);
    const accountId = approvingAs;
    if (!accountId) throw new Error('no device approval in progress');
    if (details.prompt.name === 'login') {
      await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id as string });
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(resource, scopes.join(' '));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  return {
    issuer,
    agentAudience,
    approverAudience,
    otherAudience,
    humanClientId,
    async clientCredentialsToken(clientId, opts = {}) {
      const c = ciClients[clientId];
      if (!c) throw new Error(`no CI client ${clientId}`);
      const r = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${clientId}:${c.secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'writ', resource: opts.resource ?? agentAudience }),
      });
      const body = (await r.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!body.access_token) throw new Error(`token endpoint: ${body.error}: ${body.error_description}`);
      return body.access_token;
    },
    async approveDevice(userCode, accountId) {
      approvingAs = accountId;
      const jar = new Map<string, string>();
      const send = async (url: string, init: RequestInit = {}) => {
        const r = await fetch(new URL(url, issuer), {
          ...init,
          redirect: 'manual',
          headers: { ...(init.headers as Record<string, string>), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
        });
        for (const c of r.headers.getSetCookie()) {
          const [kv] = c.split(';');
          const i = kv!.indexOf('=');
          jar.set(kv!.slice(0, i), kv!.slice(i + 1));
        }
        return r;
      };
      try {
        const page = await (await send('/device')).text();
        const xsrf = /name="xsrf" value="([^"]+)"/.exec(page)?.[1];
        if (!xsrf) throw new Error('no xsrf field on the device page');
        let r = await send('/device', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ xsrf, user_code: userCode, confirm: 'yes' }),
        });
        for (let hops = 0; r.status >= 300 && r.status < 400 && hops < 10; hops++) r = await send(r.headers.get('location')!);
        const text = await r.text();
        if (r.status !== 200 || !/Sign-in Success/.test(text)) throw new Error(`device approval did not succeed (${r.status}): ${text.slice(0, 300)}`);
      } finally {
        approvingAs = undefined;
      }
    },
    async rotateKey() {
      const k = await newSigningKey();
      keys = [k, ...keys];
      provider = build();
      return k.kid!;
    },
    removeKey(kid) {
      keys = keys.filter((k) => k.kid !== kid);
      if (keys.length === 0) throw new Error('cannot remove the last key');
      provider = build();
    },
    kids: () => keys.map((k) => k.kid!),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
