/**
 * What is masked does not come back, through the live stack against a real PostgreSQL. The
 * policy here lets every statement reach the worker (a config rule with no conditions), so
 * masking itself is the layer under attack. The `secrets` table holds values that no value
 * detector recognises: only column rules and derived-value tracking can protect them.
 * Each query either is refused or comes back without the secret, in any field of the
 * outcome (rows, errors, notices), forwards or reversed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WritClient } from '../../client/index.ts';
import { SCHEMA_SQL, startStack, type Stack } from '../fixture.ts';

const SECRETS = ['hunter2 t0pz3cr3tpw', 'Qz7xKp93LwVt', '4716-2281-9930'];
const PIN = 739155;
/** The digit groups of the `partial` column's value, forwards and reversed. */
const PARTIAL_GROUPS = ['4716', '2281', '9930', '6174', '1822', '0399'];

let s: Stack;
let c: WritClient;

beforeAll(async () => {
  s = await startStack({
    schemaSql: `${SCHEMA_SQL}
      CREATE TABLE secrets (id int PRIMARY KEY, owner text NOT NULL, password text NOT NULL, pin int NOT NULL, code text NOT NULL);
      INSERT INTO secrets VALUES (1, 'alice', '${SECRETS[0]}', ${PIN}, '${SECRETS[2]}'), (2, 'bob', '${SECRETS[1]}', 1, 'x');
      GRANT SELECT ON secrets TO PUBLIC;
      CREATE FUNCTION leak(secrets) RETURNS text LANGUAGE sql AS 'SELECT $1.password || $1.code';`,
    config: {
      policy: {
        rules: [{ id: 'anything-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' }],
        masking: {
          columns: [{ column: 'public.secrets.password' }, { column: 'public.secrets.pin' }, { column: 'public.secrets.code', strategy: 'partial' }],
          detectors: [],
        },
      },
    },
  });
  c = s.client(await s.token('mallory', ['analysts']));
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

/** Every 6-character window of a secret, forwards and reversed: a partial reconstruction is a leak too. */
function fragments(secret: string): string[] {
  const out = new Set<string>();
  const rev = [...secret].reverse().join('');
  for (const v of [secret, rev]) for (let i = 0; i + 6 <= v.length; i++) out.add(v.slice(i, i + 6));
  return [...out];
}

const CLASSES: Record<string, string[]> = {
  'errors quote values': [
    'SELECT password::int FROM secrets',
    'SELECT password::json FROM secrets',
    'SELECT password::uuid FROM secrets',
    'SELECT password::date FROM secrets',
    'SELECT code::numeric FROM secrets',
    "SELECT to_number(password, '999') FROM secrets",
    'SELECT 1 / (pin - pin) FROM secrets',
    "SELECT CASE WHEN password <> '' THEN password::int END FROM secrets",
    'SELECT jsonb_build_object(owner, password)::text::int FROM secrets',
    'SELECT xmlparse(document password) FROM secrets',
  ],
  'derived values': [
    'SELECT reverse(password) AS r FROM secrets',
    'SELECT reverse(code) AS r FROM secrets',
    'SELECT substr(code, 6) AS a, substr(code, 1, 5) AS b FROM secrets',
    'SELECT right(code, 9) AS tail FROM secrets',
    'SELECT pin + 0 AS p FROM secrets',
    'SELECT pin::text AS p FROM secrets',
    'SELECT upper(password) AS u FROM secrets',
    "SELECT string_agg(password, ',') AS a FROM secrets",
    'SELECT array_agg(code) AS a FROM secrets',
    "SELECT translate(password, 'abc', 'abc') AS t FROM secrets",
    "SELECT regexp_replace(code, '-', '', 'g') AS t FROM secrets",
    'SELECT md5(password) AS h FROM secrets',
  ],
  'whole rows and attribute notation': [
    'SELECT s FROM secrets s',
    'SELECT s.row_to_json FROM secrets s',
    'SELECT (s).to_jsonb FROM secrets s',
    'SELECT row_to_json(s) FROM secrets s',
    'SELECT to_jsonb(s.*) FROM secrets s',
    'SELECT s::text FROM secrets s',
    // A user-defined function of the row, called by attribute notation: the classifier sees a column.
    'SELECT s.leak FROM secrets s',
    'SELECT (s).leak AS x FROM secrets s',
    'SELECT secrets.leak FROM secrets',
  ],
  'functions that read by name': [
    "SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', password) FROM secrets')",
    "SELECT query_to_xml('SELECT * FROM secrets', true, false, '')",
    "SELECT table_to_xml('secrets', true, false, '')",
    "SELECT query_to_xml('SELECT password AS x FROM secrets', true, false, '')::text AS t",
  ],
  'partial reconstruction': [
    'SELECT reverse(code) AS r FROM secrets',
    'SELECT substr(code, 1, 4) AS a FROM secrets',
    'SELECT substr(code, 6, 4) AS b FROM secrets',
    'SELECT substr(code, 11) AS c FROM secrets',
    'SELECT ascii(substr(code, 1, 1)) AS a, ascii(substr(code, 2, 1)) AS b FROM secrets',
    "SELECT split_part(code, '-', 1) AS a FROM secrets",
    'SELECT length(code) AS n FROM secrets',
    "SELECT position('-' in code) AS n FROM secrets",
  ],
  'views and CTEs': ['WITH x AS (SELECT password AS p FROM secrets) SELECT p FROM x', 'SELECT q.p FROM (SELECT password AS p FROM secrets) q', 'SELECT * FROM secrets UNION ALL SELECT * FROM secrets'],
};

const DERIVED = new Set(['derived values', 'partial reconstruction']);

describe('masked values do not come back', () => {
  for (const [cls, queries] of Object.entries(CLASSES)) {
    describe(cls, () => {
      for (const sql of queries) {
        it(sql, async () => {
          const o = await c.run({ target: 'db', sql }, { timeoutMs: 30_000 });
          expect(['succeeded', 'failed', 'denied']).toContain(o.status);
          const text = JSON.stringify({ result: o.result, error: o.error });
          for (const secret of SECRETS) for (const f of fragments(secret)) expect(text, `${o.status}: ${text.slice(0, 400)}`).not.toContain(f);
          expect(text).not.toContain(String(PIN));
          // Anything derived from a masked column is masked whole, numbers included.
          if (DERIVED.has(cls) && o.status === 'succeeded') expect(o.result!.columns.filter((col) => !col.masked).map((col) => col.name)).toEqual([]);
          // `partial` shows part of a bare column only; nothing derived from it keeps any of its groups.
          for (const g of PARTIAL_GROUPS) expect(text, `partial group ${g}: ${text.slice(0, 400)}`).not.toContain(g);
        });
      }
    });
  }
});
