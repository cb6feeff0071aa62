/**
 * Writer keys of the audit log. Every writer (broker replica, worker) signs each block it
 * appends with its own Ed25519 key, so publish rights on `writ.audit.>` are no longer enough
 * to add evidence: a block counts only when its key is in the operator's key registry, and
 * only for the events that key's registered actor kind may write (block-check.mjs,
 * typeAllowedFor).
 *
 * The registry is a YAML or JSON file the operator owns (never a NATS bucket: every service
 * that could write a bucket is a writer the registry must constrain):
 *
 *   v: 1
 *   keys:
 *     3f2a…(16 hex):            # keyId(): first 16 hex of SHA-256 of the SPKI DER
 *       kind: worker            # broker | worker | approver | operator | system | agent
 *       id: pg-1                # optional: events must name exactly this actor id
 *       targets: [db, web]      # optional, workers only: its exec events count only for
 *                               # intents the broker received for these targets
 *       notBefore: 2025-01-01T00:00:00Z   # optional, ISO 8601 or epoch ms
 *       notAfter: 2026-01-01T00:00:00Z    # optional
 *       publicKey: |
 *         -----BEGIN PUBLIC KEY-----
 *         …
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { replaceFile, writeFileOnce } from '../lib/files.ts';
import { dirname } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { keyId, WritError, type AuditEvent } from '../schemas/index.ts';
import { batchNode, batchSigningText, blockLeaf, blockSigningText, type BlockSignature, type Signer } from './chain.ts';

const KINDS = new Set(['agent', 'broker', 'worker', 'approver', 'operator', 'system']);

/** Signs blocks for one writer. */
export interface BlockSigner {
  readonly keyId: string;
  sign(sessionId: string, events: readonly AuditEvent[]): BlockSignature;
  /**
   * Signs blocks together: one Ed25519 signature over the root of their hash tree, each block
   * with its path (block-check.mjs blockLeaf). A lone block is signed as by sign().
   */
  signBatch(blocks: ReadonlyArray<{ sessionId: string; events: readonly AuditEvent[] }>): BlockSignature[];
}

/** Blocks under one batch signature at most (the verifier accepts paths up to MAX_BATCH_DEPTH steps). */
const BATCH_MAX = 1024;

/** A block signer over an Ed25519 private key (PKCS8 PEM or KeyObject). */
export function blockSigner(privateKey: string | KeyObject): BlockSigner {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new WritError('WRIT_CONFIG_INVALID', 'audit: the block signing key must be an Ed25519 private key');
  const kid = keyId(createPublicKey(key));
  const hashesOf = (events: readonly AuditEvent[]) => events.map((e) => e.hash);
  const signOne = (sessionId: string, events: readonly AuditEvent[]): BlockSignature => ({
    kid,
    s: sign(null, Buffer.from(blockSigningText(sessionId, kid, hashesOf(events))), key).toString('base64url'),
  });
  /** One tree: its root signed once, and each leaf's path (sibling side and hash, leaf upwards). */
  const signTree = (leaves: Buffer[]): BlockSignature[] => {
    const paths: string[][] = leaves.map(() => []);
    // Which leaves each node of the current level covers: a node's step is added to all of them.
    let covers: number[][] = leaves.map((_, i) => [i]);
    let level = leaves;
    while (level.length > 1) {
      const up: Buffer[] = [];
      const upCovers: number[][] = [];
      for (let i = 0; i < level.length; i += 2) {
        if (i + 1 === level.length) {
          // An odd node is carried up as it is: no step for its leaves at this level.
          up.push(level[i]!);
          upCovers.push(covers[i]!);
          continue;
        }
        const [l, r] = [level[i]!, level[i + 1]!];
        for (const leaf of covers[i]!) paths[leaf]!.push(`r${r.toString('base64url')}`);
        for (const leaf of covers[i + 1]!) paths[leaf]!.push(`l${l.toString('base64url')}`);
        up.push(batchNode(l, r));
        upCovers.push([...covers[i]!, ...covers[i + 1]!]);
      }
      level = up;
      covers = upCovers;
    }
    const s = sign(null, Buffer.from(batchSigningText(kid, level[0]!)), key).toString('base64url');
    return paths.map((p) => ({ kid, p, s }));
  };
  return {
    keyId: kid,
    sign: signOne,
    signBatch: (blocks) => {
      if (blocks.length === 1) return [signOne(blocks[0]!.sessionId, blocks[0]!.events)];
      const out: BlockSignature[] = [];
      for (let i = 0; i < blocks.length; i += BATCH_MAX) {
        const part = blocks.slice(i, i + BATCH_MAX);
        out.push(...(part.length === 1 ? [signOne(part[0]!.sessionId, part[0]!.events)] : signTree(part.map((b) => blockLeaf(b.sessionId, kid, hashesOf(b.events))))));
      }
      return out;
    },
  };
}

