/**
 * The process logger: pino, one JSON object per line, to stderr.
 *
 * Secrets never reach the log: any `password` / `backendPassword` / `backend_password` field
 * (at the top of a log object, one level down, or inside a logged config) is replaced.
 */
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

const SECRET_KEYS = ['password', 'backendPassword', 'backend_password'];

/** The redaction paths: each secret key at depth 0 and 1, and inside a logged config. */
export const REDACT_PATHS: string[] = SECRET_KEYS.flatMap((k) => [
  k,
  `*.${k}`,
  `config.clusters[*].${k}`,
  `clusters[*].${k}`,
]);

export const REDACTED = '[redacted]';

/**
 * A logger at `level` (fatal, error, warn, info, debug, trace or silent), writing JSON lines to
 * `destination` (default: stderr, written synchronously so nothing is lost on exit).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  if (!isLogLevel(level)) {
    throw new Error(`unknown log level ${JSON.stringify(level)}; expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const dest = destination ?? pino.destination({ dest: 2, sync: true });
  return pino(
    {
      name: 'aster-proxy',
      level,
      redact: { paths: REDACT_PATHS, censor: REDACTED },
    },
    dest,
  );
}
