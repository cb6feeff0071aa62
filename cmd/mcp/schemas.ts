/**
 * Input and output schemas of the Writ MCP tools. Descriptions are written for an LLM
 * planner: they are what it reads to decide which tool to call and how. Inputs are strict,
 * like every Writ message: a misspelt argument is an error, never silently dropped.
 * Output shapes are this server's own contract, mapped field by field from the wire
 * messages, so a new field in a Writ message never breaks a client that validates them.
 */
import { z } from 'zod';
import { EFFECTS, INTENT_STATES } from '../../schemas/index.ts';

/** Longest a single tool call waits, in seconds: the broker answers one wait for at most 10 minutes. */
export const MAX_WAIT_SECONDS = 600;

const target = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a target name is 1-64 characters of A-Z a-z 0-9 _ -')
  .describe('Target name, as list_targets returns it.');
const intentId = z.string().regex(/^[A-Za-z0-9_-]{8,128}$/, 'an intent id is 8-128 characters of A-Z a-z 0-9 _ -');
const sql = z.string().min(1).max(1_000_000).describe('The SQL text, exactly as it should run. Several statements run in one transaction.');
const command = z.string().min(1).max(100_000).describe('The shell command line, exactly as it should run on the host.');
const justification = z.string().max(2_000).optional().describe('Why this is needed, in one or two sentences. Approvers read it and it is audited; give it whenever approval may be required.');
const sessionId = intentId.optional().describe("Groups intents of one planner run into one audit session (8-128 characters of A-Z a-z 0-9 _ -). Defaults to this server's session.");
const ownIntentId = intentId
  .optional()
  .describe(
    "Optional id of your choosing for this intent (8-128 characters of A-Z a-z 0-9 _ -). Sending the same id again never runs it twice: you get the first run's outcome. Use it to retry safely after a timeout or a lost connection.",
  );
const runTimeout = z
  .number()
  .int()
  .min(1)
  .max(MAX_WAIT_SECONDS)
  .optional()
  .describe('Seconds to wait for the result once the command runs (default 30). When it is still running after that, you get status in_progress and can call wait_for_intent.');

export const ListTargetsInput = z.strictObject({});

export const ExplainInput = z
  .strictObject({
    target,
    sql: sql.optional(),
    command: command.optional(),
    session_id: sessionId,
  })
  .refine((v) => (v.sql === undefined) !== (v.command === undefined), { message: 'give exactly one of sql or command' });

export const SqlQueryInput = z.strictObject({
  target,
  sql,
  justification,
  session_id: sessionId,
  intent_id: ownIntentId,
  timeout_seconds: runTimeout,
});

export const ShellCommandInput = z.strictObject({
  target,
  command,
  justification,
  session_id: sessionId,
  intent_id: ownIntentId,
  timeout_seconds: runTimeout,
});

export const IntentIdInput = z.strictObject({
  intent_id: intentId.describe('The intent id a previous sql_query or shell_command returned.'),
});

export const WaitInput = z.strictObject({
  intent_id: intentId.describe('The intent id a previous sql_query or shell_command returned (typically one pending approval).'),
  timeout_seconds: z
    .number()
    .int()
    .min(1)
    .max(MAX_WAIT_SECONDS)
    .optional()
    .describe(`Seconds to wait at most (1-${MAX_WAIT_SECONDS}, default 60). Approvals are made by humans and can take minutes; call again if it is still pending.`),
});

// ───────────────────────────── outputs ─────────────────────────────

/** The planner-facing verdict, coarser than the intent state. */
const PLANNER_OUTCOMES = ['succeeded', 'pending_approval', 'in_progress', 'denied', 'rejected', 'expired', 'cancelled', 'failed', 'unknown', 'error'] as const;
export type PlannerOutcome = (typeof PLANNER_OUTCOMES)[number];

const DecisionOut = z.object({
  effect: z.enum(EFFECTS).describe('allow, deny, or require_approval.'),
  rules: z.array(z.string()).describe('Ids of the policy rules that decided.'),
  reasons: z.array(z.string()).describe('Why, in words.'),
  mode: z.string().describe('The access mode the command needs: read or write.'),
  policyVersion: z.string(),
});

const ErrorOut = z.object({
  code: z.string().describe('Stable Writ error code, e.g. WRIT_POLICY_DENIED.'),
  message: z.string(),
  retryable: z.boolean().describe('Whether sending the same thing again can help.'),
});

const ResultOut = z.object({
  columns: z.array(z.object({ name: z.string(), masked: z.boolean(), reasons: z.array(z.string()).optional() })),
  rows: z.array(z.array(z.unknown())).describe('Rows in column order. Values of masked columns are redacted by policy and cannot be recovered.'),
  rowCount: z.number().int(),
  truncated: z.boolean().describe('True when a policy limit cut the result short.'),
  command: z.string().optional(),
  exitCode: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
  stdout: z.string().optional(),
  stderr: z.string().optional(),
});

export const IntentOut = z.object({
  outcome: z.enum(PLANNER_OUTCOMES).describe('succeeded | pending_approval | in_progress | denied | rejected | expired | cancelled | failed | unknown | error'),
  status: z.enum(INTENT_STATES).optional().describe("The intent's state in Writ."),
  intentId: z.string().optional(),
  sessionId: z.string().optional(),
  target: z.string().optional(),
  decision: DecisionOut.optional(),
  error: ErrorOut.optional(),
  result: ResultOut.optional(),
  timedOut: z.boolean().optional().describe('True when the wait ended before the intent did.'),
  next: z.string().describe('What to do next.'),
});
export type IntentOut = z.infer<typeof IntentOut>;

export const TargetsOut = z.object({
  targets: z.array(
    z.object({
      name: z.string(),
      kind: z.string().describe('postgres (use sql_query) or ssh (use shell_command).'),
      tags: z.array(z.string()),
      description: z.string().optional(),
      access: z.array(z.object({ rule: z.string(), effect: z.enum(EFFECTS), mode: z.string().optional(), summary: z.string() })),
    }),
  ),
  next: z.string(),
});
export type TargetsOut = z.infer<typeof TargetsOut>;

export const ExplainOut = z.object({
  target: z.string(),
  allowed: z.boolean().describe('True only when it would run at once; require_approval runs after a human approves.'),
  decision: DecisionOut,
  code: z.string().optional().describe('The error code running it would give, when it would not run at once.'),
  approval: z
    .object({ groups: z.array(z.string()), count: z.number().int(), timeoutSec: z.number().int() })
    .optional()
    .describe('Who must approve, how many, and how long they have.'),
  facts: z.unknown().optional().describe('What Writ understood the command to do (statement kinds, tables, programs …).'),
  considered: z.array(z.record(z.string(), z.unknown())).optional().describe('The rules looked at, and why each did or did not match.'),
  next: z.string(),
});
export type ExplainOut = z.infer<typeof ExplainOut>;
