// Host-key pinning and the remote command rule, without a server.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WritError } from '../../schemas/index.ts';
import { remoteCommand } from './command.ts';
import { fingerprintOf, hostFieldMatches, knownHostsName, loadHostKeyPins, parseKnownHosts } from './known-hosts.ts';

let dir: string;
const keys: Record<'ed' | 'ec' | 'rsa', { line: string; blob: Buffer; fingerprint: string }> = {} as never;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'writ-known-hosts-'));
  for (const [name, type] of [
    ['ed', 'ed25519'],
    ['ec', 'ecdsa'],
    ['rsa', 'rsa'],
  ] as const) {
    const f = join(dir, name);
    execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-f', f]);
    const [t, b64] = readFileSync(`${f}.pub`, 'utf8').trim().split(/\s+/);
    const fingerprint = execFileSync('ssh-keygen', ['-lf', `${f}.pub`], { encoding: 'utf8' }).split(/\s+/)[1]!;
    keys[name] = { line: `${t} ${b64}`, blob: Buffer.from(b64!, 'base64'), fingerprint };
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pins(text: string, host = 'db.example.org', port = 22, fingerprints: string[] = []) {
  const file = join(dir, `kh-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  return loadHostKeyPins({ host, port, hostKeys: { knownHostsFile: file, fingerprints } }, 'workers.ssh[box].hostKeys');
}

describe('host-key pins', () => {
  it('computes fingerprints exactly as ssh-keygen -lf prints them', () => {
    for (const k of Object.values(keys)) expect(fingerprintOf(k.blob)).toBe(k.fingerprint);
  });

  it('names a host as known_hosts records it', () => {
    expect(knownHostsName('DB.example.org', 22)).toBe('db.example.org');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });

  it('matches plain, wildcard and negated patterns', () => {
    expect(hostFieldMatches('a.example.org,db.example.org', 'db.example.org')).toBe(true);
    expect(hostFieldMatches('*.example.org', 'db.example.org')).toBe(true);
    expect(hostFieldMatches('db?.example.org', 'db1.example.org')).toBe(true);
    expect(hostFieldMatches('*.example.org,!db.example.org', 'db.example.org')).toBe(false);
    expect(hostFieldMatches('db.example.org', '[db.example.org]:2222')).toBe(false);
    expect(hostFieldMatches('[db.example.org]:2222', '[db.example.org]:2222')).toBe(true);
    expect(hostFieldMatches('db.example.org.evil', 'db.example.org')).toBe(false);
  });

  it('matches hashed entries written by ssh-keygen -H', () => {
    const file = join(dir, 'hashed');
    writeFileSync(file, `[db.example.org]:2222 ${keys.ed.line}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'ignore' });
    const [entry] = parseKnownHosts(readFileSync(file, 'utf8'));
    expect(entry!.hosts).toMatch(/^\|1\|/);
    expect(hostFieldMatches(entry!.hosts, '[db.example.org]:2222')).toBe(true);
    expect(hostFieldMatches(entry!.hosts, 'db.example.org')).toBe(false);
  });

  it('accepts only the pinned key and restricts negotiation to its type', () => {
    const p = pins(`# comment\n\nother.example.org ${keys.ec.line}\ndb.example.org ${keys.ed.line} comment\n`);
    expect(p.accepts(keys.ed.blob)).toBe(true);
    expect(p.accepts(keys.ec.blob)).toBe(false); // pinned for another host
    expect(p.accepts(keys.rsa.blob)).toBe(false);
    expect(p.algorithms).toEqual(['ssh-ed25519']);
  });

  it('offers every RSA signature algorithm for a pinned RSA key, in ssh2 preference order', () => {
    const p = pins(`db.example.org ${keys.rsa.line}\ndb.example.org ${keys.ec.line}\n`);
    expect(p.algorithms).toEqual(['ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  });

  it('leaves negotiation open when a fingerprint is pinned, and accepts by fingerprint', () => {
    const p = pins('', 'db.example.org', 22, [keys.rsa.fingerprint]);
    expect(p.algorithms).toBeUndefined();
    expect(p.accepts(keys.rsa.blob)).toBe(true);
    expect(p.accepts(keys.ed.blob)).toBe(false);
  });

  it('refuses a @revoked key even when a fingerprint pins it', () => {
    const p = pins(`@revoked * ${keys.ed.line}\ndb.example.org ${keys.ed.line}\n`, 'db.example.org', 22, [keys.ed.fingerprint]);
    expect(p.accepts(keys.ed.blob)).toBe(false);
  });

  it('ignores @cert-authority lines and lines whose blob is of another type', () => {
    const [, b64] = keys.ed.line.split(' ');
    expect(parseKnownHosts(`@cert-authority *.example.org ${keys.ed.line}\ndb.example.org ssh-rsa ${b64}\n`)).toEqual([]);
  });

  it('refuses a config that pins nothing for the host, naming the key', () => {
    expect(() => pins(`other.example.org ${keys.ed.line}\n`)).toThrow(/workers\.ssh\[box\]\.hostKeys: no host key is pinned for db\.example\.org/);
    expect(() => loadHostKeyPins({ host: 'h', port: 22, hostKeys: { knownHostsFile: join(dir, 'missing'), fingerprints: [] } }, 'x')).toThrow(/x\.knownHostsFile: cannot read/);
  });
});

describe('remote command', () => {
  it('re-quotes a plain command from its parsed words', async () => {
    expect(await remoteCommand('ls -la /tmp')).toEqual({ line: 'ls -la /tmp', requoted: true });
    expect(await remoteCommand(`echo "a  b" c\\ d 'e'"'"'f'`)).toEqual({ line: `echo 'a  b' 'c d' 'e'"'"'f'`, requoted: true });
    expect(await remoteCommand('ls   /tmp   # trailing comment')).toEqual({ line: 'ls /tmp', requoted: true });
  });

  it('sends anything richer as the exact approved text', async () => {
    for (const text of ['ls *.log', 'ls ~/x', 'cat {a,b}', 'echo $HOME', 'echo hi > /tmp/x', 'ls | wc -l', 'ls; rm x', 'sudo ls', 'X=1 ls', `sh -c 'echo hi; exit 3'`, 'a=b']) {
      expect(await remoteCommand(text)).toEqual({ line: text, requoted: false });
    }
  });

  it('refuses what the classifier refuses, with its code', async () => {
    const code = (text: string) =>
      remoteCommand(text).then(
        () => 'ok',
        (e: unknown) => (e as WritError).code,
      );
    expect(await code('eval "$X"')).toBe('WRIT_SHELL_UNKNOWN');
    expect(await code('')).toBe('WRIT_SHELL_EMPTY');
  });
});
