/**
 * The exact command text, for auditors. The log keeps the masked text (for everyone who may
 * read the log) and the exact text sealed to the auditors' X25519 key, bound to the intent and
 * session; `reveal` opens it with the private key (a file that never enters NATS) and checks it
 * against the SHA-256 the chain recorded.
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { open, seal, type SealedBox, type SealKeyPair } from '../lib/seal.ts';
import { commandText, sha256Hex, WritError, type AuditEvent, type Command } from '../schemas/index.ts';

const STATUS = 'audit.command';

export type { SealKeyPair };

export function sealCommandForAuditors(command: Command, auditorPublicKey: string, intentId: string, sessionId: string): SealedBox {
  return seal({ command }, auditorPublicKey, { intentId, sessionId, status: STATUS });
}

/** The auditors' key pair from a PKCS#8 PEM file of an X25519 private key. */
export function auditorKeyPair(privateKeyFile: string): SealKeyPair {
  const privateKey = createPrivateKey(readFileSync(privateKeyFile, 'utf8'));
  if (privateKey.asymmetricKeyType !== 'x25519') throw new WritError('WRIT_CONFIG_INVALID', 'the auditor key must be an X25519 private key');
  return { privateKey, publicKey: createPublicKey(privateKey).export({ format: 'jwk' }).x! };
}

/** The exact command of an `intent.received` event, checked against its recorded digest. */
export function revealCommand(event: AuditEvent, kp: SealKeyPair): Command {
  const p = event.payload as { commandSealed?: SealedBox; commandSha256?: string } | undefined;
  if (!p?.commandSealed || !event.intentId) throw new WritError('WRIT_NOT_FOUND', 'this event keeps no sealed command');
  const body = open(p.commandSealed, kp, { intentId: event.intentId, sessionId: event.sessionId, status: STATUS }) as { command: Command };
  if (sha256Hex(commandText(body.command)) !== p.commandSha256) throw new WritError('WRIT_RECORD_TAMPERED', 'the sealed command does not match the digest the chain recorded');
  return body.command;
}
