/**
 * Wire messages, as zod schemas. Every message is a discriminated union member on a
 * literal `type`, versioned by `v`. Parsing is strict: unknown keys are refused, so a
 * typo in an agent's intent is an error rather than a silently ignored field.
 */
import { z } from 'zod';
import { canonicalJson } from './canonical.ts';

/** Target kinds: each has its worker (workers/<kind>/) and its classifier. `mysql` serves MySQL and MariaDB. */
export const TARGET_KINDS = ['postgres', 'ssh', 'mysql'] as const;
export type TargetKind = (typeof TARGET_KINDS)[number];

/** Ids that end up in subjects: one safe token. */
export const IdSchema = z.string().regex(/^[A-Za-z0-9_-]{8,128}$/, 'an id is 8-128 characters of A-Z a-z 0-9 _ -');
/**
 * An id an agent chooses (an intent's, a session's): as IdSchema, but never starting with `_`,
 * which names the services' own sessions (`_unattributed`, `_explain`). An agent once became the
 * owner of `_unattributed`, and its intents were written into the chain of refused input.
 */
export const AgentIdSchema = IdSchema.regex(/^[^_]/, 'an id may not start with _ (reserved for the sessions of the services themselves)');
export const TargetNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a target name is 1-64 characters of A-Z a-z 0-9 _ -');
/** Reply subjects are confined to inboxes so an intent cannot aim a result at a Writ subject. */
export const InboxSchema = z.string().regex(/^_INBOX[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]{1,200}$/, 'replyTo must be an _INBOX subject');
/** A raw X25519 public key, base64url (32 bytes): outcomes are sealed to it (lib/seal.ts). */
export const X25519KeySchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'an X25519 public key is 32 bytes, base64url');
/** The per-principal inbox id (lib/seal.ts inboxIdFor). */
export const InboxIdSchema = z.string().regex(/^[a-z2-7]{20}$/);

/** An outcome's decision, result and error, encrypted to the agent's key (lib/seal.ts). */
export const SealedBoxSchema = z.strictObject({
  alg: z.literal('X25519-HKDF-SHA256-A256GCM'),
  kid: z.string().max(64),
  epk: X25519KeySchema,
  iv: z.string().max(64),
  ct: z.string(),
  tag: z.string().max(64),
});
export type SealedBoxWire = z.infer<typeof SealedBoxSchema>;

export const CommandSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('sql'), sql: z.string().max(1_000_000) }),
  z.strictObject({ kind: z.literal('shell'), command: z.string().max(100_000) }),
]);
export type Command = z.infer<typeof CommandSchema>;

/** The text a grant's digest covers. */
export function commandText(c: Command): string {
  return c.kind === 'sql' ? c.sql : c.command;
}

export const IntentSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('intent'),
  /** Chosen by the agent; resubmitting the same id is idempotent (runs once). */
  id: AgentIdSchema,
  /** Groups a planner run; one audit chain per session. */
  sessionId: AgentIdSchema,
  target: TargetNameSchema,
  command: CommandSchema,
  /** The agent's short-lived OIDC JWT. Never logged or audited; only its digest is. */
  token: z.string().min(1).max(16_384),
  /** Why the agent wants this; shown to approvers and audited. */
  justification: z.string().max(2_000).optional(),
  /** Epoch ms after which the intent must not be acted upon. */
  deadline: z.number().int().positive().optional(),
  /** Where the outcome is sent directly: a subject under the agent's own inbox (`_INBOX[.<role>].<inboxId>.…`), else refused. */
  replyTo: InboxSchema.optional(),
  /** The agent's X25519 public key: every outcome of this intent is sealed to it. Required. */
  replyKey: X25519KeySchema.optional(),
  submittedAt: z.number().int().positive(),
});
export type Intent = z.infer<typeof IntentSchema>;

export const PrincipalSchema = z.strictObject({
  sub: z.string(),
  iss: z.string(),
  groups: z.array(z.string()),
  /** The human the agent acts for, when the token says so. */
  actFor: z.string().optional(),
});
export type Principal = z.infer<typeof PrincipalSchema>;

