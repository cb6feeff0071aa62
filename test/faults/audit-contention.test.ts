/**
 * Audit appends under contention on one session (issue 11, item 8): four writers, each on
 * its own NATS connection as separate broker and worker processes would be, append 500
 * events each to ONE session at once on a real nats-server. Every event must be in the
 * chain exactly once, every append must resolve with what is stored, and verify passes.
 * The writers used to give up after 12 lost races ("wrong last sequence") and drop events.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { names, type AuditEvent, type Names } from '../../schemas/index.ts';
import { AuditWriter, ensureAuditStream, readSession, verify, ZERO_HASH } from '../../audit/index.ts';
import { startNats, uniqueName, type NatsServerHandle } from '../helpers/index.ts';

let server: NatsServerHandle;
const conns: NatsConnection[] = [];
let n: Names;

beforeAll(async () => {
  server = await startNats({ gomaxprocs: 1 });
  for (let i = 0; i < 5; i++) conns.push(await connect({ servers: server.url }));
  n = names(uniqueName('c'));
  await ensureAuditStream(await jetstreamManager(conns[0]!), n, {});
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await server?.stop();
});

it('stores every event exactly once when 4 writers on separate connections append 500 events each to one session', async () => {
  const sessionId = uniqueName('hot');
  const writers = await Promise.all(
    conns.slice(0, 4).map(
      async (nc, i) =>
        new AuditWriter({
          js: jetstream(nc),
          jsm: await jetstreamManager(nc),
          names: n,
          actor: { kind: i === 0 ? 'broker' : 'worker', id: `w${i}` },
          // Different gathering windows, as the broker and workers are configured differently.
          flushMs: [0, 1, 2, 5][i]!,
        }),
    ),
  );
  const perWriter = 500;
  const lanes = 20;
  // Each writer runs 20 agents that append one after the other, as intents follow each other:
  // every writer always has a block in flight, so the four race for the head without pause.
  const appended: AuditEvent[] = (
    await Promise.all(
      writers.map((w, wi) =>
        Promise.all(
          Array.from({ length: lanes }, async (_, lane) => {
            const mine: AuditEvent[] = [];
            for (let i = lane; i < perWriter; i += lanes) {
              mine.push(await w.append({ sessionId, intentId: `intent_${wi}_${i}`, type: 'test.event', payload: { wi, i } }));
            }
            return mine;
          }),
        ),
      ),
    )
  ).flat(2);
  await Promise.all(writers.map((w) => w.close()));

  const stored = await readSession({ js: jetstream(conns[4]!), names: n, sessionId });
  expect(stored).toHaveLength(4 * perWriter);
  expect(new Set(stored.map((e) => e.id)).size).toBe(4 * perWriter);
  let prev = ZERO_HASH;
  for (const e of stored) {
    expect(e.prev).toBe(prev);
    prev = e.hash;
  }
  const byId = new Map(stored.map((e) => [e.id, e]));
  for (const e of appended) expect(byId.get(e.id)).toEqual(e);
  expect(await verify({ js: jetstream(conns[4]!), names: n, sessionId })).toMatchObject({ ok: true, events: 4 * perWriter });
});
