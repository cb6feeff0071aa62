/**
 * Configuration: parsed once at start with a strict schema, then frozen. Errors name
 * the exact path (`targets[1].kind: …`). Secrets are never inline: a credential names
 * an environment variable or a file that holds it.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { WritError } from './errors.ts';
import { deepFreeze } from './canonical.ts';
import { configPath } from './home.ts';
import { ApprovalSpecSchema, LimitsSchema, TARGET_KINDS, TargetNameSchema } from './messages.ts';

/** Where a secret comes from; exactly one source. */
export const SecretRefSchema = z.union([
  z.strictObject({ env: z.string().min(1) }),
  z.strictObject({ file: z.string().min(1) }),
  // Only for values that are not secrets in practice (a user name) or local development.
  z.strictObject({ value: z.string() }),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

/** http is accepted only on loopback (tests, a local IdP): anywhere else keys must come over TLS. */
function isSafeKeyUrl(u: string): boolean {
  try {
    const url = new URL(u);
    return url.protocol === 'https:' || (url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname));
  } catch {
    return false;
  }
}

export const IssuerSchema = z
  .strictObject({
    /** The exact `iss` of its tokens; with `discovery`, also the base of `/.well-known/openid-configuration`. */
    issuer: z.string().min(1),
    /** `aud` of agent tokens from this issuer. Default `identity.audience`. */
    audience: z.string().min(1).optional(),
    /** `aud` of approver (human) tokens from this issuer. Default `identity.approverAudience`; without one, this issuer's tokens cannot approve. */
    approverAudience: z.string().min(1).optional(),
    /** Read `jwks_uri` from the issuer's OpenID discovery document (its `issuer` must match exactly). */
    discovery: z.boolean().default(false),
    jwksUrl: z.url().optional(),
    jwksFile: z.string().optional(),
    /** A fetched JWKS is used this long before it is fetched again; a key removed at the issuer stops working (cached tokens too) within it. Seconds, default 300. */
    jwksCacheMaxAgeSec: z.number().int().nonnegative().default(300),
    /** An unknown `kid` refetches the JWKS at most this often (a rotated key is picked up at once), seconds. Default 30. */
    jwksCooldownSec: z.number().int().nonnegative().default(30),
    /** Allowed signature algorithms; `none` and HMAC are never accepted. */
    algorithms: z.array(z.enum(['EdDSA', 'ES256', 'ES384', 'RS256', 'RS384', 'RS512', 'PS256'])).default(['EdDSA', 'ES256', 'RS256']),
    /** Accepted clock skew for exp/nbf/iat, seconds. Default 30. */
    clockSkewSec: z.number().int().nonnegative().default(30),
    /** Tokens whose exp - iat exceeds this are refused, seconds. Default 3600. */
    maxLifetimeSec: z.number().int().positive().default(3600),
    /** Claim path (dot-separated) holding the principal's groups. Default `groups`. */
    groupsClaim: z.string().default('groups'),
    /** Claim path of the human the agent acts for (RFC 8693 `act.sub`). */
    actForClaim: z.string().default('act.sub'),
  })
  .refine((i) => (i.jwksUrl ? 1 : 0) + (i.jwksFile ? 1 : 0) + (i.discovery ? 1 : 0) === 1, { message: 'exactly one of discovery, jwksUrl or jwksFile' })
  .refine((i) => !i.jwksUrl || isSafeKeyUrl(i.jwksUrl), { message: 'jwksUrl must be https (http only on loopback)', path: ['jwksUrl'] })
  .refine((i) => !i.discovery || isSafeKeyUrl(i.issuer), { message: 'discovery needs an https issuer (http only on loopback)', path: ['issuer'] });
export type IssuerConfig = z.infer<typeof IssuerSchema>;

const DevIssuerSchema = z.strictObject({
  enabled: z.boolean().default(false),
  dir: z.string().default('.data/dev-issuer'),
  audience: z.string().default('writ'),
  approverAudience: z.string().default('writ-approver'),
  /**
   * The dev issuer next to real issuers is refused at load (a production config must never
   * trust keys lying in a data folder); this says on purpose that this config is a test bed.
   */
  allowWithExternalIssuers: z.boolean().default(false),
});
const DEV_ISSUER_DEFAULT = { enabled: false, dir: '.data/dev-issuer', audience: 'writ', approverAudience: 'writ-approver', allowWithExternalIssuers: false };

export const IdentitySchema = z
  .strictObject({
    /** Default `aud` of agent tokens, for issuers that name none. */
    audience: z.string().min(1).optional(),
    /** Default `aud` of approver tokens; must differ from every agent audience. */
    approverAudience: z.string().min(1).optional(),
    /** Longer tokens are refused before any parsing (WRIT_PAYLOAD_TOO_LARGE), bytes. Default 8 KiB. */
    maxTokenBytes: z
      .number()
      .int()
      .positive()
      .max(64 * 1024)
      .default(8192),
    issuers: z.array(IssuerSchema).default([]),
    /** Trust the local development issuer that `writ up` creates. Never in production. */
    devIssuer: DevIssuerSchema.default(DEV_ISSUER_DEFAULT),
  })
  .superRefine((id, ctx) => {
    const seen = new Set<string>();
    id.issuers.forEach((i, n) => {
      if (seen.has(i.issuer)) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'issuer'], message: `issuer ${JSON.stringify(i.issuer)} is listed twice` });
      seen.add(i.issuer);
      const aud = i.audience ?? id.audience;
      const approverAud = i.approverAudience ?? id.approverAudience;
      if (!aud) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'audience'], message: 'no agent audience (set it here or identity.audience)' });
      // One audience for both would let an agent's token approve, and an approver's token act as an agent.
      if (aud && aud === approverAud) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'approverAudience'], message: 'the approver audience must differ from the agent audience' });
    });
    const dev = id.devIssuer;
    if (dev.audience === dev.approverAudience) ctx.addIssue({ code: 'custom', path: ['devIssuer', 'approverAudience'], message: 'the approver audience must differ from the agent audience' });
    if (dev.enabled && id.issuers.length > 0 && !dev.allowWithExternalIssuers) {
      ctx.addIssue({
        code: 'custom',
        path: ['devIssuer', 'enabled'],
        message: 'the development issuer cannot be enabled next to external issuers (a production config); set devIssuer.allowWithExternalIssuers: true only in a test bed',
      });
    }
  });