export const EFFECTS = ['allow', 'deny', 'require_approval'] as const;
export const AccessModeSchema = z.enum(['read', 'write']);
export type AccessMode = z.infer<typeof AccessModeSchema>;

export const LimitsSchema = z.strictObject({
  /** Rows returned at most; more sets `truncated`. */
  rows: z.number().int().positive().optional(),
  /** Rows a write may affect; more rolls it back. */
  rowsAffected: z.number().int().nonnegative().optional(),
  /** Statement or command time limit. */
  seconds: z.number().positive().optional(),
  /** Result size limit in bytes. */
  bytes: z.number().int().positive().optional(),
});
export type Limits = z.infer<typeof LimitsSchema>;

export const DecisionSchema = z.strictObject({
  effect: z.enum(EFFECTS),
  /** The rule ids that decided. */
  rules: z.array(z.string()),
  /** Human-readable reasons. */
  reasons: z.array(z.string()),
  mode: AccessModeSchema,
  policyVersion: z.string(),
});
export type Decision = z.infer<typeof DecisionSchema>;

export const ErrorReplySchema = z.strictObject({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type ErrorReply = z.infer<typeof ErrorReplySchema>;

/**
 * The broker's answer to an intent, a core NATS request on `writ.intent.<target>`, sent to the
 * request's reply subject once what the intent led to is stored (its record, its evidence and,
 * when it runs, its order): `receipt`. `duplicate` says the id was known already (a resubmission:
 * nothing new was started). `error`: the intent was refused before anything was stored (a
 * malformed intent, a passed deadline) or, with a retryable code, the bus could not take a
 * write and the sender should ask again under the same id. A sender that gets no answer (no
 * broker, a lost reply, an unverifiable sender) asks again too: the record makes that harmless.
 */
export const IntentReceiptSchema = z.discriminatedUnion('type', [
  z.strictObject({ v: z.literal(1), type: z.literal('receipt'), intentId: IdSchema, duplicate: z.boolean() }),
  z.strictObject({ v: z.literal(1), type: z.literal('error'), error: ErrorReplySchema }),
]);
export type IntentReceipt = z.infer<typeof IntentReceiptSchema>;

/**
 * A worker's answer to an order handed to it directly (`writ.dispatch.<kind>.<target>`):
 * - `claimed`: this worker holds the grant's claim and runs it;
 * - `taken`: the grant was claimed before (by a worker that took this order some other way);
 * - `refused`: the order cannot run anywhere (its grant failed verification: audited there);
 * - `busy`: the worker runs as many orders as it may; nothing was claimed, and the broker
 *   queues the order in the exec stream instead;
 * - `retry`: the claim's fate is not known (the bus did not answer the worker): nothing ran,
 *   and the broker queues the order, whose claim then settles it.
 */
export const DispatchReplySchema = z.strictObject({ v: z.literal(1), type: z.enum(['claimed', 'taken', 'refused', 'busy', 'retry']), code: z.string().max(64).optional() });
export type DispatchReply = z.infer<typeof DispatchReplySchema>;

/** Header of an intent request: which send of it this is (1, 2, …); informational, audited with `intent.received`. */
export const ATTEMPT_HEADER = 'Writ-Attempt';

export const INTENT_STATES = ['received', 'denied', 'pending', 'dispatched', 'running', 'succeeded', 'failed', 'unknown', 'rejected', 'expired', 'cancelled'] as const;
export const IntentStateSchema = z.enum(INTENT_STATES);
export type IntentState = z.infer<typeof IntentStateSchema>;
export const TERMINAL_STATES: ReadonlySet<IntentState> = new Set(['denied', 'succeeded', 'failed', 'unknown', 'rejected', 'expired', 'cancelled']);

/** The grant's claims: what exactly may run, where, how, until when. Signed by the broker. */
export const GrantClaimsSchema = z.strictObject({
  /** Grant id: the claim key; a grant runs at most once. */
  gid: z.string(),
  iid: IdSchema,
  sid: IdSchema,
  tgt: TargetNameSchema,
  kind: z.enum(TARGET_KINDS),
  mode: AccessModeSchema,
  /** Hex SHA-256 of the exact command text. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Issued at / expires, epoch seconds. */
  iat: z.number().int(),
  exp: z.number().int(),
  limits: LimitsSchema,
  /** The masking to apply, from the policy (opaque here; the worker validates it). */
  mask: z.unknown().optional(),
  /** Columns the policy marks sensitive that the statement's computed fields draw on. */
  derived: z.array(z.string()).optional(),
  policyVersion: z.string(),
  /** The principal's subject, for the worker's audit events. */
  sub: z.string(),
  /** Where the worker may answer directly: the agent's inbox id (checked against order.replyTo) and the key to seal to. */
  rpl: z.strictObject({ inbox: InboxIdSchema, key: X25519KeySchema }).optional(),
  /** The broker's results key: the durable `writ.result.<id>` copy is sealed to it. */
  stk: X25519KeySchema.optional(),
  /**
   * The session's audit head right after the broker stored this intent's dispatch evidence
   * (stream sequence, last event hash, chain length): the worker chains its events onto it
   * without reading the head first. A hint only; the stream's expected-last-sequence check decides.
   */
  ah: z.strictObject({ seq: z.number().int().nonnegative(), hash: z.string().regex(/^[0-9a-f]{64}$/), count: z.number().int().nonnegative() }).optional(),
});
export type GrantClaims = z.infer<typeof GrantClaimsSchema>;

export const OrderSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('order'),
  intentId: IdSchema,
  sessionId: IdSchema,
  target: TargetNameSchema,
  command: CommandSchema,
  /** Compact JWS (EdDSA) over GrantClaims. */
  grant: z.string().max(65_536),
  /** Revision of the `dispatched` state in the intents bucket, for the worker's compare-and-set. */
  stateRevision: z.number().int().positive(),
  /**
   * The `dispatched` record as stored at stateRevision, so the worker moves it to its end
   * state with one compare-and-set instead of a read and a write. Checked against the grant.
   */
  record: z.lazy(() => IntentRecordSchema).optional(),
  replyTo: InboxSchema.optional(),
});
export type Order = z.infer<typeof OrderSchema>;
/** An order without its signed grant: what a worker of the broker's own process is handed, with a LocalGrant (lib/handover.ts). */
export type OrderBody = Omit<Order, 'grant'>;

