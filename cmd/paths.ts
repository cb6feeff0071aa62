/** The CLI's paths and exits; the local stack's data directory lives in lib/local.ts. */
import { resolve } from 'node:path';
import { packageFile } from '../lib/local.ts';

export * from '../lib/local.ts';

/**
 * The config a command reads when it is given none: `WRIT_CONFIG` (relative to the current
 * directory, as the user typed it), else the local stack's config shipped with the package,
 * whose keys live in the data directory (`$WRIT_HOME/…`), so every directory sees the same stack.
 */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.WRIT_CONFIG ? resolve(env.WRIT_CONFIG) : packageFile('deploy/local/writ.yaml');
}

/**
 * Ends the process once stdout and stderr have handed everything to the OS. `process.exit()`
 * alone drops what a pipe has not taken yet: Node writes to a pipe asynchronously once its
 * kernel buffer (64 KiB) is full, so `writ exec --json … | jq` used to get 65,536 bytes. Every
 * command's exit goes through here (cmd/cli.ts, cmd/mcp/main.ts). `process.exit` stays, so a
 * handle a command left open cannot keep the process alive.
 */
export async function exitWhenFlushed(code: number): Promise<never> {
  process.exitCode = code;
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

function flushed(s: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed || s.writableLength === 0) return resolve();
    // Writes complete in order: the callback of an empty write runs after all earlier ones.
    s.write('', () => resolve());
  });
}

/**
 * A reader that closed its end of the pipe (`writ … | head -1`) wants no more output: stop
 * quietly with 141 (128 + SIGPIPE), what shell tools killed by SIGPIPE report, instead of
 * crashing on an unhandled EPIPE 'error' event.
 */
export function exitQuietlyOnClosedPipe(): void {
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(141);
      throw e;
    });
  }
}
