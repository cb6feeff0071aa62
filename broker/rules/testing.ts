/**
 * `writ policy test`: test cases kept beside a policy, as `opa test` does for Rego.
 * `payments.yaml` has its cases in `payments.tests.yaml`:
 *
 *   policy: payments.yaml          # optional; default: this file's name without `.tests`
 *   now: 2025-03-04T10:00:00Z      # optional default decision time
 *   cases:
 *     - name: analysts read orders
 *       principal: { sub: alice, groups: [analysts] }
 *       target: warehouse
 *       sql: SELECT id FROM orders
 *       expect: { effect: allow, rules: [analysts-read], mode: read }
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { toWritError, WritError } from '../../schemas/index.ts';
import { initClassifiers } from '../../classify/index.ts';
import { RulePolicy, type RuleDecision } from './engine.ts';
import { IntentPrincipalSchema, toPolicyInput } from './intent.ts';
import { EFFECT_VALUES, policyIssues, PolicyTargetSchema, type PolicyTarget } from './schema.ts';

const ExpectSchema = z.strictObject({
  effect: z.enum(EFFECT_VALUES),
  /** The deciding rule ids, in any order (exactly these). */
  rules: z.array(z.string()).optional(),
  mode: z.enum(['read', 'write']).optional(),
  /** The denial's error code (`WRIT_POLICY_DENIED`, `WRIT_SQL_UNPARSEABLE`, …). */
  code: z.string().optional(),
  /** Substrings that must occur in the reasons. */
  reasons: z.array(z.string()).optional(),
  /** Parts of the approval spec to check. */
  approval: z.strictObject({ groups: z.array(z.string()).optional(), count: z.number().int().optional(), timeoutSec: z.number().int().optional() }).optional(),
});

const TestCaseSchema = z
  .strictObject({
    /** Default: the SQL or command text. */
    name: z.string().min(1).optional(),
    principal: IntentPrincipalSchema,
    target: z.union([z.string().min(1), PolicyTargetSchema]),
    sql: z.string().optional(),
    command: z.string().optional(),
    now: z.iso.datetime({ offset: true }).optional(),
    expect: ExpectSchema,
  })
  .refine((c) => (c.sql === undefined) !== (c.command === undefined), { message: 'exactly one of sql or command' })
  .transform((c) => ({ ...c, name: c.name ?? (c.sql ?? c.command ?? '').replace(/\s+/g, ' ').slice(0, 100) }));
type TestCase = z.output<typeof TestCaseSchema>;

const TestFileSchema = z.strictObject({
  /** The policy file, relative to this file. */
  policy: z.string().optional(),
  /** Targets in addition to those the policy declares. */
  targets: z.array(PolicyTargetSchema).optional(),
  now: z.iso.datetime({ offset: true }).optional(),
  /** Named principals: a place to define YAML anchors (`&analyst`) that cases refer to (`*analyst`). */
  principals: z.record(z.string(), IntentPrincipalSchema).optional(),
  cases: z.array(TestCaseSchema).min(1),
});

interface CaseResult {
  name: string;
  pass: boolean;
  /** What differed, when it failed. */
  failures: string[];
  decision?: RuleDecision;
}

/** Runs cases against a policy (initClassifiers() must have resolved). Never throws for a bad case: it fails. */
function runCases(policy: RulePolicy, cases: readonly TestCase[], opts: { targets?: readonly PolicyTarget[]; now?: Date } = {}): CaseResult[] {
  const targets = new Map(policy.targets);
  for (const t of opts.targets ?? []) targets.set(t.name, t);
  return cases.map((c) => {
    let d: RuleDecision;
    try {
      d = policy.decide(toPolicyInput({ principal: c.principal, target: c.target, sql: c.sql, command: c.command, now: c.now }, targets, opts.now));
    } catch (e) {
      const err = toWritError(e);
      return { name: c.name, pass: false, failures: [`${err.code}: ${err.message}`] };
    }
    const failures = compare(c.expect, d);
    return { name: c.name, pass: failures.length === 0, failures, decision: d };
  });
}

function compare(x: z.output<typeof ExpectSchema>, d: RuleDecision): string[] {
  const f: string[] = [];
  if (d.effect !== x.effect) f.push(`effect: expected ${x.effect}, got ${d.effect} (${d.reasons.join('; ')})`);
  if (x.rules && [...x.rules].sort().join(',') !== [...d.rules].sort().join(',')) f.push(`rules: expected [${x.rules.join(', ')}], got [${d.rules.join(', ')}]`);
  if (x.mode && d.mode !== x.mode) f.push(`mode: expected ${x.mode}, got ${d.mode}`);
  if (x.code && d.code !== x.code) f.push(`code: expected ${x.code}, got ${d.code ?? '(none)'}`);
  for (const s of x.reasons ?? []) if (!d.reasons.some((r) => r.includes(s))) f.push(`reasons: none contains ${JSON.stringify(s)}`);
  if (x.approval) {
    const a = d.approval;
    if (!a) f.push('approval: expected an approval spec, got none');
    else {
      if (x.approval.count !== undefined && a.count !== x.approval.count) f.push(`approval.count: expected ${x.approval.count}, got ${a.count}`);
      if (x.approval.timeoutSec !== undefined && a.timeoutSec !== x.approval.timeoutSec) f.push(`approval.timeoutSec: expected ${x.approval.timeoutSec}, got ${a.timeoutSec}`);
      if (x.approval.groups && [...x.approval.groups].sort().join(',') !== [...a.groups].sort().join(','))
        f.push(`approval.groups: expected [${x.approval.groups.join(', ')}], got [${a.groups.join(', ')}]`);
    }
  }
  return f;
}

export interface TestFileResult {
  file: string;
  policyFile: string;
  results: CaseResult[];
}

/** The tests file for a path: itself when it ends in `.tests.yaml`/`.tests.yml`, else the one beside the policy. */
function testsFileFor(path: string): string {
  if (/\.tests\.ya?ml$/.test(path)) return path;
  return path.replace(/\.(ya?ml|json)$/, '') + '.tests.yaml';
}

/** Loads a tests file and its policy and runs every case. Throws WritError when either does not load. */
export async function runTestFile(path: string, opts: { extraTargets?: readonly PolicyTarget[] } = {}): Promise<TestFileResult> {
  const file = resolve(testsFileFor(path));
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(file, 'utf8'), { maxAliasCount: 10_000 });
  } catch (e) {
    throw new WritError('WRIT_BAD_REQUEST', `${file}: cannot read tests: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
  const r = TestFileSchema.safeParse(raw);
  if (!r.success) throw new WritError('WRIT_BAD_REQUEST', `${file} is not a valid tests file:\n${policyIssues(r.error).join('\n')}`);
  const policyFile = resolve(dirname(file), r.data.policy ?? basename(file).replace(/\.tests\.ya?ml$/, '.yaml'));
  let text: string;
  try {
    text = await readFile(policyFile, 'utf8');
  } catch (e) {
    throw new WritError('WRIT_POLICY_INVALID', `${file}: cannot read policy ${policyFile}`, { cause: e });
  }
  const policy = RulePolicy.fromText(text, policyFile);
  await initClassifiers();
  const results = runCases(policy, r.data.cases, {
    targets: [...(opts.extraTargets ?? []), ...(r.data.targets ?? [])],
    ...(r.data.now ? { now: new Date(r.data.now) } : {}),
  });
  return { file, policyFile, results };
}