/**
 * A service's audit signing key: Ed25519 PKCS8 PEM in `keyFile`, created on first start with
 * mode 0600 (directory 0700), its public half beside it (`….pub.pem`) for the operator to
 * register (`writ audit keys add`). Services that share the file and start together all end
 * up with the one key that was created first (writeFileOnce). A key file that is not a PEM
 * private key is refused (WRIT_CONFIG_INVALID), never replaced.
 */
export function loadOrCreateAuditKey(keyFile: string): { signer: BlockSigner; publicKeyPem: string; keyId: string } {
  if (!existsSync(keyFile)) {
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileOnce(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile, 'utf8'));
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `audit: ${keyFile} is not a PEM private key (${(e as Error).message}); remove it to have a new key made`, { cause: e });
  }
  const signer = blockSigner(key);
  const publicKeyPem = createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
  // Written by whoever finds it missing (also after a crash between the two files); every writer writes the same text.
  const pubFile = publicKeyFileFor(keyFile);
  if (!existsSync(pubFile)) replaceFile(pubFile, publicKeyPem, 0o644);
  return { signer, keyId: signer.keyId, publicKeyPem };
}

function publicKeyFileFor(keyFile: string): string {
  return keyFile.replace(/\.pem$/, '') + '.pub.pem';
}

/** One registered writer key. */
export interface RegisteredKey extends Signer {
  keyId: string;
  publicKeyPem: string;
}

/** Registered writer keys by key id. */
export type KeyRegistry = ReadonlyMap<string, RegisteredKey>;

function time(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const t = typeof v === 'number' ? v : v instanceof Date ? v.getTime() : typeof v === 'string' ? (/^\d+$/.test(v) ? Number(v) : Date.parse(v)) : NaN;
  if (!Number.isSafeInteger(t)) throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${what} must be ISO 8601 or epoch ms`);
  return t;
}

/** Parses a registry (YAML or JSON). Every entry's key id must be its public key's: an entry cannot alias another key. */
export function parseKeyRegistry(text: string): Map<string, RegisteredKey> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `audit key registry is not YAML/JSON: ${(e as Error).message}`);
  }
  const keys = (doc as { v?: unknown; keys?: unknown } | null)?.keys ?? {};
  if ((doc !== null && (doc as { v?: unknown }).v !== 1) || keys === null || typeof keys !== 'object' || Array.isArray(keys)) {
    throw new WritError('WRIT_CONFIG_INVALID', 'audit key registry must be {v: 1, keys: {<keyId>: {kind, publicKey, id?, notBefore?, notAfter?}}}');
  }
  const out = new Map<string, RegisteredKey>();
  for (const [kid, raw] of Object.entries(keys as Record<string, unknown>)) {
    const e = raw as Record<string, unknown> | null;
    const where = `key ${JSON.stringify(kid)}`;
    if (!e || typeof e !== 'object') throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where} is not an object`);
    const extra = Object.keys(e).find((k) => !['kind', 'id', 'publicKey', 'notBefore', 'notAfter', 'targets', 'note'].includes(k));
    if (extra) throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where} has unknown field ${JSON.stringify(extra)}`);
    if (typeof e.kind !== 'string' || !KINDS.has(e.kind)) throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where} needs kind (${[...KINDS].join('|')})`);
    if (e.id !== undefined && (typeof e.id !== 'string' || e.id.length === 0)) throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where}: id must be a non-empty string`);
    const targets = targetsOf(e.targets, e.kind, where);
    let key: KeyObject;
    try {
      key = createPublicKey(String(e.publicKey));
    } catch {
      throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where}: publicKey is not a PEM public key`);
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where} is not an Ed25519 key`);
    if (keyId(key) !== kid) throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where} is listed under the wrong id (its id is ${keyId(key)})`);
    out.set(kid, {
      keyId: kid,
      key,
      kind: e.kind,
      publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
      ...(typeof e.id === 'string' ? { id: e.id } : {}),
      ...(e.notBefore !== undefined ? { notBefore: time(e.notBefore, `${where} notBefore`) } : {}),
      ...(e.notAfter !== undefined ? { notAfter: time(e.notAfter, `${where} notAfter`) } : {}),
      ...(targets ? { targets } : {}),
    });
  }
  return out;
}

