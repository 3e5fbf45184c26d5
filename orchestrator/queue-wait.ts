/**
 * Where queued work stands in its queue and when it should start (README, "Queue
 * position and ETA"): `stoker status`, GET /api/v1/runs/RUN and the run list show it for
 * a stage that waits.
 *
 * The position comes from BullMQ's own structures, read directly (no BullMQ import:
 * `stoker status` must start fast), in the order BullMQ's moveToActive takes jobs: the
 * `wait` list from its right end first (LPUSHed, RPOPLPUSHed: FIFO), then `prioritized`
 * by score (ZPOPMIN). A job in `delayed` (a retry's backoff) has no position until it is
 * due; its due time is shown instead.
 *
 * The estimate, for a dispatched task (queues `train` and `steps`): the queue has
 * `slots` (the leader's dispatch concurrency, written at its start under
 * controller:slots). Each slot is free at 0, or when its running task should end (its
 * ETA from its reported rate; else the queue's typical duration less the time it has
 * run). Each job ahead then takes the earliest free slot for the typical duration (the
 * median run time of the queue's last completed jobs); this job starts at the earliest
 * slot left. Without a typical duration where one is needed, or a paused queue, there
 * is no estimate (null), and the basis says what is missing.
 *
 * For a shard of a pool's queue: the shards ahead divided by the pool's rate now (its
 * serving workers over the seconds a shard takes one worker: pools.ts poolRate).
 */
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { poolQueueName, type Keys } from '../common/keys.js';
import { isTerminal, type StageStatus, type TaskStatus } from '../common/model.js';
import { readTaskProgress } from '../common/progress.js';
import { poolRate as poolShardRate, readWorkers, WORKER_STALE_MS } from './pools.js';
import type { RunStore } from './store.js';

export const QueueWait = z.object({
  queue: z.string(),
  /** 1 = the next to start; null while delayed (a retry's backoff). */
  position: z.number().int().positive().nullable(),
  /** Jobs that start before it. */
  ahead: z.number().int().nonnegative(),
  /** Workers or dispatch slots serving the queue (null: not known). */
  slots: z.number().int().nonnegative().nullable(),
  /** Jobs running now. */
  running: z.number().int().nonnegative(),
  /** Seconds until it should start; null when it cannot be estimated (see basis). */
  startsInSeconds: z.number().nonnegative().nullable(),
  /** How the estimate was made, or what it lacks. */
  basis: z.string(),
  /** A delayed job: when it becomes due. */
  delayedUntil: z.string().nullable(),
  /** All of it in words: "3 ahead in train, 2 of 2 slots busy: starts in about 14 min". */
  summary: z.string(),
});
export type QueueWait = z.infer<typeof QueueWait>;

/** Median run time of this many most recent completed jobs: the queue's typical duration. */
const TYPICAL_OF = 20;
/** Jobs ahead simulated one by one at most (beyond, the rest in one step: same answer). */
const SIMULATED = 10_000;

const bullKey = (keys: Keys, queue: string, part: string) => `${keys.bullPrefix}:${queue}:${part}`;

/** BullMQ's delayed score: timestamp * 0x1000 + a counter. */
const delayedAt = (score: number) => Math.floor(score / 0x1000);

/** The position of job `jobId` in `queue`: null when it is not waiting there. */
async function position(
  redis: Redis,
  keys: Keys,
  queue: string,
  jobId: string,
): Promise<{ ahead: number } | { delayedUntil: number } | null> {
  const waitKey = bullKey(keys, queue, 'wait');
  // From the right end: the next job to start is at rank 1.
  const fromRight = (await redis.call('LPOS', waitKey, jobId, 'RANK', '-1')) as number | null;
  if (fromRight !== null) {
    const len = await redis.llen(waitKey);
    return { ahead: len - 1 - fromRight };
  }
  const rank = await redis.zrank(bullKey(keys, queue, 'prioritized'), jobId);
  if (rank !== null) return { ahead: (await redis.llen(waitKey)) + rank };
  const score = await redis.zscore(bullKey(keys, queue, 'delayed'), jobId);
  if (score !== null) return { delayedUntil: delayedAt(Number(score)) };
  return null;
}

