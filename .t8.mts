import { initClassifiers } from './broker/classify/index.ts';
import { RulePolicy, toPolicyInput } from './broker/rules/index.ts';
await initClassifiers();
const p = RulePolicy.fromText(`rules:
  - { id: a, effect: allow, match: { sql: { kinds: [select, drop] } } }
`);
const T = new Map([['wh', { name: 'wh', kind: 'postgres' as const, tags: [] }]]);
const inp = toPolicyInput({ principal: { sub: 'a' }, target: 'wh', sql: 'DELETE FROM x' }, T);
for (let r = 0; r < 5; r++) {
  const t = performance.now();
  for (let i = 0; i < 100000; i++) p.decide(inp);
  console.log(((performance.now() - t) * 10).toFixed(2), 'ns/op');
}
