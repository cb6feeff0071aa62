/**
 * PostgreSQL classifier, part 1: queries, DML, WHERE analysis, CTEs,
 * functions, statement boundaries and evasions, errors.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifySql, initClassifiers, splitSql } from './index.ts';
import { checkSql, title, type SqlCase } from './testing.ts';

beforeAll(async () => {
  await initClassifiers();
});

const U = 'public.users';

const queries: SqlCase[] = [
  { sql: 'SELECT 1', s: { kind: 'select', R: [], W: [], C: [], F: [], ro: true } },
  { sql: 'select * from users', s: { kind: 'select', R: [U], C: [`${U}.*`], WR: [U], ro: true } },
  { sql: 'SELECT id, email FROM public.users WHERE id = 1', s: { R: [U], C: [`${U}.id`, `${U}.email`], WR: [], ro: true } },
  { sql: 'SELECT u.email FROM users AS u', s: { R: [U], C: [`${U}.email`] } },
  { sql: 'SELECT "Email" FROM "Users"', s: { R: ['public.Users'], C: ['public.Users.Email'] } },
  { sql: 'select * from PUBLIC.USERS', s: { R: [U] } },
  { sql: 'SELECT * FROM app.Orders o WHERE o.Total > 10', s: { R: ['app.orders'], C: ['app.orders.*', 'app.orders.total'] } },
  { sql: 'SELECT * FROM pg_catalog.pg_authid', s: { R: ['pg_catalog.pg_authid'], ro: true } },
  { sql: 'SELECT rolname, rolpassword FROM pg_authid', s: { R: ['pg_catalog.pg_authid'], C: ['pg_catalog.pg_authid.rolname', 'pg_catalog.pg_authid.rolpassword'] } },
  { sql: 'SELECT usename, passwd FROM pg_shadow', s: { R: ['pg_catalog.pg_shadow'] } },
  { sql: 'select * from information_schema.tables', s: { R: ['information_schema.tables'] } },
  { sql: 'SELECT a.x, b.y FROM a JOIN b ON a.id = b.aid', s: { R: ['public.a', 'public.b'], C: ['public.a.x', 'public.b.y', 'public.a.id', 'public.b.aid'] } },
  { sql: 'SELECT x FROM a, b', s: { R: ['public.a', 'public.b'], C: ['?.x'] } },
  // USING (id) compares a.id with b.id: both are read (in a filter position).
  { sql: 'SELECT x FROM a LEFT JOIN b USING (id) RIGHT JOIN c ON true', s: { R: ['public.a', 'public.b', 'public.c'], C: ['?.x', 'public.a.id', 'public.b.id'] } },
  { sql: 'SELECT c FROM customers c', s: { R: ['public.customers'], WR: ['public.customers'], C: ['public.customers.*'] } },
  { sql: 'SELECT row_to_json(c) FROM customers c', s: { WR: ['public.customers'], F: ['row_to_json'] } },
  { sql: 'SELECT c.* FROM customers c', s: { WR: ['public.customers'], C: ['public.customers.*'] } },
  { sql: 'SELECT (c).email FROM customers c', s: { C: ['public.customers.email'], WR: [] } },
  { sql: 'SELECT (c).* FROM customers c', s: { WR: ['public.customers'] } },
  { sql: 'SELECT public.users.email FROM public.users', s: { C: [`${U}.email`] } },
  { sql: 'SELECT s.e FROM (SELECT email AS e FROM users) s', s: { R: [U], C: [`${U}.email`] } },
  { sql: 'SELECT * FROM (SELECT * FROM users) s', s: { R: [U], C: [`${U}.*`], WR: [U] } },
  { sql: 'SELECT s.a FROM (SELECT email FROM users) AS s(a)', s: { C: [`${U}.email`] } },
  { sql: 'WITH x AS (SELECT email FROM users) SELECT email FROM x', s: { R: [U], C: [`${U}.email`], ro: true } },
  { sql: 'WITH users AS (SELECT 1 AS a) SELECT a FROM users', s: { R: [], W: [] } },
  { sql: 'WITH users AS (SELECT 1) SELECT * FROM public.users', s: { R: [U] } },
  { sql: 'WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT n FROM t', s: { R: [], ro: true } },
  { sql: 'WITH a AS (SELECT id FROM users), b AS (SELECT id FROM a) SELECT * FROM b', s: { R: [U], C: [`${U}.id`] } },
  { sql: 'SELECT id FROM a UNION SELECT id FROM b', s: { R: ['public.a', 'public.b'] } },
  { sql: 'SELECT id FROM a INTERSECT SELECT id FROM b EXCEPT SELECT id FROM c', s: { R: ['public.a', 'public.b', 'public.c'] } },
  { sql: 'SELECT * FROM users u, LATERAL (SELECT * FROM orders o WHERE o.uid = u.id) x', s: { R: [U, 'public.orders'], C: [`${U}.*`, 'public.orders.*', 'public.orders.uid', `${U}.id`] } },
  { sql: 'SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)', s: { R: [U, 'public.orders'] } },
  { sql: 'SELECT 1 FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.uid = u.id)', s: { C: ['public.orders.uid', `${U}.id`] } },
  { sql: 'SELECT (SELECT max(total) FROM orders) AS m', s: { R: ['public.orders'], F: ['max'] } },
  { sql: 'SELECT g FROM generate_series(1, 10) g', s: { R: [], F: ['generate_series'], C: [] } },
  { sql: 'SELECT * FROM users TABLESAMPLE SYSTEM (10)', s: { R: [U] } },
  { sql: 'TABLE users', s: { kind: 'select', R: [U], WR: [U] } },
  { sql: "VALUES (1, 'a'), (2, 'b')", s: { kind: 'values', R: [], ro: true } },
  { sql: 'SELECT * FROM ONLY users', s: { R: [U] } },
  { sql: 'SELECT count(*) FROM users', s: { F: ['count'], C: [] } },
  { sql: 'SELECT extract(year FROM now()), substring(name FROM 2) FROM users', s: { F: ['extract', 'now', 'substring'], C: [`${U}.name`] } },
  { sql: 'SELECT pg_catalog.now()', s: { F: ['pg_catalog.now'], D: [], ro: true } },
  { sql: "SELECT current_setting('search_path'), currval('s')", s: { D: [], ro: true } },
  { sql: 'SELECT * FROM users FOR UPDATE', s: { locks: true, ro: false } },
  { sql: 'SELECT * FROM users FOR SHARE SKIP LOCKED', s: { locks: true, ro: false } },
  { sql: 'SELECT * FROM (SELECT * FROM users FOR UPDATE) s', s: { locks: true, ro: false } },
  { sql: 'SELECT * INTO backup FROM users', s: { kind: 'select', into: true, W: ['public.backup'], R: [U], ro: false } },
  { sql: "SELECT xmltable.* FROM t, XMLTABLE('/r' PASSING t.doc COLUMNS a int)", s: { R: ['public.t'], C: ['public.t.doc'] } },
];

const dml: SqlCase[] = [
  { sql: "INSERT INTO users (id, email) VALUES (1, 'a@b.c')", s: { kind: 'insert', W: [U], CW: [`${U}.id`, `${U}.email`], R: [], ro: false } },
  { sql: 'INSERT INTO archive SELECT * FROM users WHERE created < now()', s: { W: ['public.archive'], R: [U], F: ['now'] } },
  // The conflict target names an index column (inference), not a read; excluded.b is the proposed row's b.
  { sql: 'INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b', s: { W: ['public.t'], CW: ['public.t.a', 'public.t.b'], C: ['public.t.b'] } },
  { sql: 'INSERT INTO t VALUES (1) RETURNING *', s: { W: ['public.t'], R: ['public.t'], WR: ['public.t'] } },
  { sql: "UPDATE users SET role = 'admin' WHERE id = 7", s: { kind: 'update', W: [U], CW: [`${U}.role`], C: [`${U}.id`], where: true, trivial: false, ro: false } },
  { sql: "UPDATE users SET role = 'admin'", s: { where: false, trivial: false } },
  { sql: 'UPDATE users u SET a = o.b FROM orders o WHERE o.uid = u.id', s: { W: [U], R: ['public.orders'], C: ['public.orders.b', 'public.orders.uid', `${U}.id`] } },
  { sql: 'UPDATE users SET (a, b) = (SELECT x, y FROM src) WHERE id = 1', s: { R: ['public.src'], CW: [`${U}.a`, `${U}.b`] } },
  { sql: 'DELETE FROM users', s: { kind: 'delete', W: [U], where: false, trivial: false, ro: false } },
  { sql: 'DELETE FROM orders USING users WHERE orders.uid = users.id AND users.banned', s: { W: ['public.orders'], R: [U], trivial: false } },
  { sql: 'DELETE FROM t WHERE CURRENT OF cur', s: { where: true, trivial: false } },
  { sql: 'DELETE FROM users RETURNING email', s: { R: [U], C: [`${U}.email`] } },
  { sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', s: { kind: 'merge', W: ['public.t'], R: ['public.s'], ro: false } },
  {
    sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.b WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)',
    s: { kind: 'merge', CW: ['public.t.a', 'public.t.id'], C: ['public.t.id', 'public.s.id', 'public.s.b'] },
  },
  { sql: 'WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d', s: { kind: 'select', mcte: true, W: [U], ro: false } },
  { sql: 'WITH u AS (UPDATE t SET a = 1 RETURNING id) SELECT id FROM u', s: { kind: 'select', mcte: true, W: ['public.t'] } },
  { sql: 'WITH i AS (INSERT INTO log VALUES (1) RETURNING 1) SELECT 1', s: { mcte: true, W: ['public.log'], ro: false } },
  { sql: 'WITH a AS (SELECT 1), b AS (DELETE FROM x) SELECT * FROM a', s: { mcte: true, W: ['public.x'] } },
  { sql: 'WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *) SELECT 1', s: { mcte: true, W: ['public.t'] } },
  { sql: 'WITH d AS (DELETE FROM x RETURNING *) INSERT INTO y SELECT * FROM d', s: { kind: 'insert', mcte: true, W: ['public.x', 'public.y'] } },
  { sql: 'SELECT * FROM (WITH d AS (SELECT 1) SELECT * FROM d) s', s: { mcte: false, ro: true } },
];

// Each is an UPDATE or DELETE; `trivial` says whether the WHERE holds for every row.
const where: Array<[string, boolean]> = [
  ["UPDATE users SET role = 'admin' WHERE true", true],
  ['UPDATE users SET a = 1 WHERE 1 = 1', true],
  ["UPDATE users SET a = 1 WHERE 'a' = 'a'", true],
  ['UPDATE users SET a = 1 WHERE id = id', true],
  ['UPDATE users SET a = 1 WHERE users.id >= users.id', true],
  ['UPDATE users SET a = 1 WHERE id = 5 OR true', true],
  ['UPDATE users SET a = 1 WHERE id = 5 OR 1=1', true],
  ['UPDATE users SET a = 1 WHERE NOT false', true],
  ['UPDATE users SET a = 1 WHERE 2 > 1', true],
  ['UPDATE users SET a = 1 WHERE (1 = 1) = true', true],
  ['UPDATE users SET a = 1 WHERE id = 5 AND 1 = 1', false],
  ['UPDATE users SET a = 1 WHERE 1 = 2 OR id = 3', false],
  ['DELETE FROM users WHERE true', true],
  ['DELETE FROM users WHERE id IS NULL OR id IS NOT NULL', true],
  ['DELETE FROM users WHERE banned OR NOT banned', true],
  ["DELETE FROM users WHERE 't'::boolean", true],
  ["DELETE FROM users WHERE 'yes'", true],
  ["DELETE FROM users WHERE '1' = 1", true],
  ['DELETE FROM users WHERE 1 IN (1, 2)', true],
  ["DELETE FROM users WHERE email LIKE '%'", true],
  ['DELETE FROM users WHERE EXISTS (SELECT 1)', true],
  ['DELETE FROM users WHERE 5 BETWEEN 1 AND 10', true],
  ['DELETE FROM users WHERE NULL IS NULL', true],
  ['DELETE FROM users WHERE TRUE IS TRUE', true],
  ['DELETE FROM users WHERE id IS NOT DISTINCT FROM id', true],
  ['DELETE FROM users WHERE id BETWEEN 1 AND 10', false],
  ['DELETE FROM users WHERE id > 0', false],
  ['DELETE FROM users WHERE id = 1 AND true', false],
  ['DELETE FROM users WHERE false', false],
  ["DELETE FROM users WHERE email LIKE '%@x.com'", false],
  ['DELETE FROM users WHERE EXISTS (SELECT 1 FROM banned b WHERE b.id = users.id)', false],
  ['DELETE FROM users WHERE random() < 2', false],
];

const functions: SqlCase[] = [
  { sql: 'SELECT pg_sleep(5)', s: { D: ['pg_sleep'], ro: false } },
  { sql: "SELECT pg_read_file('/etc/passwd')", s: { D: ['pg_read_file'], ro: false } },
  { sql: "SELECT pg_read_binary_file('/etc/shadow')", s: { D: ['pg_read_binary_file'] } },
  { sql: "SELECT * FROM pg_ls_dir('.')", s: { D: ['pg_ls_dir'], R: [] } },
  { sql: "SELECT lo_import('/etc/passwd')", s: { D: ['lo_import'] } },
  { sql: "SELECT lo_export(1234, '/tmp/x')", s: { D: ['lo_export'] } },
  { sql: "SELECT dblink_exec('host=x', 'DROP TABLE users')", s: { D: ['dblink_exec'], R: [] } },
  { sql: "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", s: { D: ['dblink'] } },
  { sql: "SELECT set_config('search_path', 'evil', false)", s: { D: ['set_config'], ro: false } },
  { sql: 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity', s: { D: ['pg_terminate_backend'], R: ['pg_catalog.pg_stat_activity'] } },
  { sql: 'SELECT pg_cancel_backend(123)', s: { D: ['pg_cancel_backend'] } },
  { sql: "SELECT nextval('users_id_seq')", s: { D: ['nextval'], ro: false } },
  { sql: "SELECT setval('s', 1)", s: { D: ['setval'] } },
  { sql: 'SELECT pg_advisory_lock(1), pg_try_advisory_xact_lock(2)', s: { D: ['pg_advisory_lock', 'pg_try_advisory_xact_lock'] } },
  { sql: "SELECT query_to_xml('delete from users returning *', true, false, '')", s: { D: ['query_to_xml'] } },
  { sql: "SELECT table_to_xml('customers', true, false, '')", s: { D: ['table_to_xml'] } },
  { sql: 'SELECT pg_reload_conf(), pg_rotate_logfile()', s: { D: ['pg_reload_conf', 'pg_rotate_logfile'] } },
  { sql: "SELECT pg_notify('ch', 'x')", s: { D: ['pg_notify'] } },
  { sql: 'SELECT txid_current()', s: { D: ['txid_current'], ro: false } },
  { sql: 'SELECT public.pg_sleep(1)', s: { F: ['public.pg_sleep'], D: ['public.pg_sleep'] } },
  { sql: 'SELECT "PG_SLEEP"(1)', s: { F: ['PG_SLEEP'], D: ['PG_SLEEP'] } },
  { sql: 'SeLeCt PG_SLEEP(1)', s: { F: ['pg_sleep'], D: ['pg_sleep'] } },
  { sql: 'SELECT email FROM users WHERE id = (SELECT pg_sleep(10))::text::int', s: { D: ['pg_sleep'], ro: false } },
  { sql: 'SELECT upper(email), lower(name) FROM users', s: { F: ['upper', 'lower'], D: [], ro: true } },
];

const evasions: SqlCase[] = [
  // standard_conforming_strings: a backslash is an ordinary character, so the quote closes the string.
  {
    sql: "SELECT '\\' ; DROP TABLE users; --'",
    s: [
      { kind: 'select', ro: true },
      { kind: 'drop', W: [U], ro: false },
    ],
  },
  { sql: 'SELECT 1; DROP TABLE users', s: [{ kind: 'select' }, { kind: 'drop', W: [U] }] },
  { sql: 'SELECT 1;DROP TABLE users;', s: [{ text: 'SELECT 1' }, { text: 'DROP TABLE users' }] },
  { sql: '/* /* nested */ DROP TABLE x; */ SELECT 1', s: { kind: 'select', W: [] } },
  { sql: '-- DROP TABLE x\nSELECT 1', s: { kind: 'select', text: 'SELECT 1' } },
  { sql: 'SELECT 1 -- ; DROP TABLE x', s: { kind: 'select' } },
  { sql: 'SELECT $$ ; DROP TABLE x; $$', s: { kind: 'select', W: [] } },
  { sql: 'SELECT $a$ $$ ; DROP TABLE x; $$ $a$', s: { kind: 'select', W: [] } },
  { sql: 'SELECT $a$ x $a$; DROP TABLE y', s: [{ kind: 'select' }, { kind: 'drop', W: ['public.y'] }] },
  // E'' strings do take backslash escapes: \' does not close it.
  { sql: "SELECT E'\\' ; DROP TABLE x; --'", s: { kind: 'select', W: [] } },
  { sql: "SELECT E'\\\\' ; DROP TABLE x; --'", s: [{ kind: 'select' }, { kind: 'drop', W: ['public.x'] }] },
  { sql: "SELECT U&'\\0064rop' ; DROP TABLE x", s: [{ kind: 'select' }, { kind: 'drop' }] },
  { sql: 'SELECT U&"d\\0061ta" FROM t', s: { C: ['public.t.data'] } },
  { sql: "select 'a''b; drop table x'", s: { kind: 'select', W: [] } },
  { sql: 'SELECT "a;b" FROM t', s: { C: ['public.t.a;b'] } },
  { sql: 'sElEcT * fRoM UsErS', s: { R: [U] } },
  { sql: '  \n\t SELECT\n1\n  ', s: { text: 'SELECT\n1' } },
  { sql: 'DrOp    TaBlE    "Users"', s: { kind: 'drop', W: ['public.Users'] } },
  { sql: 'SELECT 1; ; ; SELECT 2', n: 2 },
  // The parser's boundary starts at a statement's first token: a comment before it is not part of it.
  { sql: 'SELECT 1 ; /* c */ DELETE FROM t', s: [{ text: 'SELECT 1' }, { text: 'DELETE FROM t', kind: 'delete' }] },
  { sql: "SELECT 'é€😀'; DELETE FROM t", s: [{ text: "SELECT 'é€😀'" }, { text: 'DELETE FROM t' }] },
  { sql: 'select/**/*/**/from/**/users', s: { R: [U] } },
  { sql: 'WITH x AS (SELECT 1) DELETE FROM users', s: { kind: 'delete', W: [U] } },
  { sql: 'SELECT * FROM users; COMMIT; DELETE FROM users', s: [{ ro: true }, { kind: 'transaction', tx: 'commit', ro: false }, { kind: 'delete' }] },
];

