/**
 * A failed payload whose own output says another attempt would fail the same way
 * (common/failure-class.ts): its exit code, whatever the payload's own (a plain 1 is
 * retried), becomes the table's non-retryable code for that cause
 * (common/exit-codes.json), so no backend retries it blindly (a Job's podFailurePolicy
 * reads the same code):
 *
 *   DISK_FULL, PERMISSION_DENIED, OFFLINE_NOT_FOUND   ENVIRONMENT: fix it, then resume
 *   CUDA_OOM                                          CUDA_OOM: the same shape fails again
 *   MISSING_MODULE                                    MISSING_DEPENDENCY: install it
 *
 * Only a retryable failure is looked at: an exit the payload already classified (BAD_DATA,
 * MISSING_DEPENDENCY...) keeps its code.
 */
import { ExitCode } from '../common/exit-codes.js';
import { classifyFailure, type FailureClass } from '../common/failure-class.js';

const NOT_RETRIED: Readonly<Record<string, { exitCode: number; again: string }>> = {
  DISK_FULL: { exitCode: ExitCode.ENVIRONMENT, again: 'the same environment would fail again' },
  PERMISSION_DENIED: {
    exitCode: ExitCode.ENVIRONMENT,
    again: 'the same environment would fail again',
  },
  OFFLINE_NOT_FOUND: {
    exitCode: ExitCode.ENVIRONMENT,
    again: 'the same environment would fail again',
  },
  CUDA_OOM: { exitCode: ExitCode.CUDA_OOM, again: 'the same shape would fail again' },
  MISSING_MODULE: {
    exitCode: ExitCode.MISSING_DEPENDENCY,
    again: 'the same image would fail again',
  },
};

export interface UnretriedFailure extends FailureClass {
  exitCode: number;
  /** Why another attempt would not help, in words. */
  again: string;
}

/** The non-retryable cause the stderr tail of a retryable failure shows, or null. */
export function unretriedFailure(stderrTail: readonly string[]): UnretriedFailure | null {
  const f = classifyFailure(stderrTail);
  const rule = f ? NOT_RETRIED[f.class] : undefined;
  return f && rule ? { ...f, ...rule } : null;
}
