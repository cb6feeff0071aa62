/**
 * The policy document: YAML validated by a strict zod schema. Unknown keys are refused
 * and every error names its path (`rules[3].match.sql.tabels: unknown key`), because a
 * misspelt condition that were silently ignored would widen an allow rule.
 */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { canonicalJson, deepFreeze, LimitsSchema, sha256Hex, TARGET_KINDS, TargetNameSchema, WritError } from '../../schemas/index.ts';
import { SQL_KINDS } from '../../classify/index.ts';
import type { ArgvSpec } from './args.ts';
import { globProblem, regexProblem } from './glob.ts';

/** A glob (picomatch syntax, `dot: true`), validated when the policy loads. */
const Glob = z.string().superRefine((p, ctx) => {
  const why = globProblem(p);
  if (why) ctx.addIssue({ code: 'custom', message: `invalid glob ${JSON.stringify(p)}: ${why}` });
});
const Globs = z.array(Glob).min(1);

const Regex = z.strictObject({
  /** A JavaScript regular expression (flag `u`), tested with RegExp.test: anchor it with ^…$. */
  regex: z
    .string()
    .min(1)
    .superRefine((p, ctx) => {
      const why = regexProblem(p);
      if (why) ctx.addIssue({ code: 'custom', message: `invalid regex: ${why}` });
    }),
});

/**
 * A condition on a flag: `true` the fact must be set, `false` it must not be, `any` either
 * (no condition; it lifts a grant's default). Under scope `all` it holds for every statement.
 */
const Flag = z.union([z.boolean(), z.literal('any')]);
export type FlagValue = z.output<typeof Flag>;

const ArgPatternSchema = z.union([Glob, Regex]);

/** Reports each problem of an argv form at its own path: `argv.systemctl[2]: …`. */
function checkForm(form: unknown[], path: (string | number)[], ctx: z.RefinementCtx): void {
  form.forEach((e, i) => {
    const at = [...path, i];
    if (e !== null && typeof e === 'object' && !Array.isArray(e) && 'rest' in e) {
      const keys = Object.keys(e).filter((k) => k !== 'rest');
      if (keys.length > 0) ctx.addIssue({ code: 'custom', path: [...at, keys[0]!], message: 'unknown key' });
      const rest = (e as { rest: unknown }).rest;
      if (i !== form.length - 1) ctx.addIssue({ code: 'custom', path: at, message: '{ rest } must be the last element of a form' });
      if (rest === true) return;
      if (!Array.isArray(rest) || rest.length === 0) {
        ctx.addIssue({ code: 'custom', path: [...at, 'rest'], message: 'expected true (any further non-option arguments) or a non-empty list of patterns' });
        return;
      }
      rest.forEach((p, j) => issuesOf(ArgPatternSchema.safeParse(p), [...at, 'rest', j], ctx));
      return;
    }
    issuesOf(ArgPatternSchema.safeParse(e), at, ctx);
  });
}

function issuesOf(r: { success: boolean; error?: z.ZodError }, at: (string | number)[], ctx: z.RefinementCtx): void {
  if (r.success || !r.error) return;
  for (const i of r.error.issues) {
    // A union's own message says nothing; its branches' do.
    const message = i.code === 'invalid_union' ? 'expected a glob, { regex }, or { rest }' : i.message;
    ctx.addIssue({ code: 'custom', path: [...at, ...i.path], message });
  }
}

/** Per program: one form (a list of position patterns) or a list of alternative forms. */
const ArgvSchema = z
  .record(z.string().min(1), z.array(z.unknown()))
  .superRefine((spec, ctx) => {
    for (const [prog, v] of Object.entries(spec)) {
      const forms = v.length > 0 && v.every((e) => Array.isArray(e));
      if (forms) v.forEach((f, i) => checkForm(f as unknown[], [prog, i], ctx));
      else checkForm(v, [prog], ctx);
    }
  })
  .transform((v) => v as ArgvSpec); // one list for the config, the messages and the policy (schemas/messages.ts)
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export const EFFECT_VALUES = ['allow', 'deny', 'require_approval'] as const;

const SqlKindSchema = z.enum(SQL_KINDS);

const PrincipalMatchSchema = z.strictObject({
  /** Subject globs; the principal's `sub` must match one. */
  sub: Globs.optional(),
  /** Group globs; one of the principal's groups must match one. */
  groups: Globs.optional(),
  /** Issuer globs; the token's `iss` must match one. */
  issuer: Globs.optional(),
});

const TargetMatchSchema = z.strictObject({
  /** Target name globs. */
  name: Globs.optional(),
  /** Target kinds. */
  kind: z.array(z.enum(TARGET_KINDS)).min(1).optional(),
  /** Tag globs; every one must match a tag of the target. */
  tags: Globs.optional(),
});

