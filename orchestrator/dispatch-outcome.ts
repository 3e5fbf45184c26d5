/**
 * Step 3 of Dispatcher.process (orchestrator/dispatcher.ts) as a pure planner: given how
 * a unit ended, the task status to write and what to tell BullMQ. No I/O; the caller
 * reads the cancel request and BullMQ's counters first, and acts on the verdict after.
 *
 * Checked in this order (the first that applies decides):
 *
 *   unit succeeded               Succeeded, reason Completed          complete
 *   a cancel was requested       Cancelled, CancelRequested           unrecoverable
 *   it ran past its deadline     Failed, DeadlineExceeded             unrecoverable
 *   disrupted by the cluster     Pending, the unit's reason           requeue (no attempt spent)
 *     (state.freeRetry)
 *   stoker is shutting down      Pending, Preempted                   requeue (no attempt spent)
 *   the failure is not retryable Failed, the reason                   unrecoverable
 *   this was the last attempt    Failed, the reason                   failed
 *   otherwise                    Pending, the reason                  failed (BullMQ retries)
 *
 * Reason: the backend's own reason (WorkerLost, ImagePullBackOff...) when it names one
 * other than SUCCESS and other than the exit's, else the exit's (common/exit-codes.ts).
 * Retryable: the backend's verdict when it gives one; else WorkerLost and Stalled are
 * retryable; else the exit code's class. Every outcome replaces this attempt's entry in
 * the status history.
 */
import { classifyExit } from '../common/exit-codes.js';
import type { TaskStatus } from '../common/model.js';
import type { UnitState } from './backends/types.js';

export type StopReason = 'cancel' | 'deadline';

export interface OutcomeInput {
  /** The task's status while the unit ran (phase Running, this attempt's unit). */
  status: TaskStatus;
  attempt: number;
  state: UnitState;
  /** Why the dispatcher terminated the unit while it ran, if it did. */
  stopReason: StopReason | null;
  /** A cancel request read after the unit ended (not needed when it succeeded). */
  cancelRequested: boolean;
  /** The dispatcher is stopping (preempt or force): its own termination is not a failure. */
  shuttingDown: boolean;
  /** BullMQ's attemptsMade and the job's attempts option. */
  attemptsMade: number;
  maxAttempts: number;
  activeDeadlineSeconds: number | undefined;
  /** ISO time for finishedAt fields. */
  now: string;
}

/**
 * What the processor does with the BullMQ job:
 *   complete       return the result
 *   requeue        moveToDelayed(now + 1 s) and throw DelayedError: no attempt is spent
 *   unrecoverable  throw UnrecoverableError(error): no retry
 *   failed         throw Error(error): BullMQ retries with its backoff while attempts remain
 */
export type JobVerdict =
  | { kind: 'complete' }
  | { kind: 'requeue' }
  | { kind: 'unrecoverable'; error: string }
  | { kind: 'failed'; error: string };

export interface Outcome {
  status: TaskStatus;
  verdict: JobVerdict;
  /** A warning worth logging (a retry), with the reason it names. */
  warn?: string;
}

