/**
 * Public entry of approver/: the bot runtime (written once), its adapter contract, and
 * the Slack and terminal adapters. Wiring happens where a process starts (approver/main.ts,
 * `writ up`); nothing starts or registers itself on import.
 */
export { Bot } from './bot.ts';
export { botPublicKey, botSigningKey, generateBotKey, publishDecision } from './decide.ts';
export { SlackAdapter, parseSlackBotConfig, ACTION_APPROVE, ACTION_APPROVE_WINDOW, ACTION_DENY, ACTIONS_BLOCK } from './slack/index.ts';
export { startTerminalApprover, commandTokenSource } from './terminal/index.ts';
