import { describe, expect, it } from 'vitest';
import { buildOutcome, IntentRecordSchema, type IntentRecord } from '../schemas/index.ts';
import type { KV } from '@nats-io/kv';
import { encodeRecord, glanceRecord, updateRecord } from './records.ts';

const rec: IntentRecord = {
  intentId: 'i_records_0001',
  sessionId: 's_records_0001',
  target: 'db',
  kind: 'postgres',
  principal: { iss: 'https://issuer.example', sub: 'alice', groups: ['analysts'] },
  state: 'dispatched',
  commandSha256: 'a'.repeat(64),
  createdAt: 1,
  updatedAt: 1,
};
const head = { seq: 42, hash: 'b'.repeat(64), count: 17 };

describe('record encoding', () => {
  it('puts the state, the session and the audit head first, and splices an encoded outcome in unchanged', async () => {
    const outcome = buildOutcome({ intentId: rec.intentId, sessionId: rec.sessionId, status: 'succeeded', error: { code: 'WRIT_OK_TEST', message: '"auditHead":{}' } });
    const encoded = Buffer.from(JSON.stringify(outcome));
    // A bucket that keeps what it is given: the bytes updateRecord writes.
    let bytes: Uint8Array = new Uint8Array();
    let told = 0;
    const kv = { update: (_k: string, v: Uint8Array) => ((bytes = v), Promise.resolve(2)) } as unknown as KV;
    await updateRecord(kv, { ...rec, state: 'succeeded', auditHead: head }, 1, (n) => ((told = n), encoded));
    const text = Buffer.from(bytes).toString('utf8');
    expect(text.startsWith(`{"state":"succeeded","sessionId":"${rec.sessionId}","auditHead":{"seq":42,`)).toBe(true);
    const parsed = IntentRecordSchema.parse(JSON.parse(text));
    expect(parsed.outcome).toEqual(outcome);
    expect(parsed.auditHead).toEqual(head);
    expect(glanceRecord(bytes)).toEqual({ state: 'succeeded', sessionId: rec.sessionId, auditHead: head });
    // The outcome was told exactly what the record takes besides it.
    expect(told).toBe(bytes.length - encoded.length);
  });

  it('glances only at what encodeRecord wrote: another key order, an unknown state or a head at zero is not read', () => {
    expect(glanceRecord(encodeRecord(rec))).toEqual({ state: 'dispatched', sessionId: rec.sessionId });
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(glanceRecord(enc(`{"sessionId":"${rec.sessionId}","state":"succeeded"}`))).toBeUndefined();
    expect(glanceRecord(enc(`{"state":"done","sessionId":"${rec.sessionId}"}`))).toBeUndefined();
    expect(glanceRecord(enc(` {"state":"succeeded","sessionId":"${rec.sessionId}"}`))).toBeUndefined();
    expect(glanceRecord(enc(`{"state":"succeeded","sessionId":"${rec.sessionId}","auditHead":{"seq":0,"hash":"${'c'.repeat(64)}","count":1}}`))).toEqual({
      state: 'succeeded',
      sessionId: rec.sessionId,
    });
  });
});