/** The median run time (s) of the queue's last completed jobs; null with none. */
export async function typicalDuration(
  redis: Redis,
  keys: Keys,
  queue: string,
): Promise<number | null> {
  const ids = await redis.zrevrange(bullKey(keys, queue, 'completed'), 0, TYPICAL_OF - 1);
  if (ids.length === 0) return null;
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hmget(bullKey(keys, queue, id), 'processedOn', 'finishedOn');
  const secs: number[] = [];
  for (const [err, r] of (await pipe.exec()) ?? []) {
    if (err || !Array.isArray(r)) continue;
    const [p, f] = (r as Array<string | null>).map(Number);
    if (Number.isFinite(p) && Number.isFinite(f) && (f as number) >= (p as number) && p)
      secs.push(((f as number) - (p as number)) / 1000);
  }
  if (secs.length === 0) return null;
  secs.sort((a, b) => a - b);
  return secs[Math.floor(secs.length / 2)] as number;
}

/** The dispatch slots the leader runs per queue (controller:slots); null: not known. */
export async function dispatchSlots(
  redis: Redis,
  keys: Keys,
  queue: string,
): Promise<number | null> {
  const v = Number(await redis.hget(keys.dispatchSlots(), queue));
  return Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * When a job starts, given the slots' free times and the typical duration of the jobs
 * ahead (pure; exported for its test).
 */
export function startEstimate(
  freeAt: number[],
  ahead: number,
  typical: number | null,
): number | null {
  if (freeAt.length === 0) return null;
  const slots = [...freeAt].sort((a, b) => a - b);
  // Fewer ahead than slots: they take the earliest, this job the next one.
  if (typical === null) return ahead < slots.length ? (slots[ahead] as number) : null;
  // Each job ahead takes the earliest free slot for `typical` seconds.
  const n = Math.min(ahead, SIMULATED);
  for (let i = 0; i < n; i++) {
    slots[0] = (slots[0] as number) + typical;
    // Keep sorted: move the first entry to its place.
    for (let j = 0; j + 1 < slots.length && (slots[j] as number) > (slots[j + 1] as number); j++)
      [slots[j], slots[j + 1]] = [slots[j + 1] as number, slots[j] as number];
  }
  // The rest go round the slots, which now all free within one typical duration.
  const rest = ahead - n;
  const m = slots.length;
  return (slots[rest % m] as number) + Math.floor(rest / m) * typical;
}

type Unsummed = Omit<QueueWait, 'summary'>;
type Base = Pick<QueueWait, 'queue' | 'slots' | 'running'>;

/**
 * What both kinds of wait start with: a delayed job's due time, a paused queue, or the
 * position to estimate from (`wait`, with no estimate yet).
 */
async function waitHead(
  redis: Redis,
  keys: Keys,
  base: Base,
  pos: { ahead: number } | { delayedUntil: number },
  now: number,
): Promise<
  { done: Unsummed } | { wait: Omit<Unsummed, 'startsInSeconds' | 'basis'>; ahead: number }
> {
  if ('delayedUntil' in pos)
    return {
      done: {
        ...base,
        position: null,
        ahead: 0,
        startsInSeconds: Math.max(0, (pos.delayedUntil - now) / 1000),
        basis: 'a retry waiting for its backoff',
        delayedUntil: new Date(pos.delayedUntil).toISOString(),
      },
    };
  const wait = { ...base, position: pos.ahead + 1, ahead: pos.ahead, delayedUntil: null };
  if ((await redis.hexists(bullKey(keys, base.queue, 'meta'), 'paused')) === 1)
    return { done: { ...wait, startsInSeconds: null, basis: 'the queue is paused' } };
  return { wait, ahead: pos.ahead };
}

/** A dispatched task's wait in `train` or `steps`; null when its job is not waiting. */
async function dispatchedWaitOf(
  redis: Redis,
  keys: Keys,
  queue: string,
  jobId: string,
  now: number = Date.now(),
): Promise<Omit<QueueWait, 'summary'> | null> {
  const pos = await position(redis, keys, queue, jobId);
  if (!pos) return null;
  const active = await redis.lrange(bullKey(keys, queue, 'active'), 0, -1);
  const slots = await dispatchSlots(redis, keys, queue);
  const head = await waitHead(redis, keys, { queue, running: active.length, slots }, pos, now);
  if ('done' in head) return head.done;
  const { wait } = head;
  if (slots === null)
    return {
      ...wait,
      startsInSeconds: null,
      basis: 'no controller has said how many slots it runs',
    };
  const typical = await typicalDuration(redis, keys, queue);
  // When each slot frees: a running task's ETA, else its typical rest; a free one now.
  const freeAt: number[] = [];
  let unknownRunning = 0;
  for (const id of active.slice(0, slots)) {
    const p = await readTaskProgress(redis, keys, id);
    const eta =
      p.step !== null && p.totalSteps !== null && p.stepsPerSec && p.stepsPerSec > 0
        ? Math.max(0, (p.totalSteps - p.step) / p.stepsPerSec)
        : null;
    if (eta !== null) freeAt.push(eta);
    else {
      const processedOn = Number(await redis.hget(bullKey(keys, queue, id), 'processedOn'));
      const ran = processedOn > 0 ? (now - processedOn) / 1000 : 0;
      if (typical !== null) freeAt.push(Math.max(0, typical - ran));
      else unknownRunning++;
    }
  }
  while (freeAt.length + unknownRunning < slots) freeAt.push(0);
  if (unknownRunning > 0 && freeAt.length <= head.ahead)
    return {
      ...wait,
      startsInSeconds: null,
      basis: 'a running task reports no rate yet and the queue has no finished job to go by',
    };
  const starts = startEstimate(freeAt, head.ahead, typical);
  return {
    ...wait,
    startsInSeconds: starts,
    basis:
      starts === null
        ? 'the queue has no finished job to time the ones ahead by'
        : head.ahead === 0
          ? 'the next slot to free, from the running tasks’ ETAs'
          : `the running tasks’ ETAs, then ${formatSeconds(typical ?? 0)} per job ahead (median of the queue’s last finished jobs)`,
  };
}

/** A pool shard's wait: shards ahead over the pool's rate. */
async function shardWaitOf(
  redis: Redis,
  keys: Keys,
  queue: string,
  jobId: string,
  rate: { shardsPerSecond: number; workers: number; running: number },
  now: number = Date.now(),
): Promise<Omit<QueueWait, 'summary'> | null> {
  const pos = await position(redis, keys, queue, jobId);
  if (!pos) return null;
  const base = { queue, slots: rate.workers, running: rate.running };
  const head = await waitHead(redis, keys, base, pos, now);
  if ('done' in head) return head.done;
  const { wait } = head;
  if (rate.workers === 0)
    return { ...wait, startsInSeconds: null, basis: 'the pool has no worker running' };
  if (head.ahead === 0 && rate.running < rate.workers)
    return { ...wait, startsInSeconds: 0, basis: 'a worker is free' };
  if (!(rate.shardsPerSecond > 0))
    return { ...wait, startsInSeconds: null, basis: 'the pool has not finished a shard yet' };
  return {
    ...wait,
    startsInSeconds: (head.ahead + 1) / rate.shardsPerSecond,
    basis: `${rate.shardsPerSecond.toFixed(2)} shards/s: the pool's workers over the seconds a shard takes`,
  };
}

const summed = (w: Unsummed | null): QueueWait | null => w && { ...w, summary: describeWait(w) };

/** A dispatched task's wait in `train` or `steps`; null when its job is not waiting. */
export async function dispatchedWait(
  ...args: Parameters<typeof dispatchedWaitOf>
): Promise<QueueWait | null> {
  return summed(await dispatchedWaitOf(...args));
}

/** A pool shard's wait: shards ahead over the pool's rate; null when it is not waiting. */
export async function shardWait(
  ...args: Parameters<typeof shardWaitOf>
): Promise<QueueWait | null> {
  return summed(await shardWaitOf(...args));
}

/** A pool's rate and workers now, for shardWait (pools.ts poolRate). */
export async function poolRate(
  redis: Redis,
  keys: Keys,
  pool: string,
  now: number = Date.now(),
): Promise<{ shardsPerSecond: number; workers: number; running: number }> {
  const workers = (await readWorkers(redis, keys, pool)).filter(
    (w) => now - Date.parse(w.heartbeatAt) < WORKER_STALE_MS && w.state !== 'draining',
  );
  const serving = workers.filter((w) => w.state === 'busy' || w.state === 'idle').length;
  const { shardsPerSecond } = await poolShardRate(redis, keys, pool, serving, now);
  return {
    shardsPerSecond,
    workers: workers.length,
    running: workers.filter((w) => w.state === 'busy').length,
  };
}

/** "3 ahead in train, 2 of 2 slots busy: starts in about 14 min". */
export function describeWait(w: Omit<QueueWait, 'summary'>): string {
  if (w.position === null)
    return `retry in ${w.queue} waits for its backoff: starts in about ${formatSeconds(w.startsInSeconds ?? 0)}`;
  const where = w.ahead === 0 ? `next in ${w.queue}` : `${w.ahead} ahead in ${w.queue}`;
  const busy =
    w.slots === null
      ? `${w.running} running`
      : `${w.running} of ${w.slots} ${w.queue.startsWith(poolQueueName('')) ? 'workers' : 'slots'} busy`;
  const when =
    w.startsInSeconds === null
      ? `no estimate (${w.basis})`
      : w.startsInSeconds < 1
        ? 'starts now'
        : `starts in about ${formatSeconds(w.startsInSeconds)}`;
  return `${where}, ${busy}: ${when}`;
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/**
 * The wait of a stage's next job: its task's (dispatched), or its first shard's still
 * queued (pulled: shards are queued in order); null when none is queued.
 */
export async function stageWait(
  redis: Redis,
  keys: Keys,
  st: StageStatus,
  statuses: Record<string, TaskStatus>,
  queue: string,
): Promise<QueueWait | null> {
  const next = st.tasks.find((id) => statuses[id]?.phase === 'Pending');
  if (!next) return null;
  if (!st.shards) return dispatchedWait(redis, keys, queue, next);
  return shardWait(redis, keys, queue, next, await poolRate(redis, keys, st.shards.pool));
}

/**
 * The wait of the first stage whose next job is queued and nothing of it runs yet: a
 * dispatched stage's task, a pulled stage's first shard (one status read per stage, so
 * that a list of runs stays cheap).
 */
export async function runWaiting(
  store: RunStore,
  stages: Record<string, StageStatus>,
): Promise<string | null> {
  for (const st of Object.values(stages)) {
    if (isTerminal(st.phase) || st.tasks.length === 0) continue;
    if (st.shards && st.shards.succeeded + st.shards.failed > 0) continue;
    const first = st.tasks[0] as string;
    const statuses = await store.getTaskStatuses([first]);
    const queue = st.shards ? poolQueueName(st.shards.pool) : statuses[first]?.queue;
    if (!queue) continue;
    const w = await stageWait(store.redis, store.keys, { ...st, tasks: [first] }, statuses, queue);
    if (w) return w.summary;
  }
  return null;
}
