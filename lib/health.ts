/**
 * The process's observability endpoint (node:http, no framework): `/healthz` says the process
 * is alive and its event loop turns; `/readyz` runs the readiness checks (NATS connected, Writ's
 * streams present, the worker's targets reachable, the services running) and answers 503 with
 * the failing ones; `/metrics` is the Prometheus exposition. GET and HEAD only; nothing else.
 *
 * It binds loopback unless configured otherwise. What it reports is names and counts, never a
 * secret, but a failing check's reason is cut short and stripped of control characters anyway.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './log.ts';

export interface ReadinessCheck {
  /** Shown in /readyz: `nats:broker`, `streams:worker`, `target:db`, `service:broker`. */
  name: string;
  /** Resolves when ready; rejects (or throws) with the reason otherwise. */
  check(): Promise<void>;
}

export interface ReadinessReport {
  ready: boolean;
  /** `ok`, or why not, per check. */
  checks: Record<string, string>;
}

/** Rejects after `ms` with a message naming the wait. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** The connection is open and a round trip to the server completes. */
export function natsCheck(name: string, nc: NatsConnection, timeoutMs: number): ReadinessCheck {
  return {
    name: `nats:${name}`,
    async check() {
      if (nc.isClosed()) throw new Error('connection closed');
      await within(nc.flush(), timeoutMs, 'flush');
    },
  };
}

/** Each stream exists (stream info succeeds); KV buckets are streams named `KV_<bucket>`. */
export function streamsCheck(name: string, jsm: () => Promise<JetStreamManager>, streams: readonly string[], timeoutMs: number): ReadinessCheck {
  return {
    name: `streams:${name}`,
    async check() {
      const m = await within(jsm(), timeoutMs, 'jetstream');
      const missing: string[] = [];
      await Promise.all(
        streams.map(async (s) => {
          try {
            await within(m.streams.info(s), timeoutMs, s);
          } catch (e) {
            missing.push(`${s} (${(e as Error).message})`);
          }
        }),
      );
      if (missing.length) throw new Error(`not available: ${missing.sort().join(', ')}`);
    },
  };
}

/** A TCP connection to the target's host and port opens (no credentials are used). */
export function tcpCheck(name: string, host: string, port: number, timeoutMs: number): ReadinessCheck {
  return {
    name: `target:${name}`,
    check: () =>
      new Promise<void>((resolve, reject) => {
        const sock = tcpConnect({ host, port, timeout: timeoutMs });
        sock.once('connect', () => {
          sock.destroy();
          resolve();
        });
        sock.once('timeout', () => {
          sock.destroy();
          reject(new Error(`${host}:${port}: no connection in ${timeoutMs} ms`));
        });
        sock.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`${host}:${port}: ${e.code ?? e.message}`)));
      }),
  };
}

/** A service is RUNNING (not starting, draining or stopped). */
export function stateCheck(name: string, state: () => string): ReadinessCheck {
  return {
    name: `service:${name}`,
    async check() {
      const s = state();
      if (s !== 'RUNNING') throw new Error(s.toLowerCase());
    },
  };
}

const clean = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').slice(0, 300);

/** Runs every check at once; each one's failure is its own line, the others still run. */
export async function runChecks(checks: readonly ReadinessCheck[], timeoutMs: number): Promise<ReadinessReport> {
  const out: Record<string, string> = {};
  let ready = true;
  await Promise.all(
    checks.map(async (c) => {
      try {
        await within(
          Promise.resolve().then(() => c.check()),
          timeoutMs + 500,
          c.name,
        );
        out[c.name] = 'ok';
      } catch (e) {
        ready = false;
        out[c.name] = clean((e as Error)?.message ?? String(e));
      }
    }),
  );
  return { ready, checks: out };
}

export interface ObservabilityServerOptions {
  host: string;
  port: number;
  checks: () => readonly ReadinessCheck[];
  checkTimeoutMs: number;
  /** The Prometheus exposition; absent: /metrics is 404. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  log: Logger;
}

export interface ObservabilityServer {
  /** The port it listens on (the chosen one when configured as 0). */
  readonly port: number;
  close(): Promise<void>;
}

export async function startObservabilityServer(o: ObservabilityServerOptions): Promise<ObservabilityServer> {
  // Probes arriving together share one run of the checks: a probe storm is one set of NATS requests.
  let inFlight: Promise<ReadinessReport> | undefined;
  const readiness = () => (inFlight ??= runChecks(o.checks(), o.checkTimeoutMs).finally(() => (inFlight = undefined)));
  const send = (res: ServerResponse, status: number, type: string, body: string, head: boolean) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(head ? undefined : body);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'text/plain', 'method not allowed\n', false);
    }
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n', head);
      case '/readyz': {
        const r = await readiness();
        return send(res, r.ready ? 200 : 503, 'application/json', `${JSON.stringify(r)}\n`, head);
      }
      case '/metrics':
        if (o.metrics) {
          const m = await o.metrics();
          return send(res, 200, m.contentType, m.body, head);
        }
        break;
    }
    return send(res, 404, 'text/plain', 'not found\n', head);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      o.log.warn({ err: e }, 'observability endpoint failed a request');
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n', false);
      else res.destroy();
    });
  });
  // Probes are short: a stuck client is not kept.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  o.log.info({ host: o.host, port }, 'observability endpoint: /healthz /readyz /metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
