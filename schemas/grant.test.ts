import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { grantSigner, keyId, SignedGrants, verifyGrantSignature, verifyLocalGrant, type LocalGrant } from './grant.ts';
import type { GrantClaims } from './messages.ts';

function keyPair(): { pem: string; pub: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), pub: publicKey };
}

const now = Math.floor(Date.now() / 1000);
const claims = (iid: string): GrantClaims =>
  ({
    gid: `intent-${iid}`,
    iid: `intent-${iid}`,
    sid: 'session-1',
    tgt: 'db',
    kind: 'postgres',
    mode: 'read',
    sha256: '0'.repeat(64),
    iat: now,
    exp: now + 60,
    limits: {},
    policyVersion: 'v',
    sub: 'a',
  }) as GrantClaims;

describe('grants signed in this process (SignedGrants)', () => {
  const k = keyPair();
  const kid = keyId(k.pub);
  const trusted = new Map([[kid, k.pub]]);

  it('are taken once without a second verify, and verified in full after that', () => {
    const here = new SignedGrants();
    const jws = grantSigner(k.pem, kid, here).sign(claims('i1'));
    expect(here.size).toBe(1);
    expect(verifyGrantSignature(jws, trusted, here).iid).toBe('intent-i1');
    expect([here.size, here.vouched]).toEqual([0, 1]);
    // The same grant again (a redelivered order): the signature is checked, and holds.
    expect(verifyGrantSignature(jws, trusted, here).iid).toBe('intent-i1');
  });

  it('vouch for nothing but the exact bytes signed, under the key the verifier trusts', () => {
    const here = new SignedGrants();
    const signer = grantSigner(k.pem, kid, here);
    // Another payload under a recorded signature.
    const [h, , s] = signer.sign(claims('i2')).split('.') as [string, string, string];
    const forged = `${h}.${Buffer.from(JSON.stringify(claims('other'))).toString('base64url')}.${s}`;
    expect(() => verifyGrantSignature(forged, trusted, here)).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
    // The kid the verifier trusts names another key: the recorded key is not it.
    const other = keyPair();
    const jws = signer.sign(claims('i3'));
    expect(() => verifyGrantSignature(jws, new Map([[kid, other.pub]]), here)).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
    // An unknown kid is refused before anything is looked up.
    const jws2 = signer.sign(claims('i4'));
    expect(() => verifyGrantSignature(jws2, new Map(), here)).toThrow(/unknown key/);
    expect([here.size, here.vouched]).toEqual([1, 0]);
  });

  it('take no record but the one the signer made, under the key it derives from its own private key', () => {
    // A signer handed another key than its own cannot record it: the record names the signing key.
    const here = new SignedGrants();
    const attacker = keyPair();
    const jws = grantSigner(attacker.pem, kid, here).sign(claims('i5'));
    expect(() => verifyGrantSignature(jws, trusted, here)).toThrow(/does not verify/);
    expect(here.vouched).toBe(0);
    expect(() => new SignedGrants(0)).toThrow();
    expect(() => new SignedGrants(Number.NaN)).toThrow();
  });

  it('keep at most their bound, dropping the oldest (which is then verified in full)', () => {
    const here = new SignedGrants(2);
    const signer = grantSigner(k.pem, kid, here);
    const first = signer.sign(claims('a'));
    signer.sign(claims('b'));
    signer.sign(claims('c'));
    expect(here.size).toBe(2);
    expect(verifyGrantSignature(first, trusted, here).iid).toBe('intent-a');
    expect(here.size).toBe(2);
  });
});

describe('grants handed to a worker of this process unsigned (LocalGrant)', () => {
  const k = keyPair();
  const kid = keyId(k.pub);
  const trusted = new Map([[kid, k.pub]]);

  it('pass once, where a signed grant of the same signer would', () => {
    const g = grantSigner(k.pem, kid).vouch(claims('l1'));
    expect(verifyLocalGrant(g, trusted).iid).toBe('intent-l1');
    // A second use (the same object handed over again) is refused.
    expect(() => verifyLocalGrant(g, trusted)).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
  });

  it('are refused when the worker trusts another key under that id, or none', () => {
    const other = keyPair();
    expect(() => verifyLocalGrant(grantSigner(k.pem, kid).vouch(claims('l2')), new Map([[kid, other.pub]]))).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
    expect(() => verifyLocalGrant(grantSigner(k.pem, kid).vouch(claims('l3')), new Map())).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
    // A signer naming a trusted key's id while holding another private key.
    expect(() => verifyLocalGrant(grantSigner(other.pem, kid).vouch(claims('l4')), trusted)).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
  });

  it('are made by a signer only: a look-alike, or a copy of a real one, is refused', () => {
    const real = grantSigner(k.pem, kid).vouch(claims('l5'));
    const lookalike: LocalGrant = { kid, claims: claims('l6') };
    expect(() => verifyLocalGrant(lookalike, trusted)).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
    expect(() => verifyLocalGrant({ ...real }, trusted)).toThrow(expect.objectContaining({ code: 'WRIT_GRANT_INVALID' }));
    // The claims of a real one cannot be changed after it was made.
    expect(() => {
      (real.claims as { tgt: string }).tgt = 'other';
    }).toThrow(TypeError);
    expect(verifyLocalGrant(real, trusted).tgt).toBe('db');
  });

  it('hold a copy of the claims, frozen to the leaves: what the signer was given cannot change them later', () => {
    const decided = { ...claims('l7'), limits: { rowsAffected: 1 } } as GrantClaims;
    const g = grantSigner(k.pem, kid).vouch(decided);
    delete (decided.limits as { rowsAffected?: number }).rowsAffected;
    expect(() => {
      delete (g.claims.limits as { rowsAffected?: number }).rowsAffected;
    }).toThrow(TypeError);
    expect(verifyLocalGrant(g, trusted).limits).toEqual({ rowsAffected: 1 });
  });
});
