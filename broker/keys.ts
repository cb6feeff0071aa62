/**
 * The broker's grant-signing key: an Ed25519 key in PKCS8 PEM, created on first start
 * with mode 0600, and its public half written beside it for workers to pin.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { grantSigner, keyId, publicKeyFromPem, type GrantSigner } from '../schemas/index.ts';

export function publicKeyFileFor(keyFile: string): string {
  return keyFile.replace(/\.pem$/, '') + '.pub.pem';
}

export function loadOrCreateGrantKey(keyFile: string): { signer: GrantSigner; publicKeyPem: string } {
  if (!existsSync(keyFile)) {
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(publicKeyFileFor(keyFile), publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const privatePem = readFileSync(keyFile, 'utf8');
  const pubFile = publicKeyFileFor(keyFile);
  const publicKeyPem = existsSync(pubFile) ? readFileSync(pubFile, 'utf8') : '';
  const pub = publicKeyPem ? publicKeyFromPem(publicKeyPem) : publicKeyFromPem(privatePem);
  return { signer: grantSigner(privatePem, keyId(pub)), publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString() };
}
