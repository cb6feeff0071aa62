import { initClassifiers } from './broker/classify/index.ts';
import { RulePolicy } from './broker/rules/engine.ts';
import { toPolicyInput } from './broker/rules/intent.ts';
await initClassifiers();
const p = RulePolicy.fromText(`
version: "1"
targets:
  - { name: wh, kind: postgres, tags: [prod] }
  - { name: web1, kind: ssh }
rules:
  - id: analysts-read
    effect: allow
    mode: read
    match: { principal: { groups: [analysts] }, target: { name: [wh] }, sql: { kinds: [select, explain] } }
  - id: no-catalog
    effect: deny
    match: { sql: { tablesRead: ["pg_catalog.pg_authid", "pg_catalog.pg_shadow"] } }
  - id: writes-approval
    effect: require_approval
    match: { principal: { groups: [eng] }, sql: { kinds: [insert, update, delete, select] } }
    approval: { groups: [dba], count: 2, timeoutSec: 600 }
  - id: ops-diag
    effect: allow
    match: { principal: { groups: [ops] }, shell: { programs: [ls, cat, grep, journalctl, df], args: { journalctl: ["-u", "*", "-n", "{1..9}*", "--no-pager"] } } }
`);
const T = p.targets;
for (const x of [
  { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'SELECT * FROM orders' },
  { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'SELECT 1; DROP TABLE x' },
  { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'EXPLAIN ANALYZE DELETE FROM x' },
  { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'WITH d AS (DELETE FROM x RETURNING *) SELECT * FROM d' },
  { principal: { sub: 'a', groups: ['analysts'] }, target: 'wh', sql: 'select * from pg_authid' },
  { principal: { sub: 'e', groups: ['eng'] }, target: 'wh', sql: 'update t set a=1 where id=2' },
  { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'ls -la /var/log | grep err 2>/dev/null' },
  { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'cat /etc/passwd > /tmp/x' },
  { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'sudo cat /etc/shadow' },
  { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'journalctl -u nginx -n 50' },
  { principal: { sub: 'o', groups: ['ops'] }, target: 'web1', command: 'journalctl -f' },
]) {
  const input = toPolicyInput(x, T);
  const d = p.decide(input);
  console.log(d.effect, d.rules, d.reasons, d.mode);
  const e = p.explain(input);
  if (d.effect !== e.decision.effect) console.log('MISMATCH');
  console.log('   ', e.considered.map((c) => `${c.id}:${c.matched}:${c.why}`).join(' | '));
}
console.log(p.version);