export type IdentityConfig = z.output<typeof IdentitySchema>;

/**
 * How every Writ process connects to NATS (docs/configuration.md). At most one way to
 * authenticate: `creds`, `nkeySeed`, `user`+`password`, or `token`. Two at once is refused
 * by name rather than one silently winning. The environment overrides (NATS_URL,
 * WRIT_NATS_*) are applied by lib/nats.ts `resolveNatsConfig`, in one place.
 */
export const NatsConfigSchema = z
  .strictObject({
    /** Server URLs. Default: NATS_URL, else nats://127.0.0.1:4222. */
    servers: z.array(z.string().min(1)).min(1).optional(),
    /** Deprecated alias of `servers` (one URL, or several comma-separated). */
    url: z.string().min(1).optional(),
    /** A NATS credentials file (user JWT and nkey seed), as `nsc` writes it. */
    creds: z.string().min(1).optional(),
    /** A file holding the user's nkey seed (`SU…`). */
    nkeySeed: z.string().min(1).optional(),
    user: SecretRefSchema.optional(),
    password: SecretRefSchema.optional(),
    token: SecretRefSchema.optional(),
    /** TLS: `ca` alone verifies the server; `cert` and `key` together present a client certificate. */
    tls: z.strictObject({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).optional(),
    /** Inbox prefix for replies; a locked-down account lets each user subscribe to its own prefix only. */
    inboxPrefix: z
      .string()
      .regex(/^_INBOX(\.[A-Za-z0-9_-]+)*$/, 'an inbox prefix is _INBOX followed by .token parts (A-Z a-z 0-9 _ -)')
      .optional(),
    /** Replicas for streams and buckets: 1 single node, 3 in a cluster. */
    replicas: z.number().int().min(1).max(5).default(1),
  })
  .superRefine((n, ctx) => {
    for (const issue of natsConfigConflicts(n)) ctx.addIssue({ code: 'custom', path: [issue.key], message: issue.message });
  });
export type NatsConfig = z.output<typeof NatsConfigSchema>;

/** Cross-field rules of a `nats` section, each naming the key at fault (also used after env overrides). */
export function natsConfigConflicts(n: Partial<NatsConfig>): Array<{ key: string; message: string }> {
  const out: Array<{ key: string; message: string }> = [];
  if (n.url !== undefined && n.servers !== undefined) out.push({ key: 'url', message: 'give servers or the deprecated url, not both' });
  const auth = [
    n.creds !== undefined && 'creds',
    n.nkeySeed !== undefined && 'nkeySeed',
    (n.user !== undefined || n.password !== undefined) && 'user/password',
    n.token !== undefined && 'token',
  ].filter((x): x is string => !!x);
  if (auth.length > 1) out.push({ key: auth[1]!.split('/')[0]!, message: `conflicting authentication: ${auth.join(' and ')}; give only one` });
  if (n.password !== undefined && n.user === undefined) out.push({ key: 'password', message: 'a password needs a user' });
  if (n.tls && (n.tls.cert === undefined) !== (n.tls.key === undefined)) out.push({ key: 'tls', message: 'cert and key go together' });
  return out;
}

export const TargetSchema = z
  .strictObject({
    name: TargetNameSchema,
    kind: z.enum(TARGET_KINDS),
    tags: z.array(z.string()).default([]),
    description: z.string().optional(),
    /**
     * kind mysql only: the default database of the worker's connections, where the broker places
     * unqualified names (`customers` is `shop.customers`) before matching rules. Default: the
     * `database` of this target's workers.mysql entry in the same file; must equal it when both
     * are given. Unknown (a broker config without either): unqualified names are refused.
     */
    database: z.string().min(1).max(64).optional(),
  })
  .refine((t) => t.database === undefined || t.kind === 'mysql', { message: 'only a mysql target has a database', path: ['database'] });
export type TargetConfig = z.infer<typeof TargetSchema>;

/** The foundation's minimal policy: allow or deny by group and target. The policy engine replaces it. */
export const SimpleRuleSchema = z.strictObject({
  id: z.string().min(1),
  effect: z.enum(['allow', 'deny', 'require_approval']),
  /** For require_approval: approver groups, distinct approvers, timeout, longest access window. */
  approval: z.lazy(() => ApprovalSpecSchema).optional(),
  /** Principal groups the rule applies to; `*` for anyone. */
  groups: z.array(z.string()).min(1),
  /** Target names (or `*`). */
  targets: z.array(z.string()).min(1),
  /** The access mode the rule allows; `read` allows only statements classified read-only. Default read. */
  mode: z.enum(['read', 'write']).default('read'),
  limits: LimitsSchema.default({}),
});

export const PolicySchema = z.strictObject({
  rules: z.array(SimpleRuleSchema).default([]),
  /** Masking applied to every result unless a rule says otherwise. */
  masking: z.unknown().optional(),
  /** Limits applied where a rule sets none. */
  defaultLimits: LimitsSchema.default({ rows: 1000, seconds: 30, bytes: 4 * 1024 * 1024 }),
});
export type PolicyConfig = z.infer<typeof PolicySchema>;

export const PostgresWorkerTargetSchema = z.strictObject({
  target: TargetNameSchema,
  host: z.string().default('127.0.0.1'),
  port: z.number().int().positive().default(5432),
  database: z.string().min(1),
  /** One credential per access mode. */
  credentials: z.strictObject({
    read: z.strictObject({ user: SecretRefSchema, password: SecretRefSchema.optional() }),
    write: z.strictObject({ user: SecretRefSchema, password: SecretRefSchema.optional() }).optional(),
  }),
  poolSize: z.number().int().positive().default(8),
});

/** A MySQL or MariaDB target (workers/mysql/): the same shape as PostgreSQL's. */
export const MysqlWorkerTargetSchema = z.strictObject({
  target: TargetNameSchema,
  host: z.string().default('127.0.0.1'),
  port: z.number().int().positive().default(3306),
  /** The database statements run in; unqualified table names refer to it (the broker's too: it becomes the target's `database`), and masking rules name it (`database.table.column`). */
  database: z.string().min(1).max(64),
  /** One credential per access mode: a user with SELECT only for `read`, and the writes it may do for `write`. */
  credentials: z.strictObject({
    read: z.strictObject({ user: SecretRefSchema, password: SecretRefSchema.optional() }),
    write: z.strictObject({ user: SecretRefSchema, password: SecretRefSchema.optional() }).optional(),
  }),
  poolSize: z.number().int().positive().default(8),
});
export type MysqlWorkerTarget = z.infer<typeof MysqlWorkerTargetSchema>;

const SshCredentialSchema = z.strictObject({
  user: SecretRefSchema,
  /** Private key file (OpenSSH or PEM). */
  privateKeyFile: z.string().min(1),
  passphrase: SecretRefSchema.optional(),
});

export const SshWorkerTargetSchema = z.strictObject({
  target: TargetNameSchema,
  host: z.string().min(1),
  port: z.number().int().positive().default(22),
  /** Pinned host keys: a known_hosts file and/or `SHA256:…` fingerprints. An unknown or changed key is refused. */
  hostKeys: z
    .strictObject({
      knownHostsFile: z.string().optional(),
      fingerprints: z.array(z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/)).default([]),
    })
    .refine((h) => !!h.knownHostsFile || h.fingerprints.length > 0, { message: 'pin at least one host key (knownHostsFile or fingerprints)' }),
  /** One credential per access mode. */
  credentials: z.strictObject({ read: SshCredentialSchema, write: SshCredentialSchema.optional() }),
  /** stdout and stderr are each cut at this many bytes. Default 1 MiB. */
  maxOutputBytes: z
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  readyTimeoutMs: z.number().int().positive().default(10_000),
});
export type SshWorkerTarget = z.infer<typeof SshWorkerTargetSchema>;

