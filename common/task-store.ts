/**
 * Task records as the workers write them (layout in common/keys.ts): a task's status,
 * a run's cancel request as workers read it, and the start and end of a shard attempt
 * with their Lua scripts. The pool worker (worker/pool/) uses this directly;
 * the controller's RunStore (orchestrator/store.ts) extends it with runs and stages.
 * It lives in common/ because a worker pod carries only the worker and common/.
 *
 *   task:{id}           hash   status (JSON), payload (JSON), runDir, shard (JSON, shards only)
 *   run:{id}:cancel     string ISO time of a cancel request
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { EVENTS_MAXLEN, LOG_TAIL_LINES, type Keys } from './keys.js';
import {
  ResolvedPayload,
  ShardInfo,
  ShardOutcome,
  TaskStatus,
  nowIso,
  type Phase,
  type TaskProgress,
} from './model.js';
import { decodeProgress, encodeStreamEvent, type TaskStreamEventType } from './progress.js';

/*
 * FINISH_SHARD: a shard's final outcome, and with it (one round trip, atomically) what
 * the pool worker writes as the shard ends.
 *
 * KEYS  1 shards hash  2 done set  3 failed set  4 counts hash  5 task hash
 *       6 pool completions zset  7 pool workers hash  8 wake throttle key
 * ARGV  1 taskId  2 phase (Succeeded|Failed|Cancelled)  3 items  4 outcome JSON
 *       5 task status JSON ('' = leave it)  6 completion member ('' = none)
 *       7 completion score (ms)  8 drop completions scored below this ('' = keep)
 *       9 workerId ('' = none)  10 worker state JSON  11 wake channel  12 runId
 *       13 wake throttle (ms)
 * Returns 1 when the outcome was recorded, 0 when the shard had already Succeeded.
 *
 * A success replaces an earlier failure of the same shard (it cannot happen the other
 * way: a shard's outcome is final once Succeeded). Items are counted, and the completion
 * (shards/s of `stoker pools`) added, on the first success only: nothing counted twice.
 * The status is written either way (it describes this attempt), as the worker's state is.
 *
 * Wake-ups: a failure or a cancel wakes the controller at once, and so does the outcome
 * that finishes the stage (done + failed = the `total` the controller wrote when it
 * queued the shards); other successes wake it at most once per throttle window (a key
 * with an expiry), so a stream of fast shards costs a few reconcile passes a second, not
 * one per shard. The controller's periodic resync covers the rest.
 */
const FINISH_SHARD = `
local recorded = 0
local prev = redis.call('HGET', KEYS[1], ARGV[1])
-- A Succeeded outcome is final; so is a Failed one against a Cancelled (a stage that
-- fails cancels its shards, and may find the failed shard's job among them).
local keep = prev and (string.find(prev, '"phase":"Succeeded"', 1, true)
  or (ARGV[2] == 'Cancelled' and string.find(prev, '"phase":"Failed"', 1, true)))
if not keep then
  recorded = 1
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  if ARGV[2] == 'Succeeded' then
    redis.call('SREM', KEYS[3], ARGV[1])
    if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
      redis.call('HINCRBY', KEYS[4], 'items', tonumber(ARGV[3]))
    end
    if ARGV[6] ~= '' then
      redis.call('ZADD', KEYS[6], ARGV[7], ARGV[6])
      if ARGV[8] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[8]) end
    end
  elseif ARGV[2] == 'Failed' then
    redis.call('SADD', KEYS[3], ARGV[1])
  end
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[5], 'status', ARGV[5]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[7], ARGV[9], ARGV[10]) end
if recorded == 1 then
  local wake = ARGV[2] ~= 'Succeeded'
  if not wake then
    local total = tonumber(redis.call('HGET', KEYS[4], 'total'))
    wake = (not total)
      or (redis.call('SCARD', KEYS[2]) + redis.call('SCARD', KEYS[3]) >= total)
      or (redis.call('SET', KEYS[8], '1', 'PX', ARGV[13], 'NX') ~= false)
  end
  if wake then redis.call('PUBLISH', ARGV[11], ARGV[12]) end
end
return recorded
`;

