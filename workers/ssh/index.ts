/**
 * SSH executor (ssh2): one connection per run, host keys always pinned, the grant's mode
 * picks the credential, a plain argv is re-quoted (anything else runs as the exact
 * approved text), a time limit that kills the remote command, per-stream byte limits that
 * truncate without stopping it. The reasons for each are in README.md.
 */
import { readFileSync } from 'node:fs';
import ssh2, { type ConnectConfig, type ParsedKey } from 'ssh2';
import { readSecret, WritError, type AccessMode, type SshWorkerTarget } from '../../schemas/index.ts';
import type { ExecContext, ExecOutput, Executor } from '../executor.ts';
import { remoteCommand } from './command.ts';
import { fingerprintOf, loadHostKeyPins, type HostKeyPins } from './known-hosts.ts';
import { execOnce, type ExecLimits, type StreamMasker } from './session.ts';
export { fingerprintOf, parseKnownHosts } from './known-hosts.ts';

// ssh2 is CommonJS: Node's ESM loader sees `Client` but not `utils` as a named export.
const { Client, utils } = ssh2;
type Client = InstanceType<typeof Client>;

/** Default command time limit when the grant sets none, seconds. */
const DEFAULT_TIMEOUT_SECONDS = 30;
/** After the KILL signal request, how long before the fallback kill from a second channel. */
const SIGNAL_GRACE_MS = 500;
/** How long a kill may take to be confirmed (the fallback opens a session, which can be slow). */
const KILL_GRACE_MS = 8_000;

interface Credential {
  user: string;
  /** Key file contents, read once; checked to parse (and decrypt) at construction. */
  key: Buffer;
  /** ssh2 takes only key data, not a parsed key, so an encrypted key's passphrase is kept with it. */
  passphrase: string | undefined;
}

interface Target {
  cfg: SshWorkerTarget;
  pins: HostKeyPins;
  creds: Partial<Record<AccessMode, Credential>>;
}

function loadCredential(cfg: NonNullable<SshWorkerTarget['credentials'][AccessMode]>, what: string): Credential {
  const user = readSecret(cfg.user, `${what}.user`);
  let data: Buffer;
  try {
    data = readFileSync(cfg.privateKeyFile);
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `${what}.privateKeyFile: cannot read ${cfg.privateKeyFile}`, { cause: e });
  }
  const passphrase = cfg.passphrase ? readSecret(cfg.passphrase, `${what}.passphrase`) : undefined;
  const parsed = utils.parseKey(data, passphrase);
  // The parser's own words go to the logs only, as the cause.
  if (parsed instanceof Error) throw new WritError('WRIT_CONFIG_INVALID', `${what}.privateKeyFile: not a usable private key (wrong passphrase?)`, { cause: parsed });
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (!key || key.getPrivatePEM() === null) throw new WritError('WRIT_CONFIG_INVALID', `${what}.privateKeyFile: holds no private key`);
  return { user, key: data, passphrase };
}

/** The caller-safe reading of an ssh2 connection error. */
function connectError(e: unknown, target: string): WritError {
  const level = (e as { level?: string }).level;
  const why = level === 'client-authentication' ? 'authentication was refused' : level === 'client-timeout' ? 'no SSH handshake before the ready timeout' : 'the connection failed';
  return new WritError('WRIT_TARGET_UNAVAILABLE', `target ${target}: ${why}`, { cause: e });
}

export class SshExecutor implements Executor {
  readonly kind = 'ssh' as const;
  readonly targets: readonly string[];
  readonly #t = new Map<string, Target>();
  /** Runs in flight, so close() can kill what a hard stop left behind and wait for it. */
  readonly #running = new Map<AbortController, Promise<unknown>>();
  #closed = false;

  /** Reads every credential and host-key pin now; a bad config fails here, naming its key. */
  constructor(targets: readonly SshWorkerTarget[]) {
    this.targets = targets.map((t) => t.target);
    for (const cfg of targets) {
      const what = `workers.ssh[${cfg.target}]`;
      const creds: Target['creds'] = {};
      for (const mode of ['read', 'write'] as const) {
        const c = cfg.credentials[mode];
        if (c) creds[mode] = loadCredential(c, `${what}.credentials.${mode}`);
      }
      this.#t.set(cfg.target, { cfg, pins: loadHostKeyPins(cfg, `${what}.hostKeys`), creds });
    }
  }