const SqlMatchSchema = z.strictObject({
  kinds: z.array(SqlKindSchema).min(1).optional(),
  notKinds: z.array(SqlKindSchema).min(1).optional(),
  objectTypes: Globs.optional(),
  tablesRead: Globs.optional(),
  tablesWritten: Globs.optional(),
  tables: Globs.optional(),
  columns: Globs.optional(),
  functions: Globs.optional(),
  denyFunctions: Globs.optional(),
  dangerousFunctions: Flag.optional(),
  whereless: Flag.optional(),
  trivialWhere: Flag.optional(),
  modifyingCte: Flag.optional(),
  selectInto: Flag.optional(),
  rowLocks: Flag.optional(),
  readOnly: Flag.optional(),
  requestsReadWrite: Flag.optional(),
  setVariables: Globs.optional(),
  copy: z
    .strictObject({
      direction: z.enum(['to', 'from']).optional(),
      program: Flag.optional(),
      file: Flag.optional(),
    })
    .optional(),
  minStatements: z.number().int().positive().optional(),
  maxStatements: z.number().int().positive().optional(),
  dialect: z.enum(['postgres', 'mysql']).optional(),
});

const ShellMatchSchema = z.strictObject({
  programs: Globs.optional(),
  notPrograms: Globs.optional(),
  /** Per program (a literal name as written, or `*` for every program): the patterns each argument must match. */
  args: z.record(z.string().min(1), z.array(ArgPatternSchema).min(1)).optional(),
  /**
   * Per program: the arguments position by position, anchored at both ends; `{ rest: true }`
   * (any further non-option arguments) or `{ rest: [patterns] }` last; a list of such forms
   * for alternatives.
   */
  argv: ArgvSchema.optional(),
  wrappers: Globs.optional(),
  env: Globs.optional(),
  pathsRead: Globs.optional(),
  pathsWritten: Globs.optional(),
  redirections: Flag.optional(),
  network: Flag.optional(),
  opaque: Flag.optional(),
  constructs: Globs.optional(),
  minCommands: z.number().int().positive().optional(),
  maxCommands: z.number().int().positive().optional(),
});

const HHMM = z.string().regex(/^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'expected HH:MM (00:00-24:00)');

const TimeMatchSchema = z.strictObject({
  days: z.array(z.enum(DAYS)).min(1).optional(),
  from: HHMM.optional(),
  to: HHMM.optional(),
  /** IANA time zone; default UTC. */
  tz: z
    .string()
    .superRefine((tz, ctx) => {
      try {
        new Intl.DateTimeFormat('en-US', { timeZone: tz });
      } catch {
        ctx.addIssue({ code: 'custom', message: `unknown time zone ${JSON.stringify(tz)}` });
      }
    })
    .optional(),
});

const MatchSchema = z.strictObject({
  principal: PrincipalMatchSchema.optional(),
  target: TargetMatchSchema.optional(),
  sql: SqlMatchSchema.optional(),
  shell: ShellMatchSchema.optional(),
  time: TimeMatchSchema.optional(),
});

const ApprovalSchema = z.strictObject({
  /** Groups whose members may approve (literal names). */
  groups: z.array(z.string().min(1)).min(1),
  /** Distinct approvers needed. Default 1. */
  count: z.number().int().min(1).max(20).default(1),
  /** How long the request stays open, seconds. */
  timeoutSec: z
    .number()
    .int()
    .positive()
    .max(7 * 86_400),
  /** The longest time-bound access window an approver may grant with this rule, seconds; unset: none. */
  windowMaxSec: z.number().int().positive().optional(),
});

/** The masking spec handed to the worker (validated there; see docs/policy.md). */
const MaskingSchema = z.record(z.string(), z.unknown());

const RuleSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'a rule id is 1-128 characters of A-Z a-z 0-9 _ . : - (starting alphanumeric)'),
  description: z.string().max(2_000).optional(),
  effect: z.enum(EFFECT_VALUES),
  /** `all`: every statement/command must match (default for allow and require_approval); `any`: one is enough (default for deny). */
  scope: z.enum(['all', 'any']).optional(),
  match: MatchSchema.default({}),
  mode: z.enum(['read', 'write']).optional(),
  limits: LimitsSchema.optional(),
  masking: MaskingSchema.optional(),
  approval: ApprovalSchema.optional(),
});

export const PolicyTargetSchema = z
  .strictObject({
    name: TargetNameSchema,
    kind: z.enum(TARGET_KINDS),
    tags: z.array(z.string()).default([]),
    description: z.string().optional(),
    /** kind mysql only: the default database unqualified names are placed in (as the config's targets[].database). */
    database: z.string().min(1).max(64).optional(),
  })
  .refine((t) => t.database === undefined || t.kind === 'mysql', { message: 'only a mysql target has a database', path: ['database'] });