/** One trusted approver bot: who it is (token issuer and subject) and the public key its votes verify with. */
export const TrustedBotSchema = z.strictObject({
  /** The bot token's `iss`. */
  iss: z.string().min(1),
  /** The bot token's `sub`. */
  sub: z.string().min(1),
  /** The bot's raw Ed25519 public key, base64url (32 bytes): `node approver/main.ts keygen` prints it. */
  publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'a raw Ed25519 public key, base64url (43 characters)'),
});
export type TrustedBot = z.infer<typeof TrustedBotSchema>;
const TrustedBotEntrySchema = z.preprocess((v, ctx) => {
  // Fail closed: a bare subject (the earlier form) has no key to verify a vote with.
  if (typeof v === 'string') {
    ctx.addIssue({
      code: 'custom',
      input: v,
      message: `${JSON.stringify(v.slice(0, 64))}: a trusted bot is now { iss, sub, publicKey } (its votes are signed); a bare subject names no key and is refused`,
    });
    return z.NEVER;
  }
  return v;
}, TrustedBotSchema);

/**
 * Health, metrics and tracing (docs/operations.md "Monitoring"). Off by default: no port, no
 * HTTP server; no OTLP endpoint (here or in OTEL_EXPORTER_OTLP_ENDPOINT), no exporter.
 */
