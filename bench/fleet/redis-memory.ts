/**
 * Redis memory per queued shard, on the bench's real redis-server: what a pulled stage of
 * N shards holds in Redis while they wait, written by the controller's own code paths.
 *
 *   jobs    N BullMQ jobs on a pool queue (`pool.gen`, the controller's bull prefix), added
 *           with addBulk 1,000 at a time and the job options the controller uses
 *           (orchestrator/controller/pulled.ts enqueueShards: jobOptions(stage, id, 100,000),
 *           name the stage kind, data {taskId, runId}); ids are shard task ids
 *   tasks   the N task records the controller writes before it queues them (RunStore
 *           createTasks: status, payload, runDir, shard), built as pulled.ts's shardTasks
 *           builds them, for the fleet spec's generate stage
 *
 * Read with INFO memory (used_memory) before, between and after, on this benchmark's own
 * key prefix (removed afterwards). A million is the figure: with N below it, the
 * per-shard figures are extrapolated linearly (`extrapolated: true`); Redis's per-key cost
 * is flat in the count (a hash per job, one list entry), so the line is straight.
 */
import { Queue } from 'bullmq';
import { poolQueueName, shardTaskId, makeKeys, type PoolJobData } from '../../common/keys.js';
import type { ResolvedPayload } from '../../common/model.js';
import { bullConnection, connectRedis } from '../../common/redis.js';
import type { NormalizedStage } from '../../common/spec/schema.js';
import { newTaskStatus } from '../../common/task-store.js';
import { jobOptions } from '../../orchestrator/controller/dispatched.js';
import { makeRunId, RunStore, type TaskRecord } from '../../orchestrator/store.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import type { BenchContext, Cleanup } from '../lib/harness.js';
import { round } from '../lib/harness.js';

export interface RedisPerShard {
  shards: number;
  jobBytesPerShard: number;
  /** The same over the first tenth of the jobs: the line is straight if the two agree. */
  jobBytesPerShardFirstTenth: number;
  taskBytesPerShard: number;
  bytesPerShard: number;
  keysPerShard: number;
  atMillionMiB: number;
  extrapolated: boolean;
  addJobsSeconds: number;
  redisVersion: string;
}

const usedMemory = async (redis: Awaited<ReturnType<typeof connectRedis>>) =>
  Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? Number.NaN);

export async function redisPerShard(
  ctx: BenchContext,
  cleanup: Cleanup,
  stage: NormalizedStage,
  n: number,
): Promise<RedisPerShard> {
  const prefix = `bench-fleet-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
  const keys = makeKeys(prefix);
  const redis = await connectRedis(ctx.redisUrl, { name: 'stoker-bench-fleet' });
  cleanup.defer('close the fleet bench connection', () => void redis.disconnect());
  cleanup.defer(`remove ${prefix}*`, () => deleteKeysWithPrefix(ctx.redisUrl, prefix));
  const pool = stage.pool?.name ?? 'gen';
  const queue = new Queue<PoolJobData>(poolQueueName(pool), {
    connection: bullConnection(ctx.redisUrl),
    prefix: keys.bullPrefix,
  });
  cleanup.defer('close the fleet bench queue', () => queue.close());
  await queue.waitUntilReady();
  const runId = makeRunId('fleet');
  const ids = Array.from({ length: n }, (_, i) => shardTaskId(runId, stage.name, i));
  const keysBefore = await redis.dbsize();
  const before = await usedMemory(redis);
  const t0 = performance.now();
  let atTenth = before;
  for (let i = 0; i < n; i += 1000) {
    if (i === Math.floor(n / 10 / 1000) * 1000 && i > 0) atTenth = await usedMemory(redis);
    await queue.addBulk(
      ids.slice(i, i + 1000).map((id) => ({
        name: stage.kind,
        data: { taskId: id, runId },
        opts: jobOptions(stage, id, 100_000),
      })),
    );
  }
  const addJobsSeconds = (performance.now() - t0) / 1000;
  const withJobs = await usedMemory(redis);
  const store = new RunStore(redis, keys);
  const runDir = `/data/stoker/runs/${runId}`;
  const payload: ResolvedPayload = {
    command: stage.payload.command,
    env: stage.payload.env,
    secretEnv: [],
    workingDir: runDir,
    outputDir: `${runDir}/stages/${stage.name}`,
    terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
    stallTimeoutSeconds: stage.stallTimeoutSeconds,
  };
  for (let i = 0; i < n; i += 10_000) {
    await store.createTasks(
      ids.slice(i, i + 10_000).map((id, k) => taskRecord(stage, runId, runDir, payload, id, i + k)),
    );
  }
  const after = await usedMemory(redis);
  const keysAfter = await redis.dbsize();
  const bytesPerShard = (after - before) / n;
  return {
    shards: n,
    jobBytesPerShard: Math.round((withJobs - before) / n),
    jobBytesPerShardFirstTenth: Math.round((atTenth - before) / (Math.floor(n / 10 / 1000) * 1000)),
    taskBytesPerShard: Math.round((after - withJobs) / n),
    bytesPerShard: Math.round(bytesPerShard),
    keysPerShard: round((keysAfter - keysBefore) / n, 2),
    atMillionMiB: round((bytesPerShard * 1_000_000) / 2 ** 20, 0),
    extrapolated: n < 1_000_000,
    addJobsSeconds: round(addJobsSeconds, 1),
    redisVersion: /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown',
  };
}

/** A shard's task record as orchestrator/controller/pulled.ts (shardTasks) writes it. */
function taskRecord(
  stage: NormalizedStage,
  runId: string,
  runDir: string,
  payload: ResolvedPayload,
  id: string,
  index: number,
): TaskRecord {
  const pool = stage.pool?.name ?? 'gen';
  const name = `shard-${String(index).padStart(5, '0')}.jsonl`;
  return {
    status: newTaskStatus({
      id,
      runId,
      stage: stage.name,
      queue: poolQueueName(pool),
      maxAttempts: stage.retry.attempts,
    }),
    payload,
    runDir,
    shard: {
      index,
      input: `${runDir}/stages/${stage.name}/input-shards/${name}`,
      output: `${payload.outputDir}/shards/${name}`,
      pool,
      params: stage.shardParams,
    },
  };
}
