/**
 * Logger factory: pino, one child logger per unit of work (runId, taskId, attempt),
 * constant messages with variables in fields, errors under `err`, secrets redacted.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  '*.password',
  'redisUrl',
  '*.redisUrl',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'env.HF_TOKEN',
  '*.env.HF_TOKEN',
];

export function createLogger(
  opts: { level?: string; name?: string; destination?: number | string } = {},
): Logger {
  const options: LoggerOptions = {
    name: opts.name ?? 'stoker',
    level: opts.level ?? process.env.STOKER_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  const destination = pino.destination({ dest: opts.destination ?? 2, sync: true });
  // An asynchronous write error is an 'error' event: without a listener it would crash.
  destination.on('error', () => undefined);
  return pino(options, neverThrowing(destination));
}

/**
 * A destination whose write never throws. A sync pino destination throws the write's
 * error (ENOSPC when the log file's disk is full, as a pool worker's log under a full
 * STOKER_HOME is): thrown from `log.warn()` in the middle of recording a shard's failure,
 * it skipped the record, so a shard's last attempt left no outcome and its stage never
 * ended (`npm run chaos`, disk-full). A line that cannot be written stays in the
 * destination's buffer and goes out with the next write that succeeds.
 */
function neverThrowing(dest: { write(line: string): unknown }): { write(line: string): void } {
  return {
    write(line: string) {
      try {
        dest.write(line);
      } catch {
        // The log is best effort; the work it describes must go on.
      }
    },
  };
}

/** A logger that drops everything: for tests and for library code given no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
