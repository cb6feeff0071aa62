/**
 * refuseMaskedFilters, the part no server decides: facts that do not say where a statement
 * reads (a classifier without filterColumns) are refused before any catalogue lookup, and a
 * grant without column rules or with filterMasked: true refuses nothing. The real-server cases
 * are in test/masked-filters.test.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifySql, initClassifiers, type SqlStatementFacts } from '../classify/index.ts';
import { refuseMaskedFilters, type ColumnCatalogue } from './sql-common.ts';

beforeAll(async () => {
  await initClassifiers();
});

/** Fails the test if the check asks the catalogue anything. */
const untouched: ColumnCatalogue = {
  columnsOf: () => Promise.reject(new Error('catalogue asked')),
  viewBaseColumns: () => Promise.reject(new Error('catalogue asked')),
};
const mask = { columns: [{ column: 'public.customers.email' }], detectors: [] };
const facts = (sql: string) => classifySql(sql).statements;
const withoutFilterFacts = (sql: string): SqlStatementFacts[] =>
  facts(sql).map((st) => {
    const { filterColumns: _c, filterWholeRowTables: _w, ...rest } = st;
    return rest;
  });

describe('refuseMaskedFilters', () => {
  it('refuses facts without filterColumns (unknown) before any catalogue lookup', async () => {
    await expect(refuseMaskedFilters(untouched, withoutFilterFacts('SELECT id FROM customers'), { mask }, 'mysql')).rejects.toMatchObject({ code: 'WRIT_MASKED_FILTER' });
  });

  it('refuses nothing under filterMasked: true or without column rules', async () => {
    const f = withoutFilterFacts("SELECT id FROM customers WHERE email LIKE 'a%'");
    await expect(refuseMaskedFilters(untouched, f, { mask: { ...mask, filterMasked: true } }, 'postgres')).resolves.toBeUndefined();
    await expect(refuseMaskedFilters(untouched, f, { mask: { columns: [], detectors: [] } }, 'postgres')).resolves.toBeUndefined();
  });

  it('asks nothing of a statement that filters on nothing', async () => {
    await expect(refuseMaskedFilters(untouched, facts('SELECT id, email FROM customers'), { mask }, 'postgres')).resolves.toBeUndefined();
  });
});