const PolicyDocumentSchema = z
  .strictObject({
    /** Declared version, recorded next to the content hash. */
    version: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_.:-]+$/, 'a version is A-Z a-z 0-9 _ . : -')
      .optional(),
    description: z.string().optional(),
    targets: z.array(PolicyTargetSchema).optional(),
    defaults: z
      .strictObject({
        limits: LimitsSchema.optional(),
        masking: MaskingSchema.optional(),
      })
      .default({}),
    rules: z.array(RuleSchema).default([]),
  })
  .superRefine((doc, ctx) => {
    const ids = new Map<string, number>();
    doc.rules.forEach((r, i) => {
      const at = (...p: (string | number)[]) => ['rules', i, ...p];
      const prev = ids.get(r.id);
      if (prev !== undefined) ctx.addIssue({ code: 'custom', path: at('id'), message: `duplicate rule id ${JSON.stringify(r.id)} (also rules[${prev}])` });
      ids.set(r.id, i);
      if (r.effect === 'require_approval' && !r.approval) ctx.addIssue({ code: 'custom', path: at('approval'), message: 'required when effect is require_approval' });
      if (r.effect !== 'require_approval' && r.approval) ctx.addIssue({ code: 'custom', path: at('approval'), message: 'only allowed when effect is require_approval' });
      if (r.effect === 'allow' && r.scope === 'any') ctx.addIssue({ code: 'custom', path: at('scope'), message: 'an allow rule must cover every statement or command (scope: all)' });
      if (r.effect === 'deny' && (r.mode || r.limits || r.masking))
        ctx.addIssue({ code: 'custom', path: at(r.mode ? 'mode' : r.limits ? 'limits' : 'masking'), message: 'has no meaning on a deny rule' });
      const sql = r.match.sql;
      if (sql?.minStatements && sql.maxStatements && sql.minStatements > sql.maxStatements)
        ctx.addIssue({ code: 'custom', path: at('match', 'sql', 'minStatements'), message: 'greater than maxStatements' });
      const sh = r.match.shell;
      if (sh?.minCommands && sh.maxCommands && sh.minCommands > sh.maxCommands) ctx.addIssue({ code: 'custom', path: at('match', 'shell', 'minCommands'), message: 'greater than maxCommands' });
      const t = r.match.time;
      if (t && !t.days && !t.from && !t.to) ctx.addIssue({ code: 'custom', path: at('match', 'time'), message: 'needs days, from or to' });
    });
    const names = new Set<string>();
    doc.targets?.forEach((t, i) => {
      if (names.has(t.name)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'name'], message: `duplicate target ${JSON.stringify(t.name)}` });
      names.add(t.name);
    });
  });

/** A policy document as written. */
export type PolicyDocumentInput = z.input<typeof PolicyDocumentSchema>;
/** A validated policy document (defaults applied). */
export type PolicyDocument = z.output<typeof PolicyDocumentSchema>;
export type PolicyRule = PolicyDocument['rules'][number];
type RuleMatch = PolicyRule['match'];
export type SqlMatch = NonNullable<RuleMatch['sql']>;
export type ShellMatch = NonNullable<RuleMatch['shell']>;
export type TimeMatch = NonNullable<RuleMatch['time']>;
export type PolicyTarget = z.output<typeof PolicyTargetSchema>;
/** The approval a require_approval decision asks for. */
export type ApprovalSpec = z.output<typeof ApprovalSchema>;

/** `rules[3].match.sql`: the path notation every policy error uses. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_$][\w$]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out || '(root)';
}

/** One line per problem; an unknown key is reported at its own path. */
export function policyIssues(error: z.ZodError): string[] {
  const out: string[] = [];
  for (const i of error.issues) {
    if (i.code === 'unrecognized_keys') for (const k of i.keys) out.push(`${formatPath([...i.path, k])}: unknown key`);
    else out.push(`${formatPath(i.path)}: ${i.message}`);
  }
  return out;
}

/** A validated document with its content hash and the version string derived from it. */
export interface ParsedPolicy {
  readonly doc: PolicyDocument;
  /** SHA-256 of the canonical JSON of the validated document, first 16 hex. */
  readonly hash: string;
  /** `hash`, or `<declared version>+<hash>` when the document declares one. */
  readonly version: string;
}

/**
 * Validates a parsed document. Throws WritError WRIT_POLICY_INVALID whose message lists
 * every problem with its path and whose `details.issues` holds them as an array.
 */
export function parsePolicyDocument(input: unknown, source = 'policy'): ParsedPolicy {
  const r = PolicyDocumentSchema.safeParse(input ?? {});
  if (!r.success) {
    const issues = policyIssues(r.error);
    throw new WritError('WRIT_POLICY_INVALID', `${source} is not valid:\n${issues.join('\n')}`, { details: { issues } });
  }
  const doc = deepFreeze(r.data);
  const hash = sha256Hex(canonicalJson(doc)).slice(0, 16);
  return { doc, hash, version: doc.version ? `${doc.version}+${hash}` : hash };
}

/** Parses YAML (or JSON) text and validates it; YAML syntax errors name line and column. */
export function parsePolicyText(text: string, source = 'policy'): ParsedPolicy {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? (e.message.split('\n')[0] ?? e.message) : String(e);
    throw new WritError('WRIT_POLICY_INVALID', `${source} is not valid YAML: ${msg}`, { details: { issues: [`(yaml): ${msg}`] }, cause: e });
  }
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw new WritError('WRIT_POLICY_INVALID', `${source} is not valid:\n(root): expected a mapping`, { details: { issues: ['(root): expected a mapping'] } });
  }
  return parsePolicyDocument(raw, source);
}