export const ResultColumnSchema = z.strictObject({
  name: z.string(),
  masked: z.boolean(),
  /** Why it was masked: 'column:public.customers.email', 'detector:email', … */
  reasons: z.array(z.string()).optional(),
});

export const ResultBodySchema = z.strictObject({
  columns: z.array(ResultColumnSchema),
  rows: z.array(z.array(z.unknown())),
  rowCount: z.number().int().nonnegative(),
  truncated: z.boolean(),
  /**
   * Why the result was cut, when it was: `rows` (the grant's row limit), `bytes` (its byte
   * limit), `transport` (what the message bus carries, when that is less than the byte limit).
   */
  truncatedBy: z.enum(['rows', 'bytes', 'transport']).optional(),
  /** SQL command tag per statement, or 'exec' for shell. */
  command: z.string().optional(),
  /** Shell: exit code or signal, and output. */
  exitCode: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
  stdout: z.string().optional(),
  stderr: z.string().optional(),
});
export type ResultBody = z.infer<typeof ResultBodySchema>;

/** What an agent finally receives, directly on its inbox and durably in the intent's record (`outcome`). */
export const OutcomeSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('outcome'),
  intentId: IdSchema,
  sessionId: IdSchema,
  status: IntentStateSchema,
  decision: DecisionSchema.optional(),
  result: ResultBodySchema.optional(),
  error: ErrorReplySchema.optional(),
  /** `{decision, result, error}` sealed to the agent's key (or, in the record, the broker's results key); those fields are then absent. */
  sealed: SealedBoxSchema.optional(),
  at: z.number().int(),
});
export type Outcome = z.infer<typeof OutcomeSchema>;

/**
 * The one outcome builder. Broker refusals, the sweeper and the workers all fill the envelope
 * alike, and an absent field stays absent: no `undefined` keys in what is sealed, hashed into
 * the audit log, or compared by the agent.
 */
