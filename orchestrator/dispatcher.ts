/**
 * The dispatcher (README, "How a run flows": dispatched): the processor of the `train`
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
 *
 * process(), one page of numbered steps:
 *   1. load the task and its stage; finished -> its result. Re-attach to its unit when
 *      it is running (or finished unrecorded), else launch the next attempt (a cancel
 *      requested before then: Cancelled)                              (attachOrLaunch)
 *   2. supervise until the unit ends: a cancel request or the stage's deadline
 *      terminates it; our own shutdown is stop()'s; the backend's notes on why it waits
 *      become the task's message; its progress goes to the job's (job-progress.ts)
 *                                                                          (supervise)
 *   3. record the outcome and tell BullMQ whether to retry: planOutcome()
 *      (orchestrator/dispatch-outcome.ts, pure) decides, recordOutcome() writes and acts
 */
import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Keys } from '../common/keys.js';
import { QUEUES } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import { bounded } from '../common/timers.js';
import { nowIso, type TaskStatus } from '../common/model.js';
import type { NormalizedStage } from '../common/spec/schema.js';
import type { Backend, UnitState } from './backends/types.js';
import { finishedStatus, planOutcome, type StopReason } from './dispatch-outcome.js';
import { JobProgressMirror } from './job-progress.js';
import type { RunStore, TaskRecord } from './store.js';

export interface DispatchJobData {
  taskId: string;
  runId: string;
}

