/**
 * PostgreSQL classifier under attack (issue 10, items 5-8): functions that run SQL text or read relations by
 * name, attribute notation as a hidden call, blind prepared statements and cursors, and unqualified names.
 * Each block names the property it protects; the live checks against a real server are in
 * sql-pg-attack.live.test.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifySql, initClassifiers } from './index.ts';
import type { SqlStatementFacts } from './types.ts';
import { PG_FUNCTIONS } from './pg-catalog-data.ts';
import { isKnownSafePg, isOpaquePg, PG_FUNCTION_LISTS, relationSchema } from './pg-catalog.ts';
import { isDangerousPg } from './sql-functions.ts';

beforeAll(async () => {
  await initClassifiers();
});

/** Facts of the only (or the n-th) statement; the text must classify without error. */
function one(sql: string, n = 0): SqlStatementFacts {
  const f = classifySql(sql);
  expect(f.error, sql).toBeUndefined();
  return f.statements[n] as SqlStatementFacts;
}

/** Facts merged over every statement of the text (what a batch as a whole calls). */
function all(sql: string) {
  const f = classifySql(sql);
  expect(f.error, sql).toBeUndefined();
  const st = f.statements;
  return {
    functions: new Set(st.flatMap((s) => s.functions)),
    unknown: new Set(st.flatMap((s) => s.unknownFunctions ?? [])),
    dangerous: new Set(st.flatMap((s) => s.dangerousFunctions)),
    opaque: st.some((s) => s.opaqueReads === true),
    whole: new Set(st.flatMap((s) => s.wholeRowTables)),
    readOnly: st.every((s) => s.readOnly),
  };
}

