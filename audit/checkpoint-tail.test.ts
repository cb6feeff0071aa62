// A checkpoint signs each session's actual tail, so a worker's block written after the
// broker's last one in a session is covered even though the broker did not write it.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { names, type AuditEvent } from '../schemas/index.ts';
import { startNats, uniqueName, type NatsServerHandle } from '../test/helpers/index.ts';
import { AuditWriter, Checkpointer, ensureAuditStream, verify, CHAIN_LENGTH_HEADER } from './index.ts';
import { blockJson } from './chain.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const keys = generateKeyPairSync('ed25519');
const publicKeyPem = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const privateKeyPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('checkpoint coverage', () => {
  it('covers a worker block that follows the broker’s last one, so dropping it fails verify', async () => {
    const n = names(uniqueName('t'));
    await ensureAuditStream(jsm, n, {});
    const broker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, flushMs: 1 });
    const worker = new AuditWriter({ js, jsm, names: n, actor: { kind: 'worker', id: 'w1' }, flushMs: 1 });
    // The checkpointer knows only the broker's writer, as in a deployment.
    const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'b1' }, privateKey: privateKeyPem, writers: [broker] });
    await broker.append({ sessionId: 'sess_tail', intentId: 'intent_1x', type: 'intent.dispatched', payload: {} });
    await worker.append({ sessionId: 'sess_tail', intentId: 'intent_1x', type: 'exec.finished', payload: { status: 'succeeded' } });
    await worker.close();
    await broker.close();
    const [rec] = await cp.checkpoint(true);
    expect(rec!.heads).toBe(1);
    expect((await verify({ js, names: n, publicKeyPem, requireCheckpoint: true })).ok).toBe(true);

    // Restore the log without the worker's trailing block: the chain alone still looks fine,
    // the signed head does not.
    const kept: Array<{ subject: string; data: Uint8Array; len: string }> = [];
    const c = await js.consumers.get(n.streams.audit, { filter_subjects: n.auditAll() });
    const it = await c.consume();
    for await (const m of it) {
      const events = (m.json() as { events: AuditEvent[] }).events;
      if (events[0]!.type !== 'exec.finished') kept.push({ subject: m.subject, data: m.data, len: m.headers?.get(CHAIN_LENGTH_HEADER) ?? '' });
      if (m.info.pending === 0) break;
    }
    await it.stop();
    await jsm.streams.delete(n.streams.audit);
    await ensureAuditStream(jsm, n, {});
    for (const k of kept) {
      const h = headers();
      h.set(CHAIN_LENGTH_HEADER, k.len);
      await js.publish(k.subject, k.data, { headers: h });
    }
    const r = await verify({ js, names: n, publicKeyPem, requireCheckpoint: true });
    expect(r.ok).toBe(false);
    expect(r.firstBreak!.sessionId).toBe('sess_tail');

  });
});
