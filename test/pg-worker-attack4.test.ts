/**
 * Fourth attack on the PostgreSQL worker (PostgresExecutor.run), against a real server, where
 * test/pg-worker-attack.test.ts, -attack2, -attack3, test/pg-read-attack.test.ts and
 * test/masked-filters.test.ts do not reach. Name resolution the classifier gets wrong (a FROM
 * function at a subquery's level, a name that is also a FROM alias, column alias lists on a CTE
 * reference, a join alias or a multi-star subquery), and changes the server's per-table counts do
 * not show (table rewrites and drops, and a drop that subtracts from the batch's own count).
 * Tests named "D…" are defects this attack found, fixed: each fails without its fix. "holds" tests held.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initClassifiers } from '../classify/index.ts';
import type { Limits } from '../schemas/index.ts';
import { toWritError } from '../schemas/index.ts';
import { maskRows, MaskingSpecSchema, sensitiveColumns } from '../masking/index.ts';
import { PostgresExecutor } from '../workers/postgres/index.ts';
import { errorContextOf, type ExecOutput } from '../workers/executor.ts';
import { createTestDatabase, pgTarget, runSql, type TestDatabase } from './helpers/index.ts';

let db: TestDatabase;
let admin: pg.Client;
let ex: PostgresExecutor;

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  const ro = db.roles.read.user;
  const rw = db.roles.write.user;
  await admin.query(`
    CREATE TABLE secrets (id int, password text);
    INSERT INTO secrets VALUES (1, 'hunter2');
    CREATE TABLE other (id int, k int);
    INSERT INTO other VALUES (1, 10);
    GRANT SELECT ON secrets, other TO ${ro}, ${rw};
    CREATE SCHEMA own AUTHORIZATION ${rw};
    GRANT USAGE ON SCHEMA own TO ${ro};
    CREATE TABLE own.items (id int, v text);
    INSERT INTO own.items SELECT g, 'orig' FROM generate_series(1, 10) g;
    CREATE TABLE own.gone (id int);
    INSERT INTO own.gone SELECT generate_series(1, 10);
    CREATE TABLE own.scratch (id int);
    ALTER TABLE own.items OWNER TO ${rw};
    ALTER TABLE own.gone OWNER TO ${rw};
    ALTER TABLE own.scratch OWNER TO ${rw};
  `);
  ex = new PostgresExecutor(pgTarget(db, 1) as ConstructorParameters<typeof PostgresExecutor>[0]);
});
afterAll(async () => {
  await ex?.close();
  await admin?.end();
  await db?.drop();
});

type Mode = 'read' | 'write';
const MASK = { columns: [{ column: 'public.secrets.password' }], detectors: [] };
const run = (sql: string, mode: Mode = 'read', limits: Limits = {}, mask: unknown = MASK): Promise<ExecOutput> => runSql(ex, sql, { mode, limits, mask });
const outcome = (p: Promise<ExecOutput>) =>
  p.then(
    (r) => (r.type === 'rows' ? { rows: r.rows } : { stream: true }),
    (e: unknown) => ({ error: toWritError(e).code, sqlstate: toWritError(e).details?.sqlstate }),
  );
/** What the agent would see after the runtime's masking (workers/runtime.ts maps fields so), or the error code. */
async function seen(sql: string, mode: Mode = 'read'): Promise<string> {
  try {
    const r = await run(sql, mode);
    if (r.type !== 'rows') return 'stream';
    const spec = MaskingSpecSchema.parse(MASK);
    const fields = r.fields.map((f) => {
      if (f.origin !== null) return { name: f.name, origin: f.origin, ...(f.wholeRow ? { wholeRow: true } : {}), ...(f.tableColumns ? { tableColumns: f.tableColumns } : {}) };
      const sensitive = f.sources?.length ? sensitiveColumns(spec, f.sources) : [];
      return { name: f.name, origin: null, ...(sensitive.length ? { sensitiveSources: sensitive } : {}), ...(f.opaque ? { opaque: f.opaque } : {}) };
    });
    return JSON.stringify(maskRows({ fields, rows: r.rows }, spec).rows);
  } catch (e) {
    return toWritError(e).code;
  }
}

