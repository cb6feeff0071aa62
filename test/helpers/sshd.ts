// A private OpenSSH sshd on a random loopback port, with throwaway host and client keys.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, probeTcp } from './net.ts';
import { makeTempDir, onProcessExit, pollUntil, removeDir, requireBinary, signal, spawnLogged, terminate, type SpawnedServer } from './process.ts';
import type { SshdHandle, StartSshdOptions } from './sshd-types.ts';

const execFileAsync = promisify(execFile);
const HOST = '127.0.0.1';
/** sshd refuses to start from a relative path, so only absolute locations are accepted. */
const SSHD_PATHS = ['/usr/sbin/sshd', '/usr/local/sbin/sshd'];

function sshdBinary(): string {
  const found = SSHD_PATHS.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(`sshd not found at ${SSHD_PATHS.join(' or ')}; install it with: apt-get install openssh-server`);
  }
  return found;
}

async function keygen(path: string): Promise<void> {
  const bin = requireBinary('ssh-keygen', 'openssh-client');
  await execFileAsync(bin, ['-q', '-t', 'ed25519', '-N', '', '-C', 'writ-test', '-f', path]);
}

/** `SHA256:…` exactly as `ssh-keygen -lf` prints it (`256 SHA256:… comment (ED25519)`). */
async function fingerprint(pubPath: string): Promise<string> {
  const { stdout } = await execFileAsync(requireBinary('ssh-keygen', 'openssh-client'), ['-lf', pubPath]);
  const fp = stdout.trim().split(/\s+/)[1];
  if (fp === undefined || !fp.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen -lf output: ${stdout}`);
  return fp;
}

function sshdConfig(dir: string, port: number, hostKey: string, authorizedKeys: string, extra?: string): string {
  return [
    `Port ${port}`,
    `ListenAddress ${HOST}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    'UsePAM no',
    'StrictModes no', // the temp files are not laid out like ~/.ssh
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'Subsystem sftp internal-sftp',
    ...(extra === undefined ? [] : [extra]),
    '',
  ].join('\n');
}

/** One launch attempt on `port`; rejects (after cleaning up) if sshd dies or never greets. */
async function launch(bin: string, port: number, configFile: string, logFile: string, timeoutMs: number): Promise<SpawnedServer> {
  const server = await spawnLogged(bin, { args: ['-D', '-e', '-f', configFile], logFile });
  const unregister = onProcessExit(() => signal(server.pid, 'SIGKILL'));
  try {
    await pollUntil(`sshd on ${HOST}:${port}`, async () => ((await probeTcp(port))?.toString('latin1').startsWith('SSH-2.0-') ? true : undefined), { server, logFile, timeoutMs, intervalMs: 100 });
    unregister();
    return server;
  } catch (err) {
    await terminate(server);
    unregister();
    throw err;
  }
}

/** Starts sshd with fresh ed25519 host and client keys; only the client key may log in. */
export async function startSshd(opts: StartSshdOptions = {}): Promise<SshdHandle> {
  const bin = sshdBinary();
  const dir = makeTempDir('sshd');
  const unregisterDir = onProcessExit(() => removeDir(dir));
  try {
    // sshd needs its privilege separation directory, which no service created here.
    if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const hostKey = join(dir, 'ssh_host_ed25519_key');
    const clientKeyPath = join(dir, 'client_ed25519');
    await Promise.all([keygen(hostKey), keygen(clientKeyPath)]);
    const authorizedKeys = join(dir, 'authorized_keys');
    writeFileSync(authorizedKeys, readFileSync(`${clientKeyPath}.pub`), { mode: 0o600 });
    const [type, blob] = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/);
    const hostPublicKey = `${type} ${blob}`;
    const hostKeyFingerprint = await fingerprint(`${hostKey}.pub`);
    const logFile = join(dir, 'sshd.log');
    const configFile = join(dir, 'sshd_config');

    // A port from freePort() can be taken before sshd binds it: retry with another.
    let server: SpawnedServer | undefined;
    let port = 0;
    for (let attempt = 0; server === undefined; attempt++) {
      port = await freePort();
      writeFileSync(configFile, sshdConfig(dir, port, hostKey, authorizedKeys, opts.extraConfig));
      try {
        server = await launch(bin, port, configFile, logFile, opts.startTimeoutMs ?? 20_000);
      } catch (err) {
        if (attempt >= 2) throw err;
      }
    }
    const running = server;
    const unregisterServer = onProcessExit(() => signal(running.pid, 'SIGKILL'));

    let stopping: Promise<void> | undefined;
    return {
      host: HOST,
      port,
      user: userInfo().username,
      clientKeyPath,
      clientPrivateKey: readFileSync(clientKeyPath),
      hostPublicKey,
      hostKeyFingerprint,
      knownHostsLine: `[${HOST}]:${port} ${hostPublicKey}`,
      pid: running.pid,
      logFile,
      stop: () => {
        stopping ??= (async () => {
          await terminate(running);
          unregisterServer();
          removeDir(dir);
          unregisterDir();
        })();
        return stopping;
      },
    };
  } catch (err) {
    removeDir(dir);
    unregisterDir();
    throw err;
  }
}
