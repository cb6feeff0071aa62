// answerRequestsWithoutError (lib/nats.ts): an answered request no longer builds a RequestError
// that nobody sees, and requests still resolve, fail and time out as nats.js makes them, on a
// real nats-server.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { answerRequestsWithoutError } from './nats.ts';

// The module nats.js's request code reads `RequestError` from at every use (a CommonJS exports
// object): a counting subclass put there sees every one it builds.
const require = createRequire(import.meta.url);
const errors = require(join(require.resolve('@nats-io/nats-core').replace(/mod\.js$/, ''), 'errors.js')) as { RequestError: new (...a: unknown[]) => Error };
let built = 0;
const Original = errors.RequestError;
errors.RequestError = class extends Original {
  constructor(...a: unknown[]) {
    super(...a);
    built++;
  }
};

let dir: string;
let server: NatsServerHandle;
let nc: NatsConnection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'writ-nats-request-'));
  server = await startNats({ storeDir: dir });
  nc = await connect({ servers: server.url, noAsyncTraces: true });
  nc.subscribe('echo', { callback: (_e, m) => void m.respond(m.data) });
  await nc.flush();
});
afterAll(async () => {
  errors.RequestError = Original;
  await nc?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function answered(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await nc.request('echo', `m${i}`, { timeout: 2000 })).string());
  return out;
}

it('answers without building an error per request, where nats.js builds one each', async () => {
  built = 0;
  expect(await answered(20)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  // What nats.js does unpatched: the counter sees it.
  expect(built).toBe(20);
  expect(answerRequestsWithoutError()).toBe(true);
  built = 0;
  expect(await answered(20)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  expect(built).toBe(0);
});

it('still fails a request nobody answers, and times one out, as nats.js does', async () => {
  expect(answerRequestsWithoutError()).toBe(true);
  await expect(nc.request('nobody.here', 'x', { timeout: 2000 })).rejects.toThrow(/no responders/i);
  nc.subscribe('silent', { callback: () => undefined });
  await nc.flush();
  await expect(nc.request('silent', 'x', { timeout: 200 })).rejects.toThrow(/timeout/i);
  // Nothing is left waiting in the client's table of requests.
  const mux = (nc as unknown as { protocol: { muxSubscriptions: { size(): number } } }).protocol.muxSubscriptions;
  expect(mux.size()).toBe(0);
  expect(await answered(3)).toEqual(['m0', 'm1', 'm2']);
  expect(mux.size()).toBe(0);
});
