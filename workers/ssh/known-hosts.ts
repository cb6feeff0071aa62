/**
 * Host-key pinning for the SSH executor. A target's pins come from a known_hosts file
 * (plain, wildcard, negated and hashed `|1|` host patterns; `@revoked` honoured;
 * `@cert-authority` ignored, since Writ does not accept host certificates) and/or
 * `SHA256:` fingerprints. Pins are resolved once, at construction: an unknown or changed
 * key is refused on every connection, and a config that pins nothing for the host is
 * refused at start rather than on the first run.
 */
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { WritError } from '../../schemas/index.ts';

/** Key types whose lines are used; anything else (ssh-dss, sk-…, certificates) is skipped. */
const KEY_ALGORITHMS: Readonly<Record<string, readonly string[]>> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  // One RSA key serves three signature algorithms; SHA-2 ones first, as OpenSSH does.
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};
/** ssh2's own preference order, which the restricted list keeps. */
const PREFERENCE = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

/** One usable line of a known_hosts file. */
export interface KnownHostEntry {
  /** `@revoked` lines refuse their key for every host; plain lines pin it. */
  revoked: boolean;
  /** The host field as written: comma-separated patterns, or one hashed `|1|salt|hash`. */
  hosts: string;
  /** Key type, e.g. `ssh-ed25519`; always equal to the type inside `key`. */
  keyType: string;
  /** The raw public key blob (base64-decoded), as the server sends it in the key exchange. */
  key: Buffer;
}

/** The host-key policy for one target: what ssh2's `hostVerifier` consults. */
export interface HostKeyPins {
  /** True when the raw key blob is pinned and not revoked. */
  accepts(key: Buffer): boolean;
  /**
   * Host-key algorithms to negotiate. Set when only known_hosts keys are pinned, so a server
   * with several host keys presents a pinned one; undefined (ssh2's defaults, ed25519 first)
   * when fingerprints are pinned, since a fingerprint does not say its key type.
   */
  algorithms: string[] | undefined;
  /** How many keys are pinned (for the start-up log). */
  count: number;
}

/** `SHA256:` + unpadded base64 of SHA-256 over the raw key blob, as `ssh-keygen -lf` prints it. */
export function fingerprintOf(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The key type written inside a key blob (its first SSH string), or null when malformed. */
function blobType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return null;
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** Parses known_hosts text; comments, blank, malformed and unsupported lines are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith('@')) marker = fields.shift();
    if (marker !== undefined && marker !== '@revoked') continue; // @cert-authority: host certificates are not accepted
    const [hosts, keyType, b64] = fields;
    if (hosts === undefined || keyType === undefined || b64 === undefined) continue;
    if (!Object.hasOwn(KEY_ALGORITHMS, keyType) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    const key = Buffer.from(b64, 'base64');
    if (blobType(key) !== keyType) continue; // a line whose blob says another type is not trusted for either
    out.push({ revoked: marker === '@revoked', hosts, keyType, key });
  }
  return out;
}

/** `*` and `?` wildcards, case-insensitive, as in OpenSSH's match_pattern. */
function globMatch(pattern: string, name: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(name);
}

/** The name known_hosts records for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** Does a known_hosts host field match this name? A negated pattern that matches excludes the line. */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  let matched = false;
  for (const p of field.split(',')) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) {
      matched = true;
    }
  }
  return matched;
}

/** Builds one target's pins from its config; `what` names the config key in errors. */
export function loadHostKeyPins(cfg: { host: string; port: number; hostKeys: { knownHostsFile?: string | undefined; fingerprints: string[] } }, what: string): HostKeyPins {
  const name = knownHostsName(cfg.host, cfg.port);
  let entries: KnownHostEntry[] = [];
  if (cfg.hostKeys.knownHostsFile) {
    let text: string;
    try {
      text = readFileSync(cfg.hostKeys.knownHostsFile, 'utf8');
    } catch (e) {
      throw new WritError('WRIT_CONFIG_INVALID', `${what}.knownHostsFile: cannot read ${cfg.hostKeys.knownHostsFile}`, { cause: e });
    }
    entries = parseKnownHosts(text);
  }
  // A revoked key stays refused whatever host pattern its line names.
  const revoked = entries.filter((e) => e.revoked).map((e) => e.key);
  const pinned = entries.filter((e) => !e.revoked && hostFieldMatches(e.hosts, name));
  const fingerprints = new Set(cfg.hostKeys.fingerprints.map((f) => f.replace(/=+$/, '')));
  if (pinned.length === 0 && fingerprints.size === 0) {
    throw new WritError('WRIT_CONFIG_INVALID', `${what}: no host key is pinned for ${name} (the known_hosts file has no usable entry for it)`);
  }
  const types = new Set(pinned.flatMap((e) => KEY_ALGORITHMS[e.keyType] ?? []));
  return {
    count: pinned.length + fingerprints.size,
    algorithms: fingerprints.size === 0 ? PREFERENCE.filter((a) => types.has(a)) : undefined,
    accepts(key: Buffer): boolean {
      if (revoked.some((r) => r.equals(key))) return false;
      return pinned.some((p) => p.key.equals(key)) || fingerprints.has(fingerprintOf(key));
    },
  };
}