/*
 * BEGIN_SHARD: what a pool worker reads and writes as a shard starts, in one round trip.
 *
 * KEYS  1 task hash  2 shards hash  3 run cancel key  4 progress hash  5 events stream
 *       6 logs list  7 pool workers hash
 * ARGV  1 taskId  2 Running status JSON (startedAt: now)  3 workerId  4 worker state JSON
 *       5 events MAXLEN  6 log tail lines  7 the attempt's first progress write, JSON
 *       {fields: [k, v, ...], events: [[field, value, ...], ...], logs: [line, ...]}
 * Returns {code, ...}:
 *   {'missing'}                                    no such task (or not a shard)
 *   {'done', outcome}                              already Succeeded (a redelivery)
 *   {'cancelled', status, shard, payload, runDir}  its run is being cancelled; nothing written
 *   {'started', startedAt, shard, payload, runDir, checkpoint, artifacts, prior status}
 *       the status (startedAt of an earlier attempt kept), the attempt's progress record
 *       and event, and the worker's state were written; checkpoint and artifacts are the
 *       progress fields kept across attempts ('' when none)
 */
const BEGIN_SHARD = `
local t = redis.call('HMGET', KEYS[1], 'status', 'shard', 'payload', 'runDir')
if not (t[1] and t[2] and t[3] and t[4]) then return {'missing'} end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev and string.find(prev, '"phase":"Succeeded"', 1, true) then return {'done', prev} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'cancelled', t[1], t[2], t[3], t[4]} end
-- A job retried from outside (Bull Board's Retry) after its stage ended: not run.
local st = redis.call('HGET', KEYS[8], ARGV[8])
if st and (string.find(st, '"phase":"Succeeded"', 1, true) or string.find(st, '"phase":"Failed"', 1, true)
    or string.find(st, '"phase":"Cancelled"', 1, true)) then
  return {'stageEnded'}
end
local status = ARGV[2]
local startedAt = string.match(t[1], '"startedAt":"([^"]*)"')
if startedAt then
  status = string.gsub(status, '"startedAt":"[^"]*"',
    function() return '"startedAt":"' .. startedAt .. '"' end, 1)
else
  startedAt = string.match(status, '"startedAt":"([^"]*)"') or ''
end
redis.call('HSET', KEYS[1], 'status', status)
redis.call('HSET', KEYS[7], ARGV[3], ARGV[4])
local kept = redis.call('HMGET', KEYS[4], 'checkpoint', 'artifacts')
local w = cjson.decode(ARGV[7])
if #w.fields > 0 then redis.call('HSET', KEYS[4], unpack(w.fields)) end
for _, e in ipairs(w.events) do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', unpack(e))
end
if #w.logs > 0 then
  redis.call('RPUSH', KEYS[6], unpack(w.logs))
  redis.call('LTRIM', KEYS[6], -tonumber(ARGV[6]), -1)
end
return {'started', startedAt, t[2], t[3], t[4], kept[1] or '', kept[2] or '', t[1]}
`;

/** A script run by its SHA (EVALSHA), loaded with EVAL when the server does not know it. */
export class LuaScript {
  readonly sha: string;
  constructor(
    readonly body: string,
    readonly numKeys: number,
  ) {
    this.sha = createHash('sha1').update(body).digest('hex');
  }

  async run(redis: Redis, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, this.numKeys, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('NOSCRIPT')) throw err;
      return redis.eval(this.body, this.numKeys, ...keys, ...args);
    }
  }
}

const finishShardScript = new LuaScript(FINISH_SHARD, 8);
const beginShardScript = new LuaScript(BEGIN_SHARD, 8);

/** Wake the controller at most this often for a stage's successful shards. */
export const SHARD_WAKE_THROTTLE_MS = 200;

/** What a pool worker writes as a shard starts (RunStore.beginShard). */
export interface ShardBegin {
  runId: string;
  stage: string;
  taskId: string;
  /** The Running status; an earlier attempt's startedAt replaces its startedAt. */
  status: TaskStatus;
  /** The attempt's first progress write (TaskReporter.openAttempt). */
  progress: {
    fields: Record<string, string>;
    events: Array<{ type: TaskStreamEventType; at: string; data: unknown }>;
    logs: string[];
  };
  worker: { pool: string; workerId: string; state: unknown };
  eventsMaxLen?: number;
  logTailLines?: number;
}

