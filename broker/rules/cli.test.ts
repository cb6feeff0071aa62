import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPolicyCli } from './index.ts';

const POLICY = `
version: t1
targets:
  - { name: wh, kind: postgres, tags: [prod] }
  - { name: web1, kind: ssh, tags: [prod] }
rules:
  - id: read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] }, target: { name: [wh] }, sql: { kinds: [select] } }
  - id: writes
    effect: require_approval
    match: { principal: { groups: [eng] }, target: { name: [wh] }, sql: { kinds: [update] } }
    approval: { groups: [dba], count: 2, timeoutSec: 60 }
  - id: no-rm
    effect: deny
    match: { shell: { programs: [rm] } }
  - id: diag
    effect: allow
    match: { principal: { groups: [ops] }, shell: { programs: [uptime, df] } }
`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'writ-policy-cli-'));
  await writeFile(join(dir, 'p.yaml'), POLICY);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(argv: string[], stdin: string | string[] = ''): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const chunks = typeof stdin === 'string' ? [stdin] : stdin;
  const code = await runPolicyCli(argv, { stdin: Readable.from(chunks.map((c) => Buffer.from(c))), stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

function jsonLines(out: string): Record<string, unknown>[] {
  return out
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('writ policy eval', () => {
  it('writes exactly one JSON line per input line, in order, with effect, rules, reasons and facts', async () => {
    const input = [
      { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'SELECT 1' },
      { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'SELECT 1; DROP TABLE x' },
      { principal: { sub: 'e', groups: ['eng'] }, target: 'wh', sql: 'UPDATE t SET a = 1 WHERE id = 1' },
      { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'uptime && df -h' },
      { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'uptime; /bin/rm -rf /' },
    ]
      .map((x) => JSON.stringify(x))
      .join('\n');
    const { code, out } = await run(['eval', '--policy', join(dir, 'p.yaml')], input + '\n');
    expect(code).toBe(0);
    const lines = jsonLines(out);
    expect(lines).toHaveLength(5);
    expect(Object.keys(lines[0]!).slice(0, 3)).toEqual(['effect', 'rules', 'reasons']);
    expect(lines[0]).toMatchObject({ effect: 'allow', rules: ['read'], mode: 'read', facts: { dialect: 'postgres', statements: [{ kind: 'select' }] } });
    expect(lines[1]).toMatchObject({ effect: 'deny', rules: [], code: 'WRIT_POLICY_DENIED' });
    expect((lines[1]!.facts as { statements: unknown[] }).statements).toHaveLength(2);
    expect(lines[2]).toMatchObject({ effect: 'require_approval', rules: ['writes'], approval: { groups: ['dba'], count: 2, timeoutSec: 60 } });
    expect(lines[3]).toMatchObject({ effect: 'allow', rules: ['diag'], facts: { commands: [{ program: 'uptime' }, { program: 'df' }] } });
    expect(lines[4]).toMatchObject({ effect: 'deny', rules: ['no-rm'] });
    for (const l of lines) expect(l.policyVersion).toMatch(/^t1\+[0-9a-f]{16}$/);
  });

  it('answers a malformed line with a denial and an error, never crashing and never skipping a line', async () => {
    const input = [
      '{"principal":{"sub":"a","groups":["analysts"]},"target":"wh","sql":"SELECT 1"}',
      'not json at all',
      '',
      '[1,2,3]',
      '{"principal":{"sub":"a"},"target":"wh"}',
      '{"principal":{"sub":"a"},"target":"wh","sql":"SELECT 1","command":"ls"}',
      '{"principal":{"sub":"a"},"target":"nowhere","sql":"SELECT 1"}',
      '{"principal":{"sub":"a"},"target":"wh","sql":"SELECT 1","extra":true}',
      '{"principal":{"sub":"a"},"target":"wh","sql":"SELEC 1"}',
      '{"id":7,"principal":{"sub":"a","groups":["analysts"]},"target":"wh","sql":"SELECT 2"}',
      '{"principal":{"sub":"a","groups":["analysts"]},"target":"wh","sql":"SELECT 3"}',
    ];
    // Split mid-line and mid-character across chunks, with CRLF endings and no final newline.
    const text = input.join('\r\n');
    const cut = text.indexOf('not json') + 3;
    const { code, out } = await run(['eval', '--policy', join(dir, 'p.yaml')], [text.slice(0, cut), text.slice(cut)]);
    expect(code).toBe(0);
    const lines = jsonLines(out);
    expect(lines).toHaveLength(input.length);
    expect(lines[0]).toMatchObject({ effect: 'allow' });
    const malformed = (l: Record<string, unknown> | undefined, c: string) => {
      expect(l).toMatchObject({ effect: 'deny', rules: [], error: { code: c } });
      expect((l!.reasons as string[])[0]).toBeTypeOf('string');
    };
    malformed(lines[1], 'WRIT_BAD_JSON');
    malformed(lines[2], 'WRIT_BAD_JSON');
    malformed(lines[3], 'WRIT_BAD_REQUEST');
    malformed(lines[4], 'WRIT_BAD_REQUEST');
    malformed(lines[5], 'WRIT_BAD_REQUEST');
    malformed(lines[6], 'WRIT_UNKNOWN_TARGET');
    expect((lines[7]!.reasons as string[])[0]).toContain('extra: unknown key');
    expect(lines[8]).toMatchObject({ effect: 'deny', code: 'WRIT_SQL_UNPARSEABLE' });
    expect(lines[9]).toMatchObject({ id: 7, effect: 'allow' });
    expect(lines[10]).toMatchObject({ effect: 'allow' });
  });

  it('explains on request, takes targets from a Writ config, and evaluates at a given time', async () => {
    await writeFile(join(dir, 'writ.yaml'), 'targets:\n  - { name: other, kind: postgres, tags: [prod] }\n');
    const line = JSON.stringify({ principal: { sub: 'a', groups: ['analysts'] }, target: 'other', sql: 'SELECT 1' });
    const { out } = await run(['eval', '--policy', join(dir, 'p.yaml'), '--config', join(dir, 'writ.yaml'), '--explain', '--now', '2025-01-01T00:00:00Z'], line);
    const [l] = jsonLines(out);
    expect(l).toMatchObject({ effect: 'deny' });
    expect((l!.explain as { considered: { id: string; why: string }[] }).considered.find((c) => c.id === 'read')?.why).toMatch(/target other does not match target.name \[wh\]/);
  });

  it('refuses to start without a valid policy', async () => {
    expect((await run(['eval'])).code).toBe(2);
    await writeFile(join(dir, 'bad.yaml'), 'rules: [{ id: x, effect: allow, match: { sqll: {} } }]');
    const r = await run(['eval', '--policy', join(dir, 'bad.yaml')]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('rules[0].match.sqll: unknown key');
  });
});

describe('writ policy check', () => {
  it('reports schema errors with their paths and exits 1', async () => {
    await writeFile(join(dir, 'typo.yaml'), 'rules:\n  - { id: a, effect: allow, match: { sql: { tabels: [x], tables: ["{a"] } } }\n');
    const r = await run(['check', join(dir, 'typo.yaml')]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('error: rules[0].match.sql.tabels: unknown key');
    expect(r.out).toMatch(/error: rules\[0\]\.match\.sql\.tables\[0\]: invalid glob/);
  });

  it('reports unknown targets (error) and globs matching none (warning)', async () => {
    await writeFile(
      join(dir, 'targets.yaml'),
      `
targets: [{ name: wh, kind: postgres }]
rules:
  - { id: a, effect: allow, match: { target: { name: [wh, whx] } } }
  - { id: b, effect: allow, match: { target: { name: ["db-*"] } } }
  - { id: c, effect: allow, match: { target: { name: [wh] }, shell: { programs: [ls] } } }
`,
    );
    const r = await run(['check', join(dir, 'targets.yaml')]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('error: rules[0].match.target.name[1]: unknown target "whx"');
    expect(r.out).toContain('warning: rules[1].match.target.name[0]: pattern "db-*" matches no declared target');
    expect(r.out).toContain('warning: rules[2].match.shell: no named target is an ssh target');
  });

  it('reports shadowed rules as warnings; --strict turns them into a failure', async () => {
    await writeFile(
      join(dir, 'shadow.yaml'),
      `
rules:
  - { id: wide, effect: allow, match: { principal: { groups: [eng] }, sql: { kinds: [select, update] } } }
  - { id: narrow, effect: allow, match: { principal: { groups: [eng] }, target: { name: [wh] }, sql: { kinds: [select] } } }
`,
    );
    const r = await run(['check', join(dir, 'shadow.yaml')]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('warning: rules[1]: rule narrow is shadowed by rule wide (allow): it can never decide');
    expect((await run(['check', '--strict', join(dir, 'shadow.yaml')])).code).toBe(1);
    const ok = await run(['check', join(dir, 'p.yaml')]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/4 rules, version t1\+[0-9a-f]{16}: 0 errors, 0 warnings/);
  });
});

describe('writ policy test', () => {
  it('prints pass/fail per case and exits non-zero on a failure', async () => {
    await writeFile(
      join(dir, 'p.tests.yaml'),
      `
cases:
  - name: analysts read
    principal: { sub: a, groups: [analysts] }
    target: wh
    sql: SELECT 1
    expect: { effect: allow, rules: [read], mode: read }
  - name: wrong on purpose
    principal: { sub: a, groups: [analysts] }
    target: wh
    sql: DROP TABLE x
    expect: { effect: allow }
`,
    );
    const r = await run(['test', '--verbose', join(dir, 'p.yaml')]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('PASS');
    expect(r.out).toContain('analysts read');
    expect(r.out).toMatch(/FAIL .*wrong on purpose\n {4}effect: expected allow, got deny/);
    expect(r.out).toContain('1 passed, 1 failed');
  });

  it('fails a tests file that does not validate', async () => {
    await writeFile(join(dir, 'broken.tests.yaml'), 'policy: p.yaml\ncases: [{ name: x, principal: { sub: a }, target: wh, sql: "SELECT 1", expect: { effect: maybe } }]\n');
    const r = await run(['test', join(dir, 'broken.tests.yaml')]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/ERROR .*broken\.tests\.yaml is not a valid tests file:\n {4}cases\[0\]\.expect\.effect: /);
  });

  it('usage errors exit 2', async () => {
    expect((await run(['frobnicate'])).code).toBe(2);
    expect((await run(['test'])).code).toBe(2);
    expect((await run(['check', '--nope', 'x'])).code).toBe(2);
  });
});
