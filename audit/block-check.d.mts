/** Types of block-check.mjs (plain JavaScript so worker threads can load it without a TypeScript loader). */
import type { AuditEvent } from '../schemas/index.ts';

export declare const ZERO_HASH: string;
export declare function sha256(data: string): string;
export declare function canonicalJson(value: unknown): string;
export declare function isSortedDeep(v: unknown): boolean;
export declare function hashInput(ev: AuditEvent): string;
export declare function eventHash(ev: AuditEvent): string;
export declare function storedEventHash(ev: AuditEvent): string | undefined;
export declare function eventShapeError(e: unknown, hexChainFields?: boolean): string | undefined;
export declare function blockShapeError(b: unknown): string | undefined;
export declare function blockSigningText(sessionId: string, kid: string, hashes: readonly string[]): string;
export declare function blockLeaf(sessionId: string, kid: string, hashes: readonly string[]): Buffer;
export declare function batchNode(left: Buffer, right: Buffer): Buffer;
export declare function batchSigningText(kid: string, root: Buffer): string;

/** A registered writer key, as the per-block check needs it. */
export interface Signer {
  key: import('node:crypto').KeyObject;
  kind: string;
  /** When set, every event the key signs must name this actor id. */
  id?: string | undefined;
  /** Epoch ms; events outside [notBefore, notAfter] are refused. */
  notBefore?: number | undefined;
  notAfter?: number | undefined;
  /** When set (worker keys), the key covers only intents for these targets. */
  targets?: readonly string[] | undefined;
}

export interface BlockError {
  /** Index of the event in the block; -1 for the block as a whole. */
  index: number;
  eventId: string;
  reason: string;
}

export interface BlockAnalysis {
  /** Well-formed events in the block. */
  events: number;
  /** prev, id and index of the first well-formed event: the link to the session's head. */
  firstPrev?: string | undefined;
  firstId?: string;
  firstIndex?: number;
  /** Hash and id of the last well-formed event: the session's new head. */
  lastHash?: string;
  lastId?: string;
  errors?: BlockError[];
  /** The events of a checkpoint-session block, for the caller's signature and claim checks. */
  checkpoints?: AuditEvent[];
  /** Key id the block is signed with. */
  signer?: string;
  /** The block carries no signature. */
  unsigned?: true;
  /** With `evidence`: intent id and type of each event naming an intent, flat pairs. */
  evidence?: string[];
  /** When a registered key is bound to targets: intent id and target of each intent.received, flat pairs. */
  received?: string[];
  /** Events signed by a key bound to targets: index, event id and intent id, flat triples. */
  bound?: (string | number)[];
}

export declare function analyzeBlock(data: Uint8Array, sessionId: string, checkpointSession: string, evidence?: boolean, signers?: ReadonlyMap<string, Signer>): BlockAnalysis;
