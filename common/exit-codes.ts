/**
 * The exit-code table shared with Python (common/exit-codes.json is the single source;
 * worker/python/src/stoker_payload/exit_codes.py reads the same file).
 *
 * classifyExit() turns a child's (exitCode, signal) into what the dispatcher needs:
 * a name for humans, and whether another attempt can help.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { packageRoot } from './paths.js';

interface ExitCodeEntry {
  code: number;
  retryable: boolean;
  description: string;
}
interface ExitCodeFile {
  codes: Record<string, ExitCodeEntry>;
  nonRetryableRange: [number, number];
  signalBase: number;
}

// Read at load time rather than imported: JSON imports still print an experimental
// warning on Node 20, and the file must stay plain JSON for Python.
const table = JSON.parse(
  readFileSync(join(packageRoot(), 'common', 'exit-codes.json'), 'utf8'),
) as ExitCodeFile;

export type ExitCodeName =
  | 'SUCCESS'
  | 'FAILURE'
  | 'USAGE'
  | 'BAD_CONFIG'
  | 'BAD_DATA'
  | 'MISSING_INPUT'
  | 'UNKNOWN_MODEL'
  | 'MISSING_DEPENDENCY'
  | 'TEMPORARY'
  | 'CUDA_OOM'
  | 'PREEMPTED'
  | 'ENVIRONMENT';

export const ExitCode = Object.fromEntries(
  Object.entries(table.codes).map(([name, entry]) => [name, entry.code]),
) as Record<ExitCodeName, number>;

export interface ExitClassification {
  /** SUCCESS, one of the table's names, SIGNAL_<NAME>, or EXIT_<code> for codes not in the table. */
  reason: string;
  retryable: boolean;
  description: string;
  exitCode: number | null;
  signal: string | null;
}

const byCode = new Map<number, [string, ExitCodeEntry]>(
  Object.entries(table.codes).map(([name, entry]) => [entry.code, [name, entry]]),
);

function signalNumber(signal: string): number | undefined {
  return (osConstants.signals as Record<string, number>)[signal];
}

function signalName(num: number): string | undefined {
  return Object.entries(osConstants.signals).find(([, n]) => n === num)?.[0];
}

/** Classify how a process ended. `signal` is the Node signal name when it was killed. */
export function classifyExit(
  exitCode: number | null,
  signal: string | null = null,
): ExitClassification {
  if (signal) {
    const num = signalNumber(signal);
    return {
      reason: `SIGNAL_${signal.replace(/^SIG/, '')}`,
      retryable: true,
      description: `killed by ${signal}${num === undefined ? '' : ` (exit ${table.signalBase + num})`}`,
      exitCode: num === undefined ? null : table.signalBase + num,
      signal,
    };
  }
  if (exitCode === null) {
    return {
      reason: 'UNKNOWN',
      retryable: true,
      description: 'the process vanished without an exit status',
      exitCode,
      signal,
    };
  }
  const known = byCode.get(exitCode);
  if (known) {
    const [name, entry] = known;
    return {
      reason: name,
      retryable: entry.retryable,
      description: entry.description,
      exitCode,
      signal,
    };
  }
  if (exitCode > table.signalBase && exitCode < table.signalBase + 65) {
    const sig = signalName(exitCode - table.signalBase) ?? `SIG${exitCode - table.signalBase}`;
    return {
      reason: `SIGNAL_${sig.replace(/^SIG/, '')}`,
      retryable: true,
      description: `killed by ${sig} (exit ${exitCode})`,
      exitCode,
      signal: sig,
    };
  }
  const [lo, hi] = table.nonRetryableRange;
  const retryable = !(exitCode >= lo && exitCode <= hi);
  return {
    reason: `EXIT_${exitCode}`,
    retryable,
    description: retryable
      ? `exited with code ${exitCode}`
      : `exited with reserved non-retryable code ${exitCode}`,
    exitCode,
    signal,
  };
}
