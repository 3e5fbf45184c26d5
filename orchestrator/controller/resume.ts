/**
 * The controller's side of a resume (the request and why task ids stay: ../resume.ts).
 * Step 1a of reconcileRun: a run with a pending request `run:{id}:resume`.
 *
 * A request in state `requested` for a run that ended Failed or Cancelled:
 *   1. what runs again: every stage but the succeeded ones (planResume)
 *        dispatched  its task, from its last checkpoint (the task's progress hash keeps
 *                    it: the worker gives it to the next attempt as RESUME_FROM)
 *        pulled      its shards that did not succeed; the succeeded ones are kept
 *        unstarted   (a dependency failed, cancelled before it started) as new
 *   2. free the job ids: remove each finished BullMQ job of a task that runs again (its
 *      id is the task's, and adding a job under a taken id does nothing). A job still
 *      active (its processor is recording how it ended) makes the resume wait: nothing
 *      is written, the run stays in runs:active, and the next pass tries again
 *   3. one MULTI: task statuses Pending, reason Resumed, with a new retry budget (a
 *      dispatched task's maxAttempts = the attempts so far + the stage's retry.attempts;
 *      its attempt numbers go on, so unit names and log files stay unique; a shard's
 *      attempts are its job's, new); the shards' failed and cancelled outcomes dropped;
 *      stage statuses back to Pending or Running without their end and its conditions,
 *      with a `Resumed` condition; the run Running (Pending if no stage had started) with
 *      a `Resumed` condition and the resume appended to RunRecord.resumes; the cancel
 *      request deleted; the request now `queued`
 *   4. add the jobs (queueResumed; a pulled stage claims its pool again), then delete the
 *      request. A controller that dies before that finds the request `queued` on its next
 *      pass and adds them again: same ids, so a job already there is kept, never doubled.
 * The run then goes on through the normal reconcile pass.
 */
import type { Queue } from 'bullmq';
import { poolQueueName, QUEUES, shardTaskId, type DispatchQueue } from '../../common/keys.js';
import {
  isTerminal,
  newStageStatus,
  nowIso,
  type Condition,
  type StageStatus,
  type TaskStatus,
} from '../../common/model.js';
import { readTaskProgress } from '../../common/progress.js';
import type { NormalizedPool, NormalizedStage } from '../../common/spec/schema.js';
import { newTaskStatus } from '../../common/task-store.js';
import { activeRunsKey, readResumeRequest, type ResumeRequest } from '../resume.js';
import type { RunRecord, RunResume } from '../run-record.js';
import type { ControllerContext } from './context.js';
import type { DispatchedTasks } from './dispatched.js';
import { setCondition, topoOrder } from './plan.js';
import type { PulledStages } from './pulled.js';

/** One stage that runs again, and what it starts from. */
type StageReset =
  | {
      kind: 'dispatched';
      stage: NormalizedStage;
      status: StageStatus;
      task: TaskStatus;
      checkpoint: { path: string; step: number } | null;
    }
  | { kind: 'pulled'; stage: NormalizedStage; status: StageStatus; rerun: string[]; kept: number }
  | { kind: 'unstarted'; stage: NormalizedStage; status: StageStatus };

/** Conditions of an ended run or stage that a resume clears (and an older `Resumed`). */
const ENDED_CONDITIONS = new Set(['Complete', 'Failed', 'Cancelled', 'Cancelling', 'Retrying']);

export class RunResumer {
  constructor(
    private readonly ctx: ControllerContext,
    private readonly parts: { dispatched: DispatchedTasks; pulled: PulledStages },
  ) {}

  /**
   * The run to reconcile: `run` itself when no resume is pending, the resumed run once
   * one was applied, null when it must wait for a job that is still active.
   */
  async apply(run: RunRecord): Promise<RunRecord | null> {
    const { redis, keys, log } = this.ctx;
    const request = await readResumeRequest(redis, keys, run.id);
    if (!request) return run;
    let next = run;
    if (request.state === 'requested' && isTerminal(run.phase)) {
      // 1.-2. What runs again; free its job ids.
      const resets = await this.planResume(run);
      const busy = await this.freeJobs(resets);
      if (busy) {
        log.debug({ runId: run.id, job: busy }, 'resume waits for a job to end');
        return null;
      }
      // 3. Everything reset in one MULTI.
      next = await this.writeResume(run, request, resets);
      log.info(
        { runId: run.id, by: request.by, stages: resets.map((r) => r.stage.name) },
        'run resumed',
      );
    }
    // 4. Queue, then the request is done.
    await this.queueResumed(next);
    await redis.del(keys.runResume(run.id));
    return next;
  }