/** A worker key's targets: a non-empty list of target names. Any other kind has none to bind. */
function targetsOf(v: unknown, kind: string, where: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (kind !== 'worker') throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where}: only a worker key is bound to targets`);
  if (!Array.isArray(v) || v.length === 0 || !v.every((t) => typeof t === 'string' && /^[A-Za-z0-9_-]+$/.test(t))) {
    throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${where}: targets must be a non-empty list of target names`);
  }
  return [...new Set(v as string[])];
}

export function loadKeyRegistry(file: string): Map<string, RegisteredKey> {
  return parseKeyRegistry(readFileSync(file, 'utf8'));
}

/**
 * A registry file re-read when it changes (mtime or size), for long-running services: the
 * operator registers a new worker's key without restarting the broker. A file that fails to
 * parse keeps the last good registry and is reported through `onError`.
 */
export function watchedKeyRegistry(file: string, onError?: (e: unknown) => void): () => KeyRegistry {
  let stamp = '';
  let current: KeyRegistry = new Map();
  return () => {
    try {
      const st = statSync(file);
      const now = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (now !== stamp) {
        current = loadKeyRegistry(file);
        stamp = now;
      }
    } catch (e) {
      onError?.(e);
    }
    return current;
  };
}

/** What `writ audit keys add` registers. */
export interface NewKey {
  publicKeyPem: string;
  kind: string;
  id?: string | undefined;
  notBefore?: number | undefined;
  notAfter?: number | undefined;
  /** Workers: the targets its exec events may cover (unset: any). */
  targets?: readonly string[] | undefined;
  /**
   * How `targets` meet a key already registered: `replace` (the operator's `keys add`), or
   * `widen` (a service registering itself: the targets of every process sharing the key file
   * are kept, and a key the operator left unbound stays unbound).
   */
  targetsMode?: 'replace' | 'widen';
}

/** A lock older than this is left by a process that died holding it, and is taken over. */
const STALE_LOCK_MS = 10_000;

/** Blocks this thread for `ms` (the registry is written at start, synchronously). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Runs `f` holding `<file>.lock` (created with 'wx', so one process at a time): a registry
 * update reads, changes and replaces the whole file, and two services registering their keys
 * at once would otherwise each write a copy without the other's key.
 */
function withFileLock<T>(file: string, f: () => T, timeoutMs = 30_000): T {
  const lock = `${file}.lock`;
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) rmSync(lock, { force: true });
      } catch {
        // gone meanwhile: try again
      }
      if (Date.now() > end) throw new WritError('WRIT_CONFIG_INVALID', `audit key registry: ${lock} is held by another process; remove it if no writ process is running`);
      pause(10 + Math.random() * 20);
    }
  }
  try {
    return f();
  } finally {
    rmSync(lock, { force: true });
  }
}

/**
 * Adds (or replaces) a key in the registry file; returns its key id. Read, changed and
 * replaced under a lock file, written whole (rename), so concurrent adders keep every key.
 */
export function addKeyToRegistry(file: string, k: NewKey): string {
  mkdirSync(dirname(file), { recursive: true });
  return withFileLock(file, () => {
    const doc = existsSync(file) ? (parseYaml(readFileSync(file, 'utf8')) as { v: 1; keys?: Record<string, unknown> } | null) : null;
    const out = { v: 1 as const, keys: { ...(doc?.keys ?? {}) } };
    const key = createPublicKey(k.publicKeyPem);
    const kid = keyId(key);
    let targets = k.targets;
    if (targets !== undefined && k.targetsMode === 'widen' && out.keys[kid] !== undefined) {
      const had = (out.keys[kid] as { targets?: unknown }).targets;
      targets = Array.isArray(had) ? [...new Set([...(had as string[]), ...targets])] : undefined;
    }
    out.keys[kid] = {
      kind: k.kind,
      ...(k.id !== undefined ? { id: k.id } : {}),
      ...(targets !== undefined ? { targets: [...targets] } : {}),
      ...(k.notBefore !== undefined ? { notBefore: new Date(k.notBefore).toISOString() } : {}),
      ...(k.notAfter !== undefined ? { notAfter: new Date(k.notAfter).toISOString() } : {}),
      publicKey: key.export({ type: 'spki', format: 'pem' }).toString(),
    };
    const text = stringifyYaml(out);
    parseKeyRegistry(text); // never write a registry that would not load
    replaceFile(file, text, 0o644);
    return kid;
  });
}
