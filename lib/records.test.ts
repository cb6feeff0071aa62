import type { KV } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { buildOutcome, IntentRecordSchema, type IntentRecord } from '../schemas/index.ts';
import { encodeRecord, glanceRecord, updateRecord } from './records.ts';

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
    // A bucket that keeps what it is given: the bytes updateRecord writes.
    let bytes: Uint8Array = new Uint8Array();
    let told = 0;
    const kv = { update: (_k: string, v: Uint8Array) => ((bytes = v), Promise.resolve(2)) } as unknown as KV;
    await updateRecord(kv, { ...rec, state: 'succeeded' }, 1, (n) => ((told = n), encoded));
    const text = Buffer.from(bytes).toString('utf8');
    expect(text.startsWith(`{"state":"succeeded","sessionId":"${rec.sessionId}","grantExp":1900000000,"runDeadline":1900000100,`)).toBe(true);
    const parsed = IntentRecordSchema.parse(JSON.parse(text));
    expect(parsed.outcome).toEqual(outcome);
    expect(glanceRecord(bytes)).toEqual({ state: 'succeeded', sessionId: rec.sessionId, grantExp: rec.grantExp, runDeadline: rec.runDeadline });
    // The outcome was told exactly what the record takes besides it.
    expect(told).toBe(bytes.length - encoded.length);
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
