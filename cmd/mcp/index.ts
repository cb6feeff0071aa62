/**
 * Public entry of cmd/mcp/: the Writ MCP server (`createWritMcpServer`), serving it
 * over stdio or Streamable HTTP (`runMcp`), and the `writ mcp` command (`mcpCommand`).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { McpServer } from '@modelcontextprotocol/server';
import { connectNats } from '../../lib/index.ts';
import { WritError } from '../../schemas/index.ts';
import { defaultConfigFile, natsForRole } from '../paths.ts';
import { WritClient } from '../../client/sdk.ts';
import { refreshingToken } from '../../client/sdk-extras.ts';
import { serveHttp } from './http.ts';
import { createWritMcpServer } from './server.ts';

export { createWritMcpServer, type WritMcpServerOptions } from './server.ts';
export { serveHttp, type HttpServeOptions, type HttpServing } from './http.ts';
export type { ExplainOut, IntentOut, PlannerOutcome, TargetsOut } from './schemas.ts';

export interface RunMcpOptions {
  transport: 'stdio' | 'http';
  client: WritClient;
  /** HTTP: port; 0 (default) picks a free one, reported in `url`. */
  port?: number;
  /** HTTP: address to bind; default 127.0.0.1. Anything but loopback requires `bearer`. */
  host?: string;
  /** HTTP: require `Authorization: Bearer <bearer>` on every request. */
  bearer?: string;
  /** How often wait_for_intent reports progress; default 10 s. */
  progressIntervalMs?: number;
  /** Out-of-band errors; default: a line on stderr (stdout belongs to the protocol on stdio). */
  onerror?: (e: Error) => void;
}

export interface McpRunning {
  /** HTTP only: the endpoint. */
  url?: string;
  /** Resolves when the server stops: `close()`, or (stdio) the client closing stdin. */
  closed: Promise<void>;
  close(): Promise<void>;
}

/** Serves the Writ tools until closed. Does not own the client or its NATS connection. */
export async function runMcp(o: RunMcpOptions): Promise<McpRunning> {
  const onerror = o.onerror ?? ((e: Error) => process.stderr.write(`writ mcp: ${e.message}\n`));
  const factory = (): McpServer => createWritMcpServer({ client: o.client, ...(o.progressIntervalMs ? { progressIntervalMs: o.progressIntervalMs } : {}) });
  let done!: () => void;
  const closed = new Promise<void>((r) => (done = r));
  if (o.transport === 'http') {
    const h = await serveHttp({ factory, onerror, ...(o.port !== undefined ? { port: o.port } : {}), ...(o.host ? { host: o.host } : {}), ...(o.bearer ? { bearer: o.bearer } : {}) });
    return {
      url: h.url,
      closed,
      close: async () => {
        await h.close();
        done();
      },
    };
  }
  const handle = serveStdio(factory, { onerror });
  // The transport closes itself when stdin ends; that is the client going away.
  process.stdin.once('end', () => done());
  process.stdin.once('close', () => done());
  return {
    closed,
    close: async () => {
      await handle.close();
      done();
    },
  };
}

const USAGE = `writ mcp [--http PORT] [--host ADDR] [--session ID] [--token-file FILE | --dev-sub NAME --dev-groups a,b]

Serves Writ's tools to an MCP client with the agent's own token: on stdio by default, or
Streamable HTTP on 127.0.0.1:PORT/mcp with --http (PORT 0 picks one). Tokens: WRIT_TOKEN; --token-file or WRIT_TOKEN_FILE is read again on every call, so a refresher
can rotate it; --dev-sub mints and renews tokens from the local development issuer.
WRIT_MCP_BEARER is the secret every HTTP request must present (required: loopback is no boundary on a shared machine).`;

/**
 * `writ mcp`: connects to NATS, serves until the client goes or SIGINT/SIGTERM, then
 * drains. Returns the process exit code. Writes nothing to stdout but the protocol.
 */
export async function mcpCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      http: { type: 'string' },
      host: { type: 'string' },
      session: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'dev-sub': { type: 'string' },
      'dev-groups': { type: 'string', default: '' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stderr.write(`${USAGE}\n`);
    return 0;
  }
  const port = values.http === undefined ? undefined : Number(values.http);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65_535)) throw new WritError('WRIT_BAD_REQUEST', `--http needs a port number, not ${JSON.stringify(values.http)}`);
  const token = await tokenSource(values);
  // The agent's connection: WRIT_CONFIG's `nats` section, the environment, else the local stack's agent credentials.
  const nats = natsForRole(
    'agent',
    process.env.WRIT_CONFIG || values.config ? (await import('../../schemas/index.ts')).loadConfigFile(resolve(values.config ?? process.env.WRIT_CONFIG!)).nats : undefined,
  );
  const nc = await connectNats(nats, 'writ-mcp');
  const client = new WritClient({
    nc,
    token,
    prefix: process.env.WRIT_PREFIX ?? 'writ',
    ...(values.session ? { sessionId: values.session } : {}),
    ...(nats.inboxPrefix ? { inboxPrefix: nats.inboxPrefix } : {}),
  });
  try {
    const running = await runMcp({
      transport: port === undefined ? 'stdio' : 'http',
      client,
      ...(port !== undefined ? { port } : {}),
      ...(values.host ? { host: values.host } : {}),
      ...(process.env.WRIT_MCP_BEARER ? { bearer: process.env.WRIT_MCP_BEARER } : {}),
    });
    process.stderr.write(`writ mcp: serving ${running.url ?? 'on stdio'} (session ${client.sessionId})\n`);
    const stop = new Promise<void>((r) => {
      process.once('SIGINT', r);
      process.once('SIGTERM', r);
    });
    await Promise.race([running.closed, stop]);
    await running.close();
    return 0;
  } finally {
    await nc.drain().catch(() => undefined);
  }
}

type TokenFlags = { token?: string | undefined; 'token-file'?: string | undefined; 'dev-sub'?: string | undefined; 'dev-groups'?: string | undefined; config?: string | undefined };

async function tokenSource(v: TokenFlags): Promise<string | (() => Promise<string>)> {
  // A command line is visible to every local user (ps, /proc): the token comes from the environment or a file.
  if (v.token) throw new WritError('WRIT_BAD_REQUEST', '--token would show the token on the command line: set WRIT_TOKEN, or pass --token-file FILE');
  const file = v['token-file'] ?? process.env.WRIT_TOKEN_FILE;
  if (file) {
    const path = resolve(file);
    return async () => readFileSync(path, 'utf8').trim();
  }
  if (v['dev-sub']) {
    const { loadConfigFile } = await import('../../schemas/index.ts');
    const { loadDevIssuer, mintDevToken } = await import('../../broker/dev-issuer.ts');
    const config = loadConfigFile(v.config ? resolve(v.config) : defaultConfigFile());
    const dev = await loadDevIssuer(config.identity.devIssuer.dir, false);
    const groups = (v['dev-groups'] ?? '')
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean);
    return refreshingToken(() => mintDevToken(dev, { sub: v['dev-sub']!, groups, audience: config.identity.devIssuer.audience, ttlSec: 600 }));
  }
  if (process.env.WRIT_TOKEN) return process.env.WRIT_TOKEN;
  throw new WritError('WRIT_TOKEN_MISSING', 'no token: pass --token, --token-file or --dev-sub, or set WRIT_TOKEN or WRIT_TOKEN_FILE');
}