  /** Step 1: every stage that did not succeed, in dependency order. */
  private async planResume(run: RunRecord): Promise<StageReset[]> {
    const { store, redis, keys } = this.ctx;
    const stages = await store.getStages(run.id);
    const taskIds = Object.values(stages).flatMap((s) => (s.shards ? [] : s.tasks));
    const tasks = await store.getTaskStatuses(taskIds);
    const resets: StageReset[] = [];
    for (const stage of topoOrder(run.spec.stages)) {
      const status = stages[stage.name] ?? newStageStatus(stage);
      if (status.phase === 'Succeeded') continue;
      const task = status.tasks[0] ? tasks[status.tasks[0]] : undefined;
      if (status.shards) {
        const done = new Set(await redis.smembers(keys.stageShardsDone(run.id, stage.name)));
        const all = Array.from({ length: status.shards.total }, (_, i) =>
          shardTaskId(run.id, stage.name, i),
        );
        const rerun = all.filter((id) => !done.has(id));
        resets.push({ kind: 'pulled', stage, status, rerun, kept: all.length - rerun.length });
      } else if (task) {
        const { checkpoint } = await readTaskProgress(redis, keys, task.id);
        resets.push({ kind: 'dispatched', stage, status, task, checkpoint });
      } else {
        resets.push({ kind: 'unstarted', stage, status });
      }
    }
    return resets;
  }

  /** Step 2: remove the finished jobs of what runs again; the id of one still active, if any. */
  private async freeJobs(resets: StageReset[]): Promise<string | null> {
    for (const r of resets) {
      const [queue, ids] =
        r.kind === 'dispatched'
          ? [this.ctx.queues[queueOf(r.task)], [r.task.id]]
          : r.kind === 'pulled'
            ? [this.parts.pulled.poolQueue((r.stage.pool as NormalizedPool).name), r.rerun]
            : [null, []];
      for (const id of ids) if (queue && !(await freeJob(queue, id))) return id;
    }
    return null;
  }

  /** Step 3: tasks, shards, stages, the run, the cancel and the request, in one MULTI. */
  private async writeResume(
    run: RunRecord,
    request: ResumeRequest,
    resets: StageReset[],
  ): Promise<RunRecord> {
    const { redis, keys } = this.ctx;
    const now = nowIso(this.ctx.clock);
    const multi = redis.multi();
    for (const r of resets) {
      const { status, message } = resetStage(r, now);
      multi.hset(keys.runStages(run.id), r.stage.name, JSON.stringify(status));
      if (r.kind === 'dispatched') {
        const task = resetTask(r.task, r.stage, message);
        multi.hset(keys.task(task.id), 'status', JSON.stringify(task));
      }
      if (r.kind === 'pulled') {
        const { name } = r.stage;
        for (const id of r.rerun) {
          const task = newShardStatus(run.id, r.stage, id);
          multi
            .hdel(keys.stageShards(run.id, name), id)
            .srem(keys.stageShardsFailed(run.id, name), id)
            .hset(keys.task(id), 'status', JSON.stringify(task));
        }
      }
    }
    const next = resumedRun(run, request, resets, now);
    await multi
      .hset(keys.run(run.id), 'record', JSON.stringify(next))
      .del(keys.runCancel(run.id))
      .set(keys.runResume(run.id), JSON.stringify({ ...request, state: 'queued' }))
      .sadd(activeRunsKey(keys), run.id)
      .publish(keys.changesChannel(), run.id)
      .exec();
    return next;
  }

  /** Step 4: the jobs of the last resume's stages (existing ids are kept, not doubled). */
  private async queueResumed(run: RunRecord): Promise<void> {
    const { store, redis, keys } = this.ctx;
    const last = run.resumes?.at(-1);
    if (!last) return;
    const stages = await store.getStages(run.id);
    for (const { name } of last.stages) {
      const stage = run.spec.stages.find((s) => s.name === name);
      const status = stages[name];
      if (!stage || !status || isTerminal(status.phase)) continue;
      if (status.shards && stage.pool) {
        await this.parts.pulled.claim(run, stage);
        const done = new Set(await redis.smembers(keys.stageShardsDone(run.id, name)));
        const ids = Array.from({ length: status.shards.total }, (_, i) =>
          shardTaskId(run.id, name, i),
        ).filter((id) => !done.has(id));
        await this.parts.pulled.enqueueShards(run, stage, ids);
        continue;
      }
      const tasks = await store.getTaskStatuses(status.tasks);
      for (const task of Object.values(tasks)) {
        if (task.phase === 'Pending') await this.parts.dispatched.requeue(run.id, task.id, stage);
      }
    }
  }
}

