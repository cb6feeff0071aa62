/**
 * Process-level guards for every long-running Writ process: a stop with a deadline, and
 * handlers for the failures nothing else caught. A service that stops while NATS is gone
 * must still exit: graceful draining waits on the server, so it is raced against a deadline
 * and the process exits either way. A second signal exits at once.
 */
import type { Logger } from './log.ts';

/** Resolves `true` when `work` settles within `ms`, `false` when the deadline passed first. */
export async function withDeadline(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface GuardOptions {
  log: Logger;
  /** Stops what the process started (services, connections, children). */
  stop: () => Promise<void>;
  /** How long a graceful stop may take before the process exits anyway. Default 15 s. */
  deadlineMs?: number;
  /** For tests: what ends the process. Default process.exit. */
  exit?: (code: number) => void;
}

/**
 * Installs SIGTERM/SIGINT, unhandledRejection and uncaughtException handlers. Resolves with
 * the exit code once a stop has run (the caller exits with it), so a `main` can await it.
 */
export function guardProcess(o: GuardOptions): Promise<number> {
  const exit = o.exit ?? ((code: number) => process.exit(code));
  const deadlineMs = o.deadlineMs ?? 15_000;
  let stopping: Promise<number> | undefined;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const shutdown = (why: string, code: number): Promise<number> => {
    if (stopping) {
      // A second signal or failure while stopping: exit now.
      o.log.warn({ why }, 'stopping again: exiting now');
      exit(code || 1);
      return stopping;
    }
    o.log.info({ why }, 'stopping');
    stopping = withDeadline(o.stop(), deadlineMs).then(async (inTime) => {
      if (!inTime) o.log.error({ deadlineMs }, 'stop did not finish before its deadline; exiting anyway');
      const c = inTime ? code : code || 1;
      // pino writes asynchronously: flush, so the reason for the exit is not lost with it.
      await withDeadline(new Promise<void>((r) => o.log.flush(() => r())), 1000);
      resolveDone(c);
      return c;
    });
    return stopping;
  };

  const onSignal = (sig: NodeJS.Signals) => void shutdown(sig, 0);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('unhandledRejection', (reason) => {
    o.log.fatal({ err: reason }, 'unhandled rejection');
    void shutdown('unhandledRejection', 1).then(exit);
  });
  process.on('uncaughtException', (err) => {
    o.log.fatal({ err }, 'uncaught exception');
    void shutdown('uncaughtException', 1).then(exit);
  });
  return done;
}
