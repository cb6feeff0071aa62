/**
 * The classifier's claims about PostgreSQL, checked against a real server (test/helpers): attribute notation
 * really is a call on the whole row, names resolve as under the worker's pinned search_path, and the checked-in
 * catalogue is what the generator makes from the server it was generated from.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/index.ts';
import { classifySql, initClassifiers } from './index.ts';
import { PG_CATALOG_VERSION } from './pg-catalog-data.ts';

const SECRET = 'hunter2-topsecret';
let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  await initClassifiers();
  db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE TABLE public.secrets (id int, password text); INSERT INTO public.secrets VALUES (1, '${SECRET}')`);
    await admin.query('CREATE TABLE public.pg_foo (x int); INSERT INTO public.pg_foo VALUES (1)');
    // A schema named like the read role ($user) with a shadow table: the pinned search_path must ignore it.
    await admin.query(`CREATE SCHEMA "${db.roles.read.user}"; CREATE TABLE "${db.roles.read.user}".secrets (id int, password text)`);
    await admin.query(`GRANT USAGE ON SCHEMA "${db.roles.read.user}" TO "${db.roles.read.user}"; GRANT SELECT ON ALL TABLES IN SCHEMA "${db.roles.read.user}" TO "${db.roles.read.user}"`);
  } finally {
    await admin.end();
  }
  // As the worker connects: read role, search_path pinned as a startup option.
  client = new pg.Client({ connectionString: db.connectionString('read'), options: '-c search_path=pg_catalog,public' });
  await client.connect();
}, 120_000);

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

describe('attribute notation against the server', () => {
  const forms = [
    'SELECT s.row_to_json FROM secrets s',
    'SELECT (s).to_jsonb FROM secrets s',
    'SELECT s.to_json FROM secrets s',
    'SELECT secrets.json_agg FROM secrets',
    'SELECT public.secrets.row_to_json FROM public.secrets',
    'SELECT x.row_to_json FROM (SELECT * FROM secrets) x',
    'SELECT s.array_agg FROM secrets s',
  ];
  for (const sql of forms) {
    it(`every form the server runs as a row call is reported as one: ${sql}`, async () => {
      const res = await client.query(sql);
      expect(JSON.stringify(res.rows)).toContain(SECRET); // the server did call it on the whole row
      const s = classifySql(sql).statements[0];
      expect(s?.wholeRowTables).toContain('public.secrets');
      expect(s?.functions.length).toBeGreaterThan(0);
    });
  }
});

describe('name resolution against the server', () => {
  it('unqualified relations resolve where the server resolves them under the pinned search_path', async () => {
    for (const name of ['secrets', 'pg_foo', 'pg_class', 'pg_authid', 'pg_stats', 'pg_roles']) {
      const res = await client.query<{ nsp: string }>(`SELECT n.nspname AS nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, [name]);
      const server = `${res.rows[0]?.nsp}.${name}`;
      expect(classifySql(`SELECT * FROM ${name}`).statements[0]?.tablesRead, name).toEqual([server]);
    }
  });
});

describe('the generated catalogue', () => {
  it('is what the generator makes from the server (deterministic; regenerate when this fails on the same version)', async () => {
    const version = (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v;
    if (version !== PG_CATALOG_VERSION) return; // another server version: nothing to compare against
    const dir = mkdtempSync(join(tmpdir(), 'writ-pgcat-'));
    try {
      const out = join(dir, 'data.ts');
      const script = fileURLToPath(new URL('./gen-pg-catalog.ts', import.meta.url));
      const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
      await promisify(execFile)(tsx, [script, db.adminUrl, out], { timeout: 60_000 });
      expect(readFileSync(out, 'utf8')).toBe(readFileSync(new URL('./pg-catalog-data.ts', import.meta.url), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
