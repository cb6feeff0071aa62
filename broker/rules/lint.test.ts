import { describe, expect, it } from 'vitest';
import { covers, lintPolicy, parsePolicyText } from './index.ts';

function shadowed(text: string): string[] {
  return lintPolicy(text).findings.filter((f) => f.message.includes('shadowed')).map((f) => f.message);
}

describe('shadowing check', () => {
  it('reports a rule an earlier allow always decides instead of', () => {
    expect(shadowed(`
rules:
  - { id: a, effect: allow, match: { sql: { kinds: [select, explain], tables: ["public.*"] } } }
  - { id: b, effect: allow, match: { principal: { groups: [x] }, sql: { kinds: [select], tables: [public.orders] } } }
`)).toEqual(['rule b is shadowed by rule a (allow): it can never decide']);
  });

  it('reports an allow under a deny or an approval rule wherever they stand', () => {
    expect(shadowed(`
rules:
  - { id: b, effect: allow, match: { target: { name: [wh] }, sql: { kinds: [drop] } } }
  - { id: no-ddl, effect: deny, match: { sql: { kinds: [drop, create] } } }
  - { id: c, effect: allow, match: { principal: { groups: [eng] }, sql: { kinds: [update] } } }
  - { id: approve, effect: require_approval, match: { sql: { kinds: [update, delete] } }, approval: { groups: [dba], timeoutSec: 60 } }
`)).toEqual(['rule b is shadowed by rule no-ddl (deny): it can never decide', 'rule c is shadowed by rule approve (require_approval): it can never decide']);
  });

  it('stays silent where it cannot prove it: later rules, narrower winners, list conditions, grant defaults', () => {
    expect(shadowed(`
rules:
  - { id: narrow, effect: allow, match: { sql: { kinds: [select], tables: [public.a] } } }
  - { id: deny-t, effect: deny, match: { sql: { tables: [public.secret] } } }
  - { id: grant-t, effect: allow, match: { sql: { kinds: [select], tables: [public.secret] } } }
  - { id: plain, effect: allow, match: { shell: { programs: [echo] } } }
  - { id: sudo-echo, effect: allow, match: { shell: { programs: [echo], wrappers: [sudo] } } }
  - { id: fn, effect: allow, match: { sql: { kinds: [select], functions: [pg_sleep] } } }
  - { id: wide, effect: allow, match: { sql: { kinds: [select] } } }
  - { id: esc, effect: require_approval, scope: any, match: { sql: { kinds: [select] } }, approval: { groups: [a], timeoutSec: 1 } }
`)).toEqual([]);
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
