/**
 * Structured logging with pino. Credentials and tokens are redacted by path before a
 * line is written, so a careless `log.info({ intent })` cannot leak them.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'token', '*.token', '*.*.token',
  'password', '*.password', '*.*.password', '*.*.*.password',
  'credentials', '*.credentials', '*.*.credentials',
  'privateKey', '*.privateKey', 'secret', '*.secret',
  'authorization', '*.authorization', 'headers.authorization',
  'grant', '*.grant',
  'connectionString', '*.connectionString',
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
