/** Public entry of client/: the agent SDK. The `writ` tool is cmd/cli.ts. */
export { WritClient, WritOutcomeError, newId, type IntentRequest, type Submitted, type WritClientOptions } from './sdk.ts';
export * from './sdk-extras.ts';
