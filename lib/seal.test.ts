import { afterEach, describe, expect, it, vi } from 'vitest';
import { generateSealKeyPair, open, seal, type SealedBox } from './seal.ts';

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
