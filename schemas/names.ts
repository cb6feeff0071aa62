/**
 * Subject, stream and bucket names. Every name on the wire comes from here, and every
 * token placed into a subject is validated, so no caller can smuggle `.`, `*` or `>`
 * into a subject and widen what it reaches.
 */

const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;
const PREFIX = /^[a-z][a-z0-9_-]{0,31}$/;

/** Throws when `value` is not a safe single subject token. */
export function subjectToken(what: string, value: string): string {
  if (!TOKEN.test(value)) throw new Error(`${what} must match ${TOKEN.source}: ${JSON.stringify(value.slice(0, 64))}`);
  return value;
}

export function isSubjectToken(value: string): boolean {
  return TOKEN.test(value);
}

/** Names for one deployment, derived from its prefix (default `writ`); a test uses a unique prefix for isolation. */
export interface Names {
  readonly prefix: string;
  readonly streams: { readonly exec: string; readonly approvals: string; readonly audit: string };
  /** The intake stream of earlier releases (intents are core requests now): provisioning removes an empty one. */
  readonly retiredIntentsStream: string;
  readonly buckets: { readonly intents: string; readonly claims: string; readonly policy: string; readonly windows: string; readonly sessions: string; readonly voteTokens: string };
  /** `writ.intent.<target>` — agents send intents here (core requests to the brokers' queue group). */
  intent(target: string): string;
  /** `writ.intent.>` */
  intentAll(): string;
  /** `writ.api.<op>` — agent API, broker queue group. */
  api(op: ApiOp): string;
  /** `writ.exec.<kind>.<target>` — execution orders. */
  exec(kind: string, target: string): string;
  /** `writ.exec.<kind>.>` or `writ.exec.>` */
  execAll(kind?: string): string;
  /**
   * `writ.dispatch.<kind>.<target>` — an order handed to a worker directly, as a core request
   * to the target's workers (queue group `workerQueue`); outside the exec stream's subjects, so
   * nothing stores it. A worker answers once it holds the claim (schemas/messages.ts DispatchReply).
   */
  dispatch(kind: string, target: string): string;
  /** `writ.dispatch.>` */
  dispatchAll(): string;
  /** Queue group of one target's workers for direct orders. */
  workerQueue(kind: string, target: string): string;
  approvalRequest(target: string): string;
  approvalDecision(intentId: string): string;
  /** `writ.approval.outcome.<intentId>`: how a pending intent ended (for bots to update messages). */
  approvalOutcome(intentId: string): string;
  /** `writ.approval.>` */
  approvalAll(): string;
  /** `writ.approval.request.>`, `writ.approval.outcome.>`, `writ.approval.decision.*` */
  approvalRequestAll(): string;
  approvalOutcomeAll(): string;
  approvalDecisionAll(): string;
  /** The target token of an intent subject (`writ.intent.<target>`); undefined for any other subject. */
  intentTarget(subject: string): string | undefined;
  /** `writ.audit.<sessionId>` */
  audit(sessionId: string): string;
  auditAll(): string;
  /** Queue group shared by broker replicas for the API. */
  readonly brokerQueue: string;
  /** Durable consumer names. */
  readonly durables: { approverBot(bot: string): string; worker(kind: string, target: string): string };
}

export const API_OPS = ['wait', 'status', 'result', 'cancel', 'explain', 'targets', 'pending', 'grants', 'revoke'] as const;
export type ApiOp = (typeof API_OPS)[number];

export function names(prefix = 'writ'): Names {
  if (!PREFIX.test(prefix)) throw new Error(`prefix must match ${PREFIX.source}: ${JSON.stringify(prefix)}`);
  const up = prefix.toUpperCase().replace(/-/g, '_');
  const p = prefix;
  return Object.freeze({
    prefix,
    streams: Object.freeze({
      exec: `${up}_EXEC`,
      approvals: `${up}_APPROVALS`,
      audit: `${up}_AUDIT`,
    }),
    retiredIntentsStream: `${up}_INTENTS`,
    buckets: Object.freeze({
      intents: `${p}_intents`,
      claims: `${p}_claims`,
      policy: `${p}_policy`,
      windows: `${p}_windows`,
      /** Which principal opened each session: another principal's intent in it is refused. */
      sessions: `${p}_sessions`,
      /** Approver tokens already used in a vote, by issuer and jti: a human's token votes once. */
      voteTokens: `${p}_vote_tokens`,
    }),
    intent: (target: string) => `${p}.intent.${subjectToken('target', target)}`,
    intentAll: () => `${p}.intent.>`,
    api: (op: ApiOp) => `${p}.api.${op}`,
    exec: (kind: string, target: string) => `${p}.exec.${subjectToken('kind', kind)}.${subjectToken('target', target)}`,
    execAll: (kind?: string) => (kind ? `${p}.exec.${subjectToken('kind', kind)}.>` : `${p}.exec.>`),
    dispatch: (kind: string, target: string) => `${p}.dispatch.${subjectToken('kind', kind)}.${subjectToken('target', target)}`,
    dispatchAll: () => `${p}.dispatch.>`,
    workerQueue: (kind: string, target: string) => `${p}-worker-${subjectToken('kind', kind)}-${subjectToken('target', target)}`,
    approvalRequest: (target: string) => `${p}.approval.request.${subjectToken('target', target)}`,
    approvalDecision: (intentId: string) => `${p}.approval.decision.${subjectToken('intentId', intentId)}`,
    approvalOutcome: (intentId: string) => `${p}.approval.outcome.${subjectToken('intentId', intentId)}`,
    approvalAll: () => `${p}.approval.>`,
    approvalRequestAll: () => `${p}.approval.request.>`,
    approvalOutcomeAll: () => `${p}.approval.outcome.>`,
    approvalDecisionAll: () => `${p}.approval.decision.*`,
    intentTarget: (subject: string) => (subject.startsWith(`${p}.intent.`) ? subject.slice(p.length + '.intent.'.length) : undefined),
    audit: (sessionId: string) => `${p}.audit.${subjectToken('sessionId', sessionId)}`,
    auditAll: () => `${p}.audit.>`,
    brokerQueue: `${p}-broker`,
    durables: Object.freeze({
      approverBot: (bot: string) => `${p}-approver-${subjectToken('bot', bot)}`,
      worker: (kind: string, target: string) => `${p}-worker-${subjectToken('kind', kind)}-${subjectToken('target', target)}`,
    }),
  });
}
