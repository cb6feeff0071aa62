/**
 * Public entry of approver/: the bot runtime (written once), its adapter contract, and
 * the Slack and terminal adapters. Wiring happens where a process starts (approver/main.ts,
 * `writ up`); nothing starts or registers itself on import.
 */
export { Bot, approverBucket, approverDurables, storedCopy, viewOf, type BotOptions, type BotState } from './bot.ts';
export { MAX_ACTIVITY, type Activity, type ApprovalView, type ApproverAdapter, type BotContext, type MessageRef, type StoredApproval } from './types.ts';
export { KvApprovalStore, MemoryApprovalStore, mutate, type ApprovalStore, type Versioned } from './store.ts';
export { botPublicKey, botSigningKey, generateBotKey, publishDecision, type DecisionAnswer, type OnBehalfOf, type PublishDecisionOptions } from './decide.ts';
export { factsLines, revealInvisible } from './text.ts';
export {
  SlackAdapter,
  loadSlackBotConfig,
  parseSlackBotConfig,
  SlackBotConfigSchema,
  ApproverIdentitySchema,
  renderRequest,
  escapeSlackText,
  codeBlock,
  inlineCode,
  plainText,
  slackSignature,
  verifySlackSignature,
  SLACK_MAX_SKEW_SEC,
  INTERACTIONS_PATH,
  ACTION_APPROVE,
  ACTION_APPROVE_WINDOW,
  ACTION_DENY,
  ACTIONS_BLOCK,
  REASON_ACTION,
  REASON_BLOCK,
  type SlackAdapterOptions,
  type ApproverIdentity,
  type SlackBotConfig,
  type SlackBotConfigInput,
  type Block,
  type TextObject,
  type Capped,
  type SignatureCheck,
} from './slack/index.ts';
export { TerminalAdapter, startTerminalApprover, commandTokenSource, formatRequest, formatOutcome, type TerminalAdapterOptions, type TerminalApproverOptions } from './terminal/index.ts';