export function buildOutcome(o: {
  intentId: string;
  sessionId: string;
  status: IntentState;
  decision?: Decision | undefined;
  result?: ResultBody | undefined;
  error?: ErrorReply | undefined;
}): Outcome {
  return {
    v: 1,
    type: 'outcome',
    intentId: o.intentId,
    sessionId: o.sessionId,
    status: o.status,
    at: Date.now(),
    ...(o.decision ? { decision: o.decision } : {}),
    ...(o.result ? { result: o.result } : {}),
    ...(o.error ? { error: o.error } : {}),
  };
}
/** What a sealed box holds. */
export const SealedOutcomeBodySchema = z.strictObject({ decision: DecisionSchema.optional(), result: ResultBodySchema.optional(), error: ErrorReplySchema.optional() });

/** What a rule that requires approval asks for; travels in the approval request. */
export const ApprovalSpecSchema = z.strictObject({
  /** Approver groups; an approver must be in at least one. */
  groups: z.array(z.string()).min(1),
  /** Distinct approvers needed. */
  count: z.number().int().positive().default(1),
  /** Seconds until a pending intent expires. */
  timeoutSec: z.number().int().positive().default(3600),
  /** The longest time-bound access window an approver may grant with this rule; unset: none. */
  windowMaxSec: z.number().int().positive().optional(),
});
export type ApprovalSpec = z.infer<typeof ApprovalSpecSchema>;

/**
 * What a decision granted, recorded in the intent's record when the decision is made. Every
 * grant for the intent is built from it (broker/grants.ts), so a re-sent or approved order
 * carries exactly the mode, limits and masking that were decided, never a recomputation.
 */
export const GrantSpecSchema = z.strictObject({
  mode: AccessModeSchema,
  limits: LimitsSchema,
  /** The masking spec, always explicit: `{}` means "no column rules"; the worker refuses a grant without one. */
  mask: z.unknown(),
});
export type GrantSpec = z.infer<typeof GrantSpecSchema>;

/** What a pending intent keeps until its approvers decide: the votes, and what to dispatch. */
export const PendingSchema = z.strictObject({
  rule: z.string(),
  spec: ApprovalSpecSchema,
  /** Epoch ms. */
  expiresAt: z.number().int(),
  votes: z.array(
    z.strictObject({
      sub: z.string(),
      at: z.number().int(),
      decisionId: z.string(),
      via: z.string().optional(),
      windowSec: z.number().int().optional(),
      /** The human the vote counts for (config approvals.humans, else issuer and subject). */
      human: z.string().optional(),
      /** Every human the vote speaks for (the voter, and the human its token acts for): none of them counts twice. */
      humans: z.array(z.string()).optional(),
    }),
  ),
  /** The order to sign once approved (the command text is audited; it stays here only while pending). */
  order: z.strictObject({ command: CommandSchema, mode: AccessModeSchema, limits: LimitsSchema, mask: z.unknown().optional(), replyTo: InboxSchema.optional() }),
  /** The broker's signature over everything here, votes included, and the record's identity (broker/seal-record.ts). */
  sig: z.string().optional(),
});
export type Pending = z.infer<typeof PendingSchema>;

