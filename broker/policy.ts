/**
 * The policy interface the broker decides through, and the foundation's minimal
 * engine behind it: allow or deny by principal group and target, with the access mode
 * taken from the command's classified facts. The full rule engine fills the same interface.
 */
import { canonicalJson, sha256Hex, type ApprovalSpec, type Command, type Decision, type Limits, type PolicyConfig, type Principal, type TargetConfig } from '../schemas/index.ts';
import type { ShellFacts, SqlFacts } from '../classify/index.ts';

export type CommandFacts = { kind: 'sql'; facts: SqlFacts } | { kind: 'shell'; facts: ShellFacts };

export interface PolicyInput {
  principal: Principal;
  target: TargetConfig;
  command: Command;
  facts: CommandFacts;
  now: Date;
}

export interface PolicyDecision extends Decision {
  /** Limits the grant carries. */
  limits: Limits;
  /** Masking spec the grant carries (validated by the worker's masking engine). */
  masking: unknown;
  /** Error code for a denial, so the agent sees why in a stable form. */
  code?: string;
  /** For require_approval: who must approve, how many, how long the request stays open. */
  approval?: ApprovalSpec;
}

/** What a principal may do on a target, for `list_targets` and `writ.api.targets`. */
export interface TargetAccess {
  rule: string;
  effect: 'allow' | 'deny' | 'require_approval';
  mode?: string;
  /** One line for a planner: what the rule covers. */
  summary: string;
}

export interface PolicyEngine {
  /** Content hash of the active policy; recorded on every decision and audit event. */
  readonly version: string;
  decide(input: PolicyInput): PolicyDecision;
  /** The decision plus, per rule considered, why it matched or not. */
  explain?(input: PolicyInput): { decision: PolicyDecision; considered: readonly object[] };
  /** The rules that could apply to this principal on this target. */
  accessFor?(principal: Principal, target: TargetConfig): TargetAccess[];
}

/** True when every statement is read-only by its facts. Anything unclassified is not. */
export function isReadOnly(f: CommandFacts): boolean {
  if (f.kind === 'shell') return false;
  return !f.facts.error && f.facts.statements.length > 0 && f.facts.statements.every((s) => s.readOnly);
}

export class SimplePolicy implements PolicyEngine {
  readonly version: string;
  readonly #cfg: PolicyConfig;

  constructor(cfg: PolicyConfig) {
    this.#cfg = cfg;
    this.version = sha256Hex(canonicalJson(cfg)).slice(0, 16);
  }

  accessFor(principal: Principal, target: TargetConfig): TargetAccess[] {
    const groups = new Set(principal.groups);
    return this.#cfg.rules
      .filter((r) => (r.groups.includes('*') || r.groups.some((g) => groups.has(g))) && (r.targets.includes('*') || r.targets.includes(target.name)))
      .map((r) => ({ rule: r.id, effect: r.effect, mode: r.mode, summary: `${r.effect} ${r.effect === 'deny' ? 'everything' : `${r.mode} access`}` }));
  }

  decide(input: PolicyInput): PolicyDecision {
    const base = { policyVersion: this.version, masking: this.#cfg.masking, limits: this.#cfg.defaultLimits };
    const err = input.facts.facts.error;
    if (err) {
      // Fail closed: what cannot be parsed or classified is never allowed.
      return { ...base, effect: 'deny', rules: [], reasons: [`${err.code}: ${err.message}`], mode: 'write', code: err.code };
    }
    const mode = isReadOnly(input.facts) ? 'read' : 'write';
    const groups = new Set(input.principal.groups);
    const matches = this.#cfg.rules.filter((r) => (r.groups.includes('*') || r.groups.some((g) => groups.has(g))) && (r.targets.includes('*') || r.targets.includes(input.target.name)));
    const deny = matches.find((r) => r.effect === 'deny');
    const ask = matches.find((r) => r.effect === 'require_approval');
    if (!deny && ask) {
      return {
        ...base,
        effect: 'require_approval',
        rules: [ask.id],
        reasons: [`rule ${ask.id} requires approval for ${input.target.name}`],
        mode,
        limits: { ...this.#cfg.defaultLimits, ...ask.limits },
        approval: ask.approval ?? { groups: ['approvers'], count: 1, timeoutSec: 3600 },
      };
    }
    if (deny) return { ...base, effect: 'deny', rules: [deny.id], reasons: [`rule ${deny.id} denies this principal on ${input.target.name}`], mode, code: 'WRIT_POLICY_DENIED' };
    const allow = matches.find((r) => r.effect === 'allow' && (mode === 'read' || r.mode === 'write'));
    if (allow) {
      return {
        ...base,
        effect: 'allow',
        rules: [allow.id],
        reasons: [`rule ${allow.id} allows ${mode} access to ${input.target.name}`],
        mode,
        limits: { ...this.#cfg.defaultLimits, ...allow.limits },
      };
    }
    const why = matches.length > 0 ? `no rule allows ${mode} access (a write needs a rule with mode: write)` : 'no rule matches; the default is deny';
    return { ...base, effect: 'deny', rules: [], reasons: [why], mode, code: 'WRIT_POLICY_DENIED' };
  }
}
