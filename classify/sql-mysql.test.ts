/**
 * MySQL / MariaDB classifier: kinds, tables, WHERE, side effects, and the
 * MySQL-specific ways to hide a statement (executable comments, sql_mode).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyMysql, initClassifiers, splitMysql } from './index.ts';
import { checkSql, title, type SqlCase } from './testing.ts';

beforeAll(async () => {
  await initClassifiers();
});

const cases: SqlCase[] = [
  { sql: 'SELECT 1', s: { kind: 'select', ro: true, R: [] } },
  { sql: 'SELECT id, email FROM users WHERE id = 1', s: { R: ['users'], C: ['users.id', 'users.email'], ro: true } },
  { sql: 'SELECT u.email FROM users u JOIN orders o ON o.uid = u.id', s: { R: ['users', 'orders'], C: ['users.email', 'orders.uid', 'users.id'] } },
  { sql: 'SELECT * FROM shop.Users', s: { R: ['shop.users'], WR: ['shop.users'] } },
  // A three-part column reference names the column, not the table (a rule on shop.users.email must see it).
  { sql: 'SELECT `shop`.`users`.`email` AS e FROM `shop`.`users`', s: { R: ['shop.users'], C: ['shop.users.email'] } },
  { sql: 'SELECT * FROM mysql.user', s: { R: ['mysql.user'] } },
  // Other sessions' statements, literals included: a read of information_schema.PROCESSLIST however it is asked.
  { sql: 'SHOW PROCESSLIST', s: { kind: 'show', R: ['information_schema.processlist'] } },
  { sql: 'SELECT info FROM INFORMATION_SCHEMA.PROCESSLIST', s: { R: ['information_schema.processlist'] } },
  { sql: 'WITH c AS (SELECT a FROM t) SELECT * FROM c', s: { R: ['t'] } },
  // A CTE named like the base table its body reads: the table is still read.
  { sql: 'WITH customers AS (SELECT email AS name FROM customers) SELECT name FROM customers', s: { R: ['customers'] } },
  { sql: 'WITH a AS (SELECT x FROM b), b AS (SELECT y FROM t) SELECT * FROM a', s: { R: ['b', 't'] } },
  { sql: 'WITH RECURSIVE a AS (SELECT 1 AS n UNION SELECT n + 1 FROM a WHERE n < 3), b AS (SELECT n FROM a) SELECT * FROM b', s: { R: [] } },
  { sql: 'SELECT a FROM t UNION SELECT b FROM u', s: { R: ['t', 'u'] } },
  { sql: 'SELECT (SELECT max(x) FROM y) FROM z WHERE EXISTS (SELECT 1 FROM w)', s: { R: ['y', 'z', 'w'], F: ['max'] } },
  { sql: 'SELECT * FROM t FOR UPDATE', s: { locks: true, ro: false } },
  { sql: 'SELECT * FROM t LOCK IN SHARE MODE', s: { locks: true, ro: false } },
  { sql: "SELECT * FROM users INTO OUTFILE '/tmp/x'", s: { into: true, copy: { direction: 'to', file: true }, ro: false } },
  { sql: 'SELECT sleep(5)', s: { D: ['sleep'], ro: false } },
  { sql: "SELECT benchmark(1000000, md5('a'))", s: { D: ['benchmark'], F: ['benchmark', 'md5'] } },
  { sql: "SELECT load_file('/etc/passwd')", s: { D: ['load_file'], ro: false } },
  { sql: "SELECT get_lock('x', 10)", s: { D: ['get_lock'] } },
  { sql: 'SELECT concat(a, b), count(*) FROM t', s: { F: ['concat', 'count'], D: [], ro: true } },
  { sql: 'INSERT INTO t (a, b) VALUES (1, 2)', s: { kind: 'insert', W: ['t'], CW: ['t.a', 't.b'], ro: false } },
  { sql: 'REPLACE INTO t VALUES (1)', s: { kind: 'insert', W: ['t'] } },
  { sql: 'INSERT INTO t SELECT * FROM u ON DUPLICATE KEY UPDATE a = 1', s: { W: ['t'], R: ['u'] } },
  { sql: 'INSERT INTO t SET a = 1', s: { kind: 'insert', W: ['t'] } },
  { sql: 'UPDATE t SET a = 1 WHERE b = 2', s: { kind: 'update', W: ['t'], where: true, trivial: false } },
  { sql: 'UPDATE t SET a = 1', s: { where: false, trivial: false } },
  { sql: 'UPDATE t SET a = 1 WHERE 1', s: { where: true, trivial: true } },
  { sql: 'UPDATE t SET a = 1 WHERE 1 = 1', s: { trivial: true } },
  { sql: "UPDATE t SET a = 1 WHERE 'x' = 'x' OR id = 3", s: { trivial: true } },
  { sql: 'UPDATE t SET a = 1 WHERE id = id', s: { trivial: true } },
  { sql: 'UPDATE t SET a = 1 WHERE 0', s: { trivial: false } },
  { sql: 'UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = t2.b', s: { W: ['t1'], R: ['t2'], CW: ['t1.a'] } },
  { sql: 'DELETE FROM t', s: { kind: 'delete', W: ['t'], where: false } },
  { sql: 'DELETE FROM t WHERE true', s: { trivial: true } },
  { sql: 'DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id WHERE t2.x = 1', s: { W: ['t1'], R: ['t2'], trivial: false } },
  { sql: 'CREATE TABLE t (a int)', s: { kind: 'create', type: 'table', W: ['t'] } },
  { sql: 'CREATE TABLE t2 AS SELECT * FROM t', s: { kind: 'create', W: ['t2'], R: ['t'] } },
  { sql: 'CREATE INDEX i ON t (a)', s: { kind: 'create', type: 'index', W: ['t'] } },
  { sql: 'CREATE VIEW v AS SELECT * FROM s', s: { kind: 'create', type: 'view', R: ['s'] } },
  { sql: 'DROP TABLE a, b.c', s: { kind: 'drop', type: 'table', W: ['a', 'b.c'] } },
  { sql: 'TRUNCATE TABLE z', s: { kind: 'truncate', W: ['z'] } },
  { sql: 'ALTER TABLE t ADD COLUMN b int', s: { kind: 'alter', W: ['t'] } },
  { sql: 'RENAME TABLE a TO b', s: { kind: 'alter', W: ['a', 'b'] } },
  { sql: "LOAD DATA INFILE '/etc/passwd' INTO TABLE t", s: { kind: 'copy', copy: { direction: 'from', file: true }, W: ['t'], ro: false } },
  { sql: 'LOCK TABLES t WRITE', s: { kind: 'lock', W: ['t'] } },
  { sql: 'UNLOCK TABLES', s: { kind: 'unlock', ro: false } },
  { sql: 'USE other', s: { kind: 'use', ro: false } },
  { sql: 'SHOW TABLES', s: { kind: 'show', ro: true } },
  { sql: 'DESCRIBE t', s: { kind: 'show', ro: true } },
  { sql: 'EXPLAIN SELECT * FROM t', s: { kind: 'explain', analyze: false, ro: true, inner: { kind: 'select' } } },
  { sql: 'GRANT SELECT ON db.* TO u', s: { kind: 'grant', ro: false } },
  { sql: 'SET @a = 1', s: { kind: 'set', set: { variable: '@a' }, rw: false } },
  { sql: 'SET @@session.transaction_read_only = 0', s: { set: { transactionReadWrite: true }, rw: true } },
  { sql: 'CALL p(1)', s: { kind: 'call', F: ['p'], ro: false } },
  { sql: 'START TRANSACTION READ WRITE', s: { kind: 'transaction', tx: 'start', rw: true } },
  { sql: 'COMMIT', s: { tx: 'commit' } },
  { sql: 'SELECT 1; DROP TABLE x', s: [{ kind: 'select' }, { kind: 'drop', W: ['x'] }] },
  { sql: 'SELECT 1 -- ; DROP TABLE x\n', s: { kind: 'select' } },
  { sql: 'SELECT 1 # ; DROP TABLE x', s: { kind: 'select' } },
  // `--` needs a space after it to start a MySQL comment: here it is minus minus one.
  { sql: 'SELECT 1--1; DROP TABLE x', err: 'WRIT_SQL_UNPARSEABLE' }, // '--1' is minus minus 1 to MySQL: refused, not guessed
  { sql: "SELECT 'a;b'; SELECT `c;d` FROM t", s: [{ text: "SELECT 'a;b'" }, { text: 'SELECT `c;d` FROM t' }] },
  // Executable comments run on the server and are invisible to the parser.
  { sql: 'SELECT /*! sleep(5) */ 1', err: 'WRIT_SQL_UNPARSEABLE' },
  // A reserved word the parser takes as a name, where the server reads the keyword: `binary email`
  // was column `binary` aliased `email` to the parser, BINARY applied to email by MariaDB (the
  // e-mail came back unmasked, with no origin). Refused wherever it stands bare.
  { sql: 'SELECT id, binary email FROM customers', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT id, BINARY  email FROM customers WHERE id = 1', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'INSERT INTO events (note) SELECT binary email FROM customers', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT current_role email FROM customers', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT id, binary + email FROM customers', err: 'WRIT_SQL_UNPARSEABLE' },
  // Quoted, or after a dot, it is a name to the server too; CAST(… AS BINARY) names the column.
  { sql: 'SELECT id, `binary` FROM customers', s: { C: ['customers.id', 'customers.binary'] } },
  { sql: 'SELECT c.binary FROM customers c', s: { C: ['customers.binary'] } },
  { sql: 'SELECT id, CAST(email AS BINARY) FROM customers', s: { C: ['customers.id', 'customers.email'] } },
  { sql: 'SELECT id, binary(email) FROM customers', s: { C: ['customers.id', 'customers.email'] } },
  { sql: 'SELECT 1 /*!50000 ; DROP TABLE x */', err: 'WRIT_SQL_UNPARSEABLE' },
  // MySQL 8 optimizer hints change the worker's limits for one statement; a hint in a string is text.
  { sql: 'SELECT /*+ SET_VAR(sql_select_limit=100000) */ name FROM customers', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT /*+ MAX_EXECUTION_TIME(100000) */ sleep(60)', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: "SELECT '/*+ x */' AS a /* + not a hint */", s: { kind: 'select', ro: true } },
  { sql: 'SELECT 1 /*M! ; DROP TABLE x */', err: 'WRIT_SQL_UNPARSEABLE' },
  // With NO_BACKSLASH_ESCAPES the server would cut this into three statements; by default into one.
  { sql: "SELECT '\\' ; DROP TABLE users; --'", err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT "a\\"; DROP TABLE x; "', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: '', err: 'WRIT_SQL_EMPTY' },
  { sql: ' -- c\n # d\n /* e */ ;', err: 'WRIT_SQL_EMPTY' },
  { sql: 'SELEC 1', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: "SELECT 'open", err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SELECT 1\u0000; DROP TABLE x', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'FLUSH PRIVILEGES', err: 'WRIT_SQL_UNPARSEABLE' },
  // Statements the grammar lacks fail closed: HANDLER reads past the optimizer, PREPARE from a
  // variable runs text nobody classified, DO evaluates anything, SET STATEMENT lifts limits for one.
  { sql: 'HANDLER users OPEN', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'PREPARE s FROM @q', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'EXECUTE s', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'DO SLEEP(5)', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SET STATEMENT max_statement_time = 0 FOR SELECT 1', err: 'WRIT_SQL_UNPARSEABLE' },
  { sql: 'SET NAMES latin1', err: 'WRIT_SQL_UNPARSEABLE' },
  // Session variables are SET facts (never read-only); the worker refuses any but user variables.
  { sql: "SET sql_mode = ''", s: { kind: 'set', set: { variable: 'sql_mode' }, ro: false } },
  { sql: 'SET SESSION sql_log_bin = 0', s: { kind: 'set', set: { variable: 'sql_log_bin' }, ro: false } },
  { sql: 'SELECT master_gtid_wait(1)', s: { D: ['master_gtid_wait'], ro: false } },
  { sql: 'SELECT wait_for_executed_gtid_set(1)', s: { D: ['wait_for_executed_gtid_set'], ro: false } },
];

describe('classifyMysql', () => {
  it.each(cases.map((c) => [title(c.sql), c] as const))('%s', (_, c) => checkSql(classifyMysql(c.sql), c));

  it('names what each row source of a statement stands for (a derived table or CTE stands for no base table)', () => {
    const st = classifyMysql('SELECT name FROM (SELECT email AS name FROM customers) customers JOIN shop.t x ON 1').statements[0]!;
    expect(st.relations).toEqual(
      expect.arrayContaining([
        { name: 'customers', table: null },
        { name: 'customers', table: 'customers' },
        { name: 'x', table: 'shop.t' },
      ]),
    );
    expect(classifyMysql('WITH w AS (SELECT 1) SELECT * FROM w').statements[0]!.relations).toContainEqual({ name: 'w', table: null });
  });

  it("refuses '--' not followed by a blank (two minus signs to MySQL, which runs the rest of the line; a comment to the parser)", () => {
    for (const sql of [
      'SELECT 1 --0, name, email FROM customers',
      'SELECT id FROM orders WHERE id = 1 --0 UNION SELECT card_number FROM orders',
      "SELECT 1 --0, SLEEP(100), GET_LOCK('x', 1), LOAD_FILE('/etc/passwd')",
      'SELECT 1 ---0, name FROM customers',
      'SELECT id FROM products; SELECT 1 --0, email FROM customers',
      'SELECT 1--1',
      // A Unicode space is no blank to MySQL's lexer: '--' then U+00A0 or U+2003 is still two minus signs.
      'SELECT 1 --\u00a0x, name FROM customers',
      'SELECT 1 --\u2003x, name FROM customers',
    ]) {
      expect(classifyMysql(sql).error?.code, sql).toBe('WRIT_SQL_UNPARSEABLE');
    }
    // A real comment ('--' and a blank) still reads as one, and '--' inside a literal is text.
    expect(classifyMysql('SELECT 1 -- comment, name FROM customers').error).toBeUndefined();
    expect(classifyMysql('SELECT 1 --\tcomment').error).toBeUndefined();
    expect(classifyMysql("SELECT '--0' AS x").error).toBeUndefined();
  });

  it('reports the MySQL dialect', () => {
    expect(classifyMysql('SELECT 1').dialect).toBe('mysql');
    expect(classifyMysql('SELEC').dialect).toBe('mysql');
  });

  it('splits at top-level semicolons only', () => {
    expect(splitMysql("SELECT ';'; /* ; */ SELECT 2 -- ;\n")).toEqual(["SELECT ';'", '/* ; */ SELECT 2 -- ;']);
    expect(() => splitMysql('SELECT /*! 1 */')).toThrow(expect.objectContaining({ code: 'WRIT_SQL_UNPARSEABLE' }));
  });
});

describe('classifyMysql: a qualifier is the row source it names', () => {
  const cols = (sql: string) => classifyMysql(sql, 'shop').statements.flatMap((st) => st.columns.map((c) => `${c.table}.${c.column}`));
  it("follows aliases that swap two tables' names (the alias, not the table of that name)", () => {
    for (const sql of [
      'SELECT products.card_number FROM orders AS products JOIN products AS orders ON 1=1',
      'SELECT products.card_number FROM orders AS products JOIN products AS orders',
      "SELECT products.card_number FROM orders AS products JOIN products AS orders ON 1=1 WHERE products.card_number LIKE '4%'",
    ]) {
      expect(cols(sql), sql).toContain('shop.orders.card_number');
      expect(cols(sql), sql).not.toContain('shop.products.card_number');
    }
    // Unaliased and plainly aliased references resolve as before.
    expect(cols('SELECT o.card_number FROM orders o JOIN products p ON 1')).toContain('shop.orders.card_number');
    expect(cols('SELECT orders.card_number FROM orders JOIN products ON 1')).toContain('shop.orders.card_number');
  });

  it('reads a column named only in JOIN … USING from the tables it may come from (a comparison leaks it)', () => {
    expect(cols("SELECT id FROM orders JOIN (SELECT '4111111111111111' AS card_number) t USING (card_number)")).toContain('shop.orders.card_number');
    expect(cols('SELECT id FROM orders o1 JOIN orders o2 USING (card_number)')).toContain('shop.orders.card_number');
  });
});

describe('classifyMysql with the target default database', () => {
  const facts = (sql: string, db: string | null = 'shop') => classifyMysql(sql, db);
  const st = (sql: string, db: string | null = 'shop') => {
    const f = facts(sql, db);
    expect(f.error).toBeUndefined();
    return f.statements[0]!;
  };

  it('names every table with its database, however it is spelled', () => {
    for (const sql of ['SELECT * FROM customers', 'SELECT * FROM shop.customers', 'SELECT * FROM `shop`.`customers`', 'SELECT * FROM SHOP.Customers', 'SELECT * FROM `Customers`']) {
      expect(st(sql).tablesRead, sql).toEqual(['shop.customers']);
    }
    expect(st('DELETE FROM customers').tablesWritten).toEqual(['shop.customers']);
    expect(st('SELECT o.id FROM orders o JOIN other.customers c ON c.id = o.cid').tablesRead).toEqual(['shop.orders', 'other.customers']);
    expect(st('SELECT * FROM t WHERE id IN (SELECT id FROM customers)').tablesRead.sort()).toEqual(['shop.customers', 'shop.t']);
    expect(st('WITH c AS (SELECT email FROM customers) SELECT * FROM c').tablesRead).toEqual(['shop.customers']);
    expect(st('SELECT * FROM information_schema.tables JOIN mysql.user').tablesRead).toEqual(['information_schema.tables', 'mysql.user']);
    expect(facts('SELECT 1', 'Shop').database).toBe('shop');
  });

  it('names columns with the database and table, in lower case', () => {
    expect(st('SELECT SSN FROM Customers').columns).toEqual([{ table: 'shop.customers', column: 'ssn' }]);
    expect(st('SELECT c.ssn FROM customers c').columns).toEqual([{ table: 'shop.customers', column: 'ssn' }]);
    expect(st('SELECT `shop`.`customers`.`ssn` FROM customers').columns).toEqual([{ table: 'shop.customers', column: 'ssn' }]);
    expect(st('UPDATE customers SET ssn = 1 WHERE id = 2').columnsWritten).toEqual([{ table: 'shop.customers', column: 'ssn' }]);
    expect(st('SELECT * FROM customers').wholeRowTables).toEqual(['shop.customers']);
    expect(st('SELECT x FROM (SELECT 1 AS x FROM customers) customers').relations).toEqual(expect.arrayContaining([{ name: 'customers', table: 'shop.customers' }]));
  });

  it('places unknown unqualified routines in the database, and leaves reviewed built-ins alone', () => {
    expect(st('CALL p(1)').functions).toEqual(['shop.p']);
    expect(st('SELECT f(a), other.g(b), concat(a, b), sleep(1) FROM t')).toMatchObject({
      functions: ['shop.f', 'other.g', 'concat', 'sleep'],
      unknownFunctions: ['shop.f', 'other.g', 'sleep'],
      dangerousFunctions: ['sleep'],
    });
  });

  it('refuses USE, which would move unqualified names', () => {
    for (const db of ['shop', null]) {
      expect(facts('USE other', db).error?.code).toBe('WRIT_SQL_UNKNOWN');
      expect(facts('SELECT 1; USE other; SELECT * FROM shop.customers', db).error?.message).toMatch(/statement 2: USE/);
    }
    expect(classifyMysql('USE other').error).toBeUndefined(); // as written, for the worker, which refuses it itself
  });

  it('refuses a table name holding a dot, which would read as database.table', () => {
    for (const db of ['shop', null, undefined]) expect(classifyMysql('SELECT * FROM `shop.customers`', db).error?.code).toBe('WRIT_SQL_UNKNOWN');
  });

  it('refuses unqualified names when the default database is not known', () => {
    for (const sql of [
      'SELECT * FROM customers',
      'DELETE FROM customers',
      'SELECT * FROM shop.t WHERE id IN (SELECT id FROM customers)',
      'CALL p()',
      'SELECT f() FROM shop.t',
      'EXPLAIN SELECT * FROM customers',
    ]) {
      expect(facts(sql, null).error, sql).toMatchObject({ code: 'WRIT_SQL_UNKNOWN', message: expect.stringMatching(/without a database/) });
    }
    // A CTE's name is no table; built-ins are not routines of a database.
    expect(st('WITH x AS (SELECT id FROM shop.t) SELECT count(*), sleep(0) FROM x', null).tablesRead).toEqual(['shop.t']);
  });

  it('leaves names as written without a database argument (the worker places them itself)', () => {
    expect(classifyMysql('SELECT SSN FROM Customers').statements[0]).toMatchObject({ tablesRead: ['customers'], columns: [{ table: 'customers', column: 'ssn' }] });
  });
});

describe('filterColumns: masked-column reads the worker cannot mask (filters, ordering, grouping)', () => {
  const filt = (sql: string) =>
    classifyMysql(sql, 'shop')
      .statements.flatMap((s) => s.filterColumns ?? [])
      .map((c) => `${c.table}.${c.column}`);
  it.each([
    "SELECT id, name FROM customers WHERE email LIKE 'a%'",
    'SELECT id FROM customers ORDER BY email DESC',
    'SELECT id FROM customers WHERE length(email) = 17',
    'SELECT count(*) FROM customers GROUP BY email HAVING count(*) > 0',
    'SELECT DISTINCT email FROM customers',
    'SELECT email AS e FROM customers ORDER BY e',
    'SELECT id, email FROM customers ORDER BY 2',
    'SELECT x FROM (SELECT email AS x FROM customers) d WHERE x > 0',
    'SELECT c.id FROM customers c JOIN orders o ON o.note = c.email',
    'SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE email = 1)',
    "UPDATE customers SET plan = 'pro' WHERE email LIKE 'b%'",
  ])('%s reads shop.customers.email in a filter', (sql) => {
    expect(filt(sql)).toContain('shop.customers.email');
  });
  it.each(['SELECT id, email FROM customers', 'SELECT id, email FROM customers WHERE id = 1', 'SELECT id, (SELECT email FROM customers c2 WHERE c2.id = c.id) FROM customers c'])(
    '%s returns email as a field only',
    (sql) => {
      expect(filt(sql)).not.toContain('shop.customers.email');
    },
  );
});

describe('filterFunctions: functions called in a filter position', () => {
  const fns = (sql: string) => classifyMysql(sql, 'shop').statements.flatMap((s) => s.filterFunctions ?? []);
  it.each([
    ["SELECT 1 FROM DUAL WHERE email_of(1) LIKE 'a%'", 'shop.email_of'],
    ['SELECT id FROM customers ORDER BY email_of(id)', 'shop.email_of'],
    ["SELECT id FROM (SELECT id, email_of(id) AS e FROM customers) d WHERE d.e LIKE 'a%'", 'shop.email_of'],
    ["SELECT id FROM customers WHERE id IN (SELECT id FROM t WHERE crm.lookup(id) = 'x')", 'crm.lookup'],
    ['SELECT count(*) FROM customers GROUP BY id HAVING max(id) > 1', 'max'],
  ])('%s calls %s in a filter', (sql, fn) => {
    expect(fns(sql)).toContain(fn);
  });
  it.each(['SELECT email_of(id) AS e FROM customers', 'SELECT id, upper(name) FROM customers WHERE id = 1'])('%s calls none in a filter', (sql) => {
    expect(fns(sql)).toEqual([]);
  });
});

describe('orderDependent: what a statement computes from the order its rows arrive in', () => {
  const dep = (sql: string) => classifyMysql(sql, 'shop').statements.some((s) => s.orderDependent === true);
  it.each([
    'SELECT id FROM customers LIMIT 1',
    'SELECT id FROM customers ORDER BY plan',
    'SELECT GROUP_CONCAT(id) FROM customers',
    'SELECT JSON_ARRAYAGG(id) FROM customers',
    'SELECT id, ROW_NUMBER() OVER () AS r FROM customers',
    'SELECT @n := id FROM customers',
    'SELECT id INTO @x FROM customers',
    'SELECT id FROM (SELECT id FROM customers LIMIT 2) d',
  ])('%s depends on it', (sql) => {
    expect(dep(sql)).toBe(true);
  });
  it.each(['SELECT id FROM customers', 'SELECT DISTINCT id, plan FROM customers', 'SELECT count(*), max(id) FROM customers', 'SELECT id FROM customers UNION ALL SELECT 0'])('%s does not', (sql) => {
    expect(dep(sql)).toBe(false);
  });
});
