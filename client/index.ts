/** Public entry of client/: the agent SDK. The `writ` tool is cmd/cli.ts. */
export { WritClient, WritOutcomeError, newId, type IntentRequest, type Submitted, type WritClientOptions } from './sdk.ts';
export * from './sdk-extras.ts';
/** Reply subjects under a token's own inbox (the only ones a broker answers) and the seal primitives, for other Writ clients (the approver bot). */
export { inboxIdOfToken, replySubjectFor, generateSealKeyPair, openOutcome } from '../lib/seal.ts';
