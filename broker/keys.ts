/**
 * The broker's grant-signing key: an Ed25519 key in PKCS8 PEM, created on first start
 * with mode 0600, and its public half written beside it for workers to pin.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { replaceFile, writeFileOnce } from '../lib/files.ts';
import { dirname } from 'node:path';
import { grantSigner, keyId, publicKeyFromPem, type GrantSigner, type SignedGrants } from '../schemas/index.ts';

export function publicKeyFileFor(keyFile: string): string {
  return keyFile.replace(/\.pem$/, '') + '.pub.pem';
}

export function loadOrCreateGrantKey(keyFile: string, signedHere?: SignedGrants): { signer: GrantSigner; publicKeyPem: string } {
  if (!existsSync(keyFile)) {
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    // Brokers starting together with one key file all end up with the key created first.
    writeFileOnce(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  }
  const privatePem = readFileSync(keyFile, 'utf8');
  // The public half is always derived from the private key, never trusted from the file
  // beside it (which a racing creator may have written for its own key); the file is written
  // for workers to pin when it is missing.
  const pub = publicKeyFromPem(privatePem);
  const publicKeyPem = pub.export({ type: 'spki', format: 'pem' }).toString();
  const pubFile = publicKeyFileFor(keyFile);
  if (!existsSync(pubFile) || readFileSync(pubFile, 'utf8') !== publicKeyPem) replaceFile(pubFile, publicKeyPem, 0o644);
  return { signer: grantSigner(privatePem, keyId(pub), signedHere), publicKeyPem };
}