export const ObservabilitySchema = z.strictObject({
  /**
   * Port of the process's HTTP endpoint: `/healthz`, `/readyz`, `/metrics`. Unset (default):
   * no endpoint. 0 picks a free port (tests). One endpoint per process, whatever it runs.
   */
  port: z.number().int().min(0).max(65_535).optional(),
  /** Address it listens on. Default loopback; set `0.0.0.0` (or the pod IP) for a scraper on another host. */
  host: z.string().min(1).default('127.0.0.1'),
  /**
   * OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`). Unset: the standard
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT variables, else no exporter.
   */
  otlpEndpoint: z.url({ protocol: /^https?$/ }).optional(),
  /** How often consumer lag (num_pending) is sampled, ms. Default 5000. */
  sampleIntervalMs: z.number().int().min(100).default(5_000),
  /** How long one readiness check (NATS round trip, a target's TCP connect) may take, ms. Default 2000. */
  checkTimeoutMs: z.number().int().min(50).default(2_000),
});
export type ObservabilityConfig = z.output<typeof ObservabilitySchema>;

export const ConfigSchema = z.strictObject({
  /** Subject prefix; names derive from it. Default `writ`. */
  prefix: z.string().default('writ'),
  /**
   * The local demo: `writ up` creates the database of the first PostgreSQL worker, the demo
   * roles and the seeded `customers` table (deploy/local/setup.sql). Default false: `writ up`
   * then only starts the services and writes into no database.
   */
  demo: z.boolean().default(false),
  nats: NatsConfigSchema.default({ replicas: 1 }),
  limits: z
    .strictObject({
      /** Intents larger than this are refused, bytes. */
      maxIntentBytes: z
        .number()
        .int()
        .positive()
        .default(256 * 1024),
      /**
       * One SQL statement or shell line longer than this is refused before it is classified,
       * bytes (the facts of a huge statement cost far more memory than its text). `explain`
       * requests, which maxIntentBytes does not bound, are held to it too.
       */
      maxStatementBytes: z
        .number()
        .int()
        .positive()
        .default(64 * 1024),
      /**
       * Heap the broker's facts cache may hold, bytes: each entry is counted from its shape
       * (objects, arrays, strings as V8 lays them out): measured at 0.8-1.5x its real footprint,
       * erring high. Default 16 MiB: about 15,000 short statements: V8 lets the heap
       * grow to ~3.5× what is live before collecting (docs/operations.md, Memory), so each MiB here
       * costs a few MiB of RSS.
       */
      factsCacheBytes: z
        .number()
        .int()
        .positive()
        .default(16 * 1024 * 1024),
      /**
       * Most grants a worker process remembers having claimed (each until its expiry + 60 s, ~175
       * bytes each): a second run is refused locally even if the claims bucket lost the claim. The
       * set holds about claims/s × (grant TTL + 60 s); the default covers ~1,600 claims/s at a 60 s TTL.
       */
      claimedGrantsMax: z.number().int().positive().default(200_000),
      /** Sessions whose owner a broker keeps in memory (260-400 bytes each); one that fell out costs a KV read. */
      sessionOwnersMax: z.number().int().positive().default(50_000),
      /** In-flight handlers per process. */
      concurrency: z.number().int().positive().default(256),
      /** Seconds past a grant's expiry plus its time limit before a claimed, unfinished intent is declared `unknown`. */
      sweepMarginSec: z.number().int().nonnegative().default(10),
      /** How often the sweeper looks, ms. */
      sweepIntervalMs: z.number().int().positive().default(1000),
      /**
       * Milliseconds of classification one principal may use a second on one broker (a burst of ten
       * seconds' worth); past it its intents and explains are answered WRIT_BUSY until it has
       * some again. Classifying 240 KB of tiny statements takes about a second of the event loop.
       */
      classifyMsPerSec: z.number().int().positive().default(250),
    })
    .default({
      maxIntentBytes: 256 * 1024,
      maxStatementBytes: 64 * 1024,
      factsCacheBytes: 16 * 1024 * 1024,
      claimedGrantsMax: 200_000,
      sessionOwnersMax: 50_000,
      concurrency: 256,
      sweepMarginSec: 10,
      sweepIntervalMs: 1000,
      classifyMsPerSec: 250,
    }),
  identity: IdentitySchema.default({ maxTokenBytes: 8192, issuers: [], devIssuer: DEV_ISSUER_DEFAULT }),
  grants: z
    .strictObject({
      /** The broker's Ed25519 signing key (PKCS8 PEM) file; created when missing. */
      keyFile: z.string().default('.data/grant-key.pem'),
      /** Public keys workers accept, by key id (rotation: keep the old one listed). Defaults to the key file's own public key. */
      publicKeyFiles: z.record(z.string(), z.string()).optional(),
      ttlSec: z.number().int().positive().default(60),
    })
    .default({ keyFile: '.data/grant-key.pem', ttlSec: 60 }),
  targets: z.array(TargetSchema).default([]),
  /**
   * A policy file for the rule engine (docs/policy.md). When set, it replaces `policy`:
   * brokers publish it to the writ_policy bucket and hot-reload from there.
   */
  policyFile: z.string().optional(),
  policy: PolicySchema.default({ rules: [], defaultLimits: { rows: 1000, seconds: 30, bytes: 4 * 1024 * 1024 } }),
  workers: z
    .strictObject({
      postgres: z.array(PostgresWorkerTargetSchema).default([]),
      ssh: z.array(SshWorkerTargetSchema).default([]),
      mysql: z.array(MysqlWorkerTargetSchema).default([]),
    })
    .default({ postgres: [], ssh: [], mysql: [] }),
  audit: z
    .strictObject({
      replicas: z.number().int().min(1).max(5).optional(),
      /** Retention by age, seconds; unset keeps forever. */
      maxAgeSec: z.number().int().positive().optional(),
      /** How long a writer gathers events of one session before writing them as one block, ms. */
      flushMs: z.number().int().nonnegative().default(0),
      /** Seconds between signed checkpoints (one is also written at shutdown). */
      checkpointSec: z.number().positive().default(60),
      /**
       * Directory of this process's block signing keys (`audit-broker.pem`, `audit-worker.pem`,
       * created on first start, 0600): every block a service appends is signed with its own key.
       * Default: the grant key file's directory. Give each replica its own.
       */
      signingKeyDir: z.string().optional(),
      /**
       * The key registry the operator controls (audit/README.md): which key may sign which
       * actor kind's events. When set, a checkpoint signs only blocks it verified against it.
       */
      keyRegistry: z.string().optional(),
      /**
       * The auditors' X25519 public key (raw 32 bytes, base64url). When set, the exact command
       * text of every intent is kept in the log sealed to it (AES-256-GCM), beside its SHA-256
       * and the masked text: only the holder of the private key, which never enters NATS, can
       * read it (`writ audit reveal`). Unset: the exact text is not kept, only its digest.
       */
      auditorPublicKey: z
        .string()
        .regex(/^[A-Za-z0-9_-]{43}$/, 'a raw X25519 public key, base64url (43 characters)')
        .optional(),
      /**
       * Local stacks and tests only: a service adds its own public key to `keyRegistry` at start.
       * A production registry is written by the operator (`writ audit keys add`), never by services.
       */
      autoRegisterKeys: z.boolean().default(false),
      /** Stream sequence below which unsigned blocks (written before signing existed) are accepted. */
      allowUnsignedBefore: z.number().int().nonnegative().default(0),
    })
    .default({ flushMs: 0, checkpointSec: 60, autoRegisterKeys: false, allowUnsignedBefore: 0 }),
  approvals: z
    .strictObject({
      /**
       * Chat bots that vote on behalf of the humans they map, each matched by its token's issuer AND
       * subject, and holding its own Ed25519 key: every such vote must be signed with it (the bot's
       * token alone votes for no one). The earlier bare-subject form is refused: it names no key.
       */
      trustedBots: z.array(TrustedBotEntrySchema).default([]),
      /**
       * Identities that are one human: a login identity, an admin account, a chat identity a bot
       * maps. Approvals count distinct humans, and a human never approves their own request under
       * another of their identities. Each identity is `{ iss, sub }`; a bot-mapped identity has the
       * bot's issuer. Identities not listed are a human each.
       */
      humans: z
        .array(
          z.strictObject({
            id: z.string().min(1),
            identities: z.array(z.strictObject({ iss: z.string(), sub: z.string().min(1) })).min(1),
          }),
        )
        .default([]),
      /**
       * How far a vote's `at` may be from the broker's clock, seconds (default 120). Decision ids
       * are remembered for twice this long, so a vote cannot be replayed while it would still be fresh.
       */
      maxVoteSkewSec: z.number().int().min(5).max(3_600).default(120),
      /**
       * How many intents of one principal may wait for approval at once (default 100); past it an
       * intent that needs approval is refused with WRIT_TOO_MANY_PENDING. Each one is a record kept
       * until its timeout and a request shown to every approver.
       */
      maxPendingPerPrincipal: z.number().int().min(1).max(100_000).default(100),
    })
    .default({ trustedBots: [], humans: [], maxVoteSkewSec: 120, maxPendingPerPrincipal: 100 }),
  results: z
    .strictObject({
      /**
       * How long the API still answers an ended intent's stored rows, seconds (default a day);
       * after that it answers the outcome's status and error only. The sealed copy itself lives
       * in the intent's record (sealed to the broker's results key, which rotates with the grant key).
       */
      maxAgeSec: z.number().int().positive().default(86_400),
    })
    .default({ maxAgeSec: 86_400 }),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).default({ level: 'info' }),
  observability: ObservabilitySchema.default({ host: '127.0.0.1', sampleIntervalMs: 5_000, checkTimeoutMs: 2_000 }),
});
export type Config = z.output<typeof ConfigSchema>;

