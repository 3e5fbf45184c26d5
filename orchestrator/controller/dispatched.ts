/**
 * Dispatched stages' tasks on the BullMQ queues `train` and `steps`: one task per stage,
 * its job id the task id, so that adding the job again never duplicates it.
 *
 *   create        record the task (store), record it on the stage, then enqueue it, in
 *                 that order: a crash in between leaves a task the next pass re-adds,
 *                 never a job without a task
 *   ensureQueued  once per task and controller lifetime, re-add the job of a task still
 *                 Pending (a controller that died between recording and enqueueing)
 *   cancelQueued  remove a cancelled run's queued job and mark its task Cancelled; a job
 *                 locked by a processor is not removable, the dispatcher cancels those
 *   requeue       add the job of a resumed task again (resume.ts removed the old one)
 */
import type { JobsOptions } from 'bullmq';
import { QUEUES, type DispatchQueue } from '../../common/keys.js';
import { nowIso, type ResolvedPayload, type StageStatus } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import { CPU_STEP_KINDS, type NormalizedStage } from '../../common/spec/schema.js';
import { newTaskStatus } from '../../common/task-store.js';
import { checkFence } from '../fenced-redis.js';
import { taskIdFor } from '../store.js';
import type { ControllerContext } from './context.js';
import type { RunObservation } from './plan.js';

/** BullMQ options of a task's job: the id is the task id, retries are the stage's. */
export function jobOptions(stage: NormalizedStage, jobId: string, keep: number): JobsOptions {
  return {
    jobId,
    attempts: stage.retry.attempts,
    backoff: {
      type: stage.retry.backoff.type,
      delay: Math.round(stage.retry.backoff.delay * 1000),
    },
    ...(stage.priority === undefined ? {} : { priority: stage.priority }),
    removeOnComplete: { age: 7 * 24 * 3600, count: keep },
    removeOnFail: { age: 30 * 24 * 3600, count: keep },
  };
}

export function queueForStage(stage: NormalizedStage): DispatchQueue {
  return CPU_STEP_KINDS.has(stage.kind) ? QUEUES.steps : QUEUES.train;
}

export class DispatchedTasks {
  /** Tasks whose job this controller added (or re-added) since it started. */
  private readonly ensured = new Set<string>();

  constructor(private readonly ctx: ControllerContext) {}

  /**
   * Queue the one task of a dispatched stage. `before` is the stage as stored, `started`
   * the same with its consumed lineage; the stage is written with the task, its outputs
   * and the message "queued".
   */
  async create(
    run: RunRecord,
    stage: NormalizedStage,
    before: StageStatus,
    started: StageStatus,
    resolved: { payload: ResolvedPayload; outputs: Record<string, string> },
  ): Promise<void> {
    const { store, log } = this.ctx;
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
      payload: resolved.payload,
      runDir: run.runDir,
    });
    await store.writeStageIfChanged(run.id, before, {
      ...started,
      tasks: [taskId],
      outputs: resolved.outputs,
      message: 'queued',
    });
    await this.enqueue(run.id, taskId, stage);
    log.info({ runId: run.id, taskId, queue }, 'task queued');
  }

  /** Re-add the job of each Pending task not yet ensured (same job id: no duplicate). */
  async ensureQueued(run: RunRecord, obs: RunObservation): Promise<void> {
    const spec = run.spec;
    for (const task of Object.values(obs.tasks)) {
      if (task.phase !== 'Pending' || this.ensured.has(task.id) || obs.cancelRequested) continue;
      const stage = spec.stages.find((s) => s.name === task.stage);
      if (stage) await this.enqueue(run.id, task.id, stage);
    }
  }

  async cancelQueued(taskId: string, obs: RunObservation): Promise<void> {
    const task = obs.tasks[taskId];
    if (!task) return;
    const queue = this.ctx.queues[task.queue as DispatchQueue];
    // remove() refuses a job that is locked by a processor: the dispatcher cancels those.
    const removed = queue ? await queue.remove(taskId) : 0;
    if (removed === 1) {
      await this.ctx.store.writeTaskStatus({
        ...task,
        phase: 'Cancelled',
        reason: 'CancelRequested',
        message: 'cancelled while queued',
        finishedAt: nowIso(this.ctx.clock),
      });
    }
  }

  /**
   * Add a resumed task's job (resume.ts removed the finished one that held its id). Not
   * counted as ensured until the add succeeds, so a failed add is retried by ensureQueued.
   */
  async requeue(runId: string, taskId: string, stage: NormalizedStage): Promise<void> {
    this.ensured.delete(taskId);
    await this.enqueue(runId, taskId, stage);
  }

  private async enqueue(runId: string, taskId: string, stage: NormalizedStage): Promise<void> {
    await checkFence(this.ctx.redis);
    await this.ctx.queues[queueForStage(stage)].add(
      stage.kind,
      { taskId, runId },
      jobOptions(stage, taskId, 10_000),
    );
    this.ensured.add(taskId);
  }
}