const errors: SqlCase[] = [
  { sql: '', err: 'WRIT_SQL_EMPTY' },
  { sql: '   \n\t ', err: 'WRIT_SQL_EMPTY' },
  { sql: '-- only a comment', err: 'WRIT_SQL_EMPTY' },
  { sql: '/* x */', err: 'WRIT_SQL_EMPTY' },
  { sql: ';;', err: 'WRIT_SQL_EMPTY' },
  { sql: 'SELEC 1', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: "SELECT 'unterminated", err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT 1\u0000; DROP TABLE x', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT * FROM t WHERE', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'DROP TABLE users; SELEC', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: '\\! rm -rf /', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT * FROM t WHERE id = :id', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: '/* unterminated comment SELECT 1', err: 'WRIT_SQL_UNPARSEABLE' },
];

function table(name: string, cases: SqlCase[]): void {
  describe(name, () => {
    it.each(cases.map((c) => [title(c.sql), c] as const))('%s', (_, c) => checkSql(classifySql(c.sql), c));
  });
}

table('queries', queries);
table('DML', dml);
describe('WHERE that holds for every row', () => {
  it.each(where)('%s → %s', (sql, trivial) => checkSql(classifySql(sql), { sql, s: { where: true, trivial } }));
});
table('functions with side effects', functions);
table('statement boundaries and evasions', evasions);
table('errors fail closed', errors);

describe('messages and splitting', () => {
  it('keeps parser messages free of control characters and short', () => {
    const f = classifySql(`SELECT 1 FROM t WHERE \u001b[31m ${'x'.repeat(500)} ${'"'.repeat(3)}`);
    expect(f.error?.code).toBe('WRIT_SQL_UNPARSEABLE');
    expect(f.error?.message).not.toMatch(/[\u0000-\u001f]/);
    expect(f.error?.message.length).toBeLessThanOrEqual(201);
  });

  it('reports the position of a syntax error', () => {
    expect(classifySql('SELECT * FROM t WHERE').error?.message).toMatch(/at character \d+/);
  });

  it('splits at the parser boundaries, not at every semicolon', () => {
    expect(splitSql("SELECT ';' AS a; SELECT $$;$$; -- c\nDELETE FROM t /* x */")).toEqual(["SELECT ';' AS a", 'SELECT $$;$$', 'DELETE FROM t /* x */']);
  });

  it('refuses to split what does not parse', () => {
    expect(() => splitSql('DROP TABLE x; SELEC')).toThrow(expect.objectContaining({ code: 'WRIT_SQL_UNPARSEABLE' }));
    expect(() => splitSql('  ')).toThrow(expect.objectContaining({ code: 'WRIT_SQL_EMPTY' }));
  });

  it('gives every statement of a batch the same kind of facts as alone', () => {
    const batch = classifySql('SELECT * FROM users; DELETE FROM orders WHERE 1=1');
    const alone = classifySql('DELETE FROM orders WHERE 1=1');
    expect(batch.statements[1]).toEqual(alone.statements[0]);
  });

  it('never throws for deeply nested input: it classifies it or fails closed', () => {
    for (const depth of [1000, 20000]) {
      const f = classifySql(`SELECT ${'('.repeat(depth)}1${')'.repeat(depth)}`);
      if (f.error) expect(f.error.code).toBe('WRIT_SQL_UNPARSEABLE');
      else expect(f.statements[0]?.kind).toBe('select');
    }
    // A long flat expression nests deeply in the tree too.
    const long = classifySql(`SELECT 1 ${'+ 1 '.repeat(20000)}`);
    expect(long.error === undefined || long.error.code === 'WRIT_SQL_UNPARSEABLE').toBe(true);
  });
});
