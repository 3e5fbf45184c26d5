/**
 * Pools of warm workers (pulled execution): their records in Redis, manual scaling (the
 * pin), and the view `stoker pools`, the API and the dashboard show.
 *
 *   pools                 set   pool names
 *   pool:{name}           hash  the settings, written when a stage first registers the pool
 *                               (and by a take-over, pool-settings.ts): minReplicas
 *                               maxReplicas replicas resources(JSON) autoscale(JSON, '' =
 *                               none); declaredBy (`${runId}/${stage}` of the last stage that
 *                               registered it with these settings, whose spec the
 *                               kubernetes backend builds the pool's pods from) updatedAt;
 *                               pin(JSON PoolPin, `stoker scale`; absent = automatic);
 *                               the controller's: desired decision(JSON PoolDecision)
 *                               autoscaler(JSON AutoscalerMemory)
 *   pool:{name}:users     set   `${runId}/${stage}` of the stages using it now
 *   pool:{name}:procs     hash  workerId -> {pid, pidStartTime, startedAt, draining} (local
 *                               backend; the kubernetes backend's record is the Jobs)
 *   pool:{name}:workers   hash  workerId -> WorkerState (the worker)
 *   pool:{name}:completions zset shard completions (score: ms; member
 *                               `${taskId}:${attempt}:${serviceMs}`), for shards per second
 *                               and the autoscaler's shard durations
 *
 * Pools keep their settings across runs: a later stage that uses the pool changes none of
 * them (nor a pin), and a spec that declares other settings is refused at submit unless
 * it takes the pool over (pool-settings.ts).
 */
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { UsageError } from '../common/errors.js';
import { poolQueueName, type Keys } from '../common/keys.js';
import { observeCompletions } from './autoscale/service-time.js';
import { nowIso } from '../common/model.js';
import { WorkerState } from '../common/worker-state.js';
import { NormalizedAutoscale, Resources, type NormalizedPool } from '../common/spec/schema.js';
import { type ActivePin } from './autoscale/decide.js';
import { AutoscalerMemory, PoolDecision, PoolPin } from './autoscale/records.js';

export interface PoolRecord {
  name: string;
  minReplicas: number;
  maxReplicas: number;
  /** A fixed pool's size while a stage uses it; an autoscaled one's start. */
  replicas: number;
  resources: Resources;
  autoscale: NormalizedAutoscale | null;
  /** The replicas the controller last asked of the backend. */
  desired: number;
  /** `${runId}/${stage}` of the stage that last registered the pool (see PoolSpec). */
  declaredBy: string | undefined;
  pin: PoolPin | null;
  decision: PoolDecision | null;
  memory: AutoscalerMemory | null;
}

/** A worker whose heartbeat is older than this is counted as gone. */
export const WORKER_STALE_MS = 15_000;