describe('item 5: a function that runs SQL text or reads a relation by name is unknown, opaque and dangerous', () => {
  const runsSql = [
    "SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', password) FROM secrets')",
    "SELECT ts_stat('SELECT v FROM secrets')",
    "SELECT * FROM pg_catalog.ts_stat('SELECT v FROM secrets', 'ab')",
    "SELECT ts_rewrite('a & b'::tsquery, 'SELECT t, s FROM secrets')",
    "SELECT query_to_xml('SELECT * FROM secrets', true, false, '')",
    "SELECT query_to_xml_and_xmlschema('SELECT * FROM secrets', true, false, '')",
    "SELECT table_to_xml('secrets', true, false, '')",
    "SELECT table_to_xml('public.secrets'::regclass, true, false, '')",
    "SELECT table_to_xmlschema('secrets', true, false, '')",
    "SELECT cursor_to_xml('c', 10, true, false, '')",
    "SELECT schema_to_xml('public', true, false, '')",
    "SELECT database_to_xml(true, false, '')",
    "SELECT 1 WHERE EXISTS (SELECT query_to_xml('SELECT * FROM secrets', true, false, ''))",
    "WITH x AS (SELECT table_to_xml('secrets', true, false, '') AS v) SELECT v FROM x",
    "SELECT * FROM users u, LATERAL (SELECT TS_STAT('SELECT v FROM secrets')) s",
    "SELECT \"query_to_xml\"('SELECT * FROM secrets', true, false, '')",
    "EXPLAIN ANALYZE SELECT table_to_xml('secrets', true, false, '')",
    "PREPARE p AS SELECT ts_stat('SELECT v FROM secrets'); EXECUTE p",
  ];
  for (const sql of runsSql) {
    it(`refuses to know ${sql.slice(0, 70)}`, () => {
      const f = all(sql);
      expect(f.opaque).toBe(true);
      expect(f.unknown.size).toBeGreaterThan(0);
      expect(f.dangerous.size).toBeGreaterThan(0);
      expect(f.readOnly).toBe(false);
    });
  }

  const opaqueNotDangerous = [
    "SELECT pg_get_viewdef('secret_view')",
    "SELECT pg_get_functiondef('f'::regproc)",
    'SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef',
    'SELECT * FROM pg_mcv_list_items((SELECT stxdmcv FROM pg_statistic_ext_data LIMIT 1))',
    "SELECT currval('s'), lastval()",
    'SELECT pg_stat_get_backend_activity(1)',
  ];
  for (const sql of opaqueNotDangerous) {
    it(`marks opaque: ${sql}`, () => {
      const f = all(sql);
      expect(f.opaque).toBe(true);
      expect(f.unknown.size).toBeGreaterThan(0);
    });
  }

  it('user-defined and non-catalogue functions are unknown and opaque, whatever the spelling', () => {
    for (const [sql, fn] of [
      ['SELECT my_func()', 'my_func'],
      ['SELECT public.my_func()', 'public.my_func'],
      ['SELECT app.now()', 'app.now'],
      ['SELECT public.lower(email) FROM users', 'public.lower'],
      ['SELECT pg_catalog.no_such_function()', 'pg_catalog.no_such_function'],
      ['SELECT mydb.pg_catalog.now()', 'mydb.pg_catalog.now'],
      ['SELECT "Lower"(email) FROM users', 'Lower'],
      ['SELECT * FROM my_srf()', 'my_srf'],
      ["SELECT dblink('host=x', 'SELECT 1')", 'dblink'],
      ['SELECT 1 FROM users WHERE check_me(id)', 'check_me'],
    ] as const) {
      const s = one(sql);
      expect(s.unknownFunctions, sql).toContain(fn);
      expect(s.opaqueReads, sql).toBe(true);
    }
  });

  it('operators pg_catalog does not define are calls of unknown functions: operator(op)', () => {
    const s = one("SELECT a === b, a OPERATOR(public.+) b, a + b, a OPERATOR(pg_catalog.+) b, x BETWEEN 1 AND 2, x LIKE 'a' FROM t");
    expect(new Set(s.functions)).toEqual(new Set(['operator(===)', 'operator(public.+)']));
    expect(new Set(s.unknownFunctions)).toEqual(new Set(['operator(===)', 'operator(public.+)']));
    expect(s.opaqueReads).toBe(true);
    expect(one("SELECT 1 FROM t WHERE a ~~* b OR c @> d OR e ->> 'k' = 'v'").unknownFunctions).toEqual([]);
  });

  it('built-ins that are immutable or stable and read nothing are known, qualified or not', () => {
    const s = one(
      'SELECT lower(email), pg_catalog.upper(email), count(*), now(), xmlagg(xmlelement(name a, email)), coalesce(a, b), ' +
        'json_agg(id), substring(email FROM 2), extract(year FROM now()), row_number() OVER (), random(), ' +
        "xpath('/a', '<a/>'::xml), current_setting('search_path') FROM users",
    );
    expect(s.unknownFunctions).toEqual([]);
    expect(s.opaqueReads).toBe(false);
  });

  it('volatile built-ins are unknown unless reviewed harmless; the dangerous ones stay dangerous', () => {
    const s = one("SELECT nextval('s'), pg_sleep(1), set_config('a.b', 'c', false), setseed(0.5), pg_relation_size('secrets')");
    expect(new Set(s.unknownFunctions)).toEqual(new Set(['nextval', 'pg_sleep', 'set_config', 'setseed', 'pg_relation_size']));
    expect(new Set(s.dangerousFunctions)).toEqual(new Set(['nextval', 'pg_sleep', 'set_config']));
  });

  it('privilege probes and catalogue introspection by name are unknown (not covered without a rule naming them)', () => {
    const s = one("SELECT has_table_privilege('secrets', 'select'), pg_has_role('admin', 'member'), obj_description(1), txid_current()");
    expect(new Set(s.unknownFunctions)).toEqual(new Set(['has_table_privilege', 'pg_has_role', 'obj_description', 'txid_current']));
  });

  it('is built from the generated catalogue: known safe only if every pg_catalog overload is immutable or stable', () => {
    expect(PG_FUNCTIONS.length).toBeGreaterThan(3000);
    const volatile = new Set(PG_FUNCTIONS.filter((r) => r[1] === 'v').map((r) => r[0]));
    for (const name of volatile) {
      if (PG_FUNCTION_LISTS.harmlessVolatile.includes(name)) continue;
      expect(isKnownSafePg(name), name).toBe(false);
      expect(isKnownSafePg(`pg_catalog.${name}`), name).toBe(false);
    }
    for (const [name] of PG_FUNCTIONS) {
      expect(isKnownSafePg(`public.${name}`), name).toBe(false);
      if (isDangerousPg(name)) expect(isKnownSafePg(name), name).toBe(false);
    }
    // Every name of the reviewed families in the catalogue is caught.
    const families = PG_FUNCTIONS.map((r) => r[0]).filter((n) => /_to_xml|^ts_stat$|^ts_rewrite$|^pg_get_/.test(n));
    expect(families.length).toBeGreaterThan(20);
    for (const n of families) expect(isOpaquePg(n) && !isKnownSafePg(n), n).toBe(true);
  });
});

