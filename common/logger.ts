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
  // A log that cannot be written (a full disk under the worker's log file) drops lines;
  // it must not crash the process that would report the payload's failure.
  destination.on('error', () => undefined);
  return pino(options, destination);
}

/** A logger that drops everything: for tests and for library code given no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
