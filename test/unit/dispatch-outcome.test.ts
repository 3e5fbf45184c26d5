/**
 * planOutcome (orchestrator/dispatch-outcome.ts): how a finished unit becomes a task
 * status and a verdict for BullMQ. Table-driven; the integration tests (run, restart,
 * kubernetes) cover the same paths through real processes.
 */
import { describe, expect, it } from 'vitest';
import type { TaskStatus } from '../../common/model.js';
import { newTaskStatus } from '../../common/task-store.js';
import { unitState, type UnitState } from '../../orchestrator/backends/types.js';
import { planOutcome, type OutcomeInput } from '../../orchestrator/dispatch-outcome.js';

const NOW = '2030-01-01T00:00:00.000Z';

const running: TaskStatus = {
  ...newTaskStatus({ id: 'r1.train', runId: 'r1', stage: 'train', queue: 'train', maxAttempts: 3 }),
  phase: 'Running',
  attempt: 2,
  unit: 'r1.train-a2',
  startedAt: '2029-12-31T23:00:00.000Z',
  history: [
    {
      attempt: 1,
      reason: 'FAILURE',
      message: 'exited with code 1',
      exitCode: 1,
      signal: null,
      finishedAt: '2029-12-31T23:30:00.000Z',
    },
  ],
};

const unit = (extra: Partial<UnitState>): UnitState =>
  unitState('Failed', { exitCode: 1, ...extra });

const input = (state: UnitState, extra: Partial<OutcomeInput> = {}): OutcomeInput => ({
  status: running,
  attempt: 2,
  state,
  stopReason: null,
  cancelRequested: false,
  shuttingDown: false,
  attemptsMade: 1,
  maxAttempts: 3,
  activeDeadlineSeconds: 60,
  now: NOW,
  ...extra,
});

