/**
 * Structured logging with pino. Credentials and tokens are redacted by path before a
 * line is written, so a careless `log.info({ intent })` cannot leak them.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'token',
  '*.token',
  '*.*.token',
  'password',
  '*.password',
  '*.*.password',
  '*.*.*.password',
  'credentials',
  '*.credentials',
  '*.*.credentials',
  'privateKey',
  '*.privateKey',
  'secret',
  '*.secret',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'grant',
  '*.grant',
  'connectionString',
  '*.connectionString',
];

export type { Logger };

export function createLogger(opts: { name: string; level?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? process.env.WRIT_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: { pid: process.pid },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

const LEVEL_METHODS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const noop = () => undefined;

/**
 * `parent.child(bindings)`, made only when a line is actually written at an enabled level.
 * A pino child with the redaction paths above costs ~20 µs to make (its bindings go through
 * the redactor), and most intents log nothing: per-intent loggers (intent, session and trace
 * ids on every line) are made with this.
 */
export function lazyChild(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  return new Proxy(parent, {
    get(_target, prop) {
      if (typeof prop === 'string' && LEVEL_METHODS.has(prop) && !parent.isLevelEnabled(prop)) return noop;
      child ??= parent.child(bindings);
      const v: unknown = Reflect.get(child, prop, child);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(child) : v;
    },
  });
}
