/**
 * Pools of warm workers (pulled execution): their records in Redis, manual scaling, and
 * the view `stoker pools` prints.
 *
 *   pools                 set   pool names
 *   pool:{name}           hash  minReplicas maxReplicas desired resources(JSON) declaredBy
 *                               updatedAt (the controller registers it; `stoker scale` sets
 *                               desired; declaredBy: `${runId}/${stage}` of the last stage
 *                               that registered it, whose spec the kubernetes backend builds
 *                               the pool's pods from)
 *   pool:{name}:users     set   `${runId}/${stage}` of the stages using it now
 *   pool:{name}:procs     hash  workerId -> {pid, pidStartTime, startedAt, draining} (local
 *                               backend; the kubernetes backend's record is the Jobs)
 *   pool:{name}:workers   hash  workerId -> {state, shard, since, heartbeatAt, shardsDone} (the worker)
 *   pool:{name}:completions zset shard completions (score: ms), for shards per second
 */
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { UsageError } from '../common/errors.js';
import { poolQueueName, type Keys } from '../common/keys.js';
import { nowIso } from '../common/model.js';
import { WorkerState } from '../common/worker-state.js';
import type { NormalizedPool, Resources } from '../common/spec/schema.js';

export interface PoolRecord {
  name: string;
  minReplicas: number;
  maxReplicas: number;
  desired: number;
  resources: Resources;
  /** `${runId}/${stage}` of the stage that last registered the pool (see PoolSpec). */
  declaredBy: string | undefined;
}

/** A worker whose heartbeat is older than this is counted as gone. */
export const WORKER_STALE_MS = 15_000;

export async function registerPool(
  redis: Redis,
  keys: Keys,
  pool: NormalizedPool,
  user: string,
): Promise<void> {
  const firstUser = (await redis.scard(keys.poolUsers(pool.name))) === 0;
  const multi = redis
    .multi()
    .sadd(keys.pools(), pool.name)
    .hset(keys.pool(pool.name), {
      minReplicas: String(pool.minReplicas),
      maxReplicas: String(pool.maxReplicas),
      resources: JSON.stringify(pool.resources),
      declaredBy: user,
      updatedAt: nowIso(),
    })
    .sadd(keys.poolUsers(pool.name), user);
  // A pool that comes back into use starts at its spec's replicas; while in use, a manual
  // `stoker scale` is kept.
  if (firstUser) multi.hset(keys.pool(pool.name), 'desired', String(pool.replicas));
  else multi.hsetnx(keys.pool(pool.name), 'desired', String(pool.replicas));
  await multi.exec();
}

export async function readPool(redis: Redis, keys: Keys, name: string): Promise<PoolRecord | null> {
  const h = await redis.hgetall(keys.pool(name));
  if (!h.maxReplicas) return null;
  return {
    name,
    minReplicas: Number(h.minReplicas ?? 0),
    maxReplicas: Number(h.maxReplicas),
    desired: Number(h.desired ?? h.minReplicas ?? 0),
    resources: h.resources ? (JSON.parse(h.resources) as Resources) : { gpus: 0, nodes: 1 },
    declaredBy: h.declaredBy || undefined,
  };
}

/** `stoker scale POOL --replicas N`: within the pool's bounds, or a UsageError and no change. */
export async function scalePool(
  redis: Redis,
  keys: Keys,
  name: string,
  replicas: number,
): Promise<PoolRecord> {
  if (!Number.isInteger(replicas) || replicas < 0)
    throw new UsageError(`--replicas must be a whole number >= 0, not ${replicas}`);
  const pool = await readPool(redis, keys, name);
  if (!pool) {
    const known = await redis.smembers(keys.pools());
    throw new UsageError(
      `no pool "${name}" (known pools: ${known.length ? known.sort().join(', ') : 'none yet; a pool exists once a stage that uses it has started'})`,
    );
  }
  if (replicas < pool.minReplicas || replicas > pool.maxReplicas) {
    throw new UsageError(
      `pool ${name} takes ${pool.minReplicas} to ${pool.maxReplicas} replicas; ${replicas} is outside its bounds (nothing changed)`,
    );
  }
  await redis
    .multi()
    .hset(keys.pool(name), 'desired', String(replicas))
    .publish(keys.wakeChannel(), `pool:${name}`)
    .exec();
  return { ...pool, desired: replicas };
}

export async function readWorkers(redis: Redis, keys: Keys, name: string): Promise<WorkerState[]> {
  const raw = await redis.hvals(keys.poolWorkers(name));
  return raw.flatMap((r) => {
    const parsed = WorkerState.safeParse(JSON.parse(r));
    return parsed.success ? [parsed.data] : [];
  });
}

export const PoolView = z.object({
  name: z.string(),
  minReplicas: z.number().int(),
  maxReplicas: z.number().int(),
  desired: z.number().int(),
  /** Workers alive (a fresh heartbeat), by state. */
  running: z.number().int(),
  busy: z.number().int(),
  idle: z.number().int(),
  starting: z.number().int(),
  draining: z.number().int(),
  /** waiting + prioritized + delayed shards in the pool's queue. */
  backlog: z.number().int(),
  active: z.number().int(),
  /** The pool's queue is paused: its workers take no shard until it is resumed. */
  paused: z.boolean(),
  shardsPerSecond: z.number(),
  /** Seconds to finish the backlog at the rate of the last minute; null without a rate. */
  etaSeconds: z.number().nullable(),
  users: z.array(z.string()),
  workers: z.array(WorkerState),
});
export type PoolView = z.infer<typeof PoolView>;

export async function buildPoolView(
  redis: Redis,
  keys: Keys,
  name: string,
  counts: (queue: string) => Promise<{
    waiting: number;
    prioritized: number;
    delayed: number;
    active: number;
    paused?: boolean;
  }>,
  now = Date.now(),
): Promise<PoolView | null> {
  const pool = await readPool(redis, keys, name);
  if (!pool) return null;
  const workers = (await readWorkers(redis, keys, name)).filter(
    (w) => now - Date.parse(w.heartbeatAt) < WORKER_STALE_MS,
  );
  const by = (s: WorkerState['state']) => workers.filter((w) => w.state === s).length;
  const c = await counts(poolQueueName(name));
  const backlog = c.waiting + c.prioritized + c.delayed;
  const lastMinute = await redis.zcount(keys.poolCompletions(name), now - 60_000, '+inf');
  const shardsPerSecond = lastMinute / 60;
  return {
    name,
    minReplicas: pool.minReplicas,
    maxReplicas: pool.maxReplicas,
    desired: pool.desired,
    running: workers.length,
    busy: by('busy'),
    idle: by('idle'),
    starting: by('starting'),
    draining: by('draining'),
    backlog,
    active: c.active,
    paused: c.paused ?? false,
    shardsPerSecond,
    etaSeconds: shardsPerSecond > 0 ? (backlog + c.active) / shardsPerSecond : null,
    users: await redis.smembers(keys.poolUsers(name)),
    workers,
  };
}
