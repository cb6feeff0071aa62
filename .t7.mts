import { initClassifiers } from './broker/classify/index.ts';
import { RulePolicy, toPolicyInput } from './broker/rules/index.ts';
await initClassifiers();
const p = RulePolicy.fromText(`rules:
  - { id: d1, effect: deny, match: { sql: { kinds: [drop] } } }
  - { id: a, effect: allow, match: { sql: { kinds: [select, drop] } } }
  - { id: e, effect: require_approval, scope: any, match: { sql: { readOnly: false } }, approval: { groups: [x], timeoutSec: 5 } }
`);
const T = new Map([['wh', { name: 'wh', kind: 'postgres' as const, tags: [] }]]);
for (const q of ['SELECT 1', 'SELECT 1; DROP TABLE x', 'SELECT * FROM x FOR UPDATE', 'DELETE FROM x']) {
  const inp = toPolicyInput({ principal: { sub: 'a' }, target: 'wh', sql: q }, T);
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < 100000; i++) p.decide(inp);
    console.log(q, ((performance.now() - t) * 10).toFixed(2), 'ns/op');
  }
}
