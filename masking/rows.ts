/**
 * Masking a SQL result. First line: a field is sensitive by its origin (a column rule), by
 * drawing on a sensitive column (derived) or by being a whole row of a table with one;
 * such a field is masked whole, whatever its type. Second line: value detectors on every
 * string left, inside JSON, arrays and byte strings.
 *
 * Value types, decided here:
 * - strings are scanned; JSON objects and arrays are walked (keys too); one that changed is
 *   rebuilt, one that did not is returned as it is (each property is read once, and plain
 *   data has no accessors that could answer differently when the result is serialised);
 * - Buffers/Uint8Arrays (bytea) are scanned byte for byte through a latin1 view, so an ASCII
 *   secret inside binary data is found and every other byte is kept exactly;
 * - integers of 13+ digits are checked as card numbers, and under an SSN-named key as SSNs;
 * - an object with toJSON is walked as what it serialises to (Date is kept: a date is no secret);
 * - Map, Set, symbols, functions and nesting past 64 levels fail: masking never guesses.
 */
import { WritError } from '../schemas/errors.ts';
import { validCard, validSsn } from './checks.ts';
import { KeyHint, keyHintOf } from './detectors.ts';
import { maskingFailure, maskString, type HitSink } from './engine.ts';
import { compileMasking, ruleForColumn, type CompiledMasking, type MaskingSpecInput } from './spec.ts';
import { maskWhole, renderHit, type WholeLabel } from './strategies.ts';
import type { ColumnReport, FieldInput, MaskOptions, RowsInput, RowsResult, Strategy } from './types.ts';

const MAX_DEPTH = 64;

type Plan = { kind: 'whole'; label: WholeLabel; strategy: Strategy; reasons: string[] } | { kind: 'scan'; hint: KeyHint };

/** Per-column bookkeeping; also the sink detector hits report to. */
class ColumnState implements HitSink {
  readonly reasons = new Set<string>();
  hits = 0;
  add(reason: string): void {
    this.hits++;
    this.reasons.add(reason);
  }
}

const RESOLVED_TABLE = /^[^.]+\.[^.]+$/;

function planField(f: FieldInput, c: CompiledMasking): Plan {
  const o = f.origin;
  if (o !== null && o !== undefined) {
    const whole = f.wholeRow === true || o.column === '*';
    // An origin the resolver could not name (`oid:16384`) cannot be cleared by name: fail closed.
    if (!RESOLVED_TABLE.test(o.table) || (!whole && (o.column.length === 0 || o.column.includes('.')))) {
      return c.columns.length > 0 ? { kind: 'whole', label: whole ? 'row' : 'column', strategy: c.strategy, reasons: [`column:${o.table}.${o.column}`] } : { kind: 'scan', hint: keyHintOf(f.name) };
    }
    if (whole) return planWholeRow(f, o.table, c);
    const full = `${o.table}.${o.column}`;
    const rule = ruleForColumn(c, full);
    if (rule) return { kind: 'whole', label: 'column', strategy: rule.strategy, reasons: [`column:${full}`] };
  } else {
    // A derived value is redacted whatever the rule's strategy: `partial` of `reverse(ssn)` or
    // `substr(ssn, 1, 3)` keeps the part of the secret `partial` hides, and `hash` of a derived
    // value is an oracle (hash `substr(ssn, 5, 1)` beside hashes of known digits).
    const reasons = (f.sensitiveSources ?? []).map((s) => `derived:${s}`);
    if (typeof f.opaque === 'string' && f.opaque.length > 0 && c.spec.trustComputed !== true) reasons.push(f.opaque);
    if (reasons.length > 0) return { kind: 'whole', label: 'derived', strategy: 'redact', reasons };
  }
  return { kind: 'scan', hint: keyHintOf(f.name) };
}

function planWholeRow(f: FieldInput, table: string, c: CompiledMasking): Plan {
  const name = keyHintOf(f.name);
  if (f.tableColumns !== undefined) {
    const hits = f.tableColumns.map((col) => ({ col, rule: ruleForColumn(c, `${table}.${col}`) })).filter((h) => h.rule !== undefined);
    if (hits.length === 0) return { kind: 'scan', hint: name };
    return { kind: 'whole', label: 'row', strategy: hits[0]!.rule!.strategy, reasons: hits.map((h) => `column:${table}.${h.col}`) };
  }
  // Columns unknown: any rule that can name a column of this table makes the row sensitive.
  const rules = c.columns.filter((r) => r.table.test(table));
  if (rules.length === 0) return { kind: 'scan', hint: name };
  return { kind: 'whole', label: 'row', strategy: rules[0]!.strategy, reasons: rules.map((r) => `column:${table}.${r.columnSegment}`) };
}

function unsupported(what: string): WritError {
  return new WritError('WRIT_MASKING_FAILED', `a ${what} value cannot be masked`);
}

function maskNumber(v: number | bigint, c: CompiledMasking, st: ColumnState, hint: KeyHint): unknown {
  if (hint === KeyHint.ssn && c.enabled.ssn && v >= 1 && v <= 999_999_999 && (typeof v === 'bigint' || Number.isInteger(v))) {
    const d = String(v).padStart(9, '0');
    if (validSsn(d.slice(0, 3), d.slice(3, 5), d.slice(5))) {
      st.add('detector:ssn');
      return renderHit(d, 'ssn', c.detectors.ssn!, c.hmacKey);
    }
  }
  if (c.enabled.card && (v >= 1e12 || v <= -1e12) && (typeof v === 'bigint' || Number.isSafeInteger(v))) {
    const d = String(v).replace('-', '');
    if (validCard(d)) {
      st.add('detector:card');
      return renderHit(d, 'card', c.detectors.card!, c.hmacKey);
    }
  }
  return v;
}

