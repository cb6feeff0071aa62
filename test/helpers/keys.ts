// Ed25519 key pairs for tests that sign (audit blocks, grants): the private key and its public half as PEM.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';

export function ed25519Pair(): { priv: KeyObject; pub: string } {
  const k = generateKeyPairSync('ed25519');
  return { priv: k.privateKey, pub: k.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}
