/**
 * Retrying a queue's failed jobs (POST /api/v1/queues/NAME/retry, `stoker queues retry
 * NAME`) without going behind the controller's back.
 *
 * A plain BullMQ `job.retry()` is wrong for stoker's jobs. Stoker's own records are the
 * source of truth: task statuses, a pulled stage's shard outcomes. BullMQ's failed state
 * only says that the job carrying a task's last attempt has ended.
 *   - A dispatched task's job (`train`, `steps`): the dispatcher would find its task
 *     Failed or Cancelled and complete the job at once, running nothing, while its stage
 *     and its run stay failed. A failed stage ends its run, so the run has ended or will.
 *   - A shard's job (`pool.NAME`): the shard would run again, but its Failed outcome would
 *     still count toward the end of its stage. The stage could end, its manifest written,
 *     while the shard runs.
 * So each failed job (up to `limit`, newest first) is handled by the state of its run:
 *
 *   the run ended Failed or    the run is resumed (resume.ts): these jobs with all else
 *   Cancelled                  that did not succeed, tasks from their last checkpoints,
 *                              the succeeded stages and shards kept. Once per run; a run
 *                              whose resume is pending counts as resumed
 *   the run is going on, and   retried in place: one script (RETRY_SHARD) drops the
 *   the job is a shard of a    shard's Failed outcome and makes its status Pending, so
 *   stage still running        the stage waits for it. It does so only while the stage
 *                              cannot be ending: not ended, no cancel, done + failed <
 *                              total, failures within the policy. (Outcomes only grow
 *                              otherwise, so no pass of the controller can have planned
 *                              the stage's end.) Then a new job replaces the failed one,
 *                              with a new retry budget
 *   anything else              skipped, with the reason: a dispatched task of a run
 *                              still going (its stage has failed: resume the run once it
 *                              has ended), a shard of a stage that has ended or is
 *                              ending, a run that succeeded (its failed shards were
 *                              within the failure policy), a job of no run
 *
 * RETRY_SHARD
 *   KEYS  1 shards hash  2 done set  3 failed set  4 counts hash  5 task hash
 *         6 run cancel key  7 run stages hash
 *   ARGV  1 taskId  2 the stage's maxFailedShards  3 the Pending status JSON  4 stage name
 *   Returns 'retried' (outcome dropped, status written), or why not: 'cancelling',
 *   'stage-ended', 'not-failed', 'over-policy', 'stage-ending'.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { shardStageOf, type Keys } from '../common/keys.js';
import { nowIso } from '../common/model.js';
import type { NormalizedStage } from '../common/spec/schema.js';
import { LuaScript, newTaskStatus } from '../common/task-store.js';
import { jobOptions } from './controller/dispatched.js';
import { readResumeRequest, requestResume, RunNotResumableError } from './resume.js';
import type { RunRecord } from './run-record.js';
import type { RunStore } from './store.js';

const RETRY_SHARD = `
if redis.call('EXISTS', KEYS[6]) == 1 then return 'cancelling' end
local st = redis.call('HGET', KEYS[7], ARGV[4])
if st then
  local phase = cjson.decode(st)['phase']
  if phase == 'Succeeded' or phase == 'Failed' or phase == 'Cancelled' then return 'stage-ended' end
end
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev or cjson.decode(prev)['phase'] ~= 'Failed' then return 'not-failed' end
local failed = redis.call('SCARD', KEYS[3])
if failed > tonumber(ARGV[2]) then return 'over-policy' end
local total = tonumber(redis.call('HGET', KEYS[4], 'total') or '0')
if redis.call('SCARD', KEYS[2]) + failed >= total then return 'stage-ending' end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[5], 'status', ARGV[3])
return 'retried'
`;
const retryShardScript = new LuaScript(RETRY_SHARD, 7);

export const QueueRetryBody = z.strictObject({
  limit: z.number().int().min(1).max(10_000).default(1000),
});

/** What a retry did (POST /api/v1/queues/NAME/retry, `stoker queues retry NAME --json`). */
export const QueueRetryResult = z.object({
  queue: z.string(),
  /** Failed jobs looked at (at most `limit`, newest first). */
  failed: z.number().int(),
  /** Of them, retried: through their run's resume, or in place (shards). */
  retried: z.number().int(),
  /** Runs resumed for their failed jobs (or whose resume was already pending). */
  resumedRuns: z.array(z.string()),
  /** Shards retried in place, their stage still running. */
  retriedShards: z.array(z.string()),
  /** The jobs left as they are, and why. */
  skipped: z.array(z.object({ job: z.string(), runId: z.string().nullable(), reason: z.string() })),
});
export type QueueRetryResult = z.infer<typeof QueueRetryResult>;

export interface RetryContext {
  redis: Redis;
  keys: Keys;
  store: RunStore;
  /** The queue whose failed jobs are retried. */
  queue: Queue;
  /** Who asks (recorded with a resume): `api:admin`, `cli:<user>`. */
  by: string;
}

type Verdict = { kind: 'resumed' | 'retried' } | { kind: 'skipped'; reason: string };

