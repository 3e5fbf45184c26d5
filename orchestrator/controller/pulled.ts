/**
 * Pulled stages: their input split into shards, one task per shard on the pool's queue
 * (`pool-${name}`), a warm pool of workers pulling them.
 *
 *   create          split the input (once: sharding.ts reuses a finished split), claim
 *                   the pool, record one task per shard (id shardTaskId(run, stage, i),
 *                   so a repeated pass duplicates nothing), record the shard total and
 *                   the stage, then add the jobs in bulks of 1,000
 *   cancelShards    remove the queued shards of a stage that was cancelled or failed and
 *                   record each as Cancelled; running ones stop by themselves
 *   writeManifest   `<runDir>/stages/<stage>/shards.json` of a finished stage: its
 *                   shard outputs and its failures; the stage releases its pool
 *   enqueueShards   add the jobs of given shards (a resume's, resume.ts)
 */
import { runRoots } from '../untrusted-path.js';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Queue } from 'bullmq';
import { checkFence } from '../fenced-redis.js';
import { poolQueueName, shardTaskId, type PoolJobData } from '../../common/keys.js';
import { isTerminal, nowIso, type ResolvedPayload, type StageStatus } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import type { NormalizedPool, NormalizedStage } from '../../common/spec/schema.js';
import { newTaskStatus } from '../../common/task-store.js';
import { queueBacklog } from '../queue-counts.js';
import { planShards, type ShardPlan } from '../sharding.js';
import type { TaskRecord } from '../store.js';
import { failStage, type ControllerContext } from './context.js';
import { jobOptions } from './dispatched.js';
import { shardManifestPath, type RunObservation } from './plan.js';
import { claimPool, releasePool } from './pool-sizing.js';

/** What a pulled stage reads: a JSONL file cut into shards, or a list of shard files. */
export interface ShardedInput {
  file?: string;
  shardSize?: number;
  shards?: string[];
}

export class PulledStages {
  /** The queue of each pool this controller added shards to (closed by close()). */
  private readonly poolQueues = new Map<string, Queue<PoolJobData>>();

  constructor(private readonly ctx: ControllerContext) {}

  /** Shard the input and queue one task per shard; an input that cannot be split fails the stage. */
  async create(
    run: RunRecord,
    stage: NormalizedStage,
    status: StageStatus,
    payload: ResolvedPayload,
    input: ShardedInput,
    outputs: Record<string, string>,
  ): Promise<void> {
    const { store, log } = this.ctx;
    const pool = stage.pool as NormalizedPool;
    let plan: ShardPlan;
    try {
      plan = await planShards(input, {
        workDir: run.workDir,
        outputDir: payload.outputDir,
        roots: runRoots(run),
      });
    } catch (err) {
      const message = `cannot shard the input: ${(err as Error).message}`;
      await failStage(this.ctx, run.id, status, 'InvalidInput', message);
      return;
    }
    await this.claim(run, stage);
    const tasks = shardTasks(run, stage, payload, plan);
    await store.createTasks(tasks);
    await store.setShardTotal(run.id, stage.name, tasks.length);
    await store.writeStageIfChanged(run.id, status, {
      ...status,
      outputs: { ...outputs, dir: join(payload.outputDir, 'shards') },
      shards: { total: tasks.length, succeeded: 0, failed: 0, items: 0, pool: pool.name },
      message: `${tasks.length} shards queued on pool ${pool.name}`,
    });
    await this.enqueueShards(
      run,
      stage,
      tasks.map((t) => t.status.id),
    );
    log.info(
      { runId: run.id, stage: stage.name, shards: tasks.length, pool: pool.name },
      'shards queued',
    );
  }

