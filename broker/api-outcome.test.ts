import { describe, expect, it } from 'vitest';
import { createLogger, sealOutcome } from '../lib/index.ts';
import { generateSealKeyPair } from '../lib/seal.ts';
import { buildOutcome, type IntentRecord } from '../schemas/index.ts';
import { outcomeOf } from './api.ts';

const key = generateSealKeyPair();
const d = { resultsKey: key, log: createLogger({ name: 'test', level: 'silent' }), maxAgeSec: 60 };
const rec: IntentRecord = {
  intentId: 'i_outcome_0001',
  sessionId: 's_outcome_0001',
  target: 'db',
  kind: 'postgres',
  principal: { iss: 'https://issuer.example', sub: 'alice', groups: [] },
  state: 'succeeded',
  commandSha256: 'a'.repeat(64),
  createdAt: 1,
  updatedAt: 2,
};
const rows = { columns: [{ name: 'x', masked: false }], rows: [['secret-row']], rowCount: 1, truncated: false };

describe('the stored outcome the API answers from', () => {
  it('opens a sealed one with the results key, within results.maxAgeSec', () => {
    const o = buildOutcome({ intentId: rec.intentId, sessionId: rec.sessionId, status: 'succeeded', result: rows });
    const stored = sealOutcome(o, key.publicKey);
    expect(outcomeOf({ ...rec, outcome: stored }, d).result?.rows).toEqual([['secret-row']]);
    // Past the age: the record's status, no rows.
    expect(outcomeOf({ ...rec, outcome: stored }, d, o.at + 61_000).result).toBeUndefined();
    // Nor can it be made to look younger: its time is bound into the seal.
    expect(outcomeOf({ ...rec, outcome: { ...stored, at: o.at + 61_000 } }, d, o.at + 61_000).result).toBeUndefined();
  });

  it('believes an unsealed one only as a status and a code: rows in clear, or a status the record does not have, are ignored', () => {
    const planted = buildOutcome({ intentId: rec.intentId, sessionId: rec.sessionId, status: 'succeeded', result: { ...rows, rows: [['forged']] } });
    expect(outcomeOf({ ...rec, outcome: planted }, d).result).toBeUndefined();
    const otherStatus = buildOutcome({ intentId: rec.intentId, sessionId: rec.sessionId, status: 'failed', error: { code: 'WRIT_EXEC_FAILED', message: 'planted' } });
    expect(outcomeOf({ ...rec, outcome: otherStatus }, d)).toMatchObject({ status: 'succeeded' });
    const swept = buildOutcome({ intentId: rec.intentId, sessionId: rec.sessionId, status: 'unknown', error: { code: 'WRIT_OUTCOME_UNKNOWN', message: 'lost' } });
    expect(outcomeOf({ ...rec, state: 'unknown', outcome: swept }, d)).toMatchObject({ status: 'unknown', error: { code: 'WRIT_OUTCOME_UNKNOWN' } });
  });
});
