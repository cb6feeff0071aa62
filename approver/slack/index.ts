/** The Slack adapter of the approver bot: config, Block Kit rendering, escaping, request signing, interactions. */
export { SlackAdapter, type SlackAdapterOptions } from './adapter.ts';
export { loadSlackBotConfig, parseSlackBotConfig, SlackBotConfigSchema, ApproverIdentitySchema, type ApproverIdentity, type SlackBotConfig, type SlackBotConfigInput } from './config.ts';
export { renderRequest, ACTION_APPROVE, ACTION_APPROVE_WINDOW, ACTION_DENY, ACTIONS_BLOCK, REASON_ACTION, REASON_BLOCK, type Block, type TextObject } from './blocks.ts';
export { escapeSlackText, revealInvisible, codeBlock, inlineCode, plainText, type Capped } from './escape.ts';
export { slackSignature, verifySlackSignature, SLACK_MAX_SKEW_SEC, type SignatureCheck } from './signature.ts';
export { INTERACTIONS_PATH } from './server.ts';