/** Refused, or the same answer whatever the masked value is (the filter tells nothing). */
async function filterAnswers(sql: string, mode: Mode = 'read'): Promise<boolean> {
  const h = await outcome(run(sql.replaceAll('%P%', 'hunter2'), mode));
  const z = await outcome(run(sql.replaceAll('%P%', 'zzz'), mode));
  return JSON.stringify(h) !== JSON.stringify(z);
}
const count = async (sql: string) => Number((await admin.query(sql)).rows[0].n);

describe('masked values through names the classifier resolves otherwise than the server', () => {
  it('D1: a FROM function in a subquery makes an outer unqualified masked column invisible (filter)', async () => {
    expect(await filterAnswers("SELECT id FROM secrets WHERE EXISTS (SELECT 1 FROM generate_series(1, 1) g WHERE password LIKE '%P%')")).toBe(false);
  });

  it('D1: …and the masked value comes back in the clear as a computed field', async () => {
    expect(await seen('SELECT (SELECT password FROM generate_series(1, 1) g) AS p FROM secrets')).not.toMatch(/hunter2/);
  });

  it("D1: …and an error quoting it is not traced to the masked column (the runtime would show the server's text)", async () => {
    const e = await run('SELECT (SELECT password::int FROM generate_series(1, 1) g) AS p FROM secrets').then(
      () => null,
      (x: unknown) => x,
    );
    expect(String((e as Error | null)?.message)).toMatch(/hunter2/);
    const ctx = errorContextOf(e);
    expect(ctx?.opaque === true || ctx?.sources.includes('public.secrets.password') === true).toBe(true);
  });

  it('D2: a masked column named like another FROM item alias is read as that item whole (filter)', async () => {
    expect(await filterAnswers("SELECT s.id FROM secrets s, other AS password WHERE password LIKE '%P%'")).toBe(false);
    expect(await filterAnswers("SELECT s.id FROM secrets s, generate_series(1, 1) AS password(z) WHERE password LIKE '%P%'")).toBe(false);
  });

  it('D2: …and in the clear as a computed field', async () => {
    expect(await seen("SELECT password || '' AS p FROM secrets s, generate_series(1, 1) AS password(z)")).not.toMatch(/hunter2/);
  });

  it("D3: a CTE referenced with a column alias list (FROM c AS c2(i, x)) loses its outputs' sources (filter)", async () => {
    expect(await filterAnswers("WITH c AS (SELECT id, password FROM secrets) SELECT 1 FROM c AS c2(i, x) WHERE x LIKE '%P%'")).toBe(false);
  });

  it('holds: the CTE-alias-list value read as a computed field is masked (its sources still reach the masked column)', async () => {
    expect(await seen("WITH c AS (SELECT id, password FROM secrets) SELECT x || '' AS p FROM c AS c2(i, x)")).not.toMatch(/hunter2/);
  });

  it('D4: a column alias list on a join alias or a multi-star subquery renames the masked column out of sight (filter)', async () => {
    expect(await filterAnswers("SELECT 1 FROM (secrets s JOIN other o ON o.id = s.id) AS j(a, b, c, d) WHERE j.b LIKE '%P%'")).toBe(false);
    expect(await filterAnswers("SELECT 1 FROM (SELECT * FROM secrets a, other b) q(i, x, j, k) WHERE x LIKE '%P%'")).toBe(false);
  });

  it('D4: …and in the clear as a computed field', async () => {
    expect(await seen("SELECT j.b || '' AS p FROM (secrets s JOIN other o ON o.id = s.id) AS j(a, b, c, d)")).not.toMatch(/hunter2/);
  });

  it('holds: set-returning functions in the select list, collations and row comparisons over the masked column are refused', async () => {
    for (const sql of [
      "SELECT id, regexp_matches(password, '^h') FROM secrets",
      'SELECT id, jsonb_path_query(to_jsonb(password), \'$ ? (@ like_regex "^h")\') FROM secrets',
      "SELECT id, string_to_table(password, 'h') FROM secrets",
      'SELECT id FROM secrets s WHERE (s.password COLLATE "C") LIKE \'h%\'',
      "SELECT id FROM secrets s WHERE ROW(s.id, s.password) = ROW(1, 'hunter2')",
    ]) {
      expect([sql, (await outcome(run(sql))) as unknown]).toEqual([sql, { error: 'WRIT_MASKED_FILTER', sqlstate: undefined }]);
    }
  });

  it('holds: the same names resolve to the masked column without the trick (control)', async () => {
    expect(await seen('SELECT password AS p FROM secrets')).not.toMatch(/hunter2/);
    expect(await seen("SELECT password || '' AS p FROM secrets s, generate_series(1, 1) g")).not.toMatch(/hunter2/);
  });
});