describe('planOutcome: what a finished unit means for the task and for BullMQ', () => {
  const cases: Array<{
    name: string;
    in: OutcomeInput;
    phase: TaskStatus['phase'];
    reason: string;
    message: RegExp;
    retryable: boolean | null;
    verdict: ReturnType<typeof planOutcome>['verdict'];
  }> = [
    {
      name: 'a unit that exited 0 completes the job',
      in: input(unit({ phase: 'Succeeded', exitCode: 0 })),
      phase: 'Succeeded',
      reason: 'Completed',
      message: /^the payload finished$/,
      retryable: null,
      verdict: { kind: 'complete' },
    },
    {
      name: 'a cancel the supervisor acted on wins over a retryable exit',
      in: input(unit({ exitCode: 143, signal: null }), { stopReason: 'cancel' }),
      phase: 'Cancelled',
      reason: 'CancelRequested',
      message: /^cancelled by request \(/,
      retryable: false,
      verdict: { kind: 'unrecoverable', error: 'cancelled' },
    },
    {
      name: 'a cancel requested while the unit was ending counts as a cancel too',
      in: input(unit({}), { cancelRequested: true }),
      phase: 'Cancelled',
      reason: 'CancelRequested',
      message: /^cancelled by request/,
      retryable: false,
      verdict: { kind: 'unrecoverable', error: 'cancelled' },
    },
    {
      name: 'a unit stopped at its deadline fails for good, naming the budget',
      in: input(unit({ exitCode: 143 }), { stopReason: 'deadline' }),
      phase: 'Failed',
      reason: 'DeadlineExceeded',
      message: /^ran past its budget of 60 s$/,
      retryable: false,
      verdict: { kind: 'unrecoverable', error: 'deadline exceeded' },
    },
    {
      name: 'a pod evicted by the cluster is requeued without spending an attempt',
      in: input(unit({ reason: 'Evicted', message: 'node drained', freeRetry: true })),
      phase: 'Pending',
      reason: 'Evicted',
      message: /^node drained; retried without spending an attempt$/,
      retryable: true,
      verdict: { kind: 'requeue' },
    },
    {
      name: 'a unit stoker stopped to shut down is requeued as Preempted',
      in: input(unit({ exitCode: 143 }), { shuttingDown: true }),
      phase: 'Pending',
      reason: 'Preempted',
      message: /^stopped for a controller shutdown .*resumes from its last checkpoint$/,
      retryable: true,
      verdict: { kind: 'requeue' },
    },
    {
      name: 'a reserved exit code (bad data) fails for good',
      in: input(unit({ exitCode: 65, stderrTail: ['', 'row 3 is not JSON'] })),
      phase: 'Failed',
      reason: 'BAD_DATA',
      message: /stderr: row 3 is not JSON; not retryable$/,
      retryable: false,
      verdict: { kind: 'unrecoverable', error: expect.stringMatching(/^BAD_DATA: /) as string },
    },
    {
      name: "the backend's verdict overrides the exit code's (an image that cannot be pulled)",
      in: input(unit({ exitCode: null, reason: 'ImagePullBackOff', retryable: false })),
      phase: 'Failed',
      reason: 'ImagePullBackOff',
      message: /; not retryable$/,
      retryable: false,
      verdict: {
        kind: 'unrecoverable',
        error: expect.stringMatching(/^ImagePullBackOff: /) as string,
      },
    },
    {
      name: 'a worker lost without an exit code is retried',
      in: input(unit({ exitCode: null, signal: 'SIGKILL', reason: 'WorkerLost' })),
      phase: 'Pending',
      reason: 'WorkerLost',
      message: /^attempt 2 failed: .*; retrying$/,
      retryable: true,
      verdict: { kind: 'failed', error: expect.stringMatching(/^WorkerLost: /) as string },
    },
    {
      name: 'a retryable crash on the last attempt gives up, saying how many were made',
      in: input(unit({ exitCode: 1 }), { attemptsMade: 2, maxAttempts: 3 }),
      phase: 'Failed',
      reason: 'FAILURE',
      message: /; gave up after 3 attempts$/,
      retryable: true,
      verdict: { kind: 'failed', error: expect.stringMatching(/^FAILURE: /) as string },
    },
    {
      name: 'one attempt allowed: "1 attempt"',
      in: input(unit({ exitCode: 1 }), { attemptsMade: 0, maxAttempts: 1 }),
      phase: 'Failed',
      reason: 'FAILURE',
      message: /; gave up after 1 attempt$/,
      retryable: true,
      verdict: { kind: 'failed', error: expect.stringMatching(/^FAILURE: /) as string },
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const { status, verdict } = planOutcome(c.in);
      expect(status).toMatchObject({ phase: c.phase, reason: c.reason, retryable: c.retryable });
      expect(status.message).toMatch(c.message);
      expect(verdict).toEqual(c.verdict);
    });
  }

  it("replaces this attempt's history entry, keeps the others, and records the exit", () => {
    const again = {
      ...running,
      history: [...running.history, { ...running.history[0]!, attempt: 2 }],
    };
    const { status } = planOutcome(
      input(unit({ exitCode: 1, stderrTail: ['boom'] }), { status: again }),
    );
    expect(status.history.map((h) => h.attempt)).toEqual([1, 2]);
    expect(status.history[1]).toEqual({
      attempt: 2,
      reason: 'FAILURE',
      message: 'unclassified failure (an uncaught exception)',
      exitCode: 1,
      signal: null,
      finishedAt: NOW,
    });
    expect(status).toMatchObject({ exitCode: 1, signal: null, stderrTail: ['boom'] });
  });

  it('sets finishedAt on a final status only', () => {
    expect(planOutcome(input(unit({ phase: 'Succeeded', exitCode: 0 }))).status.finishedAt).toBe(
      NOW,
    );
    expect(planOutcome(input(unit({ exitCode: 1 }))).status.finishedAt).toBeNull();
  });
});
