/**
 * A MariaDB target through the whole path (broker, worker, masking) against a real mariadbd
 * started by the test helper: column-origin masking that aliases, views, derived tables, CTEs
 * and UNION do not get around; the worker's limits, rollback, reset and at-most-once.
 */
import { jetstream } from '@nats-io/jetstream';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSession } from '../audit/index.ts';
import { loadOrCreateGrantKey } from '../broker/index.ts';
import { newId, type WritClient } from '../client/index.ts';
import { sha256Hex, type GrantClaims, type Order } from '../schemas/index.ts';
import type { Stack } from './fixture.ts';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';
import type { TestMariadb } from './helpers/index.ts';

const enc = new TextEncoder();
const SECRETS = ['alice@example.com', 'bob@example.org', 'carol@example.net'];
let s: Stack;
let m: TestMariadb;
let analyst: WritClient;
let dba: WritClient;

async function until<T>(f: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

let stack: MariaStack;
beforeAll(async () => {
  stack = await startMariaStack();
  ({ s, m } = stack);
  analyst = s.client(await s.token('alice', ['analysts']));
  dba = s.client(await s.token('dan', ['dba']));
});
afterAll(async () => {
  await stack?.stop();
});

async function read(sql: string) {
  const o = await analyst.run({ target: 'maria', sql });
  expect(o.error, `${sql}: ${JSON.stringify(o.error)}`).toBeUndefined();
  expect(o.status).toBe('succeeded');
  return o.result!;
}

function expectNoSecrets(value: unknown) {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

async function count(sql: string): Promise<number> {
  const [rows] = (await m.admin([sql])) as Array<Array<{ n: number }>>;
  return Number(rows![0]!.n);
}

describe('a masked MariaDB column stays masked however the statement reaches it', () => {
  it('returns unmasked columns as they are and masks the sensitive one through an alias', async () => {
    const r = await read('SELECT c.name AS who, email AS e FROM customers c ORDER BY id');
    expect(r.rows[0]).toEqual(['Alice Example', '[MASKED:column]']);
    expect(r.columns).toEqual([
      { name: 'who', masked: false },
      { name: 'e', masked: true, reasons: [`column:${m.database}.customers.email`] },
    ]);
  });

  const cases: Array<[string, string]> = [
    ['a view', 'SELECT * FROM customer_contacts'],
    ['a view of a view', 'SELECT contact FROM contacts_again'],
    ['a view under an alias', 'SELECT v.contact FROM customer_contacts v'],
    ['a view aliased as the base table', 'SELECT name FROM customer_contacts customers'],
    ['a merged derived table named like the base table', 'SELECT name FROM (SELECT email AS name FROM customers) customers'],
    // LIMIT keeps MariaDB from merging it (DISTINCT would too, but compares the masked values: WRIT_MASKED_FILTER).
    ['a materialized derived table', 'SELECT name FROM (SELECT email AS name FROM customers ORDER BY id LIMIT 10) s'],
    ['a CTE named like the base table', 'WITH customers AS (SELECT email AS name FROM customers) SELECT name FROM customers'],
    // UNION ALL: a plain UNION compares the rows, so it is refused as a filter on the masked column (mysql-masked-filters).
    ['UNION behind a harmless first branch', 'SELECT name FROM customers UNION ALL SELECT email FROM customers'],
    ['an expression', "SELECT concat(email, '') AS x FROM customers"],
    ['a scalar subquery', 'SELECT (SELECT email FROM customers WHERE id = 1) AS x'],
    ['an aggregate', 'SELECT max(email) FROM customers'],
    ['GROUP_CONCAT', 'SELECT group_concat(email) FROM customers WHERE id = 1'],
  ];
  it.each(cases)('through %s', async (_, sql) => {
    const r = await read(sql);
    expect(r.rows.length).toBeGreaterThan(0);
    expectNoSecrets(r.rows);
  });
});

describe('the MariaDB worker holds its limits', () => {
  it('denies a write to a reader before anything runs', async () => {
    const o = await analyst.run({ target: 'maria', sql: "UPDATE customers SET plan = 'x' WHERE id = 1" });
    expect(o.status).toBe('denied');
    expect(await count("SELECT count(*) AS n FROM customers WHERE plan = 'x'")).toBe(0);
  });

  it('rolls back a write that affects more rows than rowsAffected allows', async () => {
    const o = await dba.run({ target: 'maria', sql: "UPDATE customers SET plan = 'gone' WHERE id > 0" });
    expect(o.status).toBe('failed');
    expect(o.error?.code).toBe('WRIT_ROW_LIMIT');
    expect(o.error?.message).toMatch(/affected 3 rows; the limit is 1; it was rolled back/);
    expect(await count("SELECT count(*) AS n FROM customers WHERE plan = 'gone'")).toBe(0);
  });

  it('rolls back a whole batch when a later statement fails, and scrubs the error that quotes a masked value', async () => {
    const o = await dba.run({ target: 'maria', sql: "INSERT INTO events (note) VALUES ('batch-1'); UPDATE customers SET email = 'alice@example.com' WHERE id = 2" });
    expect(o.status).toBe('failed');
    expect(o.error?.code).toBe('WRIT_EXEC_FAILED');
    expect(o.error?.message).toMatch(/withheld because the statement touches a masked column/);
    expectNoSecrets(o.error);
    expect(await count("SELECT count(*) AS n FROM events WHERE note = 'batch-1'")).toBe(0);
  });

  it('refuses transaction control and implicit commits inside a batch, running nothing', async () => {
    for (const sql of ["INSERT INTO events (note) VALUES ('tx'); COMMIT", "INSERT INTO events (note) VALUES ('tx'); CREATE TABLE x (a int)", 'START TRANSACTION']) {
      const o = await dba.run({ target: 'maria', sql });
      expect(o.error?.code, sql).toBe('WRIT_UNSUPPORTED');
    }
    expect(await count("SELECT count(*) AS n FROM events WHERE note = 'tx'")).toBe(0);
  });

  it("refuses SET of a system variable that holds the worker's limits", async () => {
    const o = await dba.run({ target: 'maria', sql: 'SET SESSION max_statement_time = 0' });
    expect(o.error?.code).toBe('WRIT_UNSUPPORTED');
  });

  it('stops a statement at its time limit', async () => {
    const o = await dba.run({ target: 'maria', sql: 'SELECT count(*) FROM seq_1_to_1000000000 a WHERE a.seq % 7 = 3' });
    expect(o.error?.code, JSON.stringify(o.error)).toBe('WRIT_EXEC_TIMEOUT');
  });

  it("resets the connection before the next intent: one intent's user variables never reach another's", async () => {
    expect((await dba.run({ target: 'maria', sql: "SET @carry = 'from-the-last-intent'" })).status).toBe('succeeded');
    const o = await dba.run({ target: 'maria', sql: 'SELECT @carry AS v' });
    expect(o.result?.rows).toEqual([[null]]);
  });

  it("reads a text the way the classifier did, whatever the server's global sql_mode (ANSI_QUOTES, NO_BACKSLASH_ESCAPES)", async () => {
    const [rows] = (await m.admin(['SELECT @@GLOBAL.sql_mode AS mode'])) as Array<Array<{ mode: string }>>;
    const mode = rows![0]!.mode;
    await m.admin(["SET GLOBAL sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'"]);
    try {
      // To the classifier, one string literal and no table; under NO_BACKSLASH_ESCAPES, a read of customers.
      const hidden = await read("SELECT 'a\\' , plan FROM customers -- '");
      expect(hidden.rows).toEqual([["a' , plan FROM customers -- "]]);
      // To the classifier, a string; under ANSI_QUOTES, the column.
      const quoted = await read('SELECT "plan" AS p FROM customers ORDER BY id');
      expect(quoted.rows).toEqual([['plan'], ['plan'], ['plan']]);
    } finally {
      await m.admin([`SET GLOBAL sql_mode = '${mode}'`]);
    }
  });

  it('cuts a result at the row limit and says so', async () => {
    await m.admin(["INSERT INTO events (note) SELECT concat('row-', seq) FROM seq_1_to_120"]);
    const r = await read('SELECT note FROM events');
    expect(r.rows).toHaveLength(50);
    expect(r.truncated).toBe(true);
  });
});

describe('what the MariaDB worker runs, and how often', () => {
  function signedOrder(sql: string, mode: 'read' | 'write' = 'write', limits: GrantClaims['limits'] = { rows: 10, seconds: 5 }): Order {
    const { signer } = loadOrCreateGrantKey(s.config.grants.keyFile);
    const id = newId();
    const sessionId = newId('s');
    const now = Math.floor(Date.now() / 1000);
    const claims: GrantClaims = {
      gid: id,
      iid: id,
      sid: sessionId,
      tgt: 'maria',
      kind: 'mysql',
      mode,
      sha256: sha256Hex(sql),
      iat: now - 5,
      exp: now + 60,
      limits,
      mask: {},
      policyVersion: 'test',
      sub: 'test',
    };
    return { v: 1, type: 'order', intentId: id, sessionId, target: 'maria', command: { kind: 'sql', sql }, grant: signer.sign(claims), stateRevision: 1 };
  }

  it('runs a validly signed order published three times exactly once', async () => {
    const order = signedOrder("INSERT INTO events (note) VALUES ('replayed')");
    const js = jetstream(s.nc);
    for (let i = 0; i < 3; i++) await js.publish(s.names.exec('mysql', 'maria'), enc.encode(JSON.stringify(order)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.filter((e) => e.type === 'exec.refused').length >= 2 && ev.some((e) => e.type === 'exec.finished') ? ev : undefined;
    });
    expect(events.filter((e) => e.type === 'exec.refused').map((e) => (e.payload as { code: string }).code)).toEqual(['WRIT_ALREADY_CLAIMED', 'WRIT_ALREADY_CLAIMED']);
    expect(await count("SELECT count(*) AS n FROM events WHERE note = 'replayed'")).toBe(1);
  });

  it('fails closed on a versioned comment the server would execute, at the broker and at the worker', async () => {
    const sql = 'SELECT name FROM customers /*!50000 UNION SELECT email FROM customers */';
    const o = await analyst.run({ target: 'maria', sql });
    expect(o.status).toBe('denied');
    expect(JSON.stringify(o)).not.toContain('alice@example.com');
    // A grant for the exact text (as a compromised broker might sign): the worker classifies it again and runs nothing.
    const order = signedOrder("INSERT INTO events (note) VALUES ('x') /*!50000 , ('versioned') */");
    await jetstream(s.nc).publish(s.names.exec('mysql', 'maria'), enc.encode(JSON.stringify(order)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.some((e) => e.type === 'exec.finished') ? ev : undefined;
    });
    const fin = events.find((e) => e.type === 'exec.finished')!.payload as { status: string; error?: { code: string } };
    expect(fin.status).toBe('failed');
    expect(fin.error?.code).toBe('WRIT_SQL_UNPARSEABLE');
    expect(await count("SELECT count(*) AS n FROM events WHERE note IN ('x', 'versioned')")).toBe(0);
  });

  async function finished(order: Order) {
    await jetstream(s.nc).publish(s.names.exec('mysql', 'maria'), enc.encode(JSON.stringify(order)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.some((e) => e.type === 'exec.finished') ? ev : undefined;
    });
    return events.find((e) => e.type === 'exec.finished')!.payload as { status: string; truncated?: boolean; rowCount?: number; error?: { code: string } };
  }

  it('stops reading a result past its byte limit while it streams, and says it was cut', async () => {
    // Five rows of 200 kB against a 10 kB budget: the connection is closed after about 95 kB.
    const fin = await finished(signedOrder("SELECT repeat('x', 200000) FROM seq_1_to_5", 'read', { rows: 10, seconds: 5, bytes: 10_000 }));
    expect(fin.status).toBe('succeeded');
    expect(fin.truncated).toBe(true);
    expect(fin.rowCount).toBe(0);
  });

  it('the read user cannot write even with a read grant for a write (the server is the boundary)', async () => {
    const order = signedOrder("INSERT INTO events (note) VALUES ('by-reader')", 'read');
    await jetstream(s.nc).publish(s.names.exec('mysql', 'maria'), enc.encode(JSON.stringify(order)));
    const events = await until(async () => {
      const ev = await readSession({ nc: s.nc, names: s.names, sessionId: order.sessionId });
      return ev.some((e) => e.type === 'exec.finished') ? ev : undefined;
    });
    expect((events.find((e) => e.type === 'exec.finished')!.payload as { status: string }).status).toBe('failed');
    expect(await count("SELECT count(*) AS n FROM events WHERE note = 'by-reader'")).toBe(0);
  });
});

describe('the server', () => {
  it('had its version checked when the worker started', () => {
    expect(s.logs.find((l) => l.msg === 'MySQL target version checked')).toMatchObject({ target: 'maria', version: expect.stringMatching(/^10\.\d+\.\d+-MariaDB/) });
  });
});

describe('the pool', () => {
  it('the worker runs as the least-privilege users, not as root', async () => {
    const c = await mysql.createConnection({ host: m.host, port: m.port, user: m.users.read.user, password: m.users.read.password, database: m.database });
    try {
      await expect(c.query("INSERT INTO events (note) VALUES ('direct')")).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
    } finally {
      await c.end();
    }
  });
});