function maskBytes(v: Uint8Array, c: CompiledMasking, st: ColumnState): Uint8Array {
  if (v.length === 0) return v;
  const text = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1');
  const masked = maskString(text, c, st);
  return masked === text ? v : Buffer.from(masked, 'latin1');
}

function setKey(out: Record<string, unknown>, k: string, value: unknown): void {
  // `__proto__` from JSON.parse is an own key; plain assignment would set the prototype instead.
  if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  else out[k] = value;
}

/**
 * A plain object is rebuilt only when a key or value changed; anything else (a class
 * instance without toJSON) always becomes a plain copy of its own enumerable properties.
 */
function walkObject(v: object, c: CompiledMasking, st: ColumnState, depth: number): object {
  const src = v as Record<string, unknown>;
  const proto: unknown = Object.getPrototypeOf(v);
  const keys = Object.keys(v);
  let out: Record<string, unknown> | null = proto === Object.prototype || proto === null ? null : {};
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const value = src[k];
    let key = maskString(k, c, st);
    const masked = walk(value, c, st, keyHintOf(k), depth + 1);
    if (out === null) {
      if (key === k && masked === value) continue;
      out = {};
      for (let j = 0; j < i; j++) setKey(out, keys[j]!, src[keys[j]!]);
    }
    // Two keys masked to the same text must not overwrite each other.
    if (key !== k) for (let n = 2; Object.hasOwn(out, key) || Object.hasOwn(src, key); n++) key = `${maskString(k, c, null)}#${n}`;
    setKey(out, key, masked);
  }
  return out ?? v;
}

/** An array is copied only when an element changed. */
function walkArray(v: readonly unknown[], c: CompiledMasking, st: ColumnState, hint: KeyHint, depth: number): readonly unknown[] {
  let out: unknown[] | null = null;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    const y = walk(x, c, st, hint, depth + 1);
    if (out === null) {
      if (y === x) continue;
      out = v.slice(0, i);
    }
    out.push(y);
  }
  return out ?? v;
}

/**
 * Detectors over any value. Returns the value itself when nothing in it changed, else a
 * copy; each property is read once (plain data has no accessors to read twice).
 */
function walk(v: unknown, c: CompiledMasking, st: ColumnState, hint: KeyHint, depth: number): unknown {
  switch (typeof v) {
    case 'string':
      return maskString(v, c, st, hint);
    case 'number':
    case 'bigint':
      return maskNumber(v, c, st, hint);
    case 'boolean':
    case 'undefined':
      return v;
    case 'symbol':
    case 'function':
      throw unsupported(typeof v);
    case 'object': {
      if (v === null) return v;
      if (depth > MAX_DEPTH) throw new WritError('WRIT_MASKING_FAILED', `a value nested deeper than ${MAX_DEPTH} levels cannot be masked`);
      if (Array.isArray(v)) return walkArray(v, c, st, hint, depth);
      if (v instanceof Date) return v;
      if (v instanceof Uint8Array) return maskBytes(v, c, st);
      if (v instanceof Map || v instanceof Set || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) throw unsupported(v.constructor.name);
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return walk(toJSON.call(v, ''), c, st, hint, depth + 1);
      return walkObject(v, c, st, depth);
    }
  }
}

/**
 * Masks a result. Throws WRIT_MASKING_FAILED on any failure (a malformed row, a value that
 * cannot be read or masked, an invalid spec): a result is masked whole or withheld.
 */
export function maskRows(input: RowsInput, spec: MaskingSpecInput | CompiledMasking, opts: MaskOptions = {}): RowsResult {
  let r = -1;
  let j = -1;
  try {
    const c = compileMasking(spec, opts);
    const { fields, rows } = input;
    if (!Array.isArray(fields) || !Array.isArray(rows)) throw new WritError('WRIT_MASKING_FAILED', 'the result has no fields or rows array');
    const plans = fields.map((f) => planField(f, c));
    const states = fields.map(() => new ColumnState());
    const n = fields.length;
    let maskedValues = 0;
    const out = new Array<unknown[]>(rows.length);
    for (r = 0; r < rows.length; r++) {
      const row: unknown = rows[r];
      if (!Array.isArray(row) || row.length !== n) throw new WritError('WRIT_MASKING_FAILED', `row ${r} does not have one value per field`, { details: { row: r } });
      // A row in which nothing changed is returned as it is; the first change copies it.
      let o: unknown[] | null = null;
      for (j = 0; j < n; j++) {
        const plan = plans[j]!;
        const st = states[j]!;
        const v: unknown = row[j];
        let m: unknown;
        if (plan.kind === 'whole') {
          m = maskWhole(v, plan.label, plan.strategy, c.hmacKey);
          if (m !== v) {
            st.hits++;
            maskedValues++;
          }
        } else {
          const before = st.hits;
          m = walk(v, c, st, plan.hint, 0);
          if (st.hits > before) maskedValues++;
        }
        if (o === null) {
          if (m === v) continue;
          o = row.slice();
        }
        o[j] = m;
      }
      out[r] = o ?? (row as unknown[]);
    }
    const columns: ColumnReport[] = fields.map((f, k) => {
      const plan = plans[k]!;
      const st = states[k]!;
      // A column masked whole says so even when this result holds none of its values.
      if (plan.kind === 'whole') return { name: f.name, masked: true, reasons: plan.reasons };
      return { name: f.name, masked: st.hits > 0, reasons: [...st.reasons] };
    });
    return { rows: out, columns, maskedValues };
  } catch (e) {
    throw maskingFailure(e, r >= 0 ? { row: r, ...(j >= 0 ? { field: j } : {}) } : undefined);
  }
}
