/**
 * Streamable HTTP for the Writ MCP server on plain node:http: the SDK's web-standard
 * handler (`createMcpHandler`, which serves the 2026-07-28 revision and, statelessly,
 * 2025-era clients) behind a small IncomingMessage → Request adapter.
 *
 * Whoever reaches this endpoint acts with the agent's token, so it binds to loopback by
 * default and checks Host and Origin there (a web page cannot reach it through DNS
 * rebinding); on any other address it refuses to start without a bearer secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createMcpHandler, hostHeaderValidationResponse, localhostAllowedHostnames, localhostAllowedOrigins, originValidationResponse, type McpServer } from '@modelcontextprotocol/server';
import { WritError } from '../../schemas/index.ts';

export interface HttpServeOptions {
  /** Builds a server per request (the tools are stateless; the WritClient behind them is shared). */
  factory: () => McpServer;
  /** Port; 0 (the default) picks a free one, reported in `url`. */
  port?: number;
  /** Address to bind; default 127.0.0.1. Anything but loopback requires `bearer`. */
  host?: string;
  /** Path of the MCP endpoint; default `/mcp`. */
  path?: string;
  /** When set, every request must carry `Authorization: Bearer <bearer>`. */
  bearer?: string;
  /** Out-of-band errors (never the response). */
  onerror?: (e: Error) => void;
}

export interface HttpServing {
  /** The endpoint, e.g. `http://127.0.0.1:4567/mcp`. */
  url: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export async function serveHttp(o: HttpServeOptions): Promise<HttpServing> {
  const host = o.host ?? '127.0.0.1';
  const path = o.path ?? '/mcp';
  // Loopback is no boundary on a shared machine: any local user could reach the endpoint and act
  // with the agent's token. A bearer secret is required everywhere.
  const loopback = LOOPBACK.has(host);
  if (!o.bearer) throw new WritError('WRIT_CONFIG_INVALID', `the MCP endpoint on ${host} would hand the agent's token to anyone who reaches it: set a bearer secret (WRIT_MCP_BEARER)`);
  const handler = createMcpHandler(() => o.factory(), { ...(o.onerror ? { onerror: o.onerror } : {}) });
  const server = createServer((req, res) => {
    void serve(req, res).catch((e: unknown) => {
      o.onerror?.(e as Error);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end();
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? host}`);
    if (url.pathname !== path) return plain(res, 404, 'not found');
    if (o.bearer && !bearerMatches(req.headers.authorization, o.bearer)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer', 'content-type': 'text/plain' });
      res.end('unauthorized');
      return;
    }
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    const request = toRequest(req, url, ac.signal);
    const refused = loopback ? (hostHeaderValidationResponse(request, localhostAllowedHostnames()) ?? originValidationResponse(request, localhostAllowedOrigins())) : undefined;
    await send(res, refused ?? (await handler.fetch(request)));
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}${path}`,
    async close() {
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function bearerMatches(header: string | undefined, secret: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  // Compare digests: equal length, constant time.
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(text);
}

function toRequest(req: IncomingMessage, url: URL, signal: AbortSignal): Request {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) headers.append(k, x);
    else headers.set(k, v);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  // `duplex` is required by Node's fetch for a streamed body; @types/node 20 does not know it yet.
  const init = { method: req.method ?? 'GET', headers, signal, ...(hasBody ? { body: Readable.toWeb(req), duplex: 'half' } : {}) };
  return new Request(url, init as RequestInit);
}

/** Writes a web Response, streaming its body (SSE included) until it ends or the client goes. */
async function send(res: ServerResponse, r: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  r.headers.forEach((v, k) => {
    headers[k] = k === 'set-cookie' ? r.headers.getSetCookie() : v;
  });
  res.writeHead(r.status, r.statusText, headers);
  if (!r.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = r.body.getReader();
  res.once('close', () => void reader.cancel().catch(() => undefined));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise<void>((resolve) => res.once('drain', resolve).once('close', resolve));
    }
  } finally {
    res.end();
  }
}