/** The record of an intent in the intents bucket. Every change is a compare-and-set on its revision. */
export const IntentRecordSchema = z.strictObject({
  intentId: IdSchema,
  sessionId: IdSchema,
  target: TargetNameSchema,
  kind: z.enum(TARGET_KINDS),
  principal: PrincipalSchema,
  state: IntentStateSchema,
  decision: DecisionSchema.optional(),
  grantId: z.string().optional(),
  /** Grant expiry (epoch s): the sweeper's clock for a lost worker. */
  grantExp: z.number().int().optional(),
  /** Epoch s after which a claimed run cannot still be going (grant expiry + time limit + margin): the sweeper's deadline. */
  runDeadline: z.number().int().optional(),
  error: ErrorReplySchema.optional(),
  /** Digest of the command text (the text itself is in the audit log). */
  commandSha256: z.string(),
  /** While `pending` and until the run ends (the votes stay in the audit log). */
  pending: PendingSchema.optional(),
  /** What the decision granted (allow and require_approval): the source of every grant for this intent. */
  grant: GrantSpecSchema.optional(),
  /**
   * Where and how the agent is answered, validated by the broker: the requester's inbox id (from
   * its verified token), the reply subject (checked to be under it) and the key outcomes are sealed to.
   */
  reply: z.strictObject({ inbox: InboxIdSchema, to: InboxSchema.optional(), key: X25519KeySchema }).optional(),
  /** The broker's signature over what a grant for this intent is built from, once dispatched (broker/seal-record.ts). */
  dispatchSig: z.string().optional(),
  /**
   * A sweeper is ending this dispatched intent (lost worker, expired grant): it writes the
   * evidence first and the end after, and another sweeper takes over only once this is stale.
   */
  ending: z.strictObject({ by: z.string().min(1).max(128), at: z.number().int() }).optional(),
  /**
   * Once it ran: the durable outcome, written with the end state in one compare-and-set. The
   * worker's is sealed to the broker's results key (the grant's `stk`); the sweeper's carries a
   * status and a code, no data.
   */
  outcome: OutcomeSchema.optional(),
  createdAt: z.number().int(),
  updatedAt: z.number().int(),
});
export type IntentRecord = z.infer<typeof IntentRecordSchema>;

/** Agent API requests on `writ.api.<op>`; each carries the agent's token. */
export const ApiRequestSchema = z.discriminatedUnion('type', [
  /** `wait` and `result` answer outcomes sealed to `replyKey`; without one they answer WRIT_SEAL_REQUIRED. */
  z.strictObject({
    v: z.literal(1),
    type: z.literal('wait'),
    token: z.string(),
    intentId: IdSchema,
    timeoutMs: z.number().int().positive().max(600_000).default(30_000),
    replyKey: X25519KeySchema.optional(),
  }),
  z.strictObject({ v: z.literal(1), type: z.literal('status'), token: z.string(), intentId: IdSchema }),
  z.strictObject({ v: z.literal(1), type: z.literal('result'), token: z.string(), intentId: IdSchema, replyKey: X25519KeySchema.optional() }),
  z.strictObject({ v: z.literal(1), type: z.literal('cancel'), token: z.string(), intentId: IdSchema }),
  /** Would this intent be allowed, and why? Nothing runs; the question and answer are audited. */
  z.strictObject({ v: z.literal(1), type: z.literal('explain'), token: z.string(), target: TargetNameSchema, command: CommandSchema, sessionId: AgentIdSchema.optional() }),
  /** The targets this principal may use, and for what, from the policy. */
  z.strictObject({ v: z.literal(1), type: z.literal('targets'), token: z.string() }),
  /** Approvers: the pending intents this caller may decide on. */
  /** `intentId`: that one request only (an approver deciding on it), however long the list. */
  z.strictObject({ v: z.literal(1), type: z.literal('pending'), token: z.string(), intentId: IdSchema.optional() }),
  /** Active time-bound access windows (approvers see all; others their own). */
  z.strictObject({ v: z.literal(1), type: z.literal('grants'), token: z.string() }),
  z.strictObject({ v: z.literal(1), type: z.literal('revoke'), token: z.string(), windowId: z.string().min(1).max(200) }),
]);
export type ApiRequest = z.infer<typeof ApiRequestSchema>;