/** A shard's task as a pool worker needs it. */
export interface ShardTask {
  shard: ShardInfo;
  payload: ResolvedPayload;
  runDir: string;
}

export type ShardBeginResult =
  | { kind: 'missing' }
  /** Its stage has ended (a job retried from outside, e.g. Bull Board): nothing written. */
  | { kind: 'stageEnded' }
  | { kind: 'done'; prior: ShardOutcome }
  | { kind: 'cancelled'; status: TaskStatus; task: ShardTask }
  | {
      kind: 'started';
      /** startedAt as written (the first attempt's). */
      startedAt: string;
      task: ShardTask;
      /** Progress fields kept across attempts. */
      kept: Pick<TaskProgress, 'checkpoint' | 'artifacts'>;
      /** The earlier attempts of the shard (historyAfter). */
      history: TaskStatus['history'];
    };

/** What a pool worker writes as a shard ends, with its outcome (RunStore.finishShard). */
export interface ShardFinish {
  runId: string;
  stage: string;
  outcome: ShardOutcome;
  /** The task's final status for this attempt. */
  status?: TaskStatus;
  /** A completion for the pool's shards/s (counted on the first success only). */
  completion?: { pool: string; member: string; atMs: number; dropBeforeMs?: number };
  worker?: { pool: string; workerId: string; state: unknown };
}

/** The task-level reads and writes of a worker (and, through RunStore, of the controller). */
export class TaskStore {
  constructor(
    readonly redis: Redis,
    readonly keys: Keys,
  ) {}

  /** Write a task's status and wake the controller. */
  async writeTaskStatus(status: TaskStatus, opts: { wake?: boolean } = {}): Promise<void> {
    const multi = this.redis
      .multi()
      .hset(this.keys.task(status.id), 'status', JSON.stringify(status));
    if (opts.wake ?? true) multi.publish(this.keys.wakeChannel(), status.runId);
    await multi.exec();
  }

  async cancelRequestedAt(runId: string): Promise<string | null> {
    return this.redis.get(this.keys.runCancel(runId));
  }

  /**
   * A shard's outcome plus, in the same script, its final status, its completion and the
   * worker's state (FINISH_SHARD above). True when the outcome was recorded, false when
   * the shard had already Succeeded.
   */
  async finishShard(f: ShardFinish): Promise<boolean> {
    const { keys } = this;
    const { runId, stage, outcome } = f;
    const res = await finishShardScript.run(
      this.redis,
      [
        keys.stageShards(runId, stage),
        keys.stageShardsDone(runId, stage),
        keys.stageShardsFailed(runId, stage),
        keys.stageShardsCounts(runId, stage),
        keys.task(outcome.taskId),
        keys.poolCompletions(f.completion?.pool ?? ''),
        keys.poolWorkers(f.worker?.pool ?? ''),
        keys.stageShardsWake(runId, stage),
      ],
      [
        outcome.taskId,
        outcome.phase,
        String(outcome.items),
        JSON.stringify(outcome),
        f.status ? JSON.stringify(f.status) : '',
        f.completion?.member ?? '',
        String(f.completion?.atMs ?? 0),
        f.completion?.dropBeforeMs === undefined ? '' : String(f.completion.dropBeforeMs),
        f.worker?.workerId ?? '',
        f.worker ? JSON.stringify(f.worker.state) : '',
        keys.wakeChannel(),
        runId,
        String(SHARD_WAKE_THROTTLE_MS),
      ],
    );
    return res === 1;
  }

