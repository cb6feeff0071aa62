/**
 * One `exec` on an authenticated connection: stream stdout and stderr through their own
 * maskers under a byte limit, enforce the time limit and the abort signal by killing the
 * remote command, and report its exit code or signal.
 */
import type { Client, ClientChannel } from 'ssh2';
import { WritError } from '../../schemas/index.ts';
import type { StreamOutput } from '../executor.ts';

/** A line masker as ExecContext.streamMasker() returns it. */
export interface StreamMasker {
  push(chunk: Buffer | string): string;
  end(): string;
}

export interface ExecLimits {
  /** Wall-clock limit from the exec request on; past it the remote command is killed. */
  timeoutMs: number;
  /** stdout and stderr are each cut at this many bytes. */
  maxBytes: number;
  /** After the KILL request, how long to wait for the channel to close before dropping the connection. */
  killGraceMs: number;
}

/**
 * One output stream under a byte limit. Only masked text is kept. Past the limit the rest
 * is read and discarded (the command is not stopped; see index.ts), and the incomplete
 * last line is dropped rather than flushed: a secret cut by the limit may no longer look
 * like one, so a partial line never leaves.
 */
class Capture {
  #bytes = 0;
  #text = '';
  truncated = false;
  /** A masking error: the output is withheld, but the stream is still drained. */
  failure: unknown;
  readonly #masker: StreamMasker;
  readonly #max: number;

  constructor(masker: StreamMasker, max: number) {
    this.#masker = masker;
    this.#max = max;
  }

  push(chunk: Buffer): void {
    if (this.truncated || this.failure !== undefined) return;
    const room = this.#max - this.#bytes;
    let piece = chunk;
    if (chunk.length > room) {
      piece = chunk.subarray(0, room);
      this.truncated = true;
    }
    this.#bytes += piece.length;
    try {
      if (piece.length > 0) this.#text += this.#masker.push(piece);
    } catch (e) {
      this.failure = e;
    }
  }

  finish(): string {
    if (this.failure !== undefined) throw this.failure;
    if (this.truncated) return this.#text;
    try {
      return this.#text + this.#masker.end();
    } catch (e) {
      throw e instanceof WritError ? e : new WritError('WRIT_MASKING_FAILED', undefined, { cause: e });
    }
  }
}

type ChannelInternals = { outgoing?: { id?: number; state?: string }; _client?: { _protocol?: { signal?(id: number, name: string): void } } };

/**
 * Sends the remote command SIGKILL. sshd delivers it with killpg() to the session's
 * process group, so the login shell and what it started die together. ssh2's public
 * `signal()` is a no-op once stdin was closed (it checks `writable`), although the
 * protocol allows the request after EOF, so the request goes through its protocol object.
 */
function killRemote(ch: ClientChannel): void {
  if (ch.writable) {
    ch.signal('KILL');
    return;
  }
  const c = ch as unknown as ChannelInternals;
  const id = c.outgoing?.id;
  const proto = c._client?._protocol;
  if (id !== undefined && (c.outgoing?.state === 'open' || c.outgoing?.state === 'eof') && typeof proto?.signal === 'function') {
    proto.signal(id, 'KILL');
  }
}

/**
 * Runs one command line. Resolves with masked output once the channel closes after an
 * exit status or signal; rejects with WRIT_EXEC_TIMEOUT on the time limit, with the
 * abort reason on `signal`, and with WRIT_EXEC_FAILED when the outcome cannot be known.
 */
export function execOnce(
  conn: Client,
  line: string,
  limits: ExecLimits,
  maskers: { stdout: StreamMasker; stderr: StreamMasker },
  signal: AbortSignal,
): Promise<StreamOutput> {
  return new Promise<StreamOutput>((resolve, reject) => {
    let settled = false;
    let channel: ClientChannel | undefined;
    let exit: { code: number | null; signal: string | null } | undefined;
    let timer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const stdout = new Capture(maskers.stdout, limits.maxBytes);
    const stderr = new Capture(maskers.stderr, limits.maxBytes);

    const cleanup = () => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
      conn.off('close', onConnLost);
    };
    const fail = (err: WritError) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    /** Kill the remote command, give the channel a moment to report, then fail. */
    const stop = (err: WritError) => {
      if (settled || killTimer !== undefined) return;
      if (!channel) return fail(err);
      killRemote(channel);
      const ch = channel;
      const done = () => {
        ch.close();
        fail(err);
      };
      ch.once('close', done);
      killTimer = setTimeout(done, limits.killGraceMs);
    };
    const onAbort = () => {
      const r: unknown = signal.reason;
      stop(r instanceof WritError ? r : new WritError('WRIT_EXEC_FAILED', 'the run was aborted; the remote command was killed'));
    };
    const onConnLost = () => fail(new WritError('WRIT_EXEC_FAILED', 'the connection to the target was lost mid-run; the command may have run'));

    timer = setTimeout(
      () => stop(new WritError('WRIT_EXEC_TIMEOUT', `the command ran past ${limits.timeoutMs} ms and was killed`)),
      limits.timeoutMs,
    );
    signal.addEventListener('abort', onAbort, { once: true });
    conn.once('close', onConnLost);

    if (signal.aborted) {
      onAbort();
      return;
    }
    conn.exec(line, (err, ch) => {
      if (err) {
        // The exec request was refused: nothing ran.
        fail(new WritError('WRIT_TARGET_UNAVAILABLE', 'the target refused to start the command', { cause: err }));
        return;
      }
      channel = ch;
      if (settled) {
        // Aborted while the exec request was in flight: the command has started, so kill it.
        killRemote(ch);
        ch.close();
        return;
      }
      ch.on('data', (b: Buffer) => stdout.push(b));
      ch.stderr.on('data', (b: Buffer) => stderr.push(b));
      ch.on('error', () => undefined); // the connection's fate decides; see onConnLost
      ch.on('exit', (code: number | null, sig?: string) => {
        exit = { code: typeof code === 'number' ? code : null, signal: typeof sig === 'string' ? sig : null };
      });
      const finish = () => {
        if (settled || killTimer !== undefined) return;
        if (exit === undefined) {
          fail(new WritError('WRIT_EXEC_FAILED', 'the channel closed without an exit status; the outcome is unknown'));
          return;
        }
        try {
          const out: StreamOutput = {
            type: 'stream', stdout: stdout.finish(), stderr: stderr.finish(),
            exitCode: exit.code, signal: exit.signal, truncated: stdout.truncated || stderr.truncated,
          };
          settled = true;
          cleanup();
          resolve(out);
        } catch (e) {
          fail(e instanceof WritError ? e : new WritError('WRIT_MASKING_FAILED', undefined, { cause: e }));
        }
      };
      // ssh2 emits 'close' once stdout has ended; stderr's last chunks may still be on their way.
      ch.on('close', () => (ch.stderr.readableEnded ? finish() : ch.stderr.once('end', finish)));
      // No input: stdin is closed at once, as `ssh -n` does, so a command reading it ends instead of waiting.
      ch.end();
    });
  });
}
