import { initClassifiers } from './broker/classify/index.ts';
import { RulePolicy, toPolicyInput } from './broker/rules/index.ts';
await initClassifiers();
const p = RulePolicy.fromText(`rules:
  - { id: d1, effect: deny, match: { sql: { tablesRead: ["hr.t1"] } } }
  - { id: d2, effect: deny, match: { sql: { tables: ["x*.t1"] } } }
  - { id: a, effect: allow, match: { sql: { kinds: [select] } } }
`);
const T = new Map([['wh', { name: 'wh', kind: 'postgres' as const, tags: [] }]]);
const x = p.explain(toPolicyInput({ principal: { sub: 'a' }, target: 'wh', sql: 'SELECT 1 FROM hr.t1' }, T));
console.log(x.decision.rules, x.considered.map(c=>c.id), x.skipped);
const y = p.explain(toPolicyInput({ principal: { sub: 'a' }, target: 'wh', sql: 'SELECT 1 FROM public.t1' }, T));
console.log(y.decision.rules, y.considered.map(c=>c.id), y.skipped);
