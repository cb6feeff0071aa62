// @ts-check
// Worker thread of verify(): analyzes batches of blocks (parse, shape, hashes, in-block
// links) while the main thread reads the stream and links blocks into chains.
import { createPublicKey } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { analyzeBlock } from './block-check.mjs';

if (!parentPort) throw new Error('verify-worker.mjs runs as a worker thread');
const port = parentPort;
/** Registered writer keys (verify's `signers`), sent as PEM. @type {Map<string, import('./block-check.d.mts').Signer> | undefined} */
const signers = workerData?.signers ? new Map(workerData.signers.map((/** @type {any} */ s) => [s.keyId, { ...s, key: createPublicKey(s.publicKeyPem) }])) : undefined;

port.on('message', (/** @type {{ id: number; buf: ArrayBuffer; ends: number[]; sessions: string[]; checkpointSession: string; evidence?: boolean }} */ b) => {
  const bytes = new Uint8Array(b.buf);
  const out = new Array(b.sessions.length);
  let start = 0;
  for (let i = 0; i < b.sessions.length; i++) {
    const end = /** @type {number} */ (b.ends[i]);
    out[i] = analyzeBlock(bytes.subarray(start, end), /** @type {string} */ (b.sessions[i]), b.checkpointSession, b.evidence === true, signers);
    start = end;
  }
  port.postMessage({ id: b.id, out });
});

// Tells the pool the modules loaded; it falls back to working inline when this never comes.
port.postMessage({ ready: true });
