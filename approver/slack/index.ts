/** The Slack adapter of the approver bot: config, Block Kit rendering, escaping, request signing, interactions. */
export { SlackAdapter } from './adapter.ts';
export { loadSlackBotConfig, parseSlackBotConfig } from './config.ts';
export { ACTION_APPROVE, ACTION_APPROVE_WINDOW, ACTION_DENY, ACTIONS_BLOCK } from './blocks.ts';
