// The writer's counters for metrics (lib/metrics.ts reads `stats` at each scrape), against a real nats-server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { names, type Names } from '../schemas/index.ts';
import { startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import { AuditWriter, ensureAuditStream } from './index.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let n: Names;

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  n = names(uniqueName('t'));
  await ensureAuditStream(jsm, n, {});
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('AuditWriter stats', () => {
  it('counts stored blocks, and a lost race to another writer as one conflict and one retry', async () => {
    const sessionId = uniqueName('s');
    const a = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'sa' } });
    const b = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id: 'sb' } });
    expect(a.stats).toEqual({ blocks: 0, conflicts: 0, retries: 0 });
    await a.append({ sessionId, type: 'intent.received' });
    expect(a.stats).toEqual({ blocks: 1, conflicts: 0, retries: 0 });
    await b.append({ sessionId, type: 'exec.claimed' });
    // a's cached head is stale: its optimistic append is refused (wrong last sequence), re-chained and stored.
    await a.append({ sessionId, type: 'intent.dispatched' });
    expect(a.stats).toEqual({ blocks: 2, conflicts: 1, retries: 1 });
    expect(b.stats).toEqual({ blocks: 1, conflicts: 0, retries: 0 });
    // A copy: a caller cannot change the writer's counters.
    const s = a.stats;
    s.blocks = 99;
    expect(a.stats.blocks).toBe(2);
  });
});
