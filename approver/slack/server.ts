/**
 * The HTTP endpoint Slack posts interactions to (`POST /slack/interactions`, form-encoded
 * `payload=<json>`). Every request is verified against the signing secret and its
 * timestamp before its body is even parsed; a bad or stale one gets 401 and nothing
 * else happens. Slack wants an answer within three seconds, so a verified payload is
 * acknowledged with 200 at once and handled afterwards (the outcome reaches the user
 * through the message and ephemeral replies).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../lib/index.ts';
import { verifySlackSignature } from './signature.ts';

const INTERACTIONS_PATH = '/slack/interactions';
const MAX_BODY = 1024 * 1024;

export interface InteractionServerOptions {
  host: string;
  port: number;
  /** Resolved once at start. */
  signingSecret: string;
  log: Logger;
  /** Called after the 200 went out; errors are logged. */
  onPayload(payload: unknown): Promise<void>;
}

export interface InteractionServer {
  readonly url: string;
  readonly port: number;
  /** Stops listening and waits for payloads being handled. */
  close(): Promise<void>;
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BodyTooLarge());
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body = ''): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export async function startInteractionServer(o: InteractionServerOptions): Promise<InteractionServer> {
  const inFlight = new Set<Promise<void>>();
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? '').split('?')[0] !== INTERACTIONS_PATH) return send(res, 404, 'not found');
    if (req.method !== 'POST') return send(res, 405, 'method not allowed');
    let body: Buffer;
    try {
      body = await readBody(req);
    } catch (e) {
      return send(res, e instanceof BodyTooLarge ? 413 : 400, 'bad request');
    }
    const check = verifySlackSignature({
      secret: o.signingSecret,
      timestamp: header(req, 'x-slack-request-timestamp'),
      signature: header(req, 'x-slack-signature'),
      body,
    });
    if (!check.ok) {
      o.log.warn({ reason: check.reason, remote: req.socket.remoteAddress }, 'slack interaction refused: bad signature or timestamp');
      return send(res, 401, 'invalid request signature');
    }
    let payload: unknown;
    try {
      const raw = new URLSearchParams(body.toString('utf8')).get('payload');
      if (raw === null) throw new Error('no payload field');
      payload = JSON.parse(raw);
    } catch {
      return send(res, 400, 'bad request');
    }
    send(res, 200);
    const p = o
      .onPayload(payload)
      .catch((e: unknown) => o.log.error({ err: e }, 'slack interaction failed'))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      o.log.error({ err: e }, 'slack endpoint failed');
      if (!res.headersSent) send(res, 500, 'internal error');
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}${INTERACTIONS_PATH}`,
    port: addr.port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await Promise.allSettled([...inFlight]);
    },
  };
}