export const ApiReplySchema = z.discriminatedUnion('type', [
  z.strictObject({ v: z.literal(1), type: z.literal('outcome'), outcome: OutcomeSchema }),
  z.strictObject({ v: z.literal(1), type: z.literal('status'), intentId: IdSchema, status: IntentStateSchema }),
  z.strictObject({ v: z.literal(1), type: z.literal('error'), error: ErrorReplySchema }),
  /** `omitted`: requests left out because the reply was full (the list is fair across requesters; ask for one by id). */
  z.strictObject({ v: z.literal(1), type: z.literal('pending'), requests: z.array(z.record(z.string(), z.unknown())), omitted: z.number().int().nonnegative().optional() }),
  z.strictObject({ v: z.literal(1), type: z.literal('grants'), windows: z.array(z.record(z.string(), z.unknown())) }),
  z.strictObject({ v: z.literal(1), type: z.literal('ok') }),
  z.strictObject({
    v: z.literal(1),
    type: z.literal('explanation'),
    decision: DecisionSchema,
    code: z.string().optional(),
    approval: ApprovalSpecSchema.optional(),
    facts: z.unknown(),
    considered: z.array(z.record(z.string(), z.unknown())).optional(),
  }),
  z.strictObject({
    v: z.literal(1),
    type: z.literal('targets'),
    targets: z.array(
      z.strictObject({
        name: z.string(),
        kind: z.string(),
        tags: z.array(z.string()),
        description: z.string().optional(),
        access: z.array(z.strictObject({ rule: z.string(), effect: z.enum(EFFECTS), mode: z.string().optional(), summary: z.string() })),
      }),
    ),
  }),
]);
export type ApiReply = z.infer<typeof ApiReplySchema>;

export const AUDIT_EVENT_TYPES = [
  'intent.received',
  'intent.rejected_input',
  'intent.decided',
  'intent.duplicate',
  'intent.dispatched',
  'exec.refused',
  'exec.claimed',
  'exec.finished',
  'exec.lost',
  'api.cancel',
  'policy.loaded',
  'checkpoint',
] as const;

/** One link of a session's hash chain. `hash` = SHA-256 over the canonical JSON of every other field. */
export const AuditEventSchema = z.strictObject({
  v: z.literal(1),
  id: z.string(),
  sessionId: z.string(),
  intentId: z.string().optional(),
  type: z.string(),
  at: z.number().int(),
  actor: z.strictObject({ kind: z.enum(['agent', 'broker', 'worker', 'approver', 'operator', 'system']), id: z.string() }),
  policyVersion: z.string().optional(),
  payload: z.record(z.string(), z.unknown()).optional(),
  /** SHA-256 of a payload too large to keep inline. */
  digest: z.string().optional(),
  /** Hash of the previous event of the session; 64 zeros for the first. */
  prev: z.string().regex(/^[0-9a-f]{64}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
export type AuditEvent = z.infer<typeof AuditEventSchema>;

/** One JetStream message on `writ.audit.<session>`: consecutive links of the chain, written together. */
export const AuditBlockSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('audit.block'),
  events: z.array(AuditEventSchema).min(1),
  /**
   * The writer's signature over the block (audit/keys.ts): its key id and an Ed25519 signature;
   * for a block signed in a batch, also the path from the block to the batch's signed root.
   */
  sig: z
    .strictObject({
      kid: z.string().regex(/^[0-9a-f]{16}$/),
      p: z
        .array(z.string().regex(/^[lr][A-Za-z0-9_-]{43}$/))
        .min(1)
        .max(16)
        .optional(),
      s: z.string(),
    })
    .optional(),
});
export type AuditBlock = z.infer<typeof AuditBlockSchema>;

/** Hex SHA-256 of a command's exact text. */
export const Sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a hex SHA-256');

/**
 * What an access window granted with this approval would allow, shown to approvers before they
 * confirm and enforced as is (broker/approvals.ts `windowScopeOf` builds both): further intents
 * of the same requester, acting for the same human (or none), on this target under this rule and
 * policy version, whose every statement (or program) has one of these shapes, for at most `maxSec`.
 */
export const WindowScopeSchema = z.strictObject({
  rule: z.string(),
  target: TargetNameSchema,
  /** The requesting principal, by issuer and subject. */
  requester: z.strictObject({ iss: z.string(), sub: z.string() }),
  /** The human the requester acts for; null: the window serves only requests acting for nobody. */
  actFor: z.string().nullable(),
  policyVersion: z.string(),
  /** `kind:tables written` per SQL statement, `program:<name>:<wrappers>` per shell program. */
  shapes: z.array(z.string()),
  /** The longest window the rule allows, seconds (the approver may choose less). */
  maxSec: z.number().int().positive(),
});
export type WindowScope = z.infer<typeof WindowScopeSchema>;

/** Published on `writ.approval.request.<target>` (stream WRIT_APPROVALS) for approver bots and the CLI. */
export const ApprovalRequestSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('approval.request'),
  intentId: IdSchema,
  sessionId: IdSchema,
  target: TargetNameSchema,
  /** The agent's principal; `actFor` is the human it acts for. Neither may approve. */
  requester: PrincipalSchema,
  command: CommandSchema,
  /** A short, display-safe summary of the classified facts (kinds, tables, programs). */
  facts: z.record(z.string(), z.unknown()),
  rule: z.string(),
  reasons: z.array(z.string()),
  justification: z.string().optional(),
  approval: ApprovalSpecSchema,
  /** Epoch ms when the request expires. */
  expiresAt: z.number().int(),
  createdAt: z.number().int(),
  /** SHA-256 of the exact command text the broker recorded; a vote names it and counts only for it. */
  commandSha256: Sha256HexSchema,
  /** What an approval with a window would allow; absent when the rule grants no windows. */
  windowScope: WindowScopeSchema.optional(),
});
export type ApprovalRequest = z.infer<typeof ApprovalRequestSchema>;

