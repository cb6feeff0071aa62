/**
 * What `writ` commands use beyond reading the command line, loaded by cmd/cli.ts once the
 * command line says a command runs: `writ --help` starts without NATS, zod, jose or pino
 * (jose, for the development issuer, loads only in `writ token`).
 * The NATS connect comes from lib/nats.ts itself, not the lib/ barrel, for the same reason
 * (the barrel also loads the logger and the consume loop).
 */
export { parseDuration } from '../lib/duration.ts';
export { connectNats } from '../lib/nats.ts';
export { IdSchema, loadConfigFile, names, TargetNameSchema, WindowScopeSchema } from '../schemas/index.ts';
export { WritClient } from '../client/sdk.ts';
export { DATA_DIR, defaultConfigFile, natsForRole } from './paths.ts';
