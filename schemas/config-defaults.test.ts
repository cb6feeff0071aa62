/**
 * Two configs parsed in one process do not share their defaults: a section left out of one
 * file is a fresh object, resolved against that file's folder, not the first file's (frozen) one.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.ts';

describe('config defaults', () => {
  it("resolves each config's default paths against its own folder, however many are parsed", () => {
    const a = parseConfig({}, '/srv/a');
    const b = parseConfig({}, '/srv/b');
    expect(a.identity.devIssuer.dir).toBe('/srv/a/.data/dev-issuer');
    expect(b.identity.devIssuer.dir).toBe('/srv/b/.data/dev-issuer');
    expect(b.grants.keyFile).toBe('/srv/b/.data/grant-key.pem');
  });
});