  /**
   * The start of a shard attempt, in one round trip (BEGIN_SHARD above): read the task,
   * skip a shard that already Succeeded or whose run is being cancelled, else write its
   * Running status, the attempt's first progress record and event, and the worker's state.
   */
  async beginShard(b: ShardBegin): Promise<ShardBeginResult> {
    const { keys } = this;
    const res = (await beginShardScript.run(
      this.redis,
      [
        keys.task(b.taskId),
        keys.stageShards(b.runId, b.stage),
        keys.runCancel(b.runId),
        keys.taskProgress(b.taskId),
        keys.taskEvents(b.taskId),
        keys.taskLogs(b.taskId),
        keys.poolWorkers(b.worker.pool),
        keys.runStages(b.runId),
      ],
      [
        b.taskId,
        JSON.stringify(b.status),
        b.worker.workerId,
        JSON.stringify(b.worker.state),
        String(b.eventsMaxLen ?? EVENTS_MAXLEN),
        String(b.logTailLines ?? LOG_TAIL_LINES),
        JSON.stringify({
          fields: Object.entries(b.progress.fields).flat(),
          events: b.progress.events.map((e) => encodeStreamEvent(e.type, e.at, e.data)),
          logs: b.progress.logs,
        }),
        b.stage,
      ],
    )) as string[];
    const code = res[0];
    if (code === 'done')
      return { kind: 'done', prior: ShardOutcome.parse(JSON.parse(res[1] as string)) };
    if (code === 'cancelled') {
      const [, status, shard, payload, runDir] = res as [string, string, string, string, string];
      return {
        kind: 'cancelled',
        status: TaskStatus.parse(JSON.parse(status)),
        task: this.shardTask(shard, payload, runDir),
      };
    }
    if (code === 'started') {
      const [, startedAt, shard, payload, runDir, checkpoint, artifacts, prior] = res as string[];
      const kept = decodeProgress({ checkpoint: checkpoint ?? '', artifacts: artifacts ?? '' });
      const before = TaskStatus.safeParse(JSON.parse(prior ?? 'null'));
      return {
        kind: 'started',
        startedAt: startedAt as string,
        history: before.success ? historyAfter(before.data, b.status.attempt) : [],
        task: this.shardTask(shard as string, payload as string, runDir as string),
        kept: { checkpoint: kept.checkpoint, artifacts: kept.artifacts },
      };
    }
    if (code === 'stageEnded') return { kind: 'stageEnded' };
    return { kind: 'missing' };
  }

  /** The payload of the last shard read, parsed: every shard of a stage has the same one. */
  private lastPayload: { raw: string; parsed: ResolvedPayload } | null = null;

  private shardTask(shard: string, payload: string, runDir: string): ShardTask {
    if (this.lastPayload?.raw !== payload)
      this.lastPayload = { raw: payload, parsed: ResolvedPayload.parse(JSON.parse(payload)) };
    return {
      shard: ShardInfo.parse(JSON.parse(shard)),
      payload: this.lastPayload.parsed,
      runDir,
    };
  }
}

export function newTaskStatus(init: {
  id: string;
  runId: string;
  stage: string;
  queue: string;
  maxAttempts: number;
}): TaskStatus {
  return {
    ...init,
    phase: 'Pending' as Phase,
    attempt: 0,
    unit: null,
    reason: null,
    message: null,
    exitCode: null,
    signal: null,
    retryable: null,
    stderrTail: [],
    startedAt: null,
    finishedAt: null,
    history: [],
  };
}

/**
 * A shard's history as attempt `attempt` starts: the earlier attempts the status recorded,
 * plus the one the status itself describes when it ended with a reason (a retried
 * failure, a preemption), so that a later success does not erase why an attempt failed.
 */
export function historyAfter(prior: TaskStatus, attempt: number): TaskStatus['history'] {
  const history = prior.history.filter((h) => h.attempt < attempt);
  if (prior.attempt <= 0 || prior.attempt >= attempt) return history;
  if (history.some((h) => h.attempt === prior.attempt)) return history;
  // Still Running: its worker stopped in the middle (the job was redelivered).
  const lost = prior.phase === 'Running' && prior.reason === null;
  if (prior.reason !== null || lost)
    history.push({
      attempt: prior.attempt,
      reason: lost ? 'WorkerLost' : (prior.reason as string),
      message: lost
        ? 'the attempt did not finish: its worker stopped, and the shard was redelivered'
        : (prior.message ?? ''),
      exitCode: prior.exitCode,
      signal: prior.signal,
      finishedAt: prior.finishedAt ?? nowIso(),
    });
  return history;
}
