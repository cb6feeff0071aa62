import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { buildOutcome, IntentRecordSchema, type IntentRecord } from '../schemas/index.ts';
import { createRecord, encodeRecord, glanceRecord, updateRecord } from './records.ts';

let nats: NatsServerHandle;
let nc: NatsConnection;
let kv: KV;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  kv = await new Kvm(nc).create('records_test', { history: 5 });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

const rec: IntentRecord = {
  intentId: 'i_records_0001',
  sessionId: 's_records_0001',
  target: 'db',
  kind: 'postgres',
  principal: { iss: 'https://issuer.example', sub: 'alice', groups: ['analysts'] },
  state: 'dispatched',
  commandSha256: 'a'.repeat(64),
  grantExp: 1_900_000_000,
  runDeadline: 1_900_000_100,
  createdAt: 1,
  updatedAt: 1,
};
const enc = (s: string) => new TextEncoder().encode(s);

describe('record encoding', () => {
  it('puts the state, the session and the clocks first, and splices an encoded outcome in unchanged', async () => {
    const outcome = buildOutcome({ intentId: rec.intentId, sessionId: rec.sessionId, status: 'succeeded', error: { code: 'WRIT_EXEC_FAILED', message: 'the "state": of things' } });
    const encoded = Buffer.from(JSON.stringify(outcome));
    let told = 0;
    const first = await createRecord(kv, rec);
    const rev = await updateRecord(kv, { ...rec, state: 'succeeded' }, first, (n) => ((told = n), encoded));
    const bytes = (await kv.get(rec.intentId))!.value;
    const text = Buffer.from(bytes).toString('utf8');
    expect(text.startsWith(`{"state":"succeeded","sessionId":"${rec.sessionId}","grantExp":1900000000,"runDeadline":1900000100,`)).toBe(true);
    const parsed = IntentRecordSchema.parse(JSON.parse(text));
    expect(parsed.outcome).toEqual(outcome);
    expect(glanceRecord(bytes)).toEqual({ state: 'succeeded', sessionId: rec.sessionId, grantExp: rec.grantExp, runDeadline: rec.runDeadline });
    // The outcome was told exactly what the record takes besides it.
    expect(told).toBe(bytes.length - encoded.length);
    expect(rev).toBeGreaterThan(first);
  });

  it('writes a record only over the revision it names, and creates it only once', async () => {
    const pending: IntentRecord = {
      ...rec,
      intentId: 'i_records_0002',
      state: 'pending',
      grantExp: undefined,
      runDeadline: undefined,
      pending: {
        rule: 'ask',
        spec: { groups: ['approvers'], count: 1, timeoutSec: 60 },
        expiresAt: 1_900_000_000_000,
        votes: [],
        order: { command: { kind: 'sql', sql: 'SELECT 1' }, mode: 'read', limits: { rows: 1, seconds: 1, bytes: 1 } },
      },
    };
    const r1 = await createRecord(kv, pending);
    await expect(createRecord(kv, pending)).rejects.toThrow();
    const r2 = await updateRecord(kv, { ...pending, state: 'rejected', pending: undefined }, r1);
    await expect(updateRecord(kv, { ...pending, state: 'expired', pending: undefined }, r1)).rejects.toThrow();
    expect(IntentRecordSchema.parse((await kv.get(pending.intentId))!.json()).state).toBe('rejected');
    // A key whose last change is a delete marker is free to create again, as with the bucket's own create.
    await kv.delete(pending.intentId);
    expect(await createRecord(kv, pending)).toBeGreaterThan(r2);
  });

  it('glances only at what encodeRecord wrote: another key order, an unknown state, a second state key', () => {
    expect(glanceRecord(encodeRecord({ ...rec, grantExp: undefined, runDeadline: undefined }))).toEqual({ state: 'dispatched', sessionId: rec.sessionId });
    expect(glanceRecord(encodeRecord(rec))).toEqual({ state: 'dispatched', sessionId: rec.sessionId, grantExp: rec.grantExp, runDeadline: rec.runDeadline });
    // A value that is not a plain count is left to the full parse.
    expect(glanceRecord(enc(`{"state":"dispatched","sessionId":"${rec.sessionId}","grantExp":-1,"x":1}`))).toEqual({ state: 'dispatched', sessionId: rec.sessionId });
    expect(glanceRecord(enc(`{"sessionId":"${rec.sessionId}","state":"succeeded"}`))).toBeUndefined();
    expect(glanceRecord(enc(`{"state":"done","sessionId":"${rec.sessionId}"}`))).toBeUndefined();
    expect(glanceRecord(enc(` {"state":"succeeded","sessionId":"${rec.sessionId}"}`))).toBeUndefined();
    // JSON.parse keeps the last of two keys: the first bytes must not say something else.
    const twice = Buffer.from(encodeRecord(rec)).toString('utf8').replace('{"state":"dispatched"', '{"state":"succeeded"').replace(/\}$/, ',"state":"dispatched"}');
    expect(IntentRecordSchema.parse(JSON.parse(twice)).state).toBe('dispatched');
    expect(glanceRecord(enc(twice))).toBeUndefined();
    const nested = Buffer.from(encodeRecord({ ...rec, state: 'failed' }))
      .toString('utf8')
      .replace(/\}$/, ',"x":{"state":"dispatched"}}');
    expect(glanceRecord(enc(nested))).toBeUndefined();
    // Other spellings of a second key, and a second clock.
    const base = Buffer.from(encodeRecord({ ...rec, state: 'succeeded' })).toString('utf8');
    for (const tail of [',"\\u0073tate":"dispatched"}', ',"state" :"dispatched"}', ',"runDeadline":9999999999}', ',"grantExp":9999999999}']) {
      const bytes = base.replace(/\}$/, tail);
      expect(() => JSON.parse(bytes) as unknown).not.toThrow();
      expect([tail, glanceRecord(enc(bytes))]).toEqual([tail, undefined]);
    }
    // An escape inside a string value is not a key, but it is parsed in full all the same.
    expect(glanceRecord(encodeRecord({ ...rec, error: { code: 'WRIT_EXEC_FAILED', message: 'bell \u0007' } }))).toBeUndefined();
  });
});