export async function retryFailedJobs(ctx: RetryContext, limit: number): Promise<QueueRetryResult> {
  const jobs = await ctx.queue.getFailed(0, limit - 1);
  const out: QueueRetryResult = {
    queue: ctx.queue.name,
    failed: jobs.length,
    retried: 0,
    resumedRuns: [],
    retriedShards: [],
    skipped: [],
  };
  const runs = new Map<string, RunRecord | null>();
  for (const job of jobs) {
    const id = job.id ?? '';
    const data = job.data as { taskId?: unknown; runId?: unknown } | undefined;
    const runId = typeof data?.runId === 'string' ? data.runId : null;
    const taskId = typeof data?.taskId === 'string' ? data.taskId : null;
    if (!runId || !taskId) {
      out.skipped.push({ job: id, runId, reason: 'not a stoker job (no taskId and runId)' });
      continue;
    }
    if (!runs.has(runId)) runs.set(runId, await ctx.store.getRun(runId));
    const v = await retryOne(ctx, runs.get(runId) ?? null, runId, taskId, out);
    if (v.kind === 'skipped') out.skipped.push({ job: id, runId, reason: v.reason });
    else {
      out.retried++;
      if (v.kind === 'retried') out.retriedShards.push(taskId);
    }
  }
  return out;
}

async function retryOne(
  ctx: RetryContext,
  run: RunRecord | null,
  runId: string,
  taskId: string,
  out: QueueRetryResult,
): Promise<Verdict> {
  if (!run) return { kind: 'skipped', reason: `run ${runId} no longer exists` };
  if (run.phase === 'Failed' || run.phase === 'Cancelled') return resumeRun(ctx, run, out);
  if (run.phase === 'Succeeded') {
    return {
      kind: 'skipped',
      reason: `run ${runId} succeeded: its failed shards were within the stage's failure policy`,
    };
  }
  const stageName = shardStageOf(runId, taskId);
  const stage = run.spec.stages.find((s) => s.name === stageName);
  if (!stage?.pool) {
    return {
      kind: 'skipped',
      reason: `run ${runId} is still ${run.phase} and this task's failure has ended its stage: resume the run once it has ended (stoker resume ${runId})`,
    };
  }
  return retryShard(ctx, run, stage, taskId);
}

/** The run's resume, once per run (a pending one counts; one applied since is skipped). */
async function resumeRun(
  ctx: RetryContext,
  run: RunRecord,
  out: QueueRetryResult,
): Promise<Verdict> {
  if (out.resumedRuns.includes(run.id)) return { kind: 'resumed' };
  try {
    await requestResume(ctx.redis, ctx.keys, run.id, `${ctx.by} (queue retry)`);
  } catch (err) {
    if (!(err instanceof RunNotResumableError)) throw err;
    if (!(await readResumeRequest(ctx.redis, ctx.keys, run.id)))
      return { kind: 'skipped', reason: err.message };
  }
  out.resumedRuns.push(run.id);
  return { kind: 'resumed' };
}

const SHARD_REFUSALS: Record<string, string> = {
  cancelling: 'its run is being cancelled',
  'stage-ended': 'its stage has ended: resume the run once it has ended',
  'not-failed': 'its outcome is no longer Failed (retried already, or succeeded since)',
  'over-policy':
    'its stage has more failed shards than its failure policy allows: it is failing; resume the run once it has ended',
  'stage-ending':
    'every shard of its stage has an outcome: the stage is ending; resume the run once it has ended',
};

/** A failed shard of a running stage: outcome dropped (RETRY_SHARD), then a new job. */
async function retryShard(
  ctx: RetryContext,
  run: RunRecord,
  stage: NormalizedStage,
  taskId: string,
): Promise<Verdict> {
  const { redis, keys, queue } = ctx;
  const status = {
    ...newTaskStatus({
      id: taskId,
      runId: run.id,
      stage: stage.name,
      queue: queue.name,
      maxAttempts: stage.retry.attempts,
    }),
    reason: 'Retried',
    message: `queued again by a retry of the queue's failed jobs at ${nowIso()}`,
  };
  const code = (await retryShardScript.run(
    redis,
    [
      keys.stageShards(run.id, stage.name),
      keys.stageShardsDone(run.id, stage.name),
      keys.stageShardsFailed(run.id, stage.name),
      keys.stageShardsCounts(run.id, stage.name),
      keys.task(taskId),
      keys.runCancel(run.id),
      keys.runStages(run.id),
    ],
    [taskId, String(stage.maxFailedShards), JSON.stringify(status), stage.name],
  )) as string;
  if (code !== 'retried') {
    return { kind: 'skipped', reason: SHARD_REFUSALS[code] ?? code };
  }
  // The failed job holds the id: a new one in its place (a job made active meanwhile by
  // another hand runs anyway).
  const removed = (await queue.remove(taskId)) === 1;
  if (removed || (await queue.getJobState(taskId)) === 'unknown') {
    await queue.add(stage.kind, { taskId, runId: run.id }, jobOptions(stage, taskId, 100_000));
  }
  await redis.publish(keys.wakeChannel(), run.id);
  return { kind: 'retried' };
}
