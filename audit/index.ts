/**
 * Public entry of audit/: the hash-chained session log. Writing (AuditWriter), signed
 * checkpoints (Checkpointer), reading, verification and the `writ audit …` commands.
 */
export { auditStreamConfig, ensureAuditStream, type AuditStreamOptions } from './stream.ts';
export { AuditWriter } from './writer.ts';
export { Checkpointer, checkpointKeys, type CheckpointerOptions, type CheckpointPayload, type CheckpointRecord } from './checkpoint.ts';
export { readSession, readSessionStored, listSessions, exportJsonl, tail, outcomeOf } from './read.ts';
export { verify } from './verify.ts';
export { runAuditCli, type AuditCliIo } from './cli.ts';
export {
  addKeyToRegistry,
  blockSigner,
  loadKeyRegistry,
  loadOrCreateAuditKey,
  parseKeyRegistry,
  publicKeyFileFor as auditPublicKeyFileFor,
  watchedKeyRegistry,
  type BlockSigner,
  type KeyRegistry,
  type NewKey,
  type RegisteredKey,
} from './keys.ts';
export { typeAllowedFor } from './chain.ts';
export { CHECKPOINT_SESSION, CHAIN_LENGTH_HEADER, ZERO_HASH, eventHash } from './chain.ts';
export type * from './types.ts';
export { serviceAuditKey } from './service-key.ts';
export { auditorKeyPair, revealCommand, sealCommandForAuditors } from './reveal.ts';
