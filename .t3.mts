import { initClassifiers } from './broker/classify/index.ts';
import { RulePolicy, toPolicyInput } from './broker/rules/index.ts';
await initClassifiers();
const T = new Map([['wh', { name: 'wh', kind: 'postgres' as const, tags: [] }]]);
const p = RulePolicy.fromText('rules: [{id: a, effect: allow, match: {sql: {kinds: [select]}}}]');
const inp = toPolicyInput({ principal: { sub: 'a', groups: ['x'] }, target: 'wh', sql: `SELECT * FROM t` }, T);
for (let k = 0; k < 5; k++) {
let t = performance.now();
for (let i = 0; i < 200000; i++) p.decide(inp);
console.log('decide µs', (performance.now() - t) / 200);
}
