import { afterEach, describe, expect, it, vi } from 'vitest';
import { generateSealKeyPair, open, openOutcome, outcomeBodyBytes, outcomeBytes, seal, sealOutcome, sealOutcomeBody, type SealedBox } from './seal.ts';
import type { Outcome } from '../schemas/index.ts';

const binding = { intentId: 'i_seal_test_0001', sessionId: 's_seal_test_0001', status: 'succeeded' };

describe('sealed boxes with a per-process ephemeral key', () => {
  afterEach(() => vi.restoreAllMocks());

  it('reuses the ephemeral key within its minute, with a fresh IV per box, and every box opens', () => {
    const agent = generateSealKeyPair();
    const a = seal({ n: 1 }, agent.publicKey, binding);
    const b = seal({ n: 2 }, agent.publicKey, binding);
    expect(b.epk).toBe(a.epk);
    expect(b.iv).not.toBe(a.iv);
    expect(open(a, agent, binding)).toEqual({ n: 1 });
    expect(open(b, agent, binding)).toEqual({ n: 2 });
  });

  it('derives a different key per recipient: a box for one recipient does not open for another', () => {
    const one = generateSealKeyPair();
    const two = generateSealKeyPair();
    const box = seal({ secret: 'x' }, one.publicKey, binding);
    const moved: SealedBox = { ...box, kid: seal({}, two.publicKey, binding).kid };
    expect(() => open(box, two, binding)).toThrow(/another key/);
    // Even with the key id forged to the other recipient, its key does not decrypt.
    expect(() => open(moved, two, binding)).toThrow();
  });

  it('binds the box to its intent and status even when the key is reused', () => {
    const agent = generateSealKeyPair();
    const box = seal({ rows: 1 }, agent.publicKey, binding);
    expect(() => open(box, agent, { ...binding, status: 'failed' })).toThrow();
    expect(() => open(box, agent, { ...binding, intentId: 'i_seal_test_0002' })).toThrow();
  });

  it('takes a new ephemeral key once the minute is over', () => {
    const agent = generateSealKeyPair();
    const first = seal({}, agent.publicKey, binding);
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now + 61_000);
    const later = seal({ n: 3 }, agent.publicKey, binding);
    expect(later.epk).not.toBe(first.epk);
    expect(open(later, agent, binding)).toEqual({ n: 3 });
  });
});

describe('an outcome body encoded once and sealed to several keys', () => {
  it('opens to the same outcome for each recipient as sealing each copy on its own, and is the bytes it was given', () => {
    const agent = generateSealKeyPair();
    const store = generateSealKeyPair();
    const o: Outcome = {
      v: 1,
      type: 'outcome',
      intentId: 'i-1',
      sessionId: 's-1',
      status: 'succeeded',
      at: 1,
      result: { columns: [{ name: 'email', masked: true }], rows: [['a***@example.com']], rowCount: 1, truncated: false, command: 'SELECT' },
    };
    const body = outcomeBodyBytes(o);
    const forAgent = sealOutcomeBody(o, body, agent.publicKey);
    const forStore = sealOutcomeBody(o, body, store.publicKey);
    expect(forAgent.result).toBeUndefined();
    expect(openOutcome(forAgent, agent)).toEqual(openOutcome(sealOutcome(o, agent.publicKey), agent));
    expect(openOutcome(forStore, store)).toEqual(o);
    // What a worker hashes into its evidence is exactly the plaintext each copy carries.
    expect(Buffer.from(JSON.stringify(open(forStore.sealed as SealedBox, store, o)))).toEqual(body);
    // Bound to its ids and status like any box: the agent's copy does not open as another status.
    expect(() => openOutcome({ ...forAgent, status: 'failed' }, agent)).toThrow();
  });
});

describe('IVs under a reused key', () => {
  it('never repeat: one random prefix per ephemeral key, then the count of its boxes, across recipients', () => {
    const a = generateSealKeyPair();
    const b = generateSealKeyPair();
    const ivs = new Set<string>();
    const prefixes = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const box = seal({ i }, (i % 2 ? a : b).publicKey, binding);
      ivs.add(box.iv);
      prefixes.add(Buffer.from(box.iv, 'base64url').subarray(0, 8).toString('hex'));
      expect(open(box, i % 2 ? a : b, binding)).toEqual({ i });
    }
    expect(ivs.size).toBe(500);
    expect(prefixes.size).toBe(1);
  });
});

describe('an outcome as bus bytes', () => {
  const rows = Array.from({ length: 300 }, (_, i) => [i, `name ${i} \u00e9\u{1F600} "quoted" \\`, null]);
  const clear: Outcome = {
    v: 1,
    type: 'outcome',
    intentId: 'i_seal_test_0001',
    sessionId: 's_seal_test_0001',
    status: 'succeeded',
    at: 1,
    result: { columns: [{ name: 'id', masked: false }], rows, rowCount: rows.length, truncated: false, command: 'SELECT' },
  } as unknown as Outcome;

  it('are exactly JSON.stringify of the sealed outcome, large or small, and open to the rows', () => {
    const agent = generateSealKeyPair();
    const big = sealOutcomeBody(clear, outcomeBodyBytes(clear), agent.publicKey);
    expect(big.sealed!.ct.length).toBeGreaterThan(4096);
    const bytes = outcomeBytes(big);
    expect(bytes.equals(Buffer.from(JSON.stringify(big), 'utf8'))).toBe(true);
    expect(openOutcome(JSON.parse(bytes.toString('utf8')) as Outcome, agent)).toMatchObject({ result: { rows } });
    const small = sealOutcome({ ...clear, result: undefined }, agent.publicKey);
    expect(outcomeBytes(small).equals(Buffer.from(JSON.stringify(small), 'utf8'))).toBe(true);
  });

  it('are encoded in full for a box sealed elsewhere (its ciphertext is not known to be plain base64url)', () => {
    const agent = generateSealKeyPair();
    const big = sealOutcomeBody(clear, outcomeBodyBytes(clear), agent.publicKey);
    // A copy (parsed off the bus) with a character the splice would mangle.
    const foreign = { ...big, sealed: { ...big.sealed!, ct: `${big.sealed!.ct}\u00e9` } } as Outcome;
    expect(outcomeBytes(foreign).equals(Buffer.from(JSON.stringify(foreign), 'utf8'))).toBe(true);
  });
});

describe('outcomeBodyBytes', () => {
  it('writes Date cells exactly as JSON.stringify does (ISO string, null when invalid), nested ones too', () => {
    const rows = [
      [1, new Date(Date.UTC(2026, 11, 6, 7, 8, 9, 123)), 'x'],
      [2, new Date(Number.NaN), null],
      [3, [new Date(0)], { at: new Date(1) }],
      [4, 'no dates', 5],
    ];
    const o: Outcome = {
      v: 1,
      type: 'outcome',
      intentId: 'i',
      sessionId: 's',
      status: 'succeeded',
      at: 1,
      result: { columns: [{ name: 'a', masked: false }], rows, rowCount: 4, truncated: false, command: 'SELECT' },
    };
    const { v: _v, type: _t, intentId: _i, sessionId: _s, status: _st, at: _a, ...body } = o;
    expect(outcomeBodyBytes(o).toString('utf8')).toBe(JSON.stringify(body));
    expect(JSON.parse(outcomeBodyBytes(o).toString('utf8')).result.rows[0][1]).toBe('2026-12-06T07:08:09.123Z');
    // The caller's rows are not changed.
    expect(rows[0]![1]).toBeInstanceOf(Date);
  });
});
