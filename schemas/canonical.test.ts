// jsonCopy is what a handed-over order or grant becomes in one process instead of a message's
// own parse: it must be exactly what JSON would carry, and share nothing with its source.
import { describe, expect, it } from 'vitest';
import { deepFreeze, jsonCopy } from './canonical.ts';

const viaJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;

describe('jsonCopy', () => {
  it('gives what JSON.parse(JSON.stringify(v)) gives', () => {
    const proto = JSON.parse('{"__proto__":{"polluted":true},"a":1}') as unknown;
    const values: unknown[] = [
      { a: 1, b: 'x', c: true, d: null, e: [1, 'two', null, { f: [] }] },
      { u: undefined, fn: () => 1, sym: Symbol('s'), n: Number.NaN, inf: Number.POSITIVE_INFINITY, neg: -0 },
      [undefined, () => 1, Symbol('s'), Number.NaN, 1],
      { '10': 'ten', '9': 'nine', z: 'last', a: 'first' },
      { when: new Date(1_700_000_000_000), nested: { toJSON: () => 'custom' } },
      { map: new Map([['k', 1]]), set: new Set([1]), buf: Buffer.from('hi') },
      Object.assign(Object.create(null) as object, { bare: 1 }),
      proto,
      'text',
      42,
      null,
    ];
    for (const v of values) expect(jsonCopy(v)).toStrictEqual(viaJson(v));
    // The `__proto__` member stays a member, as JSON.parse makes it; nothing is polluted.
    const c = jsonCopy(proto) as Record<string, unknown>;
    expect(Object.getPrototypeOf(c)).toBe(Object.prototype);
    expect(Object.keys(c)).toEqual(['__proto__', 'a']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('shares no object with its source, frozen or not', () => {
    const src = deepFreeze({ order: { command: { sql: 'SELECT 1' }, limits: { rows: 1 } }, list: [{ a: 1 }] });
    const c = jsonCopy(src);
    expect(c).toStrictEqual(viaJson(src));
    expect(c.order).not.toBe(src.order);
    expect(c.order.command).not.toBe(src.order.command);
    expect(c.list[0]).not.toBe(src.list[0]);
    expect(Object.isFrozen(c.order)).toBe(false);
    c.order.command.sql = 'SELECT 2';
    expect(src.order.command.sql).toBe('SELECT 1');
  });

  it('refuses what JSON refuses', () => {
    expect(() => jsonCopy({ n: 1n })).toThrow(TypeError);
    expect(() => jsonCopy(undefined)).toThrow(TypeError);
  });
});