/** A JSON field of the pool hash checked against its schema (null: absent or not what we wrote). */
function field<T>(schema: z.ZodType<T>, raw: string | undefined): T | null {
  if (!raw) return null;
  try {
    const parsed = schema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** The settings a spec gives a pool, as the hash holds them. */
export function poolSettingsFields(pool: NormalizedPool): Record<string, string> {
  return {
    minReplicas: String(pool.minReplicas),
    maxReplicas: String(pool.maxReplicas),
    replicas: String(pool.replicas),
    resources: JSON.stringify(pool.resources),
    autoscale: pool.autoscale ? JSON.stringify(pool.autoscale) : '',
  };
}

/**
 * The stage `user` (`${runId}/${stage}`) uses the pool. A new pool takes the spec's
 * settings (and starts at its replicas); a live one keeps its own, unless `takeOver`
 * (the run was submitted with --take-over-pools), which replaces them. Returns what
 * differed and whether the spec's settings were applied.
 */
export async function registerPool(
  redis: Redis,
  keys: Keys,
  pool: NormalizedPool,
  user: string,
  opts: { takeOver?: boolean } = {},
): Promise<{ differences: string[]; applied: boolean }> {
  const live = await readPool(redis, keys, pool.name);
  const differences = live ? poolDifferences(live, pool) : [];
  const apply = !live || (differences.length > 0 && opts.takeOver === true);
  const multi = redis.multi().sadd(keys.pools(), pool.name).sadd(keys.poolUsers(pool.name), user);
  if (apply) {
    multi.hset(keys.pool(pool.name), {
      ...poolSettingsFields(pool),
      declaredBy: user,
      updatedAt: nowIso(),
    });
    if (!live) multi.hset(keys.pool(pool.name), 'desired', String(pool.replicas));
    // A pin outside the new bounds ends with the take-over.
    if (live?.pin && (live.pin.replicas < pool.minReplicas || live.pin.replicas > pool.maxReplicas))
      multi.hdel(keys.pool(pool.name), 'pin');
  } else if (differences.length === 0) {
    multi.hset(keys.pool(pool.name), { declaredBy: user, updatedAt: nowIso() });
  }
  await multi.exec();
  return { differences, applied: apply };
}

/**
 * What differs between a live pool's settings and a spec's, one line each:
 * `maxReplicas: 4 (live) vs 8 (spec)`. Empty: the same pool.
 */
export function poolDifferences(live: PoolRecord, spec: NormalizedPool): string[] {
  const settings = (
    p: Pick<PoolRecord, 'minReplicas' | 'maxReplicas' | 'resources' | 'replicas'> & {
      autoscale?: NormalizedAutoscale | null | undefined;
    },
  ) => ({
    minReplicas: p.minReplicas,
    maxReplicas: p.maxReplicas,
    // An autoscaled pool's replicas is only where it starts: not a setting to compare.
    ...(p.autoscale ? {} : { replicas: p.replicas }),
    resources: p.resources,
    autoscale: p.autoscale ?? null,
  });
  return differences(settings(live), settings(spec), '');
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);
const shown = (v: unknown) => (v === undefined || v === null ? 'none' : JSON.stringify(v));

/** Leaf by leaf where both sides are objects; whole values where one is not. */
function differences(a: unknown, b: unknown, path: string): string[] {
  if (isObject(a) && isObject(b))
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((k) =>
      differences(a[k], b[k], path ? `${path}.${k}` : k),
    );
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null)
    ? []
    : [`${path}: ${shown(a)} (live) vs ${shown(b)} (spec)`];
}

export async function readPool(redis: Redis, keys: Keys, name: string): Promise<PoolRecord | null> {
  const h = await redis.hgetall(keys.pool(name));
  if (!h.maxReplicas) return null;
  const minReplicas = Number(h.minReplicas ?? 0);
  const desired = Number(h.desired ?? h.minReplicas ?? 0);
  return {
    name,
    minReplicas,
    maxReplicas: Number(h.maxReplicas),
    // Pools registered before `replicas` was kept: their desired was it.
    replicas: h.replicas === undefined ? desired : Number(h.replicas),
    resources: field(Resources, h.resources) ?? { gpus: 0, nodes: 1 },
    autoscale: field(NormalizedAutoscale, h.autoscale),
    desired,
    declaredBy: h.declaredBy || undefined,
    pin: field(PoolPin, h.pin),
    decision: field(PoolDecision, h.decision),
    memory: field(AutoscalerMemory, h.autoscaler),
  };
}

/** A pin as the decision takes it. */
export function activePin(pin: PoolPin | null): ActivePin | null {
  return pin ? { replicas: pin.replicas, untilMs: pin.until ? Date.parse(pin.until) : null } : null;
}

async function mustReadPool(redis: Redis, keys: Keys, name: string): Promise<PoolRecord> {
  const pool = await readPool(redis, keys, name);
  if (pool) return pool;
  const known = await redis.smembers(keys.pools());
  throw new UsageError(
    `no pool "${name}" (known pools: ${known.length ? known.sort().join(', ') : 'none yet; a pool exists once a stage that uses it has started'})`,
  );
}

/**
 * `stoker scale POOL --replicas N [--for D]`: pin the pool at N, within its bounds (else a
 * UsageError and no change), until `stoker scale POOL --auto` or for `forSeconds`. The
 * controller applies it at its next pass (woken here).
 */
export async function scalePool(
  redis: Redis,
  keys: Keys,
  name: string,
  replicas: number,
  opts: { forSeconds?: number; by?: string; now?: number } = {},
): Promise<PoolRecord> {
  if (!Number.isInteger(replicas) || replicas < 0)
    throw new UsageError(`--replicas must be a whole number >= 0, not ${replicas}`);
  const pool = await mustReadPool(redis, keys, name);
  if (replicas < pool.minReplicas || replicas > pool.maxReplicas) {
    throw new UsageError(
      `pool ${name} takes ${pool.minReplicas} to ${pool.maxReplicas} replicas; ${replicas} is outside its bounds (nothing changed)`,
    );
  }
  const now = opts.now ?? Date.now();
  const pin: PoolPin = {
    replicas,
    at: new Date(now).toISOString(),
    until:
      opts.forSeconds === undefined ? null : new Date(now + opts.forSeconds * 1000).toISOString(),
    by: opts.by ?? 'cli',
  };
  await redis
    .multi()
    .hset(keys.pool(name), 'pin', JSON.stringify(pin))
    .publish(keys.wakeChannel(), `pool:${name}`)
    .exec();
  return { ...pool, pin };
}

/** `stoker scale POOL --auto`: end the pin; the autoscaler (or a fixed pool's size) decides again. */
export async function unpinPool(redis: Redis, keys: Keys, name: string): Promise<PoolRecord> {
  const pool = await mustReadPool(redis, keys, name);
  await redis
    .multi()
    .hdel(keys.pool(name), 'pin')
    .publish(keys.wakeChannel(), `pool:${name}`)
    .exec();
  return { ...pool, pin: null };
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
  /**
   * Idle: no worker and none wanted (no stage uses a fixed pool, or an autoscaled one's
   * queue has been empty for its idleTimeout); ScalingUp / ScalingDown: workers on the
   * way to `desired`; Ready: `desired` workers up.
   */
  status: z.enum(['Idle', 'ScalingUp', 'ScalingDown', 'Ready']),
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
  /**
   * The pool's rate now (poolRate): its serving workers over the seconds a shard takes
   * one worker, else the completions of the last minute.
   */
  shardsPerSecond: z.number(),
  /** Seconds to finish the backlog and the running shards at that rate; null without one. */
  etaSeconds: z.number().nullable(),
  users: z.array(z.string()),
  /** The autoscale settings (null: a fixed pool of `replicas` while in use). */
  autoscale: NormalizedAutoscale.nullable(),
  replicas: z.number().int(),
  /** A manual size from `stoker scale` (null: automatic). */
  pin: PoolPin.nullable(),
  /** The controller's last decision: replicas, reason, conditions, inputs. */
  decision: PoolDecision.nullable(),
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
  const running = workers.length;
  const { shardsPerSecond } = await poolRate(redis, keys, name, by('idle') + by('busy'), now);
  const serving = running - by('draining');
  return {
    name,
    minReplicas: pool.minReplicas,
    maxReplicas: pool.maxReplicas,
    desired: pool.desired,
    status:
      pool.desired === 0 && running === 0
        ? 'Idle'
        : serving < pool.desired
          ? 'ScalingUp'
          : running > pool.desired
            ? 'ScalingDown'
            : 'Ready',
    running,
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
    autoscale: pool.autoscale,
    replicas: pool.replicas,
    pin: pool.pin,
    decision: pool.decision,
    workers,
  };
}

/** Shard durations the rate is taken from: the pool's last completions. */
const RATE_SAMPLES = 20;

/**
 * A pool's rate now, in shards per second: the workers serving now (idle or busy, not
 * starting or draining) over the seconds a shard takes one worker, the EWMA of the
 * durations of its last completions (autoscale/service-time.ts: right from the first
 * finished shard, and right after a scale, where completions per minute lag a minute
 * behind). Without durations (older workers), the completions of the last minute.
 */
export async function poolRate(
  redis: Redis,
  keys: Keys,
  name: string,
  serving: number,
  now = Date.now(),
): Promise<{ shardsPerSecond: number; shardSeconds: number | null }> {
  const last = await redis.zrevrange(keys.poolCompletions(name), 0, RATE_SAMPLES - 1, 'WITHSCORES');
  const oldestFirst: Array<[string, number]> = [];
  for (let i = last.length - 2; i >= 0; i -= 2)
    oldestFirst.push([last[i] as string, Number(last[i + 1])]);
  const { seconds } = observeCompletions({ seconds: null, samples: 0, cursorMs: 0 }, oldestFirst);
  if (seconds !== null && seconds > 0)
    return { shardsPerSecond: serving / seconds, shardSeconds: seconds };
  const lastMinute = await redis.zcount(keys.poolCompletions(name), now - 60_000, '+inf');
  return { shardsPerSecond: lastMinute / 60, shardSeconds: null };
}