export function planOutcome(input: OutcomeInput): Outcome {
  const { state, now } = input;
  const exit = classifyExit(state.exitCode, state.signal);
  const reason =
    state.reason && state.reason !== 'SUCCESS' && state.reason !== exit.reason
      ? state.reason
      : exit.reason;
  const base = withAttemptEntry(input, reason, exit.description);
  if (state.phase === 'Succeeded') {
    const message = 'the payload finished';
    const end: FinalFields = { phase: 'Succeeded', reason: 'Completed', message, retryable: null };
    return final(base, now, end, { kind: 'complete' });
  }
  const detail = describeFailure(state, exit.description);
  if (input.stopReason === 'cancel' || input.cancelRequested) {
    const message = `cancelled by request (${detail})`;
    const end: FinalFields = {
      phase: 'Cancelled',
      reason: 'CancelRequested',
      message,
      retryable: false,
    };
    return final(base, now, end, { kind: 'unrecoverable', error: 'cancelled' });
  }
  if (input.stopReason === 'deadline') {
    const message = `ran past its budget of ${input.activeDeadlineSeconds} s`;
    const end: FinalFields = {
      phase: 'Failed',
      reason: 'DeadlineExceeded',
      message,
      retryable: false,
    };
    return final(base, now, end, { kind: 'unrecoverable', error: 'deadline exceeded' });
  }
  if (state.freeRetry) {
    const message = `${detail}; retried without spending an attempt`;
    return requeue(base, reason, message, 'unit disrupted by the cluster; retrying');
  }
  if (input.shuttingDown) {
    const message = `stopped for a controller shutdown (${detail}); it resumes from its last checkpoint`;
    return requeue(base, 'Preempted', message);
  }
  return planFailure(input, base, reason, detail, exit.retryable);
}

/** A failed attempt of the payload's own: not retryable, out of attempts, or retried. */
function planFailure(
  input: OutcomeInput,
  base: TaskStatus,
  reason: string,
  detail: string,
  exitRetryable: boolean,
): Outcome {
  const { state, maxAttempts, now } = input;
  const retryable =
    state.retryable ?? (reason === 'WorkerLost' || reason === 'Stalled' ? true : exitRetryable);
  const error = `${reason}: ${detail}`;
  if (!retryable) {
    const message = `${detail}; not retryable`;
    return final(
      base,
      now,
      { phase: 'Failed', reason, message, retryable },
      { kind: 'unrecoverable', error },
    );
  }
  if (input.attemptsMade + 1 >= maxAttempts) {
    const message = `${detail}; gave up after ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'}`;
    return final(
      base,
      now,
      { phase: 'Failed', reason, message, retryable },
      { kind: 'failed', error },
    );
  }
  return {
    status: {
      ...base,
      phase: 'Pending',
      reason,
      message: `attempt ${input.attempt} failed: ${detail}; retrying`,
      retryable: true,
    },
    verdict: { kind: 'failed', error },
    warn: 'attempt failed; retrying',
  };
}

export interface FinalFields {
  phase: 'Succeeded' | 'Failed' | 'Cancelled';
  reason: string;
  message: string;
  retryable: boolean | null;
}

/** A task status in a final phase, finishedAt `now`. */
export function finishedStatus(status: TaskStatus, now: string, end: FinalFields): TaskStatus {
  return { ...status, ...end, finishedAt: now };
}

function final(base: TaskStatus, now: string, end: FinalFields, verdict: JobVerdict): Outcome {
  return { status: finishedStatus(base, now, end), verdict };
}

function requeue(base: TaskStatus, reason: string, message: string, warn?: string): Outcome {
  return {
    status: { ...base, phase: 'Pending', reason, message, retryable: true },
    verdict: { kind: 'requeue' },
    ...(warn ? { warn } : {}),
  };
}

/** The running status with the unit's exit and this attempt's history entry. */
function withAttemptEntry(input: OutcomeInput, reason: string, description: string): TaskStatus {
  const { status, state, attempt } = input;
  const entry = {
    attempt,
    reason,
    message: state.message ?? description,
    exitCode: state.exitCode,
    signal: state.signal,
    finishedAt: input.now,
  };
  return {
    ...status,
    exitCode: state.exitCode,
    signal: state.signal,
    stderrTail: state.stderrTail,
    history: [...status.history.filter((h) => h.attempt !== attempt), entry],
  };
}

/** The unit's message (or the exit's description) and the last three stderr lines. */
export function describeFailure(state: UnitState, fallback: string): string {
  const what = state.message ?? fallback;
  const tail = state.stderrTail.filter((l) => l.trim() !== '').slice(-3);
  return tail.length > 0 ? `${what}; stderr: ${tail.join(' | ')}` : what;
}
