/**
 * The run store: runs, stages and tasks in Redis (layout in common/keys.ts).
 *
 *   runs                zset   runId -> createdAt (ms)          all runs, newest last
 *   runs:active         set    runIds not yet terminal          what the controller reconciles
 *   run:{id}            hash   record (JSON), written by the controller (created by submit);
 *                              checked when read (RunRecord): else CorruptRecordError
 *   run:{id}:stages     hash   stage name -> StageStatus (JSON), controller only
 *   run:{id}:cancel     string ISO time of a cancel request (any client)
 *   task:{id}           hash   status (JSON, dispatcher/controller), payload (JSON), runDir, queue
 *
 * Task statuses and shard outcomes are TaskStore's (common/task-store.ts), which this
 * class extends: workers write them too.
 *
 * Writes of status go through write*IfChanged(): the caller passes the whole new value,
 * the store compares it with what is there and writes only a difference (level-triggered
 * reconcile loops otherwise rewrite every key every pass).
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { Keys } from '../common/keys.js';
import {
  newStageStatus,
  nowIso,
  ResolvedPayload,
  ShardInfo,
  ShardOutcome,
  StageStatus,
  TaskStatus,
} from '../common/model.js';
import { checkSpecPools } from './pool-settings.js';
import { RunRecord } from './run-record.js';
import { writeRunFiles } from './run-files.js';
import { TaskStore } from '../common/task-store.js';
import type { NormalizedSpec } from '../common/spec/schema.js';
import { formatPath } from '../common/spec/values.js';
import { StokerError } from '../common/errors.js';

export interface TaskRecord {
  status: TaskStatus;
  payload: ResolvedPayload;
  runDir: string;
  /** Shards of pulled stages only. */
  shard?: ShardInfo;
}

export class RunNotFoundError extends StokerError {
  override name = 'RunNotFoundError';
}

export class RunExistsError extends StokerError {
  override name = 'RunExistsError';
}

/**
 * A stored run record that is not what this version of stoker writes (another version, a
 * hand edit): refused when read, naming the run and each field at fault, rather than
 * failing later where a field is used.
 */
export class CorruptRecordError extends StokerError {
  override name = 'CorruptRecordError';
}

function parseRunRecord(id: string, raw: string): RunRecord {
  const parsed = RunRecord.safeParse(JSON.parse(raw));
  if (parsed.success) return parsed.data;
  const fields = parsed.error.issues.map(
    (i) => `${formatPath(i.path.filter((s) => typeof s !== 'symbol')) || '<root>'}: ${i.message}`,
  );
  throw new CorruptRecordError(
    `run ${id}: the stored record is not one this version of stoker writes: ${fields.join('; ')}`,
  );
}

