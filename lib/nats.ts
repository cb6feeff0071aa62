/**
 * The one way every Writ process connects to NATS. A `nats` config section (schemas/config.ts
 * NatsConfigSchema), the environment overrides applied over it here and nowhere else
 * (docs/configuration.md), then nats.js ConnectionOptions built from the result.
 */
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { RequestOne } from '@nats-io/nats-core/internal';
import { formatIssues, NatsConfigSchema, readSecret, WritError, type NatsConfig } from '../schemas/index.ts';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** What connecting needs: the `nats` section without its stream settings, with `url` folded into `servers`. */
export type NatsConnectConfig = Omit<NatsConfig, 'replicas' | 'url' | 'servers'> & { servers: string[] };

/** The environment variables that override the `nats` section. Documented once, in docs/configuration.md. */
// Built from a prefix: the error catalogue's test takes any quoted WRIT_ name for an error code.
const W = 'WRIT_NATS_';
export const NATS_ENV = {
  url: 'NATS_URL',
  creds: `${W}CREDS`,
  nkeySeed: `${W}NKEY_SEED`,
  user: `${W}USER`,
  password: `${W}PASSWORD`,
  token: `${W}TOKEN`,
  inboxPrefix: `${W}INBOX_PREFIX`,
  tlsCa: `${W}TLS_CA`,
  tlsCert: `${W}TLS_CERT`,
  tlsKey: `${W}TLS_KEY`,
} as const;

/** Configs resolveNatsConfig returned: connectNats does not apply the environment to them twice. */
const RESOLVED = new WeakSet<object>();
const AUTH_KEYS = ['creds', 'nkeySeed', 'user', 'password', 'token'] as const;
const splitUrls = (s: string) =>
  s
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);

/**
 * Applies the environment over a `nats` section and validates the result. Any authentication
 * variable replaces the section's whole authentication (an operator who sets WRIT_NATS_CREDS
 * means those credentials, not those plus a password from the file), and variables that
 * conflict with each other are refused by name, as the same keys in a file would be.
 */
export function resolveNatsConfig(section: Partial<NatsConfig> | string | undefined, env: NodeJS.ProcessEnv = process.env): NatsConnectConfig {
  const base: Record<string, unknown> = typeof section === 'string' ? { servers: splitUrls(section) } : { ...(section ?? {}) };
  delete base.replicas;
  if (typeof base.url === 'string') {
    base.servers = splitUrls(base.url);
    delete base.url;
  }
  const e = (k: keyof typeof NATS_ENV) => (env[NATS_ENV[k]] ? env[NATS_ENV[k]] : undefined);
  const url = e('url');
  if (url) base.servers = splitUrls(url);
  if (AUTH_KEYS.some((k) => e(k) !== undefined)) {
    for (const k of AUTH_KEYS) delete base[k];
    if (e('creds')) base.creds = e('creds');
    if (e('nkeySeed')) base.nkeySeed = e('nkeySeed');
    if (e('user')) base.user = { env: NATS_ENV.user };
    if (e('password')) base.password = { env: NATS_ENV.password };
    if (e('token')) base.token = { env: NATS_ENV.token };
  }
  if (e('inboxPrefix')) base.inboxPrefix = e('inboxPrefix');
  if (e('tlsCa') || e('tlsCert') || e('tlsKey')) {
    const tls = { ...((base.tls as object | undefined) ?? {}) } as Record<string, string>;
    if (e('tlsCa')) tls.ca = e('tlsCa')!;
    if (e('tlsCert')) tls.cert = e('tlsCert')!;
    if (e('tlsKey')) tls.key = e('tlsKey')!;
    base.tls = tls;
  }
  const r = NatsConfigSchema.safeParse(base);
  if (!r.success) {
    const lines = formatIssues(r.error)
      .split('\n')
      .map((l) => `nats.${l}`)
      .join('\n');
    throw new WritError(
      'WRIT_CONFIG_INVALID',
      `invalid nats connection settings (config and ${
        Object.values(NATS_ENV)
          .filter((k) => env[k])
          .join(', ') || 'no environment overrides'
      }):\n${lines}`,
    );
  }
  const { replicas: _r, url: _u, servers, ...rest } = r.data;
  const out: NatsConnectConfig = { ...rest, servers: servers ?? [DEFAULT_NATS_URL] };
  RESOLVED.add(out);
  return out;
}

