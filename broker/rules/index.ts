/**
 * Public entry of broker/rules/: the policy document, the rule engine, the policy
 * lifecycle over the `writ_policy` bucket, and the `writ policy` toolchain.
 */
export { parsePolicyText, parsePolicyDocument, type PolicyDocumentInput, type PolicyTarget } from './schema.ts';
export { RulePolicy } from './engine.ts';
export { PolicyStore, ReloadingPolicy } from './store.ts';
export { lintPolicy, covers } from './lint.ts';
export { runTestFile } from './testing.ts';
export { toPolicyInput, classifyFor } from './intent.ts';
export { runPolicyCli } from './cli.ts';
