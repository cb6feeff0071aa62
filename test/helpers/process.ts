// Process plumbing shared by the server helpers: binary lookup, spawning with
// a log file, graceful stop by pid, and a last-resort cleanup on process exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Directories searched after $PATH: sbin is often missing from a non-login PATH. */
const EXTRA_BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Absolute path of an executable, or undefined when it is nowhere to be found. */
export function findBinary(name: string, extraDirs: readonly string[] = []): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), ...extraDirs, ...EXTRA_BIN_DIRS];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** Like findBinary, but throws an error that says which package to install. */
export function requireBinary(name: string, aptPackage: string, extraDirs: readonly string[] = []): string {
  const found = findBinary(name, extraDirs);
  if (found === undefined) {
    throw new Error(`${name} not found on PATH or in sbin folders; install it with: apt-get install ${aptPackage}`);
  }
  return found;
}

/** A fresh private temp directory, e.g. /tmp/writ-nats-AbC123. */
export function makeTempDir(kind: string): string {
  return mkdtempSync(join(tmpdir(), `writ-${kind}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Last `maxChars` of a file, or a note when it cannot be read. */
export function tailFile(path: string, maxChars = 4000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > maxChars ? `…${text.slice(-maxChars)}` : text;
  } catch (err) {
    return `(could not read ${path}: ${(err as Error).message})`;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Last-resort cleanup: synchronous, because 'exit' listeners cannot await.
// Vitest stops its fork workers with SIGTERM, which skips 'exit', so the usual
// termination signals run the cleanups too and are then re-raised.

type SyncCleanup = () => void;
const cleanups = new Set<SyncCleanup>();
const TERMINATION_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
let hooksInstalled = false;

function runCleanups(): void {
  const pending = [...cleanups].reverse();
  cleanups.clear();
  for (const cleanup of pending) {
    try {
      cleanup();
    } catch {
      // best effort: one failure must not keep the others from running
    }
  }
}

function onTerminationSignal(sig: NodeJS.Signals): void {
  runCleanups();
  for (const s of TERMINATION_SIGNALS) process.off(s, onTerminationSignal);
  // Someone else handles it (e.g. vitest's main process): let them. Else die as the signal would have.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

/** Runs `fn` when the process exits or is terminated by a signal, unless the returned function is called first. */
export function onProcessExit(fn: SyncCleanup): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.once('exit', runCleanups);
    for (const sig of TERMINATION_SIGNALS) process.on(sig, onTerminationSignal);
  }
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

// ---------------------------------------------------------------------------

export interface SpawnedServer {
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** True once the process has exited. */
  hasExited(): boolean;
}

export interface SpawnLoggedOptions {
  args: readonly string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Spawns `bin` with stdout and stderr appended to `logFile`, so early failures are readable. */
export async function spawnLogged(bin: string, opts: SpawnLoggedOptions): Promise<SpawnedServer> {
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(bin, opts.args, {
      stdio: ['ignore', fd, fd],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  // A forgotten stop() must not keep the test process alive; the exit hook kills the child.
  child.unref();
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  // A missing binary or EACCES surfaces as 'error' instead of 'exit'.
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const spawned = new Promise<void>((resolve) => child.once('spawn', resolve));
  const first = await Promise.race([spawned.then(() => undefined), spawnError]);
  if (first instanceof Error) throw new Error(`could not start ${bin}: ${first.message}`);
  if (child.pid === undefined) throw new Error(`could not start ${bin}: no pid`);
  return { child, pid: child.pid, exited, hasExited: () => done };
}

/** SIGTERM, wait up to `timeoutMs`, then SIGKILL and wait for the exit. */
export async function terminate(server: SpawnedServer, timeoutMs = 10_000): Promise<void> {
  if (server.hasExited()) return;
  signal(server.pid, 'SIGTERM');
  const timedOut = Symbol('timeout');
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    server.exited,
    new Promise<symbol>((resolve) => {
      timer = setTimeout(() => resolve(timedOut), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (result === timedOut) {
    signal(server.pid, 'SIGKILL');
    await server.exited;
  }
}

/** process.kill that ignores "no such process". */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Polls `probe` every `intervalMs` until it returns a value, the server dies or
 * `timeoutMs` passes; the error message names `what` and includes the log tail.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  opts: { server?: SpawnedServer; logFile?: string; timeoutMs?: number; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  const log = (): string => (opts.logFile === undefined ? '' : `\n--- ${opts.logFile} ---\n${tailFile(opts.logFile)}`);
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (opts.server?.hasExited()) {
      const code = await opts.server.exited;
      throw new Error(`${what}: process ${opts.server.pid} exited (${code}) before it was ready${log()}`);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${opts.timeoutMs ?? 20_000} ms${log()}`);
    await sleep(opts.intervalMs ?? 50);
  }
}
