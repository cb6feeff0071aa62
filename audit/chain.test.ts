// The verifier's fast hashing must give exactly the bytes of schemas' canonicalJson.
import { describe, expect, it } from 'vitest';
import { AuditEventSchema, canonicalJson, sha256Hex, type AuditEvent } from '../schemas/index.ts';
import { analyzeBlock, blockJson, eventHash, eventShapeError, hashInput, isSortedDeep, ZERO_HASH } from './chain.ts';
import { canonicalJson as workerCanonicalJson } from './block-check.mjs';

function ev(payload?: Record<string, unknown>, extra: Partial<AuditEvent> = {}): AuditEvent {
  const e = {
    v: 1,
    id: 'id-1',
    sessionId: 'sess_1',
    type: 't',
    at: 1_700_000_000_000,
    actor: { kind: 'broker', id: 'b' },
    prev: ZERO_HASH,
    hash: '',
    ...(payload ? { payload } : {}),
    ...extra,
  } as AuditEvent;
  const { hash: _, ...rest } = e;
  e.hash = sha256Hex(canonicalJson(rest));
  return e;
}

const payloads: Array<Record<string, unknown>> = [
  { a: 1 },
  { b: [3, { z: 1, a: null }], a: 'x' },
  { '10': 'ten', '9': 'nine', a: true }, // integer-like keys enumerate first in JS
  { é: 'accent', e: 'plain', '\u0000': 'nul', '"q"': 'quote' },
  { nested: { deeper: { list: [[], {}, [1.5, -0, 1e21]] } }, text: 'line\nbreak \u2028 😀' },
  { __proto__x: 1, constructor: 'c' },
];

describe('event hashing', () => {
  it('gives the canonical JSON for parsed events in any key order, with or without the fast path', () => {
    for (const p of payloads) {
      for (const extra of [{}, { intentId: 'i-1', policyVersion: 'p' }, { digest: 'a'.repeat(64) }]) {
        const e = ev(p, extra);
        const { hash, ...rest } = e;
        // As stored by the writer (canonical order) and as written by any other tool (any order).
        const stored = JSON.parse(canonicalJson(e)) as AuditEvent;
        const shuffled = JSON.parse(JSON.stringify({ hash, ...Object.fromEntries(Object.entries(rest).reverse()) })) as AuditEvent;
        for (const x of [stored, shuffled, e]) {
          expect(hashInput(x)).toBe(canonicalJson(rest));
          expect(eventHash(x)).toBe(hash);
        }
      }
    }
  });

  it('uses, in block-check.mjs, the same canonical JSON as schemas/canonical.ts', () => {
    const values: unknown[] = [...payloads, null, 0, -0, 1e21, 'x', [undefined, 1], { a: undefined, b: [{ d: 1, c: 2 }] }, ev({ a: 1 })];
    for (const v of values) expect(workerCanonicalJson(v)).toBe(canonicalJson(v));
    expect(() => workerCanonicalJson({ x: Number.NaN })).toThrow();
  });

  it('takes the fast path only when every object is in sorted order', () => {
    expect(isSortedDeep(JSON.parse('{"a":{"b":1,"c":[{"d":1,"e":2}]}}'))).toBe(true);
    expect(isSortedDeep(JSON.parse('{"a":{"c":1,"b":1}}'))).toBe(false);
    expect(isSortedDeep(JSON.parse('{"9":1,"10":2}'))).toBe(false);
  });

  it('writes blocks the strict schema accepts', () => {
    const block = JSON.parse(blockJson([ev({ a: 1 }), ev()]));
    expect(block.type).toBe('audit.block');
    for (const e of block.events) expect(AuditEventSchema.parse(e)).toEqual(e);
  });
});

describe('eventShapeError', () => {
  it('accepts what AuditEventSchema accepts and refuses what it refuses', () => {
    const good = ev({ a: 1 }, { intentId: 'i' });
    expect(eventShapeError(good)).toBeUndefined();
    const bad: Array<[string, unknown]> = [
      ['extra key', { ...good, extra: 1 }],
      ['bad prev', { ...good, prev: 'xyz' }],
      ['bad actor kind', { ...good, actor: { kind: 'root', id: 'x' } }],
      ['actor extra', { ...good, actor: { kind: 'broker', id: 'x', more: 1 } }],
      ['float at', { ...good, at: 1.5 }],
      ['array payload', { ...good, payload: [1] }],
      ['v 2', { ...good, v: 2 }],
      ['missing type', (({ type: _, ...r }) => r)(good)],
      ['null', null],
    ];
    for (const [what, e] of bad) {
      expect(eventShapeError(e), what).toBeDefined();
      expect(AuditEventSchema.safeParse(e).success, what).toBe(false);
    }
  });
});

describe('analyzeBlock on events with no canonical form', () => {
  const block = (payload: string) =>
    new TextEncoder().encode(
      `{"events":[{"actor":{"id":"b1","kind":"broker"},"at":1,"hash":"${'0'.repeat(64)}","id":"e1","payload":${payload},"prev":"${ZERO_HASH}","sessionId":"s1","type":"t","v":1}],"type":"audit.block","v":1}`,
    );
  it('reports a number out of range or nesting too deep as a break, never throws', () => {
    for (const payload of ['{"x":1e400}', '{"x":-1e400}', `{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`]) {
      const a = analyzeBlock(block(payload), 's1', '_checkpoints');
      expect(a.errors).toEqual([{ index: 0, eventId: 'e1', reason: expect.stringMatching(/has no hash/) }]);
    }
  });
});