export function makeRunId(name: string, clock: () => number = Date.now): string {
  const d = new Date(clock());
  const pad = (n: number) => String(n).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
  return `${name}-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** Characters a run id adds to the name: -YYYYMMDD-HHMMSS-xxxxxx. */
const RUN_ID_SUFFIX = 23;

/** Task ids are `${runId}.${stage}`: deterministic, so re-adding a task never duplicates it. */
export const taskIdFor = (runId: string, stage: string): string => `${runId}.${stage}`;

export class RunStore extends TaskStore {
  constructor(
    redis: Redis,
    keys: Keys,
    private readonly clock: () => number = Date.now,
  ) {
    super(redis, keys);
  }

  private activeKey(): string {
    return `${this.keys.runIndex()}:active`;
  }

  /**
   * Record a new run (Pending) and wake the controller. Its pools are checked against the
   * live ones first (pool-settings.ts): a conflict is a PoolConflictError and nothing is
   * written, unless `takeOverPools`.
   */
  async createRun(
    spec: NormalizedSpec,
    opts: { home: string; id?: string; workDir?: string; takeOverPools?: boolean },
  ): Promise<RunRecord> {
    await checkSpecPools(this.redis, this.keys, spec, { takeOver: opts.takeOverPools ?? false });
    // A generated id that collides (same name, same second, same random suffix) is drawn again.
    for (let tries = 0; ; tries++) {
      try {
        return await this.createRunOnce(spec, {
          ...opts,
          id: opts.id ?? makeRunId(spec.name, this.clock),
        });
      } catch (err) {
        if (opts.id || tries >= 4 || !(err instanceof RunExistsError)) throw err;
      }
    }
  }

  private async createRunOnce(
    spec: NormalizedSpec,
    opts: { home: string; id: string; workDir?: string; takeOverPools?: boolean },
  ): Promise<RunRecord> {
    const id = opts.id;
    const createdAt = nowIso(this.clock);
    const runDir = resolve(join(opts.home, 'runs', id));
    const filesDir = writeRunFiles(runDir, spec.files ?? []); // spec.files: run-files.ts
    if (filesDir === false) throw new RunExistsError(`run ${id} already exists`);
    const run: RunRecord = {
      id,
      name: spec.name,
      kind: spec.kind,
      spec,
      phase: 'Pending',
      conditions: [],
      message: null,
      runDir,
      workDir: filesDir ?? resolve(opts.workDir ?? process.cwd()),
      createdAt,
      startedAt: null,
      finishedAt: null,
      ...(opts.takeOverPools ? { takeOverPools: true } : {}),
    };
    const stages: Record<string, string> = {};
    for (const stage of spec.stages) {
      stages[stage.name] = JSON.stringify(newStageStatus(stage));
    }
    const created = await this.redis
      .multi()
      .hsetnx(this.keys.run(id), 'record', JSON.stringify(run))
      .hset(this.keys.runStages(id), stages)
      .zadd(this.keys.runIndex(), this.clock(), id)
      .sadd(this.activeKey(), id)
      .publish(this.keys.wakeChannel(), id)
      .exec();
    if (!created || created[0]?.[1] !== 1) throw new RunExistsError(`run ${id} already exists`);
    return run;
  }

  async getRun(id: string): Promise<RunRecord | null> {
    const raw = await this.redis.hget(this.keys.run(id), 'record');
    return raw ? parseRunRecord(id, raw) : null;
  }

  async mustGetRun(id: string): Promise<RunRecord> {
    const run = await this.getRun(id);
    if (!run) throw new RunNotFoundError(`no run "${id}"`);
    return run;
  }

  /**
   * Find a run from what a user typed: an exact id, a unique id prefix, or a run name
   * (the newest run of that name).
   */
  async resolveRunId(query: string): Promise<string> {
    if (await this.redis.exists(this.keys.run(query))) return query;
    const ids = await this.redis.zrange(this.keys.runIndex(), '0', '-1');
    const byPrefix = ids.filter((id) => id.startsWith(query));
    const named = byPrefix.filter((id) => id.slice(0, id.length - RUN_ID_SUFFIX) === query);
    if (named.length > 0) return named[named.length - 1] as string;
    if (byPrefix.length === 1) return byPrefix[0] as string;
    if (byPrefix.length > 1) {
      throw new RunNotFoundError(
        `"${query}" matches ${byPrefix.length} runs: ${byPrefix.slice(-5).join(', ')}`,
      );
    }
    throw new RunNotFoundError(`no run matches "${query}" (stoker status lists runs)`);
  }

  /** The newest runs, newest first. */
  async listRuns(limit = 50): Promise<RunRecord[]> {
    return (await this.listRunsAt(0, limit)).filter((r): r is RunRecord => r !== null);
  }

  /**
   * `count` runs from position `offset` of the index, newest first; null where a run's
   * record is gone (so positions stay aligned with the index, for paging).
   */
  async listRunsAt(offset: number, count: number): Promise<Array<RunRecord | null>> {
    const ids = await this.redis.zrevrange(this.keys.runIndex(), offset, offset + count - 1);
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hget(this.keys.run(id), 'record');
    const res = (await pipe.exec()) ?? [];
    return ids.map((id, i) => {
      const raw = res[i]?.[1];
      return typeof raw === 'string' ? parseRunRecord(id, raw) : null;
    });
  }

  /** How many runs the index holds. */
  async runCount(): Promise<number> {
    return this.redis.zcard(this.keys.runIndex());
  }

  async activeRunIds(): Promise<string[]> {
    return this.redis.smembers(this.activeKey());
  }

  async getStages(runId: string): Promise<Record<string, StageStatus>> {
    const raw = await this.redis.hgetall(this.keys.runStages(runId));
    return Object.fromEntries(
      Object.entries(raw).map(([name, v]) => [name, StageStatus.parse(JSON.parse(v))]),
    );
  }

  /** Each task's step / totalSteps (0..1) where its progress has both; one round trip. */
  async taskFractions(taskIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (taskIds.length === 0) return out;
    const pipe = this.redis.pipeline();
    for (const id of taskIds) pipe.hmget(this.keys.taskProgress(id), 'step', 'totalSteps');
    const res = (await pipe.exec()) ?? [];
    taskIds.forEach((id, i) => {
      const [step, total] = ((res[i]?.[1] as Array<string | null> | undefined) ?? []).map(Number);
      if (Number.isFinite(step) && Number.isFinite(total) && (total as number) > 0)
        out.set(id, Math.min(1, Math.max(0, (step as number) / (total as number))));
    });
    return out;
  }

  /** Write the run record if it differs; drop it from the active set once terminal. */
  async writeRunIfChanged(before: RunRecord, after: RunRecord): Promise<boolean> {
    const a = JSON.stringify(after);
    if (JSON.stringify(before) === a) return false;
    const multi = this.redis
      .multi()
      .hset(this.keys.run(after.id), 'record', a)
      .publish(this.keys.changesChannel(), after.id);
    if (after.phase === 'Succeeded' || after.phase === 'Failed' || after.phase === 'Cancelled') {
      multi.srem(this.activeKey(), after.id);
    }
    await multi.exec();
    return true;
  }

  async writeStageIfChanged(
    runId: string,
    before: StageStatus | undefined,
    after: StageStatus,
  ): Promise<boolean> {
    const a = JSON.stringify(after);
    if (before && JSON.stringify(before) === a) return false;
    await this.redis
      .multi()
      .hset(this.keys.runStages(runId), after.name, a)
      .publish(this.keys.changesChannel(), runId)
      .exec();
    return true;
  }

  async requestCancel(runId: string): Promise<void> {
    await this.redis
      .multi()
      .set(this.keys.runCancel(runId), nowIso(this.clock), 'NX')
      .publish(this.keys.wakeChannel(), runId)
      .exec();
  }

  /** Create a task once: its payload and first status. Returns false if it existed. */
  async createTask(task: TaskRecord): Promise<boolean> {
    const key = this.keys.task(task.status.id);
    const fields: Record<string, string> = {
      payload: JSON.stringify(task.payload),
      runDir: task.runDir,
    };
    if (task.shard) fields.shard = JSON.stringify(task.shard);
    const res = await this.redis
      .multi()
      .hsetnx(key, 'status', JSON.stringify(task.status))
      .hset(key, fields)
      .exec();
    return res?.[0]?.[1] === 1;
  }

  /** Create many tasks in one round trip (shards of a pulled stage); existing ones are kept. */
  async createTasks(tasks: TaskRecord[]): Promise<void> {
    for (let i = 0; i < tasks.length; i += 500) {
      const multi = this.redis.multi();
      for (const task of tasks.slice(i, i + 500)) {
        const key = this.keys.task(task.status.id);
        const fields: Record<string, string> = {
          payload: JSON.stringify(task.payload),
          runDir: task.runDir,
        };
        if (task.shard) fields.shard = JSON.stringify(task.shard);
        multi.hsetnx(key, 'status', JSON.stringify(task.status)).hset(key, fields);
      }
      await multi.exec();
    }
  }

  async getTask(taskId: string): Promise<TaskRecord | null> {
    const raw = await this.redis.hmget(
      this.keys.task(taskId),
      'status',
      'payload',
      'runDir',
      'shard',
    );
    const [status, payload, runDir, shard] = raw;
    if (!status || !payload || !runDir) return null;
    return {
      status: TaskStatus.parse(JSON.parse(status)),
      payload: ResolvedPayload.parse(JSON.parse(payload)),
      runDir,
      ...(shard ? { shard: ShardInfo.parse(JSON.parse(shard)) } : {}),
    };
  }

  /**
   * Record a shard's final outcome, idempotently: a shard retried after its outcome was
   * written (at-least-once execution) is counted once.
   */
  async recordShardOutcome(runId: string, stage: string, outcome: ShardOutcome): Promise<void> {
    await this.finishShard({ runId, stage, outcome });
  }

  /**
   * How many shards a pulled stage has, for FINISH_SHARD (the outcome that finishes the
   * stage wakes the controller at once). Written before the shards are queued.
   */
  async setShardTotal(runId: string, stage: string, total: number): Promise<void> {
    await this.redis.hset(this.keys.stageShardsCounts(runId, stage), 'total', String(total));
  }

  async shardCounts(
    runId: string,
    stage: string,
  ): Promise<{ succeeded: number; failed: number; items: number }> {
    const res = await this.redis
      .multi()
      .scard(this.keys.stageShardsDone(runId, stage))
      .scard(this.keys.stageShardsFailed(runId, stage))
      .hget(this.keys.stageShardsCounts(runId, stage), 'items')
      .exec();
    return {
      succeeded: Number(res?.[0]?.[1] ?? 0),
      failed: Number(res?.[1]?.[1] ?? 0),
      items: Number(res?.[2]?.[1] ?? 0),
    };
  }

  async shardOutcomes(runId: string, stage: string): Promise<ShardOutcome[]> {
    const raw = await this.redis.hvals(this.keys.stageShards(runId, stage));
    return raw.map((r) => ShardOutcome.parse(JSON.parse(r))).sort((a, b) => a.index - b.index);
  }

  async getTaskStatuses(taskIds: string[]): Promise<Record<string, TaskStatus>> {
    if (taskIds.length === 0) return {};
    const pipe = this.redis.pipeline();
    for (const id of taskIds) pipe.hget(this.keys.task(id), 'status');
    const res = (await pipe.exec()) ?? [];
    const out: Record<string, TaskStatus> = {};
    res.forEach(([, raw], i) => {
      if (typeof raw === 'string') out[taskIds[i] as string] = TaskStatus.parse(JSON.parse(raw));
    });
    return out;
  }

  async updateTaskStatus(
    taskId: string,
    patch: (s: TaskStatus) => TaskStatus,
  ): Promise<TaskStatus> {
    const raw = await this.redis.hget(this.keys.task(taskId), 'status');
    if (!raw) throw new StokerError(`no task ${taskId}`);
    const next = patch(TaskStatus.parse(JSON.parse(raw)));
    await this.writeTaskStatus(next);
    return next;
  }

  async wake(runId = '*'): Promise<void> {
    await this.redis.publish(this.keys.wakeChannel(), runId);
  }
}
