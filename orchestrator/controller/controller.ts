/**
 * The controller: a level-triggered reconcile loop. Events (a published wake-up after
 * a submit, a task status write, a cancel request) only wake it; each pass re-reads the
 * state of every active run and converges it. A periodic resync covers lost wake-ups.
 *
 * reconcileRun(), one page of numbered steps:
 *   1. load the run; terminal -> done
 *   2. observe stages, tasks, artifacts, the cancel request
 *   3. plan (pure): stage and run status + actions
 *   4. converge: create tasks (resolve ${...}, enqueue a BullMQ job with a
 *      deterministic id), remove queued jobs of a cancelled run; then observe and plan again
 *   5. write stage and run status, only what changed
 */
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Keys } from '../../common/keys.js';
import { QUEUES, type DispatchQueue } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { nowIso, type ResolvedPayload, type RunRecord } from '../../common/model.js';
import { readTaskProgress } from '../../common/progress.js';
import { resolveStage } from '../../common/spec/interpolate.js';
import {
  CPU_STEP_KINDS,
  type NormalizedSpec,
  type NormalizedStage,
} from '../../common/spec/schema.js';
import type { DispatchJobData } from '../dispatcher.js';
import { newTaskStatus, taskIdFor, type RunStore } from '../store.js';
import { planRun, setCondition, type Plan, type RunObservation } from './plan.js';

export interface ControllerOptions {
  redis: Redis;
  /** A separate connection for SUBSCRIBE. */
  subscriber: Redis;
  keys: Keys;
  store: RunStore;
  queues: Record<DispatchQueue, Queue<DispatchJobData>>;
  log: Logger;
  resyncMs?: number;
  clock?: () => number;
}

export function queueForStage(stage: NormalizedStage): DispatchQueue {
  return CPU_STEP_KINDS.has(stage.kind) ? QUEUES.steps : QUEUES.train;
}

export class Controller {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();
  private readonly clock: () => number;
  private readonly ensured = new Set<string>();
  /** Reconcile passes and status writes, for tests and the reconcile benchmark. */
  readonly stats = { passes: 0, writes: 0 };

  constructor(private readonly opts: ControllerOptions) {
    this.clock = opts.clock ?? Date.now;
  }

  async start(): Promise<void> {
    const { subscriber, keys } = this.opts;
    subscriber.on('message', () => this.wake());
    await subscriber.subscribe(keys.wakeChannel());
    this.timer = setInterval(() => this.wake(), this.opts.resyncMs ?? 2000);
    this.wake();
  }

