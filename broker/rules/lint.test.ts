import { describe, expect, it } from 'vitest';
import { covers, lintPolicy, parsePolicyText } from './index.ts';

function shadowed(text: string): string[] {
  return lintPolicy(text)
    .findings.filter((f) => f.message.includes('shadowed'))
    .map((f) => f.message);
}

describe('shadowing check', () => {
  it('reports a rule an earlier allow always decides instead of', () => {
    expect(
      shadowed(`
rules:
  - { id: a, effect: allow, match: { sql: { kinds: [select, explain], tables: ["public.*"] } } }
  - { id: b, effect: allow, match: { principal: { groups: [x] }, sql: { kinds: [select], tables: [public.orders] } } }
`),
    ).toEqual(['rule b is shadowed by rule a (allow): it can never decide']);
  });

  it('reports an allow under a deny or an approval rule wherever they stand', () => {
    expect(
      shadowed(`
rules:
  - { id: b, effect: allow, match: { target: { name: [wh] }, sql: { kinds: [drop] } } }
  - { id: no-ddl, effect: deny, match: { sql: { kinds: [drop, create] } } }
  - { id: c, effect: allow, match: { principal: { groups: [eng] }, sql: { kinds: [update] } } }
  - { id: approve, effect: require_approval, match: { sql: { kinds: [update, delete] } }, approval: { groups: [dba], timeoutSec: 60 } }
`),
    ).toEqual(['rule b is shadowed by rule no-ddl (deny): it can never decide', 'rule c is shadowed by rule approve (require_approval): it can never decide']);
  });

  it('stays silent where it cannot prove it: later rules, narrower winners, list conditions, grant defaults', () => {
    expect(
      shadowed(`
rules:
  - { id: narrow, effect: allow, match: { sql: { kinds: [select], tables: [public.a] } } }
  - { id: deny-t, effect: deny, match: { sql: { tables: [public.secret] } } }
  - { id: grant-t, effect: allow, match: { sql: { kinds: [select], tables: [public.secret] } } }
  - { id: plain, effect: allow, match: { shell: { programs: [echo] } } }
  - { id: sudo-echo, effect: allow, match: { shell: { programs: [echo], wrappers: [sudo] } } }
  - { id: fn, effect: allow, match: { sql: { kinds: [select], functions: [pg_sleep] } } }
  - { id: wide, effect: allow, match: { sql: { kinds: [select] } } }
  - { id: esc, effect: require_approval, scope: any, match: { sql: { kinds: [select] } }, approval: { groups: [a], timeoutSec: 1 } }
`),
    ).toEqual([]);
  });

  it('covers() compares principals, targets, kinds and time', () => {
    const { doc } = parsePolicyText(`
rules:
  - { id: a, effect: deny, match: { principal: { groups: ["eng*"] }, target: { tags: [prod] } } }
  - { id: b, effect: allow, match: { principal: { groups: [eng-db] }, target: { tags: [prod, eu] }, sql: { kinds: [select] } } }
  - { id: c, effect: allow, match: { principal: { groups: [ops] }, target: { tags: [prod] } } }
  - { id: d, effect: deny, match: { time: { days: [sat, sun] } } }
`);
    const [a, b, c, d] = doc.rules;
    expect(covers(a!, b!)).toBe(true);
    expect(covers(a!, c!)).toBe(false);
    expect(covers(b!, a!)).toBe(false);
    expect(covers(d!, b!)).toBe(false);
  });
});

describe('the linter and the policy language of issue 10', () => {
  it('warns about true on a grant flag, which covers only what has the flag', () => {
    const f = lintPolicy(`
rules:
  - { id: a, effect: allow, match: { sql: { kinds: [select], dangerousFunctions: true } } }
  - { id: b, effect: allow, match: { sql: { kinds: [select], modifyingCte: any } } }
  - { id: c, effect: deny, match: { sql: { dangerousFunctions: true } } }
`).findings.filter((x) => x.message.includes('covers only'));
    expect(f.map((x) => x.path)).toEqual(['rules[0].match.sql.dangerousFunctions']);
    expect(f[0]!.message).toMatch(/write `any`/);
  });

  it('compares argv forms whole, reads any as no condition, and knows an unnamed function is not covered', () => {
    expect(
      shadowed(`
rules:
  - { id: a, effect: allow, match: { shell: { programs: [systemctl], argv: { systemctl: [status, "*.service"] } } } }
  - { id: b, effect: allow, match: { shell: { programs: [systemctl], argv: { systemctl: [stop, "*.service"] } } } }
  - { id: c, effect: allow, match: { sql: { kinds: [select] } } }
  - { id: d, effect: allow, match: { principal: { groups: [x] }, sql: { kinds: [select], functions: ["*", ts_stat] } } }
  - { id: e, effect: allow, match: { sql: { kinds: [select], modifyingCte: any } } }
  - { id: f, effect: allow, match: { principal: { groups: [x] }, sql: { kinds: [select], modifyingCte: true } } }
`),
    ).toEqual(['rule f is shadowed by rule e (allow): it can never decide']);
  });
});
