/**
 * docker-compose.yml and deploy/compose/, without a Docker engine (none runs here): Debian's
 * docker-compose 1.29 parses and validates the file (`config`), and the parsed result is checked
 * for what the stack promises: every service, health checks on the services' own endpoints,
 * restart policies, no host port 4222, each secret only where it is needed. The pieces the
 * containers run are checked with the real tools: Writ's config schema and policy tests,
 * nats-server's config test, sshd's, and the secrets script's output against Writ's parsers.
 *
 * docker-compose must be installed (.ci/run installs it): a missing one fails this file.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { botPublicKey } from '../approver/index.ts';
import { parseKeyRegistry } from '../audit/index.ts';
import { runPolicyCli } from '../broker/rules/index.ts';
import { keyId, loadConfigFile, type Config } from '../schemas/index.ts';
import { fingerprintOf, parseKnownHosts } from '../workers/ssh/index.ts';
import { findBinary, requireBinary } from './helpers/process.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const COMPOSE = join(REPO, 'deploy/compose');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  restart?: string;
  profiles?: string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  secrets?: Array<{ source: string; target?: string }>;
  volumes?: string[];
  environment?: Record<string, string>;
}
interface Compose {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
  volumes: Record<string, unknown>;
}

/** The environment docker-compose sees: none of the variables the file substitutes or compose reads. */
function composeEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('COMPOSE_') || k.startsWith('WRIT_') || k.startsWith('DOCKER_')) delete env[k];
  return env;
}

/** Where a secret lands in a container: /run/secrets/<target, else source>. */
const secretPath = (s: { source: string; target?: string }) => (s.target?.startsWith('/') ? s.target : `/run/secrets/${s.target ?? s.source}`);

/** Every string in a parsed config that names a file under `prefix`. */
function pathsUnder(value: unknown, prefix: string, out: string[] = []): string[] {
  if (typeof value === 'string' && value.startsWith(prefix)) out.push(value);
  else if (Array.isArray(value)) for (const v of value) pathsUnder(v, prefix, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) pathsUnder(v, prefix, out);
  return out;
}

/** The files a Writ service reads from its secrets: key files, password files, the registry. */
function secretFilesOf(config: Config): string[] {
  const files = pathsUnder(config, '/run/secrets/');
  // The audit signing key is a file in a directory: audit-<kind>.pem.
  if (config.audit.signingKeyDir === '/run/secrets') files.push(`/run/secrets/audit-${config.workers.postgres.length + config.workers.ssh.length > 0 ? 'worker' : 'broker'}.pem`);
  return files.filter((f) => f !== '/run/secrets');
}

let compose: Compose;
let secretsDir: string;
let work: string;
const WRIT_SERVICES = { broker: 'broker.yaml', 'worker-postgres': 'worker-postgres.yaml', 'worker-ssh': 'worker-ssh.yaml' } as const;

