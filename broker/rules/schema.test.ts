import { describe, expect, it } from 'vitest';
import { WritError } from '../../schemas/index.ts';
import { parsePolicyDocument, parsePolicyText, RulePolicy } from './index.ts';

function issuesOf(text: string): string[] {
  try {
    parsePolicyText(text);
  } catch (e) {
    expect(e).toBeInstanceOf(WritError);
    expect((e as WritError).code).toBe('WRIT_POLICY_INVALID');
    return (e as WritError).details?.issues as string[];
  }
  throw new Error('expected the policy to be refused');
}

const rule = (match: string, extra = '') => `
rules:
  - id: r0
    effect: allow
    match: { principal: { groups: [a] } }
  - id: r1
    effect: deny
    match: { principal: { groups: [b] } }
  - id: r2
    effect: allow
    match: { principal: { groups: [c] } }
  - id: r3
    effect: allow${extra}
    match: ${match}
`;

describe('policy schema', () => {
  it('names the path of a misspelt condition: rules[3].match.sql.tabels: unknown key', () => {
    expect(issuesOf(rule('{ sql: { tabels: [public.x] } }'))).toEqual(['rules[3].match.sql.tabels: unknown key']);
  });

  it('refuses unknown keys at every level', () => {
    expect(issuesOf('rulez: []')).toEqual(['rulez: unknown key']);
    expect(issuesOf(rule('{ principal: { group: [x] } }'))).toEqual(['rules[3].match.principal.group: unknown key']);
    expect(issuesOf(rule('{ shell: { program: [ls] } }'))).toEqual(['rules[3].match.shell.program: unknown key']);
    expect(issuesOf(rule('{}', '\n    approvers: 2'))).toEqual(['rules[3].approvers: unknown key']);
  });

  it('refuses an invalid glob with its path', () => {
    const [line] = issuesOf(rule('{ sql: { tables: ["public.{a,b"] } }'));
    expect(line).toMatch(/^rules\[3\]\.match\.sql\.tables\[0\]: invalid glob "public\.\{a,b": unclosed "\{"/);
  });

  it('refuses an invalid argument regex and an unknown time zone', () => {
    expect(issuesOf(rule('{ shell: { args: { ls: [{ regex: "(" }] } } }'))[0]).toMatch(/^rules\[3\]\.match\.shell\.args\.ls\[0\]\.regex: invalid regex/);
    expect(issuesOf(rule('{ time: { days: [mon], tz: Mars/Olympus } }'))).toEqual(['rules[3].match.time.tz: unknown time zone "Mars/Olympus"']);
    expect(issuesOf(rule('{ time: { from: "25:00" } }'))[0]).toMatch(/^rules\[3\]\.match\.time\.from: expected HH:MM/);
  });

  it('refuses a statement kind the classifier does not have', () => {
    expect(issuesOf(rule('{ sql: { kinds: [selec] } }'))[0]).toMatch(/^rules\[3\]\.match\.sql\.kinds\[0\]: /);
  });

  it('checks rule-level consistency: ids, approval, scope, deny without grant fields', () => {
    expect(issuesOf('rules: [{ id: x, effect: allow }, { id: x, effect: deny }]')).toEqual(['rules[1].id: duplicate rule id "x" (also rules[0])']);
    expect(issuesOf('rules: [{ id: x, effect: require_approval }]')).toEqual(['rules[0].approval: required when effect is require_approval']);
    expect(issuesOf('rules: [{ id: x, effect: allow, approval: { groups: [a], timeoutSec: 5 } }]')).toEqual(['rules[0].approval: only allowed when effect is require_approval']);
    expect(issuesOf('rules: [{ id: x, effect: allow, scope: any }]')).toEqual(['rules[0].scope: an allow rule must cover every statement or command (scope: all)']);
    expect(issuesOf('rules: [{ id: x, effect: deny, limits: { rows: 5 } }]')).toEqual(['rules[0].limits: has no meaning on a deny rule']);
    expect(issuesOf('rules: [{ id: x, effect: allow, limits: { rowz: 5 } }]')).toEqual(['rules[0].limits.rowz: unknown key']);
    expect(issuesOf('targets: [{ name: a, kind: ssh }, { name: a, kind: postgres }]')).toEqual(['targets[1].name: duplicate target "a"']);
  });

  it('reports every problem at once', () => {
    const issues = issuesOf('rules: [{ id: "", effect: permit, match: { sqll: {} } }]');
    expect(issues).toHaveLength(3);
    expect(issues.join('\n')).toMatch(/rules\[0\]\.id/);
    expect(issues.join('\n')).toMatch(/rules\[0\]\.effect/);
    expect(issues).toContain('rules[0].match.sqll: unknown key');
  });

  it('reports YAML syntax errors with a line', () => {
    const [line] = issuesOf('rules:\n  - id: x\n   effect: allow\n');
    expect(line).toMatch(/^\(yaml\): .*line 3/);
    expect(issuesOf('- just\n- a list')).toEqual(['(root): expected a mapping']);
  });

  it('versions a policy by the hash of its canonical JSON, plus its declared version', () => {
    const a = parsePolicyText('version: "7"\nrules: [{ id: x, effect: deny }]');
    const b = parsePolicyDocument({ rules: [{ effect: 'deny', id: 'x' }], version: '7' });
    expect(a.hash).toMatch(/^[0-9a-f]{16}$/);
    expect(a.hash).toBe(b.hash); // key order and formatting do not matter
    expect(a.version).toBe(`7+${a.hash}`);
    expect(parsePolicyText('rules: []').version).toMatch(/^[0-9a-f]{16}$/);
    expect(parsePolicyText('rules: [{ id: y, effect: deny }]').hash).not.toBe(parsePolicyText('rules: [{ id: x, effect: deny }]').hash);
    expect(RulePolicy.fromText('# nothing\n').ruleCount).toBe(0);
  });

  it('freezes the validated document', () => {
    const p = parsePolicyText('rules: [{ id: x, effect: deny }]');
    expect(Object.isFrozen(p.doc.rules[0])).toBe(true);
  });
});