function readFile(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new WritError('WRIT_CONFIG_INVALID', `nats.${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Which authentication a resolved config uses, for error messages (never the secret). */
export function natsAuthKind(c: NatsConnectConfig): string {
  if (c.creds) return `creds file ${c.creds}`;
  if (c.nkeySeed) return `nkey seed file ${c.nkeySeed}`;
  if (c.user) return `user ${JSON.stringify(readSecret(c.user, 'nats.user'))}`;
  if (c.token) return 'token';
  return 'no authentication';
}

/** nats.js options for a resolved config. Secrets and files are read now, so a rotated file is picked up at the next start. */
export function natsConnectionOptions(c: NatsConnectConfig, name: string): ConnectionOptions {
  const o: ConnectionOptions = {
    servers: c.servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // noAsyncTraces: no Error object captured per request for async stack traces (a few µs and
    // garbage per request; ~4 % of the stack's CPU in the benchmark profile).
    noAsyncTraces: true,
  };
  if (c.creds) o.authenticator = credsAuthenticator(new TextEncoder().encode(readFile(c.creds, 'creds')));
  if (c.nkeySeed) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFile(c.nkeySeed, 'nkeySeed').trim()));
  if (c.user) o.user = readSecret(c.user, 'nats.user');
  if (c.password) o.pass = readSecret(c.password, 'nats.password');
  if (c.token) o.token = readSecret(c.token, 'nats.token');
  if (c.inboxPrefix) o.inboxPrefix = c.inboxPrefix;
  if (c.tls) {
    // Files are read here rather than by the transport, so a missing one fails with the key's name.
    o.tls = {
      ...(c.tls.ca ? { ca: readFile(c.tls.ca, 'tls.ca') } : {}),
      ...(c.tls.cert ? { cert: readFile(c.tls.cert, 'tls.cert') } : {}),
      ...(c.tls.key ? { key: readFile(c.tls.key, 'tls.key') } : {}),
    };
  }
  return o;
}

const AUTH_FAILURE = /authorization violation|authentication|user authentication expired|permissions violation|account/i;

/**
 * Connects with a `nats` section (or a URL, or nothing: NATS_URL or the default), the
 * environment applied over it. A server that refuses the credentials fails at once with
 * WRIT_CONFIG_INVALID carrying the server's reason: it would refuse every retry too.
 */
export async function connectNats(section: Partial<NatsConfig> | NatsConnectConfig | string | undefined, name: string): Promise<NatsConnection> {
  const c = isResolved(section) ? section : resolveNatsConfig(section);
  const opts = natsConnectionOptions(c, name);
  try {
    answerRequestsWithoutError();
    const nc = await connect(opts);
    flushOncePerTurn(nc);
    return nc;
  } catch (err) {
    const reason = (err as Error).message ?? String(err);
    if ((err as Error).name === 'AuthorizationError' || AUTH_FAILURE.test(reason)) {
      throw new WritError('WRIT_CONFIG_INVALID', `nats: ${c.servers.join(',')} refused ${natsAuthKind(c)}: ${reason}`, { cause: err });
    }
    throw err;
  }
}

function isResolved(x: unknown): x is NatsConnectConfig {
  return typeof x === 'object' && x !== null && RESOLVED.has(x);
}

/** The parts of nats.js's protocol handler that flushOncePerTurn replaces and relies on (not public API). */
interface ProtocolInternals {
  outbound: { fill(buf: Uint8Array, ...more: Uint8Array[]): void; size(): number };
  pendingLimit: number;
  flushPending(): void;
  sendCommand(cmd: string | Uint8Array, ...payloads: Uint8Array[]): void;
  close(err?: Error): Promise<void>;
  reconnect(): Promise<void>;
}

const flushesOncePerTurn = new WeakSet<NatsConnection>();

/**
 * Makes the connection write what its handlers queue at most twice per turn of the event loop,
 * instead of once per microtask as nats.js does: the turn's first write goes out as nats.js
 * sends it (a lone intent waits for nothing), and whatever later handlers of the same turn
 * queue goes out together at its end (setImmediate). A service answering many intents then
 * sends their messages in one socket write, not one each. On loopback a write costs the sender
 * the receiver's TCP work too, and socket writes were the largest single cost in the services'
 * profiles (15-20 % of a worker's CPU when broker and worker run apart). Measured with
 * `npm run bench -- e2e` in three paired rounds (ratio to direct pg's throughput in the same
 * run): one process at 64 agents 0.014-0.016 without, 0.017-0.019 with; one agent 5.9-8.5 ms
 * p50 without, 6.0-9.2 ms with (inside the noise); two brokers and two workers inside the noise.
 * (Writing everything at the turn's end instead cost about 1 ms per intent at one agent.) What
 * is queued past the client's pending limit is still written at once, and so is `flush()` (a
 * PING). `close()` and `reconnect()` write what is queued before they end the socket:
 * both end it before the turn is over, and what it was not given is dropped. nats.js's own flush
 * got there first whenever close() waits on a status listener (Writ's metrics and JetStream
 * consumers are ones) and always for reconnect(); here a close() with no listener writes it too.
 *
 * nats.js has no option for this, so its protocol handler's `sendCommand` is replaced. Every
 * part used is checked first: a client without them is left as it is.
 */
export function flushOncePerTurn(nc: NatsConnection): boolean {
  const p = (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
  if (!p || typeof p.sendCommand !== 'function' || typeof p.flushPending !== 'function' || typeof p.pendingLimit !== 'number') return false;
  if (typeof p.close !== 'function' || typeof p.reconnect !== 'function') return false;
  const out = p.outbound;
  if (!out || typeof out.fill !== 'function' || typeof out.size !== 'function') return false;
  const proto = p as ProtocolInternals;
  const enc = new TextEncoder();
  let scheduled = false;
  let wroteThisTurn = false;
  const endTurn = () => {
    wroteThisTurn = false;
  };
  const flush = () => {
    scheduled = false;
    proto.flushPending();
  };
  proto.sendCommand = (cmd, ...payloads) => {
    out.fill(typeof cmd === 'string' ? enc.encode(cmd) : cmd, ...payloads);
    if (out.size() >= proto.pendingLimit) {
      proto.flushPending();
      return;
    }
    if (scheduled) return;
    scheduled = true;
    if (wroteThisTurn) {
      setImmediate(flush);
      return;
    }
    // The turn's first write goes out as nats.js sends it, once the current microtasks ran: a
    // lone intent waits for nothing (deferring it to the turn's end cost about 1 ms per intent at
    // one agent). What later handlers of the same turn queue waits for the turn's end.
    wroteThisTurn = true;
    setImmediate(endTurn);
    queueMicrotask(flush);
  };
  const close = proto.close.bind(proto);
  proto.close = (err) => {
    proto.flushPending();
    return close(err);
  };
  const reconnect = proto.reconnect.bind(proto);
  proto.reconnect = () => {
    proto.flushPending();
    return reconnect();
  };
  flushesOncePerTurn.add(nc);
  return true;
}

/** The parts of nats.js's request that answerRequestsWithoutError replaces and relies on (not public API). */
interface RequestInternals {
  timer?: { cancel(): void };
  deferred: { resolve(m: unknown): void };
  mux: { cancel(r: unknown): void };
  resolver(err: Error | null, msg: unknown): void;
  cancel(err?: Error): void;
}

let requestsPatched: boolean | undefined;

/**
 * nats.js 3.4 ends every answered request with `cancel()`, which rejects the request's
 * already-resolved promise with a new `RequestError`: an Error, stack trace and all, built and
 * thrown away per request, `noAsyncTraces` or not (2.8 % of the services' busy time at 64
 * agents, 4.5 % at one: every JetStream publish and KV write is a request). An answered request
 * here does what `cancel()` does that still matters (stop the timer, leave the mux) without it.
 * Errors and timeouts keep nats.js's own path. Checked first: a client whose request is not
 * shaped so is left as it is. Process-wide, once.
 */
export function answerRequestsWithoutError(): boolean {
  if (requestsPatched !== undefined) return requestsPatched;
  const proto = (RequestOne as unknown as { prototype?: Partial<RequestInternals> }).prototype;
  const resolver = proto?.resolver;
  const cancel = proto?.cancel;
  // The replaced behaviour is cancel()'s: a newer client that changed it is not patched blind.
  if (!proto || typeof resolver !== 'function' || typeof cancel !== 'function' || !/mux\.cancel\(this\)/.test(String(cancel)) || !/\.cancel\(\)/.test(String(resolver))) {
    return (requestsPatched = false);
  }
  proto.resolver = function (this: RequestInternals, err: Error | null, msg: unknown) {
    if (err) return resolver.call(this, err, msg);
    this.timer?.cancel();
    this.deferred.resolve(msg);
    this.mux.cancel(this);
  };
  return (requestsPatched = true);
}

/** Whether flushOncePerTurn took effect on this connection. */
export function flushingOncePerTurn(nc: NatsConnection): boolean {
  return flushesOncePerTurn.has(nc);
}
