/**
 * How a command ends: after its output has drained, and quietly when the reader left. Apart
 * from cmd/paths.ts, which loads the NATS client, so that `writ --help` starts without it.
 */

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
