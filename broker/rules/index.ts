export { RulePolicy } from './engine.ts';