/** Remove a job that is not active (gone already is fine); false while it is active. */
async function freeJob(queue: Queue, id: string): Promise<boolean> {
  const state = await queue.getJobState(id);
  if (state === 'unknown') return true;
  if (state === 'active') return false;
  if ((await queue.remove(id)) === 1) return true;
  return (await queue.getJobState(id)) === 'unknown';
}

const queueOf = (task: TaskStatus): DispatchQueue =>
  task.queue === QUEUES.steps ? QUEUES.steps : QUEUES.train;

/** Clear the conditions of an end; add `Resumed` (the latest resume's). */
function resumedConditions(conditions: Condition[], message: string, now: string): Condition[] {
  return setCondition(
    conditions.filter((c) => !ENDED_CONDITIONS.has(c.type) && c.type !== 'Resumed'),
    { type: 'Resumed', status: 'True', reason: 'ResumeRequested', message },
    now,
  );
}

/** A stage's status after the resume, and what its condition says. */
function resetStage(r: StageReset, now: string): { status: StageStatus; message: string } {
  if (r.kind === 'unstarted') {
    return { status: newStageStatus(r.stage), message: 'not started before' };
  }
  const message =
    r.kind === 'dispatched'
      ? r.checkpoint
        ? `resumed from checkpoint ${r.checkpoint.path} (step ${r.checkpoint.step})`
        : 'resumed without a checkpoint: the next attempt starts over'
      : `resumed: ${r.kept} shard${r.kept === 1 ? '' : 's'} kept, ${r.rerun.length} to run`;
  const status: StageStatus = {
    ...r.status,
    phase: r.kind === 'pulled' ? 'Running' : 'Pending',
    finishedAt: null,
    message,
    conditions: resumedConditions(r.status.conditions, message, now),
    ...(r.kind === 'pulled' && r.status.shards
      ? { shards: { ...r.status.shards, succeeded: r.kept, failed: 0 } }
      : {}),
  };
  return { status, message };
}

/** A dispatched task ready for its next attempt, with the stage's retry budget again. */
function resetTask(task: TaskStatus, stage: NormalizedStage, message: string): TaskStatus {
  return {
    ...task,
    phase: 'Pending',
    maxAttempts: task.attempt + stage.retry.attempts,
    reason: 'Resumed',
    message,
    exitCode: null,
    signal: null,
    retryable: null,
    stderrTail: [],
    finishedAt: null,
  };
}

/** A shard to run again: as new (its attempts are its new job's). */
function newShardStatus(runId: string, stage: NormalizedStage, id: string): TaskStatus {
  return {
    ...newTaskStatus({
      id,
      runId,
      stage: stage.name,
      queue: poolQueueName((stage.pool as NormalizedPool).name),
      maxAttempts: stage.retry.attempts,
    }),
    reason: 'Resumed',
    message: 'queued again by a resume of its run',
  };
}

/** The run record after the resume: running again, the resume recorded. */
function resumedRun(
  run: RunRecord,
  request: ResumeRequest,
  resets: StageReset[],
  now: string,
): RunRecord {
  const resume: RunResume = {
    at: request.at,
    appliedAt: now,
    by: request.by,
    from: { phase: run.phase, message: run.message },
    stages: resets.map((r) => ({
      name: r.stage.name,
      phase: r.status.phase,
      checkpoint: r.kind === 'dispatched' ? r.checkpoint : null,
      shards: r.kind === 'pulled' ? { kept: r.kept, rerun: r.rerun.length } : null,
    })),
  };
  const message = `resumed by ${request.by} (was ${run.phase}: ${run.message ?? ''}); ${resets.length} stage${resets.length === 1 ? '' : 's'} to run`;
  // Pending when nothing ran yet: the pass then checks again that the backend can run it.
  const started =
    resets.some((r) => r.kind !== 'unstarted') || resets.length < run.spec.stages.length;
  return {
    ...run,
    phase: started ? 'Running' : 'Pending',
    finishedAt: null,
    message: 'resumed',
    conditions: resumedConditions(run.conditions, message, now),
    resumes: [...(run.resumes ?? []), resume],
  };
}