describe('item 6: attribute notation is a possible call of the function on the whole row', () => {
  const S = 'public.secrets';
  const cases: Array<[string, string]> = [
    ['SELECT s.row_to_json FROM secrets s', 'row_to_json'],
    ['SELECT s.to_json FROM secrets s', 'to_json'],
    ['SELECT s.to_jsonb FROM secrets AS s', 'to_jsonb'],
    ['SELECT (s).to_jsonb FROM secrets s', 'to_jsonb'],
    ['SELECT (s).row_to_json FROM secrets s', 'row_to_json'],
    ['SELECT secrets.row_to_json FROM secrets', 'row_to_json'],
    ['SELECT public.secrets.row_to_json FROM public.secrets', 'row_to_json'],
    ['SELECT customers.json_agg FROM secrets customers', 'json_agg'],
    ['SELECT s.jsonb_agg FROM secrets s', 'jsonb_agg'],
    ['SELECT s.array_agg FROM secrets s', 'array_agg'],
    ['SELECT s.num_nulls FROM secrets s', 'num_nulls'],
    ['SELECT x.row_to_json FROM (SELECT * FROM secrets) x', 'row_to_json'],
    ['WITH x AS (SELECT * FROM secrets) SELECT x.to_json FROM x', 'to_json'],
    ["SELECT 1 FROM secrets s WHERE s.row_to_json::text LIKE '%hunter%'", 'row_to_json'],
    ['SELECT 1 FROM secrets s ORDER BY s.to_jsonb', 'to_jsonb'],
    ['SELECT (SELECT s.row_to_json) FROM secrets s', 'row_to_json'],
  ];
  for (const [sql, fn] of cases) {
    it(`${sql} reports ${fn}(row) and the whole row`, () => {
      const f = all(sql);
      expect(f.functions).toContain(fn);
      expect(f.whole).toContain(S);
    });
  }

  it('extension functions on a row (s.hstore) are reported, and unknown', () => {
    const s = one('SELECT s.hstore FROM secrets s');
    expect(s.functions).toContain('hstore');
    expect(s.unknownFunctions).toContain('hstore');
    expect(s.wholeRowTables).toContain(S);
  });

  it('a field selection that names a one-argument function is reported as a call: (s.password).md5', () => {
    for (const [sql, fn] of [
      ['SELECT (s.password).md5 FROM secrets s', 'md5'],
      ['SELECT (s.id).abs FROM secrets s', 'abs'],
      ['SELECT (password).reverse FROM secrets', 'reverse'],
    ] as const) {
      const s = one(sql);
      expect(s.functions, sql).toContain(fn);
      expect(
        s.columns.map((c) => c.column),
        sql,
      ).toContain(sql.includes('id') ? 'id' : 'password');
    }
  });

  it('plain column references stay columns', () => {
    const s = one('SELECT s.email, s.password FROM secrets s');
    expect(s.functions).toEqual([]);
    expect(s.wholeRowTables).toEqual([]);
  });
});

