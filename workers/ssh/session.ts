/**
 * One `exec` on an authenticated connection: stream stdout and stderr through their own
 * maskers under a byte limit, enforce the time limit and the abort signal by killing the
 * remote command, and report its exit code or signal.
 */
import type { Client, ClientChannel } from 'ssh2';
import { quoteShellArg } from '../../classify/index.ts';
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
  /** After the KILL signal request, how long to wait before the fallback kill (see KILL_SESSIONS). */
  signalGraceMs: number;
  /** From the stop on, how long the kill may take to be confirmed before the run ends regardless. */
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
 * Asks sshd to SIGKILL the remote command; sshd delivers it with killpg() to the session's
 * process group, so the login shell and what it started die together. ssh2's public
 * `signal()` is a no-op once stdin was closed (it checks `writable`), although the protocol
 * allows the request after EOF, so then the request goes through its protocol object.
 */
function signalKill(ch: ClientChannel): void {
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
 * The fallback when the signal request did not end the command: OpenSSH refuses `signal`
 * for a session without privilege separation, which is every root login. Each session of
 * this connection runs as a child of the same sshd process ($PPID) and leads its own process
 * group (sshd calls setsid()), so killing those groups, except this shell's, kills the
 * command and what it started in its group. `kill -9 -PGID` is the form bash and dash share.
 */
const KILL_SESSIONS = 'for p in $(pgrep -P "$PPID"); do [ "$p" = "$$" ] || kill -9 -"$p" 2>/dev/null || kill -9 "$p"; done';

/** Runs KILL_SESSIONS on a second channel of the same connection; its outcome shows in the first channel closing. */
function killSessions(conn: Client): void {
  try {
    conn.exec(KILL_SESSIONS, (err, ch) => {
      if (err) return;
      ch.on('data', () => undefined);
      ch.stderr.on('data', () => undefined);
      ch.on('error', () => undefined);
      ch.end();
    });
  } catch {
    // The connection is already gone; the kill stays unconfirmed.
  }
}

/**
 * The first thing the remote shell runs: it prints its PID, which is the session's ID (sshd
 * calls setsid() for each channel), on the first line of stderr, where the worker takes it off
 * before anything is masked or counted. A background job (`cmd >/dev/null &`) stays in that
 * session after the shell exits; with the ID the worker ends it when the run ends, so no
 * process the run started outlives its time limit (one that calls setsid() itself leaves the
 * session, see docs/ARCHITECTURE.md).
 */
const SID_PROBE = `printf 'writ-sid %s\\n' "$$" >&2`;
const SID_LINE = /^writ-sid ([0-9]{1,10})$/;

/**
 * What the remote login shell is sent: the probe, then bash running the approved line. The
 * classifier read the line with bash's grammar; the login shell may be another one (dash has no
 * `$'…'`, so `uptime $'\'' ; touch M ; #'` ran touch under it), so the line reaches bash as one
 * single-quoted argument, which every POSIX shell reads alike. `exec` keeps the PID, and so the
 * session the probe reported. Without bash on the host nothing runs (exit 127).
 */
export function remoteLine(line: string): string {
  return `${SID_PROBE}\nexec bash -c ${quoteShellArg(line)}`;
}

/**
 * The kill of a run's leftovers. `kill -9 -SID` ends the session's process group in one step (a
 * background job of a non-interactive shell stays in it, and nothing forks into a group while it
 * is being signalled); `pkill -s` then ends what moved to a group of its own within the session.
 * pkill alone lists, then kills, so a job that keeps re-launching itself (`f() { f & }; f`) was
 * missed between the two: the loop repeats until the session is empty, a bounded number of times.
 */
function reapCommand(sid: number): string {
  return `i=0; while [ $i -lt 20 ]; do kill -9 -- -${sid} 2>/dev/null; pkill -9 -s ${sid} 2>/dev/null; pgrep -s ${sid} >/dev/null || exit 0; i=$((i+1)); sleep 0.05; done; exit 0`;
}

/** Kills what is left of a run's session; resolves when the channel running the kill closes, or after `graceMs`. */
function reapSession(conn: Client, sid: number, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    try {
      conn.exec(reapCommand(sid), (err, ch) => {
        if (err) return done();
        ch.on('data', () => undefined);
        ch.stderr.on('data', () => undefined);
        ch.on('error', () => undefined);
        ch.on('close', done);
        ch.end();
      });
    } catch {
      done(); // the connection is gone: nothing more can be done from here
    }
  });
}

