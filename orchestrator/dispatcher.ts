/**
 * The dispatcher (DESIGN.md section 2, dispatched mode): the processor of the `train`
 * and `steps` queues. For each job it launches a dedicated unit through the backend,
 * supervises it, and completes the BullMQ job when the unit finishes.
 *
 * Job contract (queue `train` | `steps`):
 *   id     = taskId (`${runId}.${stage}`): adding twice never duplicates
 *   data   = { taskId, runId }
 *   opts   = attempts (the spec's retry.attempts), exponential/fixed backoff, priority
 *   result = { unit, attempt, exitCode }
 *   errors = UnrecoverableError for non-retryable failures and cancels; Error otherwise;
 *            DelayedError when stoker itself stopped the task to shut down (the attempt
 *            does not count against the retry budget).
 *
 * Attempts are counted in the task's status (`attempt`), not from BullMQ's counters: a
 * processor that starts again after a controller crash (BullMQ's stalled-job recovery)
 * finds the task's unit still running, or finished but not yet recorded, and re-attaches
 * instead of launching a second one. So there are never two attempts of one task at once.
 */
import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { classifyExit } from '../common/exit-codes.js';
import type { Keys } from '../common/keys.js';
import { QUEUES } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import { nowIso, type TaskStatus } from '../common/model.js';
import type { Backend, UnitState } from './backends/types.js';
import type { RunStore } from './store.js';

export interface DispatchJobData {
  taskId: string;
  runId: string;
}

export interface DispatcherOptions {
  connection: ConnectionOptions;
  keys: Keys;
  store: RunStore;
  backend: Backend;
  log: Logger;
  /** Concurrent units per queue: `train` is the GPU budget. */
  concurrency: { train: number; steps: number };
  /** BullMQ lock duration: how soon a crashed controller's jobs are picked up again. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  clock?: () => number;
}

type StopMode = 'none' | 'preempt' | 'force';

export const unitNameFor = (taskId: string, attempt: number): string => `${taskId}-a${attempt}`;

export class Dispatcher {
  private readonly workers: Worker[] = [];
  private stopMode: StopMode = 'none';
  private readonly active = new Map<string, { unit: string; grace: number }>();
  private readonly clock: () => number;

  constructor(private readonly opts: DispatcherOptions) {
    this.clock = opts.clock ?? Date.now;
  }

  start(): void {
    for (const queue of [QUEUES.train, QUEUES.steps]) {
      const worker = new Worker<DispatchJobData>(queue, (job, token) => this.process(job, token), {
        connection: this.opts.connection,
        prefix: this.opts.keys.bullPrefix,
        concurrency:
          queue === QUEUES.train ? this.opts.concurrency.train : this.opts.concurrency.steps,
        lockDuration: this.opts.lockDurationMs ?? 15_000,
        stalledInterval: this.opts.stalledIntervalMs ?? 5_000,
        // Every controller crash counts a stall; re-attaching is safe, so allow many.
        maxStalledCount: 100,
        name: `stoker-dispatcher-${queue}`,
      });
      worker.on('error', (err) => this.opts.log.error({ err, queue }, 'dispatcher worker error'));
      this.workers.push(worker);
    }
  }

  /** Tasks being supervised now. */
  activeTasks(): string[] {
    return [...this.active.keys()];
  }