describe('item 7: prepared statements and cursors are never blind', () => {
  it('PREPARE counts as the statement it prepares (kind, writes, read-only flag)', () => {
    for (const sql of [
      'PREPARE p AS DELETE FROM secrets',
      'PREPARE p (int) AS UPDATE secrets SET password = $1::text WHERE id = 1',
      'PREPARE p AS INSERT INTO secrets VALUES (1)',
      'PREPARE p AS SELECT * FROM secrets FOR UPDATE',
      'PREPARE p AS SELECT pg_sleep(1)',
    ]) {
      const s = one(sql);
      expect(s.kind).toBe('prepare');
      expect(s.readOnly, sql).toBe(false);
      expect(s.prepare?.inner.readOnly, sql).toBe(false);
    }
    expect(one('PREPARE p AS DELETE FROM secrets').tablesWritten).toEqual(['public.secrets']);
    expect(one('PREPARE p AS DELETE FROM secrets').prepare?.inner.kind).toBe('delete');
    expect(one('PREPARE p AS SELECT id FROM secrets').readOnly).toBe(true);
  });

  it('EXECUTE, FETCH, MOVE and CLOSE without their PREPARE / DECLARE in the same text are refused', () => {
    for (const sql of [
      'EXECUTE p',
      'EXECUTE p(1, 2)',
      'EXPLAIN EXECUTE p',
      'EXPLAIN ANALYZE EXECUTE p',
      'SELECT 1; EXECUTE p',
      'PREPARE q AS SELECT 1; EXECUTE p',
      'EXECUTE p; PREPARE p AS SELECT 1',
      'FETCH ALL FROM c',
      'FETCH c',
      'FETCH NEXT IN "C"',
      'FETCH BACKWARD 10 FROM c',
      'MOVE ABSOLUTE 0 IN c',
      'CLOSE c',
      'CLOSE ALL',
      'DECLARE d CURSOR FOR SELECT 1; FETCH ALL FROM c',
      'FETCH ALL FROM c; DECLARE c CURSOR FOR SELECT 1',
    ]) {
      expect(classifySql(sql).error?.code, sql).toBe('WRIT_SQL_UNKNOWN');
    }
  });

  it('DECLARE ... WITH HOLD is refused: the cursor would outlive the intent on a pooled connection', () => {
    for (const sql of [
      'DECLARE c CURSOR WITH HOLD FOR SELECT * FROM secrets',
      'DECLARE c BINARY INSENSITIVE NO SCROLL CURSOR WITH HOLD FOR SELECT 1',
      'DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT 1; FETCH ALL FROM c; CLOSE c',
    ]) {
      expect(classifySql(sql).error?.code, sql).toBe('WRIT_SQL_UNKNOWN');
    }
    expect(classifySql('DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1; FETCH ALL FROM c').error).toBeUndefined();
  });

  it('a cursor declared in the same text is visible: its DECLARE carries what it reads', () => {
    const f = classifySql('BEGIN; DECLARE c CURSOR FOR SELECT password FROM secrets; FETCH ALL FROM c; CLOSE c; COMMIT');
    expect(f.error).toBeUndefined();
    expect(f.statements[1]?.columns).toEqual([{ table: 'public.secrets', column: 'password' }]);
  });

  it('DEALLOCATE and DISCARD change the session: not read-only', () => {
    for (const sql of ['DEALLOCATE p', 'DEALLOCATE ALL', 'DEALLOCATE PREPARE p', 'DISCARD ALL', 'DISCARD PLANS', 'DISCARD TEMP']) {
      expect(one(sql).readOnly, sql).toBe(false);
    }
  });
});

describe('item 8: unqualified names resolve as under search_path = pg_catalog, public', () => {
  it('a name is pg_catalog only when pg_catalog has that relation, else public', () => {
    expect(one('SELECT * FROM pg_class').tablesRead).toEqual(['pg_catalog.pg_class']);
    expect(one('SELECT * FROM pg_authid').tablesRead).toEqual(['pg_catalog.pg_authid']);
    expect(one('SELECT * FROM pg_stats').tablesRead).toEqual(['pg_catalog.pg_stats']);
    // Not in pg_catalog: a user table with a pg_ prefix lives in public.
    expect(one('SELECT * FROM pg_secrets').tablesRead).toEqual(['public.pg_secrets']);
    expect(one('SELECT * FROM secrets').tablesRead).toEqual(['public.secrets']);
    expect(one('DELETE FROM pg_foo').tablesWritten).toEqual(['public.pg_foo']);
    expect(one('DROP TABLE pg_foo').tablesWritten).toEqual(['public.pg_foo']);
    expect(relationSchema('pg_namespace')).toBe('pg_catalog');
    expect(relationSchema('pg_nope')).toBe('public');
  });

  it('an unqualified function missing from pg_catalog is public (user-defined): unknown', () => {
    expect(one('SELECT pg_my_helper()').unknownFunctions).toEqual(['pg_my_helper']);
  });
});