  async run(ctx: ExecContext): Promise<ExecOutput> {
    const { order, claims } = ctx;
    if (this.#closed) throw new WritError('WRIT_TARGET_UNAVAILABLE', 'the SSH executor is closed');
    if (order.command.kind !== 'shell') throw new WritError('WRIT_GRANT_MISMATCH', 'an SSH target runs shell commands only');
    if (claims.kind !== 'ssh' || claims.tgt !== order.target) throw new WritError('WRIT_GRANT_MISMATCH', 'the grant is for another target');
    const t = this.#t.get(claims.tgt);
    if (!t) throw new WritError('WRIT_UNKNOWN_TARGET');
    const cred = t.creds[claims.mode];
    if (!cred) throw new WritError('WRIT_GRANT_MISMATCH', `this worker holds no ${claims.mode} credential for ${claims.tgt}`);
    const { line } = await remoteCommand(order.command.command);
    const limits = {
      timeoutMs: Math.max(1, Math.round((claims.limits.seconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000)),
      maxBytes: Math.min(t.cfg.maxOutputBytes, claims.limits.bytes ?? Infinity),
      signalGraceMs: SIGNAL_GRACE_MS,
      killGraceMs: KILL_GRACE_MS,
    };
    // One controller joins the runtime's signal and close(); the session kills the command on it.
    const ac = new AbortController();
    const onOuter = () => ac.abort(ctx.signal.reason);
    if (ctx.signal.aborted) throw new WritError('WRIT_EXEC_FAILED', 'the run was aborted before it started');
    ctx.signal.addEventListener('abort', onOuter, { once: true });
    // Built before connecting: a masking spec that cannot be applied touches no host.
    const maskers = { stdout: ctx.streamMasker(), stderr: ctx.streamMasker() };
    const run = this.#runOnce(t, cred, line, limits, maskers, ac.signal);
    this.#running.set(
      ac,
      run.catch(() => undefined),
    );
    try {
      return await run;
    } finally {
      ctx.signal.removeEventListener('abort', onOuter);
      this.#running.delete(ac);
    }
  }

  async #runOnce(t: Target, cred: Credential, line: string, limits: ExecLimits, maskers: { stdout: StreamMasker; stderr: StreamMasker }, signal: AbortSignal): Promise<ExecOutput> {
    const conn = await this.#connect(t, cred, signal);
    try {
      return await execOnce(conn, line, limits, maskers, signal);
    } finally {
      conn.end();
    }
  }

  /** Connects and authenticates, or rejects with WRIT_HOST_KEY_MISMATCH / WRIT_TARGET_UNAVAILABLE. */
  #connect(t: Target, cred: Credential, signal: AbortSignal): Promise<Client> {
    return new Promise<Client>((resolve, reject) => {
      const conn = new Client();
      let refusedKey: string | undefined;
      let done = false;
      const settle = (err?: WritError) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        if (err) {
          conn.end();
          reject(err);
        } else {
          resolve(conn);
        }
      };
      const onAbort = () => settle(new WritError('WRIT_EXEC_FAILED', 'the run was aborted before the command started'));
      signal.addEventListener('abort', onAbort, { once: true });
      // Errors after ready are the session's to judge; this listener keeps them from crashing the worker.
      conn.on('error', (e) => {
        if (refusedKey !== undefined) {
          settle(new WritError('WRIT_HOST_KEY_MISMATCH', `target ${t.cfg.target}: the host key ${refusedKey} is not a pinned key; nothing was run`, { cause: e }));
        } else {
          settle(connectError(e, t.cfg.target));
        }
      });
      conn.on('close', () => settle(new WritError('WRIT_TARGET_UNAVAILABLE', `target ${t.cfg.target}: the connection closed before it was ready`)));
      conn.on('ready', () => settle());
      const config: ConnectConfig = {
        host: t.cfg.host,
        port: t.cfg.port,
        username: cred.user,
        privateKey: cred.key,
        ...(cred.passphrase !== undefined ? { passphrase: cred.passphrase } : {}),
        readyTimeout: t.cfg.readyTimeoutMs,
        tryKeyboard: false,
        authHandler: ['publickey'],
        hostVerifier: (key: Buffer): boolean => {
          if (t.pins.accepts(key)) return true;
          refusedKey = fingerprintOf(key);
          return false;
        },
        ...(t.pins.algorithms ? { algorithms: { serverHostKey: t.pins.algorithms as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] } } : {}),
      };
      try {
        conn.connect(config);
      } catch (e) {
        settle(connectError(e, t.cfg.target));
      }
    });
  }

  /** Kills whatever is still running (a drained worker has nothing left) and refuses new runs. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const ac of this.#running.keys()) ac.abort(new WritError('WRIT_EXEC_FAILED', 'the worker stopped; the remote command was killed'));
    await Promise.all(this.#running.values());
  }
}
