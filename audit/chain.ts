/**
 * The hash chain's arithmetic, shared by the writer and the verifier: the hash of an
 * event, the wire form of a block, and the structural checks of a parsed event. The hot
 * parts live in block-check.mjs (plain JavaScript, also loaded by verify's worker threads).
 */
import { canonicalJson, type AuditEvent } from '../schemas/index.ts';
import { isSortedDeep } from './block-check.mjs';

export {
  analyzeBlock,
  batchNode,
  batchSigningText,
  blockLeaf,
  blockShapeError,
  blockSigningText,
  eventHash,
  eventShapeError,
  hashInput,
  isSortedDeep,
  sha256,
  storedEventHash,
  ZERO_HASH,
} from './block-check.mjs';
export type { BlockAnalysis, Signer } from './block-check.mjs';

/** The session that holds the signed checkpoints; no other writer may append to it. */
export const CHECKPOINT_SESSION = '_checkpoints';

/** Header on every block message: the session's chain length after this block (how a writer that did not write the head learns its count). */
export const CHAIN_LENGTH_HEADER = 'Writ-Chain-Length';

/**
 * A block's signature: the writer's key id and its Ed25519 signature (base64url) over
 * blockSigningText(), or, for a block signed in a batch, over batchSigningText() of the batch's
 * root, with `p` the path from the block's leaf to that root (block-check.mjs blockLeaf).
 */
export interface BlockSignature {
  kid: string;
  s: string;
  p?: readonly string[];
}

/** Serializes a block (signed when `sig` is given); events built in canonical key order take the native JSON.stringify path. */
export function blockJson(events: readonly AuditEvent[], sig?: BlockSignature): string {
  const body = events.map((e) => (isSortedDeep(e) ? JSON.stringify(e) : canonicalJson(e))).join(',');
  return `{"events":[${body}],${sig ? `"sig":{"kid":${JSON.stringify(sig.kid)},${sig.p ? `"p":${JSON.stringify(sig.p)},` : ''}"s":${JSON.stringify(sig.s)}},` : ''}"type":"audit.block","v":1}`;
}
