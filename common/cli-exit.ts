/**
 * How every `stoker` entry point (main.ts, tools.ts) ends on an error: the message on
 * stderr and the exit code of the CLI's contract (2 invalid input, 1 otherwise). Kept
 * apart from main.ts so that the slim tools entry point does not load the whole CLI.
 */
import { SpecError, StokerError, UsageError } from './errors.js';
import { printable } from './terminal.js';

export function exitOnError(err: unknown): void {
  if (err instanceof SpecError) {
    // Already formatted: the file, then every problem with its path and line.
    process.stderr.write(`${printable(err.message)}\n`);
    process.exitCode = 2;
  } else if (err instanceof UsageError) {
    process.stderr.write(`stoker: ${printable(err.message)}\n`);
    process.exitCode = err.exitCode;
  } else if (err instanceof StokerError) {
    // RunNotFoundError and the other known errors: exit 1.
    process.stderr.write(`stoker: ${printable(err.message)}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(
      `stoker: unexpected error: ${printable((err as Error).stack ?? String(err))}\n`,
    );
    process.exitCode = 1;
  }
}