  async cancelShards(run: RunRecord, stageName: string, obs: RunObservation): Promise<void> {
    const st = obs.stages[stageName];
    if (!st?.shards || isTerminal(st.phase)) return;
    const q = this.poolQueue(st.shards.pool);
    const reason = obs.cancelRequested ? 'CancelRequested' : 'StageFailed';
    for (let i = 0; i < st.shards.total; i++) {
      const id = shardTaskId(run.id, stageName, i);
      if ((await q.remove(id)) === 1) {
        await this.ctx.store.recordShardOutcome(run.id, stageName, {
          taskId: id,
          index: i,
          phase: 'Cancelled',
          items: 0,
          output: null,
          reason,
          message: obs.cancelRequested ? 'cancelled while queued' : 'not run: the stage failed',
          attempt: 0,
          worker: '',
          finishedAt: nowIso(this.ctx.clock),
        });
      }
    }
    await releasePool(this.ctx, st.shards.pool, `${run.id}/${stageName}`);
  }

  async writeManifest(run: RunRecord, stageName: string): Promise<void> {
    const outcomes = await this.ctx.store.shardOutcomes(run.id, stageName);
    const path = shardManifestPath(run.runDir, stageName);
    mkdirSync(dirname(path), { recursive: true });
    // What killed workers left half written (common/paths.ts, shardPartialFile).
    rmSync(join(dirname(path), '.partial'), { recursive: true, force: true });
    const manifest = {
      stage: stageName,
      shards: outcomes
        .filter((o) => o.phase === 'Succeeded')
        .map((o) => ({ index: o.index, path: o.output, items: o.items })),
      failed: outcomes
        .filter((o) => o.phase !== 'Succeeded')
        .map((o) => ({ index: o.index, reason: o.reason, message: o.message })),
    };
    writeFileSync(`${path}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
    renameSync(`${path}.tmp`, path);
    const pool = run.spec.stages.find((s) => s.name === stageName)?.pool?.name;
    if (pool) await releasePool(this.ctx, pool, `${run.id}/${stageName}`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.poolQueues.values()].map((q) => q.close()));
  }

  /** Add the jobs of these shards (job id = task id: an existing job is kept), 1,000 at a time. */
  async enqueueShards(run: RunRecord, stage: NormalizedStage, taskIds: string[]): Promise<void> {
    const q = this.poolQueue((stage.pool as NormalizedPool).name);
    for (let i = 0; i < taskIds.length; i += 1000) {
      await checkFence(this.ctx.redis);
      await q.addBulk(
        taskIds.slice(i, i + 1000).map((id) => ({
          name: stage.kind,
          data: { taskId: id, runId: run.id },
          opts: jobOptions(stage, id, 100_000),
        })),
      );
    }
  }

  /** The stage uses its pool from now on (pool-sizing.ts claimPool). */
  async claim(run: RunRecord, stage: NormalizedStage): Promise<void> {
    await claimPool(this.ctx, stage.pool as NormalizedPool, `${run.id}/${stage.name}`, {
      takeOver: run.takeOverPools ?? false,
      backlogOf: this.poolBacklog,
    });
  }

  /** The backlog of a pool's queue (the autoscaler's input: pool-sizing.ts). */
  readonly poolBacklog = (name: string) => queueBacklog(this.poolQueue(name));

  /** The queue of a pool (opened once). */
  poolQueue(name: string): Queue<PoolJobData> {
    let q = this.poolQueues.get(name);
    if (!q) {
      q = new Queue<PoolJobData>(poolQueueName(name), {
        connection: this.ctx.connection,
        prefix: this.ctx.keys.bullPrefix,
      });
      q.on('error', () => undefined); // connection errors surface on the next call
      this.poolQueues.set(name, q);
    }
    return q;
  }
}

/** One task per shard, with a deterministic id: shard i of the plan, its input and output. */
function shardTasks(
  run: RunRecord,
  stage: NormalizedStage,
  payload: ResolvedPayload,
  plan: ShardPlan,
): TaskRecord[] {
  const pool = stage.pool as NormalizedPool;
  const queue = poolQueueName(pool.name);
  return plan.inputs.map((inputPath, index) => ({
    status: newTaskStatus({
      id: shardTaskId(run.id, stage.name, index),
      runId: run.id,
      stage: stage.name,
      queue,
      maxAttempts: stage.retry.attempts,
    }),
    payload,
    runDir: run.runDir,
    shard: {
      index,
      input: inputPath,
      output: plan.outputs[index] as string,
      pool: pool.name,
      params: stage.shardParams,
    },
  }));
}