beforeAll(async () => {
  const bin = requireBinary('docker-compose', 'docker-compose');
  // -q: validate only (exit 0, nothing printed); then the resolved file, as YAML.
  await run(bin, ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: REPO, env: composeEnv() });
  const { stdout } = await run(bin, ['-f', 'docker-compose.yml', 'config'], { cwd: REPO, env: composeEnv() });
  compose = parseYaml(stdout) as Compose;
  work = mkdtempSync(join(tmpdir(), 'writ-deploy-compose-'));
  secretsDir = join(work, 'secrets');
  execFileSync('sh', [join(COMPOSE, 'init-secrets.sh'), secretsDir], { stdio: 'pipe' });
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('docker-compose.yml', () => {
  it('has the whole stack: NATS, both targets, broker, both workers, the approvers and a demo agent', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['approver', 'approver-slack', 'broker', 'demo-agent', 'nats', 'postgres', 'slack-token', 'sshd', 'worker-postgres', 'worker-ssh'].sort());
    expect(compose.services.nats!.image).toMatch(/^nats:2\.(1\d|[2-9]\d)/);
    expect(compose.services.sshd!.build).toBeDefined();
    // The Slack bot and its token renewal run only with --profile slack; the terminal approver by default.
    expect(compose.services['approver-slack']!.profiles).toEqual(['slack']);
    expect(compose.services['slack-token']!.profiles).toEqual(['slack']);
    expect(compose.services.approver!.profiles).toBeUndefined();
    expect(compose.services.approver!.entrypoint!.join(' ')).toContain('approver-terminal.sh');
    expect(compose.services['approver-slack']!.entrypoint).toEqual(['node', 'dist/approver/main.js', '--config', '/etc/writ/approver-slack.yaml']);
  });

  it('publishes no host port 4222, and what it publishes only on loopback', () => {
    const published = Object.entries(compose.services).flatMap(([name, s]) => (s.ports ?? []).map((p) => ({ name, p })));
    expect(published.length).toBeGreaterThan(0);
    for (const { name, p } of published) {
      // host_ip:published:target/proto as docker-compose 1.29 prints it
      const m = /^(\d+\.\d+\.\d+\.\d+):(\d+):(\d+)(\/tcp)?$/.exec(p);
      expect(m, `${name}: ${p}`).not.toBeNull();
      expect(m![1], `${name}: ${p}`).toBe('127.0.0.1');
      expect(m![2], `${name}: ${p}`).not.toBe('4222');
    }
    expect(compose.services.nats!.ports).toEqual(['127.0.0.1:14222:4222/tcp']);
  });

  it('gives every long-running service a restart policy and the demo agent none', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (name === 'demo-agent') expect(s.restart).toBe('no');
      else expect(s.restart, name).toMatch(/^(unless-stopped|always|on-failure)$/);
    }
  });

  it("checks health on the services' own endpoints: /readyz on the observability port for Writ", () => {
    for (const [name, file] of Object.entries(WRIT_SERVICES)) {
      const s = compose.services[name]!;
      const config = loadConfigFile(join(COMPOSE, 'config', file));
      expect(config.observability.port, name).toBeGreaterThan(0);
      expect(config.observability.host, name).toBe('0.0.0.0');
      expect(s.healthcheck!.test.join(' '), name).toContain(`http://127.0.0.1:${config.observability.port}/readyz`);
      expect(s.command, name).toEqual([name === 'broker' ? 'broker' : 'worker', '--config', `/etc/writ/${file}`]);
    }
    expect(compose.services.nats!.healthcheck!.test.join(' ')).toContain('http://127.0.0.1:8222/healthz');
    expect(compose.services.postgres!.healthcheck!.test).toContain('pg_isready');
    for (const name of ['sshd', 'approver-slack', 'slack-token']) expect(compose.services[name]!.healthcheck, name).toBeDefined();
  });

  it('starts in order: workers after a ready broker and their target, the demo agent after both workers', () => {
    const dep = (s: string) => Object.fromEntries(Object.entries(compose.services[s]!.depends_on ?? {}).map(([k, v]) => [k, v.condition]));
    expect(dep('broker')).toEqual({ nats: 'service_healthy' });
    expect(dep('worker-postgres')).toEqual({ broker: 'service_healthy', postgres: 'service_healthy' });
    expect(dep('worker-ssh')).toEqual({ broker: 'service_healthy', sshd: 'service_healthy' });
    expect(dep('demo-agent')).toEqual({ 'worker-postgres': 'service_healthy', 'worker-ssh': 'service_healthy' });
  });

  it('keeps every secret in a file the secrets script makes, outside the image and the repository', () => {
    const made = new Set(readdirSync(secretsDir));
    for (const [name, s] of Object.entries(compose.secrets)) {
      expect(s.file, name).toBe(join(COMPOSE, 'secrets', name));
      expect(made.has(name), `init-secrets.sh makes ${name}`).toBe(true);
    }
    expect(readFileSync(join(COMPOSE, '.gitignore'), 'utf8')).toMatch(/^secrets\/$/m);
    expect(readFileSync(join(REPO, '.dockerignore'), 'utf8')).toMatch(/^deploy\/compose\/secrets$/m);
    // No secret in the environment of any service: a variable named like one holds a secret's path.
    for (const [name, s] of Object.entries(compose.services)) {
      for (const [k, v] of Object.entries(s.environment ?? {})) if (/PASSWORD|TOKEN|SECRET|KEY/.test(k)) expect(v, `${name} ${k}`).toMatch(/^\/run\/secrets\//);
    }
  });

  it('mounts each secret only where it is read: one NATS login per service, the grant key in the broker alone', () => {
    const mounts = (name: string) => (compose.services[name]!.secrets ?? []).map((s) => s.source);
    for (const name of Object.keys(compose.services).filter((n) => n !== 'nats')) {
      expect(mounts(name).filter((m) => m.startsWith('nats-')).length, name).toBeLessThanOrEqual(1);
    }
    expect(mounts('nats').sort()).toEqual(['agent', 'approver', 'auditor', 'broker', 'operator', 'worker'].map((r) => `nats-${r}.password`).sort());
    expect(Object.keys(compose.services).filter((n) => mounts(n).includes('grant-key.pem'))).toEqual(['broker']);
    expect(mounts('worker-postgres').some((m) => m.startsWith('ssh-'))).toBe(false);
    expect(mounts('worker-ssh').some((m) => m.startsWith('pg-'))).toBe(false);
    expect(mounts('demo-agent')).toEqual(['nats-agent.password']);
  });

  it("mounts every file a Writ service's config names, under the path the config names", () => {
    for (const [name, file] of Object.entries(WRIT_SERVICES)) {
      const config = loadConfigFile(join(COMPOSE, 'config', file));
      const mounted = new Set((compose.services[name]!.secrets ?? []).map(secretPath));
      const wanted = secretFilesOf(config);
      expect(wanted.length, name).toBeGreaterThan(0);
      for (const f of wanted) expect(mounted.has(f), `${name} reads ${f}`).toBe(true);
    }
    // The broker's own key pair: the public half beside the private one.
    const broker = new Set((compose.services.broker!.secrets ?? []).map(secretPath));
    expect(broker.has('/run/secrets/grant-key.pub.pem')).toBe(true);
  });

  it('logs each service in as its own NATS role', () => {
    const role = (file: string) => loadConfigFile(join(COMPOSE, 'config', file)).nats.user;
    expect(role('broker.yaml')).toEqual({ value: 'broker' });
    expect(role('worker-postgres.yaml')).toEqual({ value: 'worker' });
    expect(role('worker-ssh.yaml')).toEqual({ value: 'worker' });
    expect(role('agent.yaml')).toEqual({ value: 'agent' });
    expect(loadConfigFile(join(COMPOSE, 'config', 'agent.yaml')).nats.inboxPrefix).toBe('_INBOX.agent');
    expect(compose.services.approver!.environment).toMatchObject({ WRIT_NATS_USER: 'approver', WRIT_NATS_INBOX_PREFIX: '_INBOX.approver' });
    const slack = parseYaml(readFileSync(join(COMPOSE, 'config', 'approver-slack.yaml'), 'utf8')) as { nats: { user: unknown; inboxPrefix: string } };
    expect(slack.nats).toMatchObject({ user: { value: 'approver' }, inboxPrefix: '_INBOX.approver' });
  });
});

