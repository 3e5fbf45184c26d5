/**
 * The Redis layout (README, "Redis layout"). Every key stoker writes goes through this
 * module, under one prefix (`stoker:` by default; STOKER_PREFIX or --prefix changes it,
 * which is how tests isolate themselves on one server).
 *
 * Writers (one per record):
 *   runs, run:*, run:*:stages          controller (CLI writes only run:*:cancel, run:*:resume
 *                                      and submit:*)
 *   task:* (status hash)               dispatcher / controller
 *   task:*:progress, :events, :logs    the worker running the task
 *   unit:*                             the backend that launched it, then the worker
 *   controller:lock, controller:alive  the controller
 *
 * BullMQ queues live under `${prefix}bull` (BullMQ's own `prefix` option), so one
 * `stoker:` prefix covers everything.
 */
export interface Keys {
  readonly prefix: string;
  readonly bullPrefix: string;
  runIndex(): string;
  run(runId: string): string;
  runStages(runId: string): string;
  runCancel(runId: string): string;
  /** A resume request (JSON {at, by, state}): orchestrator/resume.ts. */
  runResume(runId: string): string;
  task(taskId: string): string;
  taskProgress(taskId: string): string;
  taskEvents(taskId: string): string;
  taskLogs(taskId: string): string;
  /** Stream: every metric point of the task's attempts (worker/metric-history.ts), capped. */
  taskMetrics(taskId: string): string;
  unit(unitName: string): string;
  /** Pulled stages: per-shard outcome (hash taskId -> JSON), done/failed sets, counters. */
  stageShards(runId: string, stage: string): string;
  stageShardsDone(runId: string, stage: string): string;
  stageShardsFailed(runId: string, stage: string): string;
  stageShardsCounts(runId: string, stage: string): string;
  /** Set (with a short expiry) when an outcome woke the controller: throttles wake-ups. */
  stageShardsWake(runId: string, stage: string): string;
  /** Pools: names (set), spec and desired replicas (hash), processes started by the
   * backend (hash workerId -> JSON), worker self-reported state (hash workerId -> JSON),
   * shard completions (zset time -> id), stages using the pool (set). */
  pools(): string;
  pool(name: string): string;
  poolProcs(name: string): string;
  poolWorkers(name: string): string;
  poolCompletions(name: string): string;
  poolUsers(name: string): string;
  controllerLock(): string;
  controllerAlive(): string;
  /** Hash queue -> the leader's dispatch concurrency for it (orchestrator/queue-wait.ts). */
  dispatchSlots(): string;
  wakeChannel(): string;
  /** Pub/sub: the controller's own writes of a run or stage (the API's event stream). */
  changesChannel(): string;
}

export const DEFAULT_PREFIX = 'stoker:';

export function makeKeys(prefix: string = DEFAULT_PREFIX): Keys {
  const p = prefix.endsWith(':') ? prefix : `${prefix}:`;
  return {
    prefix: p,
    bullPrefix: `${p}bull`,
    runIndex: () => `${p}runs`,
    run: (id) => `${p}run:${id}`,
    runStages: (id) => `${p}run:${id}:stages`,
    runCancel: (id) => `${p}run:${id}:cancel`,
    runResume: (id) => `${p}run:${id}:resume`,
    task: (id) => `${p}task:${id}`,
    taskProgress: (id) => `${p}task:${id}:progress`,
    taskEvents: (id) => `${p}task:${id}:events`,
    taskLogs: (id) => `${p}task:${id}:logs`,
    taskMetrics: (id) => `${p}task:${id}:metrics`,
    unit: (name) => `${p}unit:${name}`,
    stageShards: (r, s) => `${p}run:${r}:stage:${s}:shards`,
    stageShardsDone: (r, s) => `${p}run:${r}:stage:${s}:shards:done`,
    stageShardsFailed: (r, s) => `${p}run:${r}:stage:${s}:shards:failed`,
    stageShardsCounts: (r, s) => `${p}run:${r}:stage:${s}:shards:counts`,
    stageShardsWake: (r, s) => `${p}run:${r}:stage:${s}:shards:wake`,
    pools: () => `${p}pools`,
    pool: (n) => `${p}pool:${n}`,
    poolProcs: (n) => `${p}pool:${n}:procs`,
    poolWorkers: (n) => `${p}pool:${n}:workers`,
    poolCompletions: (n) => `${p}pool:${n}:completions`,
    poolUsers: (n) => `${p}pool:${n}:users`,
    controllerLock: () => `${p}controller:lock`,
    controllerAlive: () => `${p}controller:alive`,
    dispatchSlots: () => `${p}controller:slots`,
    wakeChannel: () => `${p}wake`,
    changesChannel: () => `${p}changes`,
  };
}

/** Queue names. Dispatched stages go to `train` (the GPU budget) or `steps` (CPU steps). */
export const QUEUES = { train: 'train', steps: 'steps' } as const;
export type DispatchQueue = (typeof QUEUES)[keyof typeof QUEUES];

/** The queue a pool's workers pull shards from. */
export const poolQueueName = (pool: string): string => `pool.${pool}`;

/**
 * A job of a pool's queue, as the controller adds it and a pool worker takes it (the job
 * id is the shard task id; the task hash holds the rest: TaskStore.beginShard).
 */
export interface PoolJobData {
  taskId: string;
  runId: string;
}

/** Shard task ids: `${runId}.${stage}.s00042`. */
export const shardTaskId = (runId: string, stage: string, index: number): string =>
  `${runId}.${stage}.s${String(index).padStart(5, '0')}`;

/**
 * The stage of a shard task id made by shardTaskId(), or null when `taskId` is not one
 * of `runId`'s shard ids. Unambiguous: stage names are DNS labels (no dots).
 */
export function shardStageOf(runId: string, taskId: string): string | null {
  if (!taskId.startsWith(`${runId}.`)) return null;
  const rest = taskId.slice(runId.length + 1);
  const m = /^([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.s\d{5,}$/.exec(rest);
  return m ? (m[1] as string) : null;
}

/** How many log lines per task are kept in Redis (the full log is in a file). */
export const LOG_TAIL_LINES = 200;
/** Approximate cap of a task's event stream. */
export const EVENTS_MAXLEN = 2000;
/**
 * Approximate cap of a task's metric history stream (all attempts together). The whole
 * history of an attempt is in its metrics.jsonl file; the stream serves live views and
 * readers that do not see the runs folder.
 */
export const METRICS_MAXLEN = 20_000;
