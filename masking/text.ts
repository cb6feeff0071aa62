/**
 * Masking free text: PostgreSQL error messages, details and notices. Besides the value
 * detectors, two PostgreSQL shapes quote column values the detectors may not recognise:
 * `Key (email)=(…)` (unique, foreign-key and exclusion violations) and
 * `Failing row contains (…)` (check and not-null violations, which quote the whole row).
 */
import { arraySink, maskingFailure, maskString } from './engine.ts';
import { compileMasking, type CompiledMasking, type MaskingSpecInput } from './spec.ts';
import { maskWhole } from './strategies.ts';
import type { MaskOptions, Strategy, TextResult } from './types.ts';
import { WritError } from '../schemas/errors.ts';

export interface MaskTextOptions extends MaskOptions {
  /**
   * `schema.table` the message is about (a PostgreSQL error's `schema` and `table` fields), when
   * known. Without it a column named in `Key (…)` is matched against the rules' column segment
   * alone, and a failing row is masked whenever the spec has any column rule (fail closed).
   */
  table?: string;
}

const KEY_DETAIL = /[Kk]ey \(([^\n]{1,1000}?)\)=\(/g;
const FAILING_ROW = /Failing row contains \(/g;
const IDENT = /"((?:[^"]|"")*)"|[A-Za-z_][A-Za-z0-9_$]*/g;
const VALUE_ENDS = [') already exists', ') is not present', ') is still referenced', ') conflicts with existing key', ') conflicts with key'];

interface Span {
  start: number;
  end: number;
  text: string;
  reasons: string[];
}

/** Where a quoted value that started at `from` ends: before a known continuation, else the line's last `)`. */
function valueEnd(t: string, from: number): number {
  const eol = t.indexOf('\n', from) === -1 ? t.length : t.indexOf('\n', from);
  let end = -1;
  for (const phrase of VALUE_ENDS) {
    const i = t.indexOf(phrase, from);
    if (i !== -1 && i < eol && (end === -1 || i < end)) end = i;
  }
  if (end !== -1) return end;
  const close = t.lastIndexOf(')', eol - 1);
  return close >= from ? close : eol;
}

function keySpans(t: string, c: CompiledMasking, table: string | undefined, out: Span[]): void {
  KEY_DETAIL.lastIndex = 0;
  for (let m = KEY_DETAIL.exec(t); m !== null; m = KEY_DETAIL.exec(t)) {
    const cols = [...m[1]!.matchAll(IDENT)].map((x) => (x[1] !== undefined ? x[1].replace(/""/g, '"') : x[0]));
    const matched: Array<{ col: string; strategy: Strategy }> = [];
    for (const col of cols) {
      const rule = c.columns.find((r) => (table !== undefined ? r.full.test(`${table}.${col}`) : r.column.test(col)));
      if (rule) matched.push({ col, strategy: rule.strategy });
    }
    if (matched.length === 0) continue;
    const start = m.index + m[0].length;
    const end = valueEnd(t, start);
    const text = String(maskWhole(t.slice(start, end), 'column', matched[0]!.strategy, c.hmacKey));
    out.push({ start, end, text, reasons: matched.map((x) => `column:${table !== undefined ? `${table}.` : ''}${x.col}`) });
  }
}

function failingRowSpans(t: string, c: CompiledMasking, table: string | undefined, out: Span[]): void {
  const rules = table === undefined ? c.columns : c.columns.filter((r) => r.table.test(table));
  if (rules.length === 0) return;
  FAILING_ROW.lastIndex = 0;
  for (let m = FAILING_ROW.exec(t); m !== null; m = FAILING_ROW.exec(t)) {
    const start = m.index + m[0].length;
    const end = valueEnd(t, start);
    const text = String(maskWhole(t.slice(start, end), 'row', rules[0]!.strategy, c.hmacKey));
    out.push({ start, end, text, reasons: [`column:${table ?? '*'}.*`] });
  }
}

/**
 * Masks a message. Column-value spans come first in `hits`, then one `detector:…` per
 * detector hit in text order. Throws WRIT_MASKING_FAILED rather than return unmasked text.
 */
export function maskText(text: string, spec: MaskingSpecInput | CompiledMasking, opts: MaskTextOptions = {}): TextResult {
  try {
    const c = compileMasking(spec, opts);
    if (typeof text !== 'string') throw new WritError('WRIT_MASKING_FAILED', 'only text can be masked as text');
    const hits: string[] = [];
    let t = text;
    if (c.columns.length > 0) {
      const spans: Span[] = [];
      keySpans(t, c, opts.table, spans);
      failingRowSpans(t, c, opts.table, spans);
      spans.sort((a, b) => a.start - b.start);
      let out = '';
      let pos = 0;
      for (const s of spans) {
        if (s.start < pos) continue;
        out += t.slice(pos, s.start) + s.text;
        pos = s.end;
        hits.push(...s.reasons);
      }
      t = out + t.slice(pos);
    }
    return { text: maskString(t, c, arraySink(hits)), hits };
  } catch (e) {
    throw maskingFailure(e);
  }
}
