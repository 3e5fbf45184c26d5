/**
 * The pool worker's two scripts on a real Redis (orchestrator/store.ts: BEGIN_SHARD and
 * FINISH_SHARD): what a shard's start and end read and write in one round trip each,
 * and the guarantees they carry (an outcome recorded once, items and completions counted
 * once, a cancelled or finished shard never started, the controller woken when it must be).
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeKeys, shardStageOf, shardTaskId, type Keys } from '../../common/keys.js';
import type { ShardOutcome, TaskStatus } from '../../common/model.js';
import { readTaskEvents, readTaskLogTail, readTaskProgress } from '../../common/progress.js';
import { newTaskStatus } from '../../common/task-store.js';
import { RunStore, type TaskRecord } from '../../orchestrator/store.js';
import { TaskReporter } from '../../worker/reporter.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';

const runId = 'gen-20261126-120000-abcdef';
const stage = 'gen';
const pool = 'p1';

let redis: Redis;
let subscriber: Redis;
let keys: Keys;
let store: RunStore;
let wakes: string[];

beforeAll(async () => {
  const url = await testRedisUrl();
  redis = new Redis(url);
  subscriber = new Redis(url);
});
afterAll(() => {
  redis.disconnect();
  subscriber.disconnect();
});

beforeEach(async () => {
  keys = makeKeys(uniquePrefix('shard-store'));
  store = new RunStore(redis, keys);
  wakes = [];
  subscriber.removeAllListeners('message');
  subscriber.on('message', (channel: string, message: string) => {
    if (channel === keys.wakeChannel()) wakes.push(message);
  });
  await subscriber.subscribe(keys.wakeChannel());
});
afterEach(async () => {
  await subscriber.unsubscribe();
  const found = await redis.keys(`${keys.prefix}*`);
  if (found.length > 0) await redis.del(...found);
});

function shardTask(index: number): TaskRecord {
  return {
    status: newTaskStatus({
      id: shardTaskId(runId, stage, index),
      runId,
      stage,
      queue: `pool.${pool}`,
      maxAttempts: 3,
    }),
    payload: {
      command: ['python', 'serve.py'],
      env: {},
      secretEnv: [],
      workingDir: '/tmp',
      outputDir: '/tmp/out',
      terminationGracePeriodSeconds: 5,
      stallTimeoutSeconds: 0,
    },
    runDir: '/tmp/run',
    shard: {
      index,
      input: `/tmp/in/shard-${index}.jsonl`,
      output: `/tmp/out/shards/shard-${index}.jsonl`,
      pool,
      params: { temperature: 0.7 },
    },
  };
}

function running(taskId: string, attempt: number, startedAt: string): TaskStatus {
  return {
    ...newTaskStatus({ id: taskId, runId, stage, queue: `pool.${pool}`, maxAttempts: 3 }),
    phase: 'Running',
    attempt,
    unit: 'w1',
    startedAt,
  };
}

function outcome(taskId: string, phase: ShardOutcome['phase'], items = 0): ShardOutcome {
  return {
    taskId,
    index: Number(taskId.slice(-5)),
    phase,
    items,
    output: phase === 'Succeeded' ? `/tmp/out/${taskId}` : null,
    reason: phase === 'Succeeded' ? 'Completed' : 'PayloadCrashed',
    message: '',
    attempt: 1,
    worker: 'w1',
    finishedAt: new Date().toISOString(),
  };
}

async function begin(index: number, attempt = 1, startedAt = new Date().toISOString()) {
  const taskId = shardTaskId(runId, stage, index);
  const reporter = TaskReporter.forRedis(redis, keys, taskId);
  return store.beginShard({
    runId,
    stage,
    taskId,
    status: running(taskId, attempt, startedAt),
    progress: reporter.openAttempt(attempt),
    worker: { pool, workerId: 'w1', state: { state: 'busy', shard: taskId } },
  });
}

const status = async (taskId: string) => (await store.getTaskStatuses([taskId]))[taskId];

describe('the start of a shard (beginShard)', () => {
  it('reads the task and writes its Running status, attempt event, progress and the worker state', async () => {
    await store.createTasks([shardTask(0)]);
    const taskId = shardTaskId(runId, stage, 0);
    const res = await begin(0, 1, '2026-11-26T12:00:00.000Z');
    expect(res).toMatchObject({
      kind: 'started',
      startedAt: '2026-11-26T12:00:00.000Z',
      task: { shard: { index: 0, params: { temperature: 0.7 } }, runDir: '/tmp/run' },
      kept: { checkpoint: null, artifacts: {} },
    });
    expect(await status(taskId)).toMatchObject({ phase: 'Running', attempt: 1, unit: 'w1' });
    const events = await readTaskEvents(redis, keys, taskId);
    expect(events.map((e) => [e.type, e.data])).toEqual([['attempt', { attempt: 1 }]]);
    expect(await readTaskProgress(redis, keys, taskId)).toMatchObject({ attempt: 1, step: null });
    expect((await readTaskLogTail(redis, keys, taskId))[0]).toMatch(/attempt 1 started/);
    expect(JSON.parse((await redis.hget(keys.poolWorkers(pool), 'w1')) ?? '{}')).toMatchObject({
      state: 'busy',
      shard: taskId,
    });
  });

  it('keeps the first attempt start time and the checkpoint and artifacts of earlier attempts', async () => {
    await store.createTasks([shardTask(0)]);
    const taskId = shardTaskId(runId, stage, 0);
    await begin(0, 1, '2026-11-26T12:00:00.000Z');
    await redis.hset(keys.taskProgress(taskId), {
      checkpoint: JSON.stringify({ path: '/ckpt/10', step: 10 }),
      artifacts: JSON.stringify({ samples: '/out/samples.jsonl' }),
    });
    const again = await begin(0, 2, '2026-11-26T12:05:00.000Z');
    expect(again).toMatchObject({
      kind: 'started',
      startedAt: '2026-11-26T12:00:00.000Z',
      kept: {
        checkpoint: { path: '/ckpt/10', step: 10 },
        artifacts: { samples: '/out/samples.jsonl' },
      },
    });
    expect(await status(taskId)).toMatchObject({
      attempt: 2,
      startedAt: '2026-11-26T12:00:00.000Z',
    });
    const events = await readTaskEvents(redis, keys, taskId);
    expect(events.map((e) => e.data)).toEqual([{ attempt: 1 }, { attempt: 2 }]);
  });

  it('does not start a shard that already Succeeded, and writes nothing', async () => {
    await store.createTasks([shardTask(0)]);
    const taskId = shardTaskId(runId, stage, 0);
    await store.finishShard({ runId, stage, outcome: outcome(taskId, 'Succeeded', 7) });
    const before = await status(taskId);
    const res = await begin(0, 2);
    expect(res).toMatchObject({ kind: 'done', prior: { phase: 'Succeeded', items: 7 } });
    expect(await status(taskId)).toEqual(before);
    expect(await readTaskEvents(redis, keys, taskId)).toEqual([]);
    expect(await redis.hget(keys.poolWorkers(pool), 'w1')).toBeNull();
  });

  it('does not start a shard of a run being cancelled, and writes nothing', async () => {
    await store.createTasks([shardTask(0)]);
    const taskId = shardTaskId(runId, stage, 0);
    await store.requestCancel(runId);
    const res = await begin(0);
    expect(res).toMatchObject({
      kind: 'cancelled',
      status: { phase: 'Pending' },
      task: { shard: { index: 0 } },
    });
    expect(await status(taskId)).toMatchObject({ phase: 'Pending' });
    expect(await readTaskEvents(redis, keys, taskId)).toEqual([]);
  });

  it('answers missing for a task that does not exist', async () => {
    expect(await begin(3)).toEqual({ kind: 'missing' });
  });
});

describe('the end of a shard (finishShard)', () => {
  it('records an outcome, its items and its completion once, however often it is reported', async () => {
    await store.createTasks([shardTask(0)]);
    const taskId = shardTaskId(runId, stage, 0);
    const finish = () =>
      store.finishShard({
        runId,
        stage,
        outcome: outcome(taskId, 'Succeeded', 5),
        status: { ...running(taskId, 1, new Date().toISOString()), phase: 'Succeeded' },
        completion: { pool, member: `${taskId}:1`, atMs: Date.now() },
        worker: { pool, workerId: 'w1', state: { state: 'idle', shard: null } },
      });
    expect(await finish()).toBe(true);
    expect(await finish()).toBe(false);
    expect(await store.shardCounts(runId, stage)).toEqual({ succeeded: 1, failed: 0, items: 5 });
    expect(await redis.zcard(keys.poolCompletions(pool))).toBe(1);
    expect(await status(taskId)).toMatchObject({ phase: 'Succeeded' });
    expect(JSON.parse((await redis.hget(keys.poolWorkers(pool), 'w1')) ?? '{}')).toMatchObject({
      state: 'idle',
    });
  });

  it('lets a success replace a failure, never the other way', async () => {
    const taskId = shardTaskId(runId, stage, 0);
    expect(await store.finishShard({ runId, stage, outcome: outcome(taskId, 'Failed') })).toBe(
      true,
    );
    expect(await store.shardCounts(runId, stage)).toMatchObject({ succeeded: 0, failed: 1 });
    await store.finishShard({ runId, stage, outcome: outcome(taskId, 'Succeeded', 2) });
    expect(await store.shardCounts(runId, stage)).toEqual({ succeeded: 1, failed: 0, items: 2 });
    expect(await store.finishShard({ runId, stage, outcome: outcome(taskId, 'Failed') })).toBe(
      false,
    );
    expect((await store.shardOutcomes(runId, stage))[0]?.phase).toBe('Succeeded');
  });

  /** The wake-ups published so far: a sentinel sent after them on the same connection marks the end. */
  async function wakesSoFar(): Promise<string[]> {
    const sentinel = `sentinel-${Math.random()}`;
    await redis.publish(keys.wakeChannel(), sentinel);
    await eventually('the sentinel wake-up', () => wakes.includes(sentinel));
    const seen = wakes.slice(0, wakes.indexOf(sentinel));
    wakes = [];
    return seen;
  }
  const finishOne = (i: number, phase: ShardOutcome['phase']) =>
    store.finishShard({ runId, stage, outcome: outcome(shardTaskId(runId, stage, i), phase, 1) });

  it('wakes the controller for the first success of a throttle window, every failure and the last shard', async () => {
    await store.setShardTotal(runId, stage, 5);
    await finishOne(0, 'Succeeded');
    expect(await wakesSoFar()).toEqual([runId]);
    // Within a window (held open here), successes do not wake it; a failure and the
    // outcome that finishes the stage do.
    await redis.set(keys.stageShardsWake(runId, stage), '1', 'PX', 60_000);
    await finishOne(1, 'Succeeded');
    await finishOne(2, 'Succeeded');
    expect(await wakesSoFar()).toEqual([]);
    await finishOne(3, 'Failed');
    expect(await wakesSoFar()).toEqual([runId]);
    await finishOne(4, 'Succeeded');
    expect(await wakesSoFar()).toEqual([runId]);
    // A repeated outcome changes nothing and wakes nobody.
    await finishOne(4, 'Succeeded');
    expect(await wakesSoFar()).toEqual([]);
  });

  it('wakes the controller for every outcome of a stage whose total is unknown', async () => {
    for (let i = 0; i < 3; i++) await finishOne(i, 'Succeeded');
    expect(await wakesSoFar()).toEqual([runId, runId, runId]);
  });
});

describe('shard task ids', () => {
  it.each([
    ['a shard of the run', shardTaskId(runId, 'gen-b', 42), 'gen-b'],
    ['a dispatched task of the run', `${runId}.train`, null],
    ['a shard of another run', shardTaskId('other-20261126-120000-abcdef', 'gen', 1), null],
  ])('%s', (_name, taskId, expected) => {
    expect(shardStageOf(runId, taskId)).toBe(expected);
  });
});
