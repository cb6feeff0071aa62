import { createHash } from 'node:crypto';

/**
 * Canonical JSON: object keys sorted, no whitespace, `undefined` members dropped. Hashes
 * of audit events are computed over this form so that any writer, in any language,
 * reproduces the same bytes.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('canonicalJson: non-finite number');
    return JSON.stringify(value) ?? 'null';
  }
  // One string built as it goes (no array of parts per object): the audit writer canonicalizes
  // every event's payload, and audit/chain.test.ts holds these bytes to block-check.mjs's.
  if (Array.isArray(value)) {
    let s = '[';
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      s += (i === 0 ? '' : ',') + (v === undefined ? 'null' : canonicalJson(v));
    }
    return `${s}]`;
  }
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let s = '{';
  for (const k of keys) {
    const v = o[k];
    if (v === undefined) continue;
    s += `${s.length === 1 ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
  }
  return `${s}}`;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Freezes `o` and everything reachable from it, in place. */
export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** What a member that JSON leaves out (undefined, a function, a symbol) copies to. */
const OMIT = Symbol('omit');

/**
 * `v` as JSON carries it, `JSON.parse(JSON.stringify(v))`, without the text between: plain
 * objects and arrays are copied member by member (five times quicker than either that round
 * trip or structuredClone for an order), and any other object goes through JSON itself (a Date
 * becomes its string, as on the bus). For data one part of a process hands to another that must
 * own it, as a message from the bus would be its own parse: nothing of the result is shared.
 */
export function jsonCopy<T>(v: T): T {
  const c = copyJson(v);
  if (c === OMIT) throw new TypeError('jsonCopy: the value has no JSON form');
  return c as T;
}

function copyJson(v: unknown): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      return Number.isFinite(v) ? (v === 0 ? 0 : v) : null; // -0 is written 0
    case 'undefined':
    case 'function':
    case 'symbol':
      return OMIT;
    case 'bigint':
      throw new TypeError('jsonCopy: a BigInt has no JSON form');
  }
  if (v === null) return null;
  if (typeof v !== 'object') return OMIT; // every other type is handled above
  const proto = Object.getPrototypeOf(v) as unknown;
  if (Array.isArray(v) && proto === Array.prototype) {
    const a = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) {
      const x = copyJson(v[i]);
      a[i] = x === OMIT ? null : x;
    }
    return a;
  }
  if ((proto !== Object.prototype && proto !== null) || typeof (v as { toJSON?: unknown }).toJSON === 'function') return JSON.parse(JSON.stringify(v)) as unknown;
  const o: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    const x = copyJson((v as Record<string, unknown>)[k]);
    if (x === OMIT) continue;
    // As JSON.parse makes it: an own member, never the prototype.
    if (k === '__proto__') Object.defineProperty(o, k, { value: x, enumerable: true, writable: true, configurable: true });
    else o[k] = x;
  }
  return o;
}