  /** Ask for a reconcile pass; passes never overlap, wake-ups during one coalesce into one more. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.idle = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcileAll();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.opts.log.error({ err }, 'reconcile pass failed');
      } finally {
        this.running = false;
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.idle;
    await this.opts.subscriber.unsubscribe().catch(() => undefined);
  }

  async reconcileAll(): Promise<void> {
    this.stats.passes++;
    for (const runId of await this.opts.store.activeRunIds()) {
      try {
        await this.reconcileRun(runId);
      } catch (err) {
        this.opts.log.error({ err, runId }, 'reconcile of run failed');
      }
    }
  }

  async reconcileRun(runId: string): Promise<void> {
    const { store } = this.opts;
    // 1. Load; a terminal run needs nothing.
    const run = await store.getRun(runId);
    if (!run) return;
    if (run.phase === 'Succeeded' || run.phase === 'Failed' || run.phase === 'Cancelled') {
      await this.opts.redis.srem(`${this.opts.keys.runIndex()}:active`, runId);
      return;
    }
    // 2.-3. Observe and plan.
    let obs = await this.observe(run);
    await this.ensureQueued(run, obs);
    let plan = planRun(obs);
    // 4. Converge, then plan again from what is now true.
    if (plan.actions.length > 0) {
      await this.converge(run, plan, obs);
      obs = await this.observe(run);
      plan = planRun(obs);
    }
    // 5. Write what changed.
    for (const [name, stage] of Object.entries(plan.stages)) {
      if (await store.writeStageIfChanged(runId, obs.stages[name], stage)) this.stats.writes++;
    }
    if (await store.writeRunIfChanged(run, plan.run)) {
      this.stats.writes++;
      if (plan.run.phase !== run.phase)
        this.opts.log.info(
          { runId, phase: plan.run.phase, message: plan.run.message },
          'run phase changed',
        );
    }
  }

  private async observe(run: RunRecord): Promise<RunObservation> {
    const { store, keys, redis } = this.opts;
    const stages = await store.getStages(run.id);
    const taskIds = Object.values(stages).flatMap((s) => s.tasks);
    const tasks = await store.getTaskStatuses(taskIds);
    const artifacts: Record<string, Record<string, string>> = {};
    for (const id of taskIds) {
      if (tasks[id]?.phase === 'Succeeded')
        artifacts[id] = (await readTaskProgress(redis, keys, id)).artifacts;
    }
    return {
      run,
      stages,
      tasks,
      artifacts,
      cancelRequested: (await store.cancelRequestedAt(run.id)) !== null,
      now: nowIso(this.clock),
    };
  }

  private async converge(run: RunRecord, plan: Plan, obs: RunObservation): Promise<void> {
    for (const action of plan.actions) {
      if (action.type === 'createTask') await this.createTask(run, action.stage, plan);
      else await this.cancelQueued(action.taskId, obs);
    }
  }

  private async createTask(run: RunRecord, stageName: string, plan: Plan): Promise<void> {
    const { store, log } = this.opts;
    const spec = run.spec as NormalizedSpec;
    const stage = spec.stages.find((s) => s.name === stageName);
    const status = plan.stages[stageName] ?? (await store.getStages(run.id))[stageName];
    if (!stage || !status) return;
    const outputDir = join(run.runDir, 'stages', stage.name);
    const upstream = Object.fromEntries(
      Object.entries(plan.stages)
        .filter(([, s]) => s.phase === 'Succeeded')
        .map(([n, s]) => [n, { outputs: s.outputs }]),
    );
    let resolved: ReturnType<typeof resolveStage>;
    try {
      resolved = resolveStage(stage, {
        run: { id: run.id, dir: run.runDir },
        params: spec.params,
        stageOutputDir: outputDir,
        stages: upstream,
      });
    } catch (err) {
      const now = nowIso(this.clock);
      const message = `cannot resolve the stage's payload: ${(err as Error).message}`;
      await store.writeStageIfChanged(run.id, status, {
        ...status,
        phase: 'Failed',
        message,
        finishedAt: now,
        conditions: setCondition(
          status.conditions,
          { type: 'Failed', status: 'True', reason: 'InvalidReference', message },
          now,
        ),
      });
      return;
    }
    const payload: ResolvedPayload = {
      command: resolved.command,
      env: resolved.env,
      secretEnv: stage.payload.secretEnv.map((s) => ({
        name: s.name,
        fromEnv: s.fromEnv ?? s.name,
      })),
      workingDir: resolved.workingDir ?? run.workDir,
      outputDir,
      terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
      stallTimeoutSeconds: stage.stallTimeoutSeconds,
    };
    const taskId = taskIdFor(run.id, stage.name);
    const queue = queueForStage(stage);
    await store.createTask({
      status: newTaskStatus({
        id: taskId,
        runId: run.id,
        stage: stage.name,
        queue,
        maxAttempts: stage.retry.attempts,
      }),
      payload,
      runDir: run.runDir,
    });
    // Record the task on the stage before enqueueing: a crash in between leaves a task
    // the next pass re-adds (same job id: no duplicate), never an orphan job.
    await store.writeStageIfChanged(run.id, status, {
      ...status,
      tasks: [taskId],
      outputs: resolved.outputs,
      message: 'queued',
    });
    await this.enqueue(run.id, taskId, stage);
    log.info({ runId: run.id, taskId, queue }, 'task queued');
  }

  private async enqueue(runId: string, taskId: string, stage: NormalizedStage): Promise<void> {
    await this.opts.queues[queueForStage(stage)].add(
      stage.kind,
      { taskId, runId },
      {
        jobId: taskId,
        attempts: stage.retry.attempts,
        backoff: {
          type: stage.retry.backoff.type,
          delay: Math.round(stage.retry.backoff.delay * 1000),
        },
        ...(stage.priority === undefined ? {} : { priority: stage.priority }),
        removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
        removeOnFail: { age: 30 * 24 * 3600, count: 10_000 },
      },
    );
    this.ensured.add(taskId);
  }

  /**
   * Once per task and controller lifetime, re-add the job of a task that is still
   * Pending: a controller that died between recording a task and enqueueing it left a
   * task without a job. The job id is the task id, so this never duplicates a job.
   */
  private async ensureQueued(run: RunRecord, obs: RunObservation): Promise<void> {
    const spec = run.spec as NormalizedSpec;
    for (const task of Object.values(obs.tasks)) {
      if (task.phase !== 'Pending' || this.ensured.has(task.id) || obs.cancelRequested) continue;
      const stage = spec.stages.find((s) => s.name === task.stage);
      if (stage) await this.enqueue(run.id, task.id, stage);
    }
  }

  private async cancelQueued(taskId: string, obs: RunObservation): Promise<void> {
    const task = obs.tasks[taskId];
    if (!task) return;
    const queue = this.opts.queues[task.queue as DispatchQueue];
    // remove() refuses a job that is locked by a processor: the dispatcher cancels those.
    const removed = queue ? await queue.remove(taskId) : 0;
    if (removed === 1) {
      await this.opts.store.writeTaskStatus({
        ...task,
        phase: 'Cancelled',
        reason: 'CancelRequested',
        message: 'cancelled while queued',
        finishedAt: nowIso(this.clock),
      });
    }
  }
}