describe('the rowsAffected limit, where the write role owns its tables', () => {
  it('D5: ALTER TABLE … ALTER COLUMN … TYPE … USING rewrites every row under rowsAffected 0', async () => {
    await run("ALTER TABLE own.items ALTER COLUMN v TYPE text USING 'pwned'", 'write', { rowsAffected: 0 }).catch(() => undefined);
    expect(await count("SELECT count(*)::int AS n FROM own.items WHERE v = 'pwned'")).toBe(0);
  });

  it('D6: DROP TABLE removes every row under rowsAffected 0 (TRUNCATE is refused for that)', async () => {
    await run('DROP TABLE own.gone', 'write', { rowsAffected: 0 }).catch(() => undefined);
    expect(await count("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'gone'")).toBe(1);
  });

  it("D7: dropping a table that holds the earlier intent's pending counts subtracts them from the batch's count", async () => {
    await admin.query("UPDATE own.items SET v = 'orig'");
    // Intent 1: 100 rows, within its own limit (committed or not, the backend's counters keep them).
    await outcome(run('INSERT INTO own.scratch SELECT generate_series(1, 100)', 'write', { rowsAffected: 100 }));
    // Intent 2, same pooled connection: five one-row UPDATEs under rowsAffected 1, then the drop.
    const sql = `${[1, 2, 3, 4, 5].map((i) => `UPDATE own.items SET v = 'a' WHERE id = ${i}`).join('; ')}; DROP TABLE own.scratch`;
    await run(sql, 'write', { rowsAffected: 1 }).catch(() => undefined);
    expect(await count("SELECT count(*)::int AS n FROM own.items WHERE v = 'a'")).toBeLessThanOrEqual(1);
  });
});

describe("what a view is, read for each intent (the MySQL worker's third attack, F3, on PostgreSQL)", () => {
  it('traces a view that CREATE OR REPLACE VIEW pointed at the masked column since the worker last read it', async () => {
    await admin.query(`CREATE VIEW vnotes AS SELECT id, k::text AS note FROM other; GRANT SELECT ON vnotes TO ${db.roles.read.user}`);
    try {
      // The runtime masks a view column whose view draws on a masked base column (viewSources).
      const sources = async () => {
        const r = await run('SELECT note FROM vnotes', 'read');
        return r.type === 'rows' ? (r.fields[0]?.viewSources ?? []) : [];
      };
      expect(await sources()).not.toContain('public.secrets.password');
      // Same OID: a cache by OID kept the old base columns.
      await admin.query('CREATE OR REPLACE VIEW vnotes AS SELECT id, password AS note FROM secrets');
      expect(await sources()).toContain('public.secrets.password');
    } finally {
      await admin.query('DROP VIEW IF EXISTS vnotes');
    }
  });
});