/** The development issuer's token limits, as broker/identity.ts applies them (a day, 30 s of skew). */
export const DEV_ISSUER_TOKEN_LIMITS = { maxLifetimeSec: 24 * 3600, clockSkewSec: 30 } as const;

/**
 * How long after a broker first sees an approver token that token can still verify, seconds, over
 * every issuer that may sign approver tokens: its maximum lifetime plus twice its skew (issued up to
 * a skew in the future, accepted up to a skew past `exp`). A spent vote token is remembered this
 * long (the vote-tokens bucket's max_age), so it is never forgotten while it could vote again.
 */
export function approverTokenLifeSec(config: Pick<Config, 'identity'>): number {
  const id = config.identity;
  const lives = id.issuers.filter((i) => (i.approverAudience ?? id.approverAudience) !== undefined).map((i) => i.maxLifetimeSec + 2 * i.clockSkewSec);
  if (id.devIssuer.enabled) lives.push(DEV_ISSUER_TOKEN_LIMITS.maxLifetimeSec + 2 * DEV_ISSUER_TOKEN_LIMITS.clockSkewSec);
  // No issuer may approve: nothing is ever spent, and an hour is as good as any bound.
  return Math.max(3600, ...lives);
}

/** The largest clock skew any issuer of approver tokens is allowed, seconds (a token verifies until `exp` plus this). */
export function approverTokenSkewSec(config: Pick<Config, 'identity'>): number {
  const id = config.identity;
  const skews = id.issuers.filter((i) => (i.approverAudience ?? id.approverAudience) !== undefined).map((i) => i.clockSkewSec);
  if (id.devIssuer.enabled) skews.push(DEV_ISSUER_TOKEN_LIMITS.clockSkewSec);
  return Math.max(0, ...skews);
}
export type ConfigInput = z.input<typeof ConfigSchema>;