  /**
   * Stop. `preempt`: stop taking jobs, SIGTERM running units (their payloads checkpoint),
   * requeue their jobs without spending an attempt, then close. `force`: also SIGKILL.
   */
  async stop(mode: Exclude<StopMode, 'none'> | 'detach' = 'preempt'): Promise<void> {
    if (mode === 'detach') {
      // Leave the units running (Kubernetes Jobs outlive their controller): the BullMQ
      // jobs stall and the next leader's dispatcher re-attaches to the units.
      this.stopMode = 'force';
      await Promise.race([
        Promise.all(this.workers.map((w) => w.close(true))),
        new Promise((r) => setTimeout(r, 3000)),
      ]);
      return;
    }
    this.stopMode = mode;
    const closing = this.workers.map((w) => w.close(mode === 'force'));
    for (const [, { unit, grace }] of this.active) {
      await this.opts.backend.terminate(unit, { graceSeconds: grace, force: mode === 'force' });
    }
    if (mode === 'force') {
      await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 3000))]);
    } else {
      await Promise.all(closing);
    }
  }

  private async process(
    job: Job<DispatchJobData>,
    token?: string,
  ): Promise<{ unit: string; attempt: number; exitCode: number | null }> {
    const { store, backend } = this.opts;
    const { taskId, runId } = job.data;
    const log = this.opts.log.child({ runId, taskId });
    const task = await store.getTask(taskId);
    if (!task) throw new UnrecoverableError(`task ${taskId} does not exist`);
    let status = task.status;
    if (status.phase === 'Succeeded' || status.phase === 'Failed' || status.phase === 'Cancelled') {
      return { unit: status.unit ?? '', attempt: status.attempt, exitCode: status.exitCode };
    }
    const run = await store.mustGetRun(runId);
    const stageSpec = run.spec.stages.find((s) => s.name === status.stage);
    if (!stageSpec) throw new UnrecoverableError(`stage ${status.stage} is not in run ${runId}`);

    // 1. Re-attach to an unfinished or unrecorded unit, or launch the next attempt.
    let attempt = status.attempt;
    let unit = status.unit;
    const prior = unit && status.phase === 'Running' ? await backend.observe(unit) : null;
    if (!unit || !prior || prior.phase === 'NotFound') {
      if (await store.cancelRequestedAt(runId)) {
        await this.finish(status, 'Cancelled', {
          reason: 'CancelRequested',
          message: 'cancelled before it started',
        });
        throw new UnrecoverableError('cancelled');
      }
      attempt = prior?.phase === 'NotFound' ? attempt : attempt + 1;
      unit = unitNameFor(taskId, attempt);
      status = {
        ...status,
        phase: 'Running',
        attempt,
        unit,
        startedAt: status.startedAt ?? nowIso(this.clock),
        reason: null,
        message: null,
      };
      await store.writeTaskStatus(status);
      const { attached } = await backend.launch({
        unitName: unit,
        taskId,
        runId,
        stage: status.stage,
        attempt,
        runDir: task.runDir,
        resources: stageSpec.resources,
        image: stageSpec.image,
        activeDeadlineSeconds: stageSpec.activeDeadlineSeconds,
        terminationGracePeriodSeconds: stageSpec.terminationGracePeriodSeconds,
      });
      log.info({ unit, attempt, attached }, attached ? 're-attached to unit' : 'launched unit');
    } else {
      log.info(
        { unit, attempt, phase: prior.phase },
        're-attached to unit after a controller restart',
      );
    }

    // 2. Supervise: cancel requests, the stage's deadline, our own shutdown.
    const grace = stageSpec.terminationGracePeriodSeconds;
    this.active.set(taskId, { unit, grace });
    let stopReason: 'cancel' | 'deadline' | null = null;
    const deadlineAt =
      stageSpec.activeDeadlineSeconds !== undefined && status.startedAt
        ? Date.parse(status.startedAt) + stageSpec.activeDeadlineSeconds * 1000
        : null;
    const watcher = setInterval(() => {
      void (async () => {
        if (stopReason) return;
        if (await store.cancelRequestedAt(runId).catch(() => null)) stopReason = 'cancel';
        else if (deadlineAt !== null && this.clock() > deadlineAt) stopReason = 'deadline';
        if (stopReason) {
          log.info({ unit, stopReason }, 'terminating unit');
          await backend
            .terminate(unit as string, { graceSeconds: grace })
            .catch((err: unknown) => log.error({ err }, 'terminate failed'));
        }
      })();
    }, 500);
    let state: UnitState;
    try {
      // A backend that sees why a unit waits (unschedulable, pulling an image) says so; the
      // task's message shows it to the user.
      // Note writes are serialised and finished before the outcome is written, so a late
      // note never overwrites the final status.
      let lastNote: string | null = null;
      let noteWrites: Promise<unknown> = Promise.resolve();
      let waiting = true;
      state = await backend.wait(unit, undefined, (note) => {
        if (note === lastNote || !waiting) return;
        lastNote = note;
        noteWrites = noteWrites
          .then(() => store.updateTaskStatus(taskId, (t) => ({ ...t, message: note })))
          .catch((err: unknown) => log.warn({ err }, 'cannot record the unit note'));
      });
      waiting = false;
      await noteWrites;
    } finally {
      clearInterval(watcher);
      this.active.delete(taskId);
    }

    // 3. Record the outcome and tell BullMQ whether to retry.
    const c = classifyExit(state.exitCode, state.signal);
    const reason =
      state.reason && !['SUCCESS'].includes(state.reason) && state.reason !== c.reason
        ? state.reason
        : c.reason;
    const entry = {
      attempt,
      reason,
      message: state.message ?? c.description,
      exitCode: state.exitCode,
      signal: state.signal,
      finishedAt: nowIso(this.clock),
    };
    const base: TaskStatus = {
      ...status,
      exitCode: state.exitCode,
      signal: state.signal,
      stderrTail: state.stderrTail,
      history: [...status.history.filter((h) => h.attempt !== attempt), entry],
    };
    if (state.phase === 'Succeeded') {
      await this.finish(base, 'Succeeded', {
        reason: 'Completed',
        message: 'the payload finished',
        retryable: null,
      });
      return { unit, attempt, exitCode: state.exitCode };
    }
    const detail = describeFailure(state, c.description);
    if (stopReason === 'cancel' || (await store.cancelRequestedAt(runId))) {
      await this.finish(base, 'Cancelled', {
        reason: 'CancelRequested',
        message: `cancelled by request (${detail})`,
        retryable: false,
      });
      throw new UnrecoverableError('cancelled');
    }
    if (stopReason === 'deadline') {
      await this.finish(base, 'Failed', {
        reason: 'DeadlineExceeded',
        message: `ran past its budget of ${stageSpec.activeDeadlineSeconds} s`,
        retryable: false,
      });
      throw new UnrecoverableError('deadline exceeded');
    }
    if (state.freeRetry) {
      // Evicted or preempted by the cluster: retried without spending the retry budget.
      await store.writeTaskStatus({
        ...base,
        phase: 'Pending',
        reason,
        message: `${detail}; retried without spending an attempt`,
        retryable: true,
      });
      log.warn({ unit, reason }, 'unit disrupted by the cluster; retrying');
      await job.moveToDelayed(this.clock() + 1000, token);
      throw new DelayedError();
    }
    if (this.stopMode !== 'none') {
      // We stopped it to shut down: requeue without spending an attempt.
      await store.writeTaskStatus({
        ...base,
        phase: 'Pending',
        reason: 'Preempted',
        message: `stopped for a controller shutdown (${detail}); it resumes from its last checkpoint`,
        retryable: true,
      });
      await job.moveToDelayed(this.clock() + 1000, token);
      throw new DelayedError();
    }
    const reasonLabel = reason;
    const retryable =
      state.retryable ?? (reason === 'WorkerLost' || reason === 'Stalled' ? true : c.retryable);
    const maxAttempts = job.opts.attempts ?? 1;
    if (!retryable) {
      await this.finish(base, 'Failed', {
        reason: reasonLabel,
        message: `${detail}; not retryable`,
        retryable: false,
      });
      throw new UnrecoverableError(`${reasonLabel}: ${detail}`);
    }
    if (job.attemptsMade + 1 >= maxAttempts) {
      await this.finish(base, 'Failed', {
        reason: reasonLabel,
        message: `${detail}; gave up after ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'}`,
        retryable: true,
      });
      throw new Error(`${reasonLabel}: ${detail}`);
    }
    await store.writeTaskStatus({
      ...base,
      phase: 'Pending',
      reason: reasonLabel,
      message: `attempt ${attempt} failed: ${detail}; retrying`,
      retryable: true,
    });
    log.warn({ unit, attempt, reason: reasonLabel }, 'attempt failed; retrying');
    throw new Error(`${reasonLabel}: ${detail}`);
  }

  private async finish(
    status: TaskStatus,
    phase: 'Succeeded' | 'Failed' | 'Cancelled',
    extra: { reason: string; message: string; retryable?: boolean | null },
  ): Promise<void> {
    await this.opts.store.writeTaskStatus({
      ...status,
      phase,
      reason: extra.reason,
      message: extra.message,
      retryable: extra.retryable ?? null,
      finishedAt: nowIso(this.clock),
    });
  }
}

function describeFailure(state: UnitState, fallback: string): string {
  const what = state.message ?? fallback;
  const tail = state.stderrTail.filter((l) => l.trim() !== '').slice(-3);
  return tail.length > 0 ? `${what}; stderr: ${tail.join(' | ')}` : what;
}
