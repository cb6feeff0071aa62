/**
 * Public entry of audit/: the hash-chained session log. Writing (AuditWriter), signed
 * checkpoints (Checkpointer), reading, verification and the `writ audit …` commands.
 */
export { auditStreamConfig, ensureAuditStream } from './stream.ts';
export { AuditWriter, SharedHeads } from './writer.ts';
export { Checkpointer, type CheckpointPayload, type CheckpointRecord } from './checkpoint.ts';
export { readSession, listSessions, exportJsonl } from './read.ts';
export { verify } from './verify.ts';
export { runAuditCli, type AuditCliIo } from './cli.ts';
export { addKeyToRegistry, blockSigner, loadKeyRegistry, loadOrCreateAuditKey, parseKeyRegistry, type BlockSigner, type KeyRegistry } from './keys.ts';
export { CHAIN_LENGTH_HEADER, ZERO_HASH, eventHash } from './chain.ts';
export type * from './types.ts';
export { serviceAuditKey } from './service-key.ts';
export { auditorKeyPair, revealCommand, sealCommandForAuditors } from './reveal.ts';