/** The same error, saying the remote command may have survived. */
function unconfirmed(err: WritError): WritError {
  return new WritError(err.code, `${err.message.replace(/ and was killed$|; the remote command was killed$/, '')}; the kill was not confirmed, so the command may still be running`, {
    cause: err,
    details: { ...err.details, killConfirmed: false },
  });
}

/**
 * Runs one command line. Resolves with masked output once the channel closes after an
 * exit status or signal; rejects with WRIT_EXEC_TIMEOUT on the time limit, with the
 * abort reason on `signal`, and with WRIT_EXEC_FAILED when the outcome cannot be known.
 * A kill is confirmed by the channel closing; past `killGraceMs` the run ends anyway and
 * the error says the command may still be running.
 */
export function execOnce(conn: Client, line: string, limits: ExecLimits, maskers: { stdout: StreamMasker; stderr: StreamMasker }, signal: AbortSignal): Promise<StreamOutput> {
  return new Promise<StreamOutput>((resolve, reject) => {
    new RemoteRun(conn, limits, maskers, signal, resolve, reject).start(line);
  });
}

/** The state of one exec, from the request to the promise settling. */
class RemoteRun {
  #settled = false;
  #channel: ClientChannel | undefined;
  #exit: { code: number | null; signal: string | null } | undefined;
  /** stderr until the probe's line is read (null after); see SID_PROBE. */
  #probe: Buffer | null = Buffer.alloc(0);
  /** The remote session's ID, from the probe. */
  #sid: number | undefined;
  #reaping = false;
  /** Set once the run is being stopped: the error it ends with. */
  #stopping: WritError | undefined;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #stdout: Capture;
  readonly #stderr: Capture;
  readonly #onAbort = () => {
    const r: unknown = this.signal.reason;
    this.stop(r instanceof WritError ? r : new WritError('WRIT_EXEC_FAILED', 'the run was aborted; the remote command was killed'));
  };
  readonly #onConnLost = () => this.#fail(new WritError('WRIT_EXEC_FAILED', 'the connection to the target was lost mid-run; the command may have run'));

  constructor(
    readonly conn: Client,
    readonly limits: ExecLimits,
    maskers: { stdout: StreamMasker; stderr: StreamMasker },
    readonly signal: AbortSignal,
    readonly resolve: (out: StreamOutput) => void,
    readonly reject: (err: WritError) => void,
  ) {
    this.#stdout = new Capture(maskers.stdout, limits.maxBytes);
    this.#stderr = new Capture(maskers.stderr, limits.maxBytes);
  }

  start(line: string): void {
    if (this.signal.aborted) {
      this.#fail(new WritError('WRIT_EXEC_FAILED', 'the run was aborted before the command started'));
      return;
    }
    this.#timers.push(setTimeout(() => this.stop(new WritError('WRIT_EXEC_TIMEOUT', `the command ran past ${this.limits.timeoutMs} ms and was killed`)), this.limits.timeoutMs));
    this.signal.addEventListener('abort', this.#onAbort, { once: true });
    this.conn.once('close', this.#onConnLost);
    this.conn.exec(remoteLine(line), (err, ch) => {
      if (err) {
        // The exec request was refused: nothing ran.
        this.#fail(this.#stopping ?? new WritError('WRIT_TARGET_UNAVAILABLE', 'the target refused to start the command', { cause: err }));
        return;
      }
      this.#attach(ch);
    });
  }

  /** Kill the remote command, wait for the channel to confirm it by closing, then fail with `err`. */
  stop(err: WritError): void {
    if (this.#settled || this.#stopping) return;
    this.#stopping = err;
    this.#timers.push(
      setTimeout(() => {
        this.#channel?.close();
        this.#fail(unconfirmed(err));
      }, this.limits.killGraceMs),
    );
    if (this.#channel) this.#kill(this.#channel); // otherwise #attach does, once the command has started
  }

  #attach(ch: ClientChannel): void {
    this.#channel = ch;
    ch.on('data', (b: Buffer) => this.#stdout.push(b));
    ch.stderr.on('data', (b: Buffer) => this.#stderrChunk(b));
    ch.on('error', () => undefined); // the connection's fate decides; see #onConnLost
    ch.on('exit', (code: number | null, sig?: string) => {
      this.#exit = { code: typeof code === 'number' ? code : null, signal: typeof sig === 'string' ? sig : null };
    });
    // ssh2 emits 'close' once stdout has ended; stderr's last chunks may still be on their way.
    ch.on('close', () => (ch.stderr.readableEnded ? this.#finish() : ch.stderr.once('end', () => this.#finish())));
    // No input: stdin is closed at once, as `ssh -n` does, so a command reading it ends instead of waiting.
    ch.end();
    // Stopped while the exec request was in flight: the command has started, so kill it.
    if (this.#stopping) this.#kill(ch);
  }

  /** stderr: its first line is the probe's session ID (see SID_PROBE); the rest is the command's. */
  #stderrChunk(b: Buffer): void {
    if (this.#probe === null) return this.#stderr.push(b);
    this.#probe = Buffer.concat([this.#probe, b]);
    const nl = this.#probe.indexOf(0x0a);
    if (nl < 0 && this.#probe.length < 64) return;
    const first = nl >= 0 ? this.#probe.subarray(0, nl).toString('latin1') : '';
    const m = SID_LINE.exec(first);
    const rest = m ? this.#probe.subarray(nl + 1) : this.#probe;
    if (m) this.#sid = Number(m[1]);
    this.#probe = null;
    if (rest.length > 0) this.#stderr.push(rest);
  }

  #kill(ch: ClientChannel): void {
    signalKill(ch);
    this.#timers.push(setTimeout(() => killSessions(this.conn), this.limits.signalGraceMs));
  }

  /**
   * The channel has closed: the command's end, or the confirmation of a kill. What the run
   * left in its session is killed before the run ends (the connection closes after it).
   */
  #finish(): void {
    if (this.#settled || this.#reaping) return;
    const sid = this.#sid;
    if (sid !== undefined && sid > 1) {
      this.#reaping = true;
      void reapSession(this.conn, sid, this.limits.killGraceMs).then(() => this.#settleFinished());
      return;
    }
    this.#settleFinished();
  }

  #settleFinished(): void {
    if (this.#settled) return;
    if (this.#probe !== null && this.#probe.length > 0) {
      // The command ended before the probe's line was complete: what came is the command's.
      this.#stderr.push(this.#probe);
      this.#probe = null;
    }
    if (this.#stopping) return this.#fail(this.#stopping);
    if (this.#exit === undefined) {
      return this.#fail(new WritError('WRIT_EXEC_FAILED', 'the channel closed without an exit status; the outcome is unknown'));
    }
    let out: StreamOutput;
    try {
      out = {
        type: 'stream',
        stdout: this.#stdout.finish(),
        stderr: this.#stderr.finish(),
        exitCode: this.#exit.code,
        signal: this.#exit.signal,
        truncated: this.#stdout.truncated || this.#stderr.truncated,
      };
    } catch (e) {
      return this.#fail(e instanceof WritError ? e : new WritError('WRIT_MASKING_FAILED', undefined, { cause: e }));
    }
    this.#settle();
    this.resolve(out);
  }

  #fail(err: WritError): void {
    if (this.#settled) return;
    this.#settle();
    this.reject(err);
  }

  #settle(): void {
    this.#settled = true;
    for (const t of this.#timers) clearTimeout(t);
    this.signal.removeEventListener('abort', this.#onAbort);
    this.conn.off('close', this.#onConnLost);
  }
}
