/**
 * Intents as the policy toolchain reads them (`writ policy eval|test`): a principal, a
 * target by name (or inline), and SQL or a shell command. Turned into a PolicyInput by
 * classifying the text with the classifier of the target's kind.
 */
import { z } from 'zod';
import { WritError, type Principal, type TargetConfig } from '../../schemas/index.ts';
import * as classify from '../../classify/index.ts';
import type { CommandFacts, PolicyInput } from '../policy.ts';
import { policyIssues, PolicyTargetSchema, type PolicyTarget } from './schema.ts';

export const IntentPrincipalSchema = z.strictObject({
  sub: z.string().min(1),
  /** Issuer; default empty (matches no `issuer` condition). */
  iss: z.string().default(''),
  groups: z.array(z.string()).default([]),
  actFor: z.string().optional(),
});

/** One intent line of `writ policy eval`, or the intent part of a test case. */
const EvalIntentSchema = z
  .strictObject({
    principal: IntentPrincipalSchema,
    /** A declared target's name, or a target inline. */
    target: z.union([z.string().min(1), PolicyTargetSchema]),
    sql: z.string().max(1_000_000).optional(),
    command: z.string().max(100_000).optional(),
    /** ISO 8601 time the decision is made at; default now. */
    now: z.iso.datetime({ offset: true }).optional(),
    /** Echoed back on the output line, to pair answers with questions. */
    id: z.union([z.string(), z.number()]).optional(),
  })
  .refine((i) => (i.sql === undefined) !== (i.command === undefined), { message: 'exactly one of sql or command' });

/**
 * Facts of a text for a target kind; a text of the wrong kind for the target fails closed.
 * `database`: a mysql target's default database; without it, unqualified names are refused.
 */
export function classifyFor(kind: PolicyTarget['kind'], text: { sql?: string | undefined; command?: string | undefined }, database?: string): CommandFacts {
  if (text.sql !== undefined) {
    if (kind === 'postgres') return { kind: 'sql', facts: classify.classifySql(text.sql) };
    if (kind === 'mysql') return { kind: 'sql', facts: classify.classifyMysql(text.sql, database ?? null) };
    return { kind: 'sql', facts: { dialect: 'postgres', statements: [], error: { code: 'WRIT_SQL_UNKNOWN', message: `a ${kind} target does not take SQL` } } };
  }
  const command = text.command ?? '';
  if (kind === 'ssh') return { kind: 'shell', facts: classify.classifyShell(command) };
  return {
    kind: 'shell',
    facts: {
      commands: [],
      redirections: [],
      filesWritten: [],
      filesRead: [],
      network: [],
      assignments: [],
      structure: [],
      error: { code: 'WRIT_SHELL_UNKNOWN', message: `a ${kind} target does not take shell commands` },
    },
  };
}

/** Resolves the target and classifies the text. Throws WritError (WRIT_BAD_REQUEST, WRIT_UNKNOWN_TARGET). */
export function toPolicyInput(raw: unknown, targets: ReadonlyMap<string, PolicyTarget>, defaultNow?: Date): PolicyInput {
  const r = EvalIntentSchema.safeParse(raw);
  if (!r.success) throw new WritError('WRIT_BAD_REQUEST', policyIssues(r.error).join('; '));
  const i = r.data;
  const t = typeof i.target === 'string' ? targets.get(i.target) : i.target;
  if (!t) throw new WritError('WRIT_UNKNOWN_TARGET', `no target named ${JSON.stringify(i.target)} is declared (policy targets or --config)`);
  const principal: Principal = { sub: i.principal.sub, iss: i.principal.iss, groups: i.principal.groups, ...(i.principal.actFor ? { actFor: i.principal.actFor } : {}) };
  const target: TargetConfig = { name: t.name, kind: t.kind, tags: t.tags, ...(t.description ? { description: t.description } : {}), ...(t.database ? { database: t.database } : {}) };
  const command = i.sql !== undefined ? { kind: 'sql' as const, sql: i.sql } : { kind: 'shell' as const, command: i.command ?? '' };
  return { principal, target, command, facts: classifyFor(t.kind, i, t.database), now: i.now ? new Date(i.now) : (defaultNow ?? new Date()) };
}