/** Formats zod issues as `path.to[2].key: message` lines. */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const path = i.path.map((p, n) => (typeof p === 'number' ? `[${p}]` : n === 0 ? String(p) : `.${String(p)}`)).join('');
      const keys = i.code === 'unrecognized_keys' ? ` ${i.keys.map((k) => JSON.stringify(k)).join(', ')}` : '';
      return `${path || '(root)'}: ${i.message}${keys}`;
    })
    .join('\n');
}

/** Validates, fills defaults, checks cross-field rules, and freezes. */
export function parseConfig(input: unknown, baseDir = process.cwd()): Readonly<Config> {
  const r = ConfigSchema.safeParse(input);
  if (!r.success) throw new WritError('WRIT_CONFIG_INVALID', `invalid config:\n${formatIssues(r.error)}`);
  // A copy: zod hands out its `.default({...})` objects themselves, which the paths below would
  // change and deepFreeze freeze, so the next config without that section would share (and fail on) them.
  const c = structuredClone(r.data);
  const targets = new Set<string>();
  c.targets.forEach((t, i) => {
    if (targets.has(t.name)) throw new WritError('WRIT_CONFIG_INVALID', `targets[${i}].name: duplicate target ${JSON.stringify(t.name)}`);
    targets.add(t.name);
  });
  c.workers.postgres.forEach((w, i) => {
    const t = c.targets.find((x) => x.name === w.target);
    if (!t) throw new WritError('WRIT_CONFIG_INVALID', `workers.postgres[${i}].target: no target named ${JSON.stringify(w.target)}`);
    if (t.kind !== 'postgres') throw new WritError('WRIT_CONFIG_INVALID', `workers.postgres[${i}].target: target ${JSON.stringify(w.target)} is of kind ${t.kind}`);
  });
  c.workers.ssh.forEach((w, i) => {
    const t = c.targets.find((x) => x.name === w.target);
    if (!t) throw new WritError('WRIT_CONFIG_INVALID', `workers.ssh[${i}].target: no target named ${JSON.stringify(w.target)}`);
    if (t.kind !== 'ssh') throw new WritError('WRIT_CONFIG_INVALID', `workers.ssh[${i}].target: target ${JSON.stringify(w.target)} is of kind ${t.kind}`);
  });
  c.workers.mysql.forEach((w, i) => {
    const t = c.targets.find((x) => x.name === w.target);
    if (!t) throw new WritError('WRIT_CONFIG_INVALID', `workers.mysql[${i}].target: no target named ${JSON.stringify(w.target)}`);
    if (t.kind !== 'mysql') throw new WritError('WRIT_CONFIG_INVALID', `workers.mysql[${i}].target: target ${JSON.stringify(w.target)} is of kind ${t.kind}`);
    // The broker places unqualified names in the target's database; the worker runs them in its own. They must be one.
    // Compared exactly: on a server with lower_case_table_names=0 database names are case-sensitive.
    if (t.database !== undefined && t.database !== w.database) {
      throw new WritError('WRIT_CONFIG_INVALID', `workers.mysql[${i}].database: ${JSON.stringify(w.database)} differs from targets[${c.targets.indexOf(t)}].database ${JSON.stringify(t.database)}`);
    }
    t.database = w.database;
  });
  // `$WRIT_HOME/…` lies in the data directory (schemas/home.ts); other relative paths in the file's folder.
  if (c.demo && c.workers.postgres.length === 0) throw new WritError('WRIT_CONFIG_INVALID', 'demo: true needs a workers.postgres entry (its database becomes the demo database)');
  const abs = (p: string) => configPath(p, baseDir);
  for (const w of c.workers.ssh) {
    for (const cred of [w.credentials.read, w.credentials.write]) if (cred) cred.privateKeyFile = abs(cred.privateKeyFile);
    if (w.hostKeys.knownHostsFile) w.hostKeys.knownHostsFile = abs(w.hostKeys.knownHostsFile);
  }
  c.grants.keyFile = abs(c.grants.keyFile);
  if (c.audit.signingKeyDir) c.audit.signingKeyDir = abs(c.audit.signingKeyDir);
  if (c.audit.keyRegistry) c.audit.keyRegistry = abs(c.audit.keyRegistry);
  c.identity.devIssuer.dir = abs(c.identity.devIssuer.dir);
  for (const i of c.identity.issuers) if (i.jwksFile) i.jwksFile = abs(i.jwksFile);
  if (c.policyFile) c.policyFile = abs(c.policyFile);
  absNatsPaths(c.nats, abs);
  return deepFreeze(c);
}

