/**
 * Public entry of broker/rules/: the policy document, the rule engine, the policy
 * lifecycle over the `writ_policy` bucket, and the `writ policy` toolchain.
 */
export {
  parsePolicyText,
  parsePolicyDocument,
  policyIssues,
  formatPath,
  PolicyDocumentSchema,
  RuleSchema,
  type PolicyDocument,
  type PolicyDocumentInput,
  type PolicyRule,
  type PolicyTarget,
  type ApprovalSpec,
  type ParsedPolicy,
} from './schema.ts';
export { RulePolicy, BUILTIN_LIMITS, type RuleDecision, type RuleTrace, type Explanation } from './engine.ts';
export { PRIVILEGE_WRAPPERS, SAFE_ENV, SAFE_WRITES } from './compile.ts';
export { PolicyStore, ReloadingPolicy, ACTIVE_KEY, type LoadedPolicy, type PolicyMeta, type PolicyWatch, type ReloadLog } from './store.ts';
export { lintPolicy, covers, type LintFinding, type LintResult } from './lint.ts';
export { runCases, runTestFile, testsFileFor, type CaseResult, type TestCase, type TestFileResult } from './testing.ts';
export { toPolicyInput, classifyFor, EvalIntentSchema, type EvalIntent } from './intent.ts';
export { runPolicyCli, evalLine, type PolicyCliIo } from './cli.ts';
