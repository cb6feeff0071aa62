/**
 * The contract between the Bot runtime (written once) and a chat platform's adapter.
 * The runtime owns consumption, dedupe across replicas and the intentId → message
 * mapping; an adapter only knows how to show a request, redraw it, and (for platforms
 * with buttons) turn a platform interaction into a vote.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../lib/index.ts';
import type { ApprovalOutcome, ApprovalRequest, Names } from '../schemas/index.ts';

/** Where a posted message lives on its platform (Slack: `{ channel, ts }`); opaque to the runtime. */
export type MessageRef = Readonly<Record<string, string>>;

/** One thing that happened to a request on the platform: a vote and the broker's answer to it. */
export interface Activity {
  /** Epoch ms. */
  at: number;
  /** The platform's id of the person who acted (Slack user id), when there is one. */
  platformUser?: string;
  /** The approver identity the vote was cast as; unset when the person was not mapped. */
  sub?: string;
  verdict: 'approve' | 'reject';
  /** True when the broker counted the vote. */
  accepted: boolean;
  /** The intent's state after an accepted vote (`pending`, `dispatched`, `rejected`). */
  status?: string;
  /** The broker's error code for a refused vote (`WRIT_SELF_APPROVAL`, …). */
  code?: string;
}

/** Everything an adapter needs to draw a request's message, current as of the latest change. */
export interface ApprovalView {
  request: ApprovalRequest;
  /** Length of the full command text; the stored copy of `request.command` may be shorter. */
  commandLength: number;
  /** Oldest first; the runtime keeps the latest {@link MAX_ACTIVITY}. */
  activity: readonly Activity[];
  /** Set once the pending intent has ended; adapters then drop their action buttons. */
  outcome?: ApprovalOutcome;
}

export const MAX_ACTIVITY = 20;

/** What the runtime keeps per intent (in KV for shared bots, so any replica can redraw). */
export interface StoredApproval {
  intentId: string;
  /** A copy of the request with long texts capped; absent when the outcome arrived first. */
  request?: ApprovalRequest;
  commandLength?: number;
  /** Set once posted. */
  ref?: MessageRef;
  /** The replica posting it right now; guards against two replicas posting one request. */
  claim?: { by: string; at: number };
  activity: Activity[];
  outcome?: ApprovalOutcome;
}

/** Handed to an adapter when the bot starts. */
export interface BotContext {
  readonly names: Names;
  readonly nc: NatsConnection;
  readonly log: Logger;
  /** The bot's name (durable consumer and bucket suffix). */
  readonly botName: string;
  /** The stored record of a request, whichever replica posted it. */
  lookup(intentId: string): Promise<StoredApproval | undefined>;
  /** Records a vote and the broker's answer, then redraws the posted message. */
  note(intentId: string, activity: Activity): Promise<void>;
}

/** One implementation per chat platform. */
export interface ApproverAdapter {
  /** `slack`, `terminal`, …: used in logs. */
  readonly kind: string;
  /** Starts receiving interactions (an HTTP endpoint, a line reader). Called before any post. */
  start?(ctx: BotContext): Promise<void>;
  /** Shows a new request; returns where it was posted. Throws when the platform refused it (the runtime retries). */
  post(view: ApprovalView): Promise<MessageRef>;
  /** Redraws a posted request with its votes and, once ended, its outcome. Must be idempotent. */
  update(ref: MessageRef, view: ApprovalView): Promise<void>;
  /** Stops taking interactions and waits for those in flight. */
  stop?(): Promise<void>;
}