/** Makes the `nats` section's file paths (creds, nkeySeed, tls, secret files) absolute. */
export function absNatsPaths(n: NatsConfig, abs: (p: string) => string): void {
  if (n.creds) n.creds = abs(n.creds);
  if (n.nkeySeed) n.nkeySeed = abs(n.nkeySeed);
  if (n.tls) for (const k of ['ca', 'cert', 'key'] as const) if (n.tls[k]) n.tls[k] = abs(n.tls[k]);
  for (const k of ['user', 'password', 'token'] as const) {
    const ref = n[k];
    if (ref && 'file' in ref) n[k] = { file: abs(ref.file) };
  }
}

/**
 * The YAML parser, loaded on the first config file read: most commands of the CLI read none,
 * and loading it costs tens of ms at every start (docs/ARCHITECTURE.md, how the CLI starts fast).
 */
let yaml: typeof import('yaml') | undefined;
function parseYaml(text: string): unknown {
  yaml ??= createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text);
}

/** Reads a YAML or JSON config file; relative paths inside resolve against the file's folder. */
export function loadConfigFile(file: string): Readonly<Config> {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `cannot read config ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseConfig(raw, dirname(resolve(file)));
}

/** Resolves a secret reference at the moment it is needed; the value is never logged. */
export function readSecret(ref: SecretRef, what: string): string {
  if ('value' in ref) return ref.value;
  if ('env' in ref) {
    const v = process.env[ref.env];
    if (v === undefined) throw new WritError('WRIT_CONFIG_INVALID', `${what}: environment variable ${ref.env} is not set`);
    return v;
  }
  try {
    return readFileSync(ref.file, 'utf8').trim();
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `${what}: cannot read ${ref.file}`, { cause: e });
  }
}