/** An attempt that ended: its queue, the task's phase after it, its wait and duration. */
export interface AttemptEnded {
  queue: string;
  phase: string;
  waitSeconds: number | null;
  durationSeconds: number | null;
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

/** The BullMQ job's result. */
export interface DispatchResult {
  unit: string;
  attempt: number;
  exitCode: number | null;
}

/** One attempt of a task being dispatched: what steps 2 and 3 work on. */
interface Attempt {
  taskId: string;
  runId: string;
  stage: NormalizedStage;
  /** The task's status while the unit runs (phase Running). */
  status: TaskStatus;
  unit: string;
  attempt: number;
  log: Logger;
}

export const unitNameFor = (taskId: string, attempt: number): string => `${taskId}-a${attempt}`;

/** Seconds a drain waits beyond the longest grace period of the payloads it stops. */
const DRAIN_MARGIN_SECONDS = 15;

export class Dispatcher {
  private readonly workers: Worker[] = [];
  private stopMode: StopMode = 'none';
  private readonly active = new Map<string, { unit: string; grace: number }>();
  private readonly clock: () => number;
  /** Told of every attempt that ended, its queue wait and duration (the HTTP server's /metrics). */
  onAttempt: ((e: AttemptEnded) => void) | null = null;

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
    const closing: Promise<unknown>[] = this.workers.map((w) => w.close(mode === 'force'));
    let longestGrace = 0;
    // The terminations are bounded with the rest: one may need Redis to find its unit.
    for (const [, { unit, grace }] of this.active) {
      longestGrace = Math.max(longestGrace, grace);
      closing.push(
        this.opts.backend
          .terminate(unit, { graceSeconds: grace, force: mode === 'force' })
          .catch((err: unknown) =>
            this.opts.log.warn({ err, unit }, 'could not stop a unit during the drain'),
          ),
      );
    }
    // A drain waits for the payloads' grace periods and the recording of their outcomes;
    // never longer: with Redis out of reach (the reason a leader stops) an outcome cannot
    // be recorded, and the next leader finds the ended unit and records it instead.
    const boundMs = mode === 'force' ? 3000 : (longestGrace + DRAIN_MARGIN_SECONDS) * 1000;
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      Promise.all(closing).then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), boundMs))),
    ]);
    clearTimeout(timer);
    if (late && mode !== 'force') {
      this.opts.log.warn(
        { waitedSeconds: boundMs / 1000 },
        'the drain did not end within the grace periods: leaving what it waits for to the next leader',
      );
      // close(true) would return the close in progress (BullMQ keeps the first), which
      // waits for the jobs: drop the workers' connections instead, so that their pending
      // commands fail, the jobs end and BullMQ stops renewing their locks.
      await bounded(Promise.all(this.workers.map((w) => w.disconnect())), 3000);
    }
  }

  private async process(job: Job<DispatchJobData>, token?: string): Promise<DispatchResult> {
    // 1. Load; a finished task -> its result; re-attach to the unit or launch the next attempt.
    const current = await this.attachOrLaunch(job.data);
    if ('finished' in current) return current.finished;
    // 2. Supervise until the unit ends (its progress mirrored into the job's).
    const { store, keys } = this.opts;
    const mirror = new JobProgressMirror(store.redis, keys, current.taskId, job);
    const { state, stopReason } = await this.supervise(current, mirror);
    // 3. Record the outcome and tell BullMQ whether to retry.
    return this.recordOutcome(job, token, current, state, stopReason);
  }

  /** Step 1. The task's result when it already finished; the attempt to supervise otherwise. */
  private async attachOrLaunch({
    taskId,
    runId,
  }: DispatchJobData): Promise<Attempt | { finished: DispatchResult }> {
    const { store, backend } = this.opts;
    const log = this.opts.log.child({ runId, taskId });
    const task = await store.getTask(taskId);
    if (!task) throw new UnrecoverableError(`task ${taskId} does not exist`);
    const status = task.status;
    if (status.phase === 'Succeeded' || status.phase === 'Failed' || status.phase === 'Cancelled') {
      const { unit, attempt, exitCode } = status;
      return { finished: { unit: unit ?? '', attempt, exitCode } };
    }
    const run = await store.mustGetRun(runId);
    const stage = run.spec.stages.find((s) => s.name === status.stage);
    if (!stage) throw new UnrecoverableError(`stage ${status.stage} is not in run ${runId}`);

    const prior =
      status.unit && status.phase === 'Running' ? await backend.observe(status.unit) : null;
    if (status.unit && prior && prior.phase !== 'NotFound') {
      log.info(
        { unit: status.unit, attempt: status.attempt, phase: prior.phase },
        're-attached to unit after a controller restart',
      );
      return { taskId, runId, stage, status, unit: status.unit, attempt: status.attempt, log };
    }
    return this.launchNext({ taskId, runId }, task, stage, prior, log);
  }

  /**
   * Step 1, no unit to re-attach to: launch the next attempt (a unit that vanished,
   * NotFound, is launched again under its own attempt number), unless a cancel was
   * requested first: then the task is Cancelled.
   */
  private async launchNext(
    { taskId, runId }: DispatchJobData,
    task: TaskRecord,
    stage: NormalizedStage,
    prior: UnitState | null,
    log: Logger,
  ): Promise<Attempt> {
    const { store, backend } = this.opts;
    if (await store.cancelRequestedAt(runId)) {
      await store.writeTaskStatus(
        finishedStatus(task.status, nowIso(this.clock), {
          phase: 'Cancelled',
          reason: 'CancelRequested',
          message: 'cancelled before it started',
          retryable: null,
        }),
      );
      throw new UnrecoverableError('cancelled');
    }
    const attempt = prior?.phase === 'NotFound' ? task.status.attempt : task.status.attempt + 1;
    const unit = unitNameFor(taskId, attempt);
    const status: TaskStatus = {
      ...task.status,
      phase: 'Running',
      attempt,
      unit,
      startedAt: task.status.startedAt ?? nowIso(this.clock),
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
      resources: stage.resources,
      image: stage.image,
      activeDeadlineSeconds: stage.activeDeadlineSeconds,
      terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
    });
    log.info({ unit, attempt, attached }, attached ? 're-attached to unit' : 'launched unit');
    return { taskId, runId, stage, status, unit, attempt, log };
  }

  /**
   * Step 2. Wait for the unit to end. Every 500 ms: a cancel request, or the stage's
   * deadline (activeDeadlineSeconds from startedAt), terminates it with the stage's grace
   * period. stop() reaches it through `active`.
   */
  private async supervise(
    a: Attempt,
    mirror: JobProgressMirror,
  ): Promise<{ state: UnitState; stopReason: StopReason | null }> {
    const { store, backend } = this.opts;
    const grace = a.stage.terminationGracePeriodSeconds;
    this.active.set(a.taskId, { unit: a.unit, grace });
    let stopReason: StopReason | null = null;
    const deadlineAt =
      a.stage.activeDeadlineSeconds !== undefined && a.status.startedAt
        ? Date.parse(a.status.startedAt) + a.stage.activeDeadlineSeconds * 1000
        : null;
    let ticks = 0;
    const watcher = setInterval(() => {
      void (async () => {
        if (++ticks % 4 === 0) await mirror.sync().catch(() => undefined);
        if (stopReason) return;
        if (await store.cancelRequestedAt(a.runId).catch(() => null)) stopReason = 'cancel';
        else if (deadlineAt !== null && this.clock() > deadlineAt) stopReason = 'deadline';
        if (stopReason) {
          a.log.info({ unit: a.unit, stopReason }, 'terminating unit');
          await backend
            .terminate(a.unit, { graceSeconds: grace })
            .catch((err: unknown) => a.log.error({ err }, 'terminate failed'));
        }
      })();
    }, 500);
    try {
      return { state: await this.waitNoting(a), stopReason };
    } finally {
      clearInterval(watcher);
      this.active.delete(a.taskId);
      await mirror.sync().catch(() => undefined);
    }
  }

  /**
   * backend.wait(), writing the backend's notes on why the unit waits (unschedulable,
   * pulling an image) into the task's message. Note writes are serialised and finished
   * before this returns, so a late note never overwrites the final status.
   */
  private async waitNoting(a: Attempt): Promise<UnitState> {
    const { store, backend } = this.opts;
    let lastNote: string | null = null;
    let noteWrites: Promise<unknown> = Promise.resolve();
    let waiting = true;
    const state = await backend.wait(a.unit, undefined, (note) => {
      if (note === lastNote || !waiting) return;
      lastNote = note;
      noteWrites = noteWrites
        .then(() => store.updateTaskStatus(a.taskId, (t) => ({ ...t, message: note })))
        .catch((err: unknown) => a.log.warn({ err }, 'cannot record the unit note'));
    });
    waiting = false;
    await noteWrites;
    return state;
  }

  /** Step 3. Write the planned status, then complete, requeue or fail the job. */
  private async recordOutcome(
    job: Job<DispatchJobData>,
    token: string | undefined,
    a: Attempt,
    state: UnitState,
    stopReason: StopReason | null,
  ): Promise<DispatchResult> {
    const cancelRequested =
      state.phase !== 'Succeeded' &&
      stopReason !== 'cancel' &&
      Boolean(await this.opts.store.cancelRequestedAt(a.runId));
    const { status, verdict, warn } = planOutcome({
      status: a.status,
      attempt: a.attempt,
      state,
      stopReason,
      cancelRequested,
      shuttingDown: this.stopMode !== 'none',
      attemptsMade: job.attemptsMade,
      maxAttempts: job.opts.attempts ?? 1,
      activeDeadlineSeconds: a.stage.activeDeadlineSeconds,
      now: nowIso(this.clock),
    });
    await this.opts.store.writeTaskStatus(status);
    if (warn) a.log.warn({ unit: a.unit, attempt: a.attempt, reason: status.reason }, warn);
    const took = job.processedOn ? (this.clock() - job.processedOn) / 1000 : null;
    this.onAttempt?.({
      queue: job.queueName,
      phase: status.phase,
      // The first attempt's wait: later ones start from the retry's delay.
      waitSeconds:
        job.attemptsMade === 0 && job.processedOn ? (job.processedOn - job.timestamp) / 1000 : null,
      durationSeconds: took,
    });
    switch (verdict.kind) {
      case 'complete':
        return { unit: a.unit, attempt: a.attempt, exitCode: state.exitCode };
      case 'requeue':
        await job.moveToDelayed(this.clock() + 1000, token);
        throw new DelayedError();
      case 'unrecoverable':
        throw new UnrecoverableError(verdict.error);
      case 'failed':
        throw new Error(verdict.error);
    }
  }
}
