/**
 * One attempt at one shard, as the pool worker carries it from its start to its outcome:
 * the task's status for this attempt (kept current across writes), the partial file the
 * payload writes, and the two ways the attempt is recorded:
 *   - writeStatus(): a status only (a retry, a preemption); does not wake the controller
 *     (a shard's outcome does);
 *   - finish(): the outcome, the final status, the pool's completion (successes only) and
 *     the worker's next state, in one script (TaskStore.finishShard).
 * Every field of a shard's status is this attempt's, except its history: the earlier
 * attempts and why each ended (a failure, a stall, a worker lost), carried over as the
 * attempt begins (TaskStore.beginShard, historyAfter), so a later success keeps them.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Job } from 'bullmq';
import type { PoolJobData } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { nowIso, type ShardOutcome, type TaskStatus } from '../../common/model.js';
import { shardPartialFile } from '../../common/paths.js';
import type { ShardTask, TaskStore } from '../../common/task-store.js';
import type { WorkerState } from '../../common/worker-state.js';
import type { WorkerStatePublisher } from './state.js';

/** What every shard of a pool worker shares. */
export interface PoolContext {
  store: TaskStore;
  pool: string;
  workerId: string;
  log: Logger;
  states: WorkerStatePublisher;
  /** Aborted on the first SIGTERM: drain. */
  drain: AbortSignal;
}

/**
 * Completions feed `stoker pools` (shards/s over the last minute) and the autoscaler's
 * shard durations (member `${taskId}:${attempt}:${serviceMs}`): keep an hour.
 */
const COMPLETIONS_KEPT_MS = 3600_000;

export class ShardAttempt {
  /** The status as last written (or about to be). */
  status: TaskStatus;
  /** True once the worker's state counts this shard as over. */
  ended = false;
  /** True once finish() wrote the worker's state with the outcome. */
  published = false;
  /** True once the partial file became the shard's output. */
  renamed = false;
  /** Where the payload writes; renamed to the shard's output after `done`. */
  readonly tmp: string;
  /**
   * The ms the payload server spent on the shard (shard.ts run(); not the model load of
   * a server that started for it): the autoscaler's service time (orchestrator/autoscale/
   * service-time.ts), recorded with the completion.
   */
  serviceMs: number | null = null;

  constructor(
    readonly ctx: PoolContext,
    readonly job: Job<PoolJobData>,
    readonly token: string | undefined,
    readonly stage: string,
    readonly task: ShardTask,
    status: TaskStatus,
    /** The shard's logger (taskId, attempt). */
    readonly log: Logger,
  ) {
    this.status = status;
    this.tmp = shardPartialFile(task.shard.output, ctx.workerId, status.attempt);
    mkdirSync(dirname(this.tmp), { recursive: true });
  }

  get runId(): string {
    return this.status.runId;
  }
  get taskId(): string {
    return this.status.id;
  }
  get attempt(): number {
    return this.status.attempt;
  }
  get maxAttempts(): number {
    return this.status.maxAttempts;
  }

  outcome(phase: ShardOutcome['phase'], reason: string, message: string, items = 0): ShardOutcome {
    return {
      taskId: this.taskId,
      index: this.task.shard.index,
      phase,
      items,
      output: phase === 'Succeeded' ? this.task.shard.output : null,
      reason,
      message,
      attempt: this.attempt,
      worker: this.ctx.workerId,
      finishedAt: nowIso(),
    };
  }

  async writeStatus(patch: Partial<TaskStatus>): Promise<void> {
    this.status = { ...this.status, ...patch };
    await this.ctx.store.writeTaskStatus(this.status, { wake: false });
  }

  /** The worker's state once this shard is over (once: see `ended`). */
  end(): WorkerState {
    const { states, drain } = this.ctx;
    this.ended = true;
    return states.shardEnds(this.taskId, drain.aborted);
  }

  /** The outcome, final status and worker state in one script; the job ends after it. */
  async finish(o: ShardOutcome, patch: Partial<TaskStatus>, completed: boolean): Promise<void> {
    const { store, pool, workerId, states } = this.ctx;
    this.status = { ...this.status, ...patch };
    const doneBefore = states.current.shardsDone;
    const next = this.end();
    const now = Date.now();
    await store.finishShard({
      runId: this.runId,
      stage: this.stage,
      outcome: o,
      status: this.status,
      ...(completed
        ? {
            completion: {
              pool,
              member: `${this.taskId}:${this.attempt}${this.serviceMs === null ? '' : `:${Math.round(this.serviceMs)}`}`,
              atMs: now,
              ...(doneBefore % 100 === 0 ? { dropBeforeMs: now - COMPLETIONS_KEPT_MS } : {}),
            },
          }
        : {}),
      worker: { pool, workerId, state: next },
    });
    this.published = true;
  }
}
