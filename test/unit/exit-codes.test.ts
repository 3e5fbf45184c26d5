import { describe, expect, it } from 'vitest';
import { classifyExit, ExitCode } from '../../common/exit-codes.js';

describe('classifyExit', () => {
  it.each([
    ['a clean exit is success', 0, null, 'SUCCESS', false],
    ['an uncaught exception is retryable', 1, null, 'FAILURE', true],
    ['argparse usage errors are not retried', 2, null, 'USAGE', false],
    ['bad data is not retried', ExitCode.BAD_DATA, null, 'BAD_DATA', false],
    ['a reserved code outside the table is still not retried', 70, null, 'EXIT_70', false],
    ['an unknown code outside the range is retried', 3, null, 'EXIT_3', true],
    ['preemption after a checkpoint is retried', ExitCode.PREEMPTED, null, 'PREEMPTED', true],
    ['CUDA OOM is not retried with the same shape', ExitCode.CUDA_OOM, null, 'CUDA_OOM', false],
    ['the OOM killer (137) is retried', 137, null, 'SIGNAL_KILL', true],
    ['SIGTERM as exit 143 is retried', 143, null, 'SIGNAL_TERM', true],
    ['killed by a signal is retried', null, 'SIGKILL', 'SIGNAL_KILL', true],
  ])('%s', (_name, code, signal, reason, retryable) => {
    const c = classifyExit(code, signal);
    expect(c.reason).toBe(reason);
    expect(c.retryable).toBe(retryable);
  });

  it('reports the exit code a shell would show for a signal', () => {
    expect(classifyExit(null, 'SIGTERM').exitCode).toBe(143);
  });
});