describe('deploy/compose', () => {
  it('the policy passes its checks and the cases the demo agent meets', async () => {
    let out = '';
    const io = { stdin: process.stdin, stdout: (s: string) => (out += s), stderr: (s: string) => (out += s) };
    expect(await runPolicyCli(['check', join(COMPOSE, 'config', 'policy.yaml')], io), out).toBe(0);
    expect(await runPolicyCli(['test', join(COMPOSE, 'config', 'policy.tests.yaml')], io), out).toBe(0);
    expect(out).toMatch(/\b5 passed, 0 failed/);
  });

  it('the secrets script makes keys and files Writ itself reads', () => {
    const read = (f: string) => readFileSync(join(secretsDir, f), 'utf8');
    // NATS passwords start with a letter (nats-server reads one starting with a digit as a number).
    for (const r of ['agent', 'broker', 'worker', 'approver', 'auditor', 'operator']) expect(read(`nats-${r}.password`).trim()).toMatch(/^[A-Za-z][A-Za-z0-9]{15,}$/);
    // The grant key pair is a pair.
    const grant = createPrivateKey(read('grant-key.pem'));
    expect(grant.asymmetricKeyType).toBe('ed25519');
    expect(keyId(createPublicKey(read('grant-key.pub.pem')))).toBe(keyId(createPublicKey(grant)));
    // The audit registry lists each writer's key under its key id, with its kind.
    // Every key id is quoted: an unquoted one such as 83334287215076e2 is a number to YAML (seen in CI).
    const idLines = read('audit-keys.yaml')
      .split('\n')
      .filter((l) => /^ {2}\S/.test(l));
    expect(idLines.length).toBe(3);
    for (const l of idLines) expect(l).toMatch(/^ {2}"[0-9a-f]{16}":$/);
    const registry = parseKeyRegistry(read('audit-keys.yaml'));
    const kinds = Object.fromEntries(['broker', 'worker-postgres', 'worker-ssh'].map((w) => [w, registry.get(keyId(createPublicKey(createPrivateKey(read(`audit-${w}.pem`)))))?.kind]));
    expect(kinds).toEqual({ broker: 'broker', 'worker-postgres': 'worker', 'worker-ssh': 'worker' });
    // The Slack bot's public key, in the form approvals.trustedBots takes.
    expect(read('slack-vote-key.pub').trim()).toBe(botPublicKey(createPrivateKey(read('slack-vote-key.pem'))));
    // known_hosts pins the sshd service's host key, by the name the worker connects to.
    const ssh = loadConfigFile(join(COMPOSE, 'config', 'worker-ssh.yaml')).workers.ssh[0]!;
    const [entry] = parseKnownHosts(read('ssh-known-hosts'));
    expect(entry!.hosts).toBe(ssh.host);
    expect(ssh.port).toBe(22);
    const fp = execFileSync('ssh-keygen', ['-lf', join(secretsDir, 'ssh-host-ed25519.pub')], { encoding: 'utf8' }).split(' ')[1];
    expect(fingerprintOf(entry!.key)).toBe(fp);
  });

  it('the secrets script keeps what exists when run again', () => {
    const before = readFileSync(join(secretsDir, 'grant-key.pem'), 'utf8');
    execFileSync('sh', [join(COMPOSE, 'init-secrets.sh'), secretsDir], { stdio: 'pipe' });
    expect(readFileSync(join(secretsDir, 'grant-key.pem'), 'utf8')).toBe(before);
  });

  it('nats-server accepts nats.conf with accounts.conf and the passwords (sync_interval aside, which needs 2.10)', () => {
    const bin = requireBinary('nats-server', 'nats-server');
    const dir = join(work, 'nats');
    execFileSync('mkdir', ['-p', dir]);
    const conf = readFileSync(join(COMPOSE, 'nats.conf'), 'utf8');
    expect(conf).toMatch(/^\s*sync_interval: always$/m);
    const version = execFileSync(bin, ['--version'], { encoding: 'utf8' });
    // Debian's 2.9 has no sync_interval: test the rest of the file there.
    const older = /v2\.9\./.test(version);
    writeFileSync(join(dir, 'nats.conf'), (older ? conf.replace(/^\s*sync_interval: always$/m, '') : conf).replace('store_dir: /data', `store_dir: ${JSON.stringify(join(dir, 'store'))}`));
    copyFileSync(join(REPO, 'deploy/nats/accounts.conf'), join(dir, 'accounts.conf'));
    const env = { ...process.env };
    for (const r of ['agent', 'broker', 'worker', 'approver', 'auditor', 'operator']) env[`WRIT_${r.toUpperCase()}_PASSWORD`] = readFileSync(join(secretsDir, `nats-${r}.password`), 'utf8').trim();
    expect(execFileSync(bin, ['-c', join(dir, 'nats.conf'), '-t'], { env, encoding: 'utf8', stdio: 'pipe' })).toBe('');
    // The entrypoint exports exactly the variables accounts.conf reads.
    const entry = readFileSync(join(COMPOSE, 'scripts/nats-entrypoint.sh'), 'utf8');
    expect(entry).toContain('for role in agent broker worker approver auditor operator');
    const wanted = [...readFileSync(join(REPO, 'deploy/nats/accounts.conf'), 'utf8').matchAll(/\$(WRIT_[A-Z]+_PASSWORD)/g)].map((m) => m[1]);
    expect(new Set(wanted)).toEqual(new Set(Object.keys(env).filter((k) => /^WRIT_[A-Z]+_PASSWORD$/.test(k))));
  });

  it("sshd accepts the target's sshd_config", () => {
    const sshd = findBinary('sshd');
    expect(sshd, 'sshd (apt-get install openssh-server)').toBeDefined();
    const conf = readFileSync(join(COMPOSE, 'sshd/sshd_config'), 'utf8').replace('/etc/ssh/ssh_host_ed25519_key', join(secretsDir, 'ssh-host-ed25519'));
    const file = join(work, 'sshd_config');
    writeFileSync(file, conf);
    execFileSync('mkdir', ['-p', '/run/sshd']);
    // sshd -t refuses a host key others can read; the container's entrypoint installs it 0600.
    const key = join(work, 'host-key');
    copyFileSync(join(secretsDir, 'ssh-host-ed25519'), key);
    execFileSync('chmod', ['600', key]);
    writeFileSync(file, conf.replace(join(secretsDir, 'ssh-host-ed25519'), key));
    expect(() => execFileSync(sshd!, ['-t', '-f', file], { stdio: 'pipe' })).not.toThrow();
    expect(readFileSync(join(COMPOSE, 'sshd/entrypoint.sh'), 'utf8')).toContain('install -m 600 /run/secrets/ssh-host-ed25519 /etc/ssh/ssh_host_ed25519_key');
  });
});