/**
 * Published on `writ.approval.decision.<intentId>` by an approver (CLI: their own token) or
 * a chat bot (the bot's token plus `onBehalfOf`, the approver identity it mapped from the
 * chat platform's signed request; trusted only for bots listed in `approvals.trustedBots`).
 */
export const ApprovalDecisionSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('approval.decision'),
  intentId: IdSchema,
  verdict: z.enum(['approve', 'reject']),
  reason: z.string().max(2_000).optional(),
  /** Grant a time-bound access window (seconds), capped by the rule's windowMaxSec. */
  windowSec: z.number().int().positive().optional(),
  /** The approver's (or the bot's) JWT. */
  token: z.string().min(1).max(16_384),
  onBehalfOf: z.strictObject({ sub: z.string().min(1), groups: z.array(z.string()), via: z.string() }).optional(),
  /** Unique per vote and usable once: the broker refuses a decision id it has seen (on any intent). */
  decisionId: z.string().min(8).max(128),
  /** When the vote was cast, epoch ms; refused outside the broker's clock skew (approvals.maxVoteSkewSec). */
  at: z.number().int(),
  /** The command hash from the request the approver was shown; a vote for another hash is refused. */
  commandSha256: Sha256HexSchema,
  /**
   * A trusted bot's Ed25519 signature (base64url) over {@link voteSigningBytes} of this vote,
   * with the key listed for it in `approvals.trustedBots`. Required with `onBehalfOf`.
   */
  sig: z.string().max(200).optional(),
});
export type ApprovalDecision = z.infer<typeof ApprovalDecisionSchema>;

const VOTE_CONTEXT = 'writ.vote.v1\n';

/**
 * The bytes a trusted bot signs: a context string, then the canonical JSON of everything the
 * vote decides (intent, command hash, verdict, decision id, the human it speaks for, when, the
 * window and reason). The token and the reply subject are outside it.
 */
export function voteSigningBytes(d: Omit<ApprovalDecision, 'token' | 'sig'>): Buffer {
  return Buffer.from(
    VOTE_CONTEXT +
      canonicalJson({
        v: d.v,
        intentId: d.intentId,
        commandSha256: d.commandSha256,
        verdict: d.verdict,
        decisionId: d.decisionId,
        onBehalfOf: d.onBehalfOf ?? null,
        at: d.at,
        windowSec: d.windowSec ?? null,
        reason: d.reason ?? null,
      }),
    'utf8',
  );
}

/** Published on `writ.approval.outcome.<intentId>` when a pending intent ends, so bots can update their messages. */
export const ApprovalOutcomeSchema = z.strictObject({
  v: z.literal(1),
  type: z.literal('approval.outcome'),
  intentId: IdSchema,
  status: z.enum(['dispatched', 'rejected', 'expired', 'cancelled']),
  by: z.array(z.string()),
  reason: z.string().optional(),
  at: z.number().int(),
});
export type ApprovalOutcome = z.infer<typeof ApprovalOutcomeSchema>;
