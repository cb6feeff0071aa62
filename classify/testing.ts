/**
 * Table-driven expectations for the SQL classifier tests: a case names only
 * the facts it is about, and each named fact is compared exactly (lists as
 * sets), so a wrong or missing fact fails.
 */
import { expect } from 'vitest';
import type { CopyFacts, SetFacts, SqlErrorCode, SqlFacts, SqlKind, SqlStatementFacts } from './types.ts';

/** Expected facts of one statement; absent keys are not checked. */
interface Exp {
  kind?: SqlKind;
  type?: string;
  text?: string;
  /** tablesRead */
  R?: string[];
  /** tablesWritten */
  W?: string[];
  /** columns as `table.column`, `?` for a null table */
  C?: string[];
  /** columnsWritten, same form */
  CW?: string[];
  /** wholeRowTables */
  WR?: string[];
  /** functions */
  F?: string[];
  /** dangerousFunctions */
  D?: string[];
  names?: string[];
  actions?: string[];
  where?: boolean;
  trivial?: boolean;
  mcte?: boolean;
  into?: boolean;
  locks?: boolean;
  ro?: boolean;
  rw?: boolean;
  copy?: Partial<CopyFacts>;
  set?: Partial<SetFacts>;
  tx?: string;
  analyze?: boolean;
  inner?: Exp;
  executeInner?: boolean;
}

/** A case: the text, then either an error code, or the statement count and expectations. */
export interface SqlCase {
  sql: string;
  /** Expected error code; absent means no error. */
  err?: SqlErrorCode;
  /** Expected statement count (default: the number of expectations, or 1). */
  n?: number;
  /** Expectations for statements 0.. (a single one is for the first statement). */
  s?: Exp | Exp[];
}

const col = (c: { table: string | null; column: string }) => `${c.table ?? '?'}.${c.column}`;
const sorted = (a: string[]) => [...new Set(a)].sort();

/** Checks one statement against its expectation. */
function checkStatement(st: SqlStatementFacts, e: Exp): void {
  if (e.kind !== undefined) expect(st.kind, 'kind').toBe(e.kind);
  if (e.type !== undefined) expect(st.objectType, 'objectType').toBe(e.type);
  if (e.text !== undefined) expect(st.text, 'text').toBe(e.text);
  if (e.R) expect(sorted(st.tablesRead), 'tablesRead').toEqual(sorted(e.R));
  if (e.W) expect(sorted(st.tablesWritten), 'tablesWritten').toEqual(sorted(e.W));
  if (e.C) expect(sorted(st.columns.map(col)), 'columns').toEqual(sorted(e.C));
  if (e.CW) expect(sorted(st.columnsWritten.map(col)), 'columnsWritten').toEqual(sorted(e.CW));
  if (e.WR) expect(sorted(st.wholeRowTables), 'wholeRowTables').toEqual(sorted(e.WR));
  if (e.F) expect(sorted(st.functions), 'functions').toEqual(sorted(e.F));
  if (e.D) expect(sorted(st.dangerousFunctions), 'dangerousFunctions').toEqual(sorted(e.D));
  if (e.names) expect(sorted(st.objectNames), 'objectNames').toEqual(sorted(e.names));
  if (e.actions) expect(st.alterActions, 'alterActions').toEqual(e.actions);
  if (e.where !== undefined) expect(st.hasWhere, 'hasWhere').toBe(e.where);
  if (e.trivial !== undefined) expect(st.whereTriviallyTrue, 'whereTriviallyTrue').toBe(e.trivial);
  if (e.mcte !== undefined) expect(st.modifyingCte, 'modifyingCte').toBe(e.mcte);
  if (e.into !== undefined) expect(st.selectInto, 'selectInto').toBe(e.into);
  if (e.locks !== undefined) expect(st.rowLocks, 'rowLocks').toBe(e.locks);
  if (e.ro !== undefined) expect(st.readOnly, 'readOnly').toBe(e.ro);
  if (e.rw !== undefined) expect(st.requestsReadWrite, 'requestsReadWrite').toBe(e.rw);
  if (e.copy) expect(st.copy, 'copy').toMatchObject(e.copy);
  if (e.set) expect(st.set, 'set').toMatchObject(e.set);
  if (e.tx !== undefined) expect(st.transaction, 'transaction').toBe(e.tx);
  if (e.analyze !== undefined) expect(st.explain?.analyze, 'explain.analyze').toBe(e.analyze);
  if (e.inner) {
    const inner = st.explain?.inner ?? st.prepare?.inner ?? st.execute?.inner;
    expect(inner, 'inner statement').toBeDefined();
    if (inner) checkStatement(inner, e.inner);
  }
  if (e.executeInner !== undefined) expect(st.execute?.inner !== undefined, 'execute.inner').toBe(e.executeInner);
}

/** Checks a classification against a case. */
export function checkSql(facts: SqlFacts, c: SqlCase): void {
  if (c.err) {
    expect(facts.error?.code, 'error code').toBe(c.err);
    return;
  }
  expect(facts.error, 'error').toBeUndefined();
  const exps = c.s === undefined ? [] : Array.isArray(c.s) ? c.s : [c.s];
  expect(facts.statements.length, 'statement count').toBe(c.n ?? Math.max(1, exps.length));
  exps.forEach((e, i) => checkStatement(facts.statements[i] as SqlStatementFacts, e));
}

/** A short test title for a case. */
export function title(text: string): string {
  const t = JSON.stringify(text);
  return t.length > 90 ? `${t.slice(0, 87)}...` : t;
}
