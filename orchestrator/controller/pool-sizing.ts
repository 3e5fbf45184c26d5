/**
 * Pools as the controller uses them (pulled execution; the records are orchestrator/pools.ts,
 * the decision orchestrator/autoscale/).
 *
 *   claimPool    a pulled stage starts: register the pool with the stage as a user
 *                (`${runId}/${stage}` in pool:{name}:users; a live pool keeps its settings
 *                unless the run takes it over), then size pools at once, so that its
 *                workers load while the shards are being queued
 *   releasePool  the stage is done (finished, failed or cancelled): it no longer uses it
 *   sizePools    every pool, each pass of the leader (controller.ts runs it after the
 *                runs, so a pass that queued shards sizes their pool before it ends: a
 *                backlog spike becomes a replica request in the same pass):
 *                  1. observe: the record (settings, pin, memory), the stages using it, the
 *                     true backlog of its queue (waiting + prioritized + delayed + active;
 *                     a paused queue's waiting shards cannot be taken and do not count),
 *                     its workers, the shard durations completed since the last pass
 *                  2. decide (pure): autoscale/decide.ts, or a fixed pool's size; a pin
 *                     that has ended is removed
 *                  3. converge: the backend's ensurePool (none: nothing to size); a
 *                     failure is the decision's AbleToScale False, FailedRescale
 *                  4. write the decision, `desired` and the memory, each only if it
 *                     changed; a change of size or reason is published on the changes
 *                     channel (`pool:NAME`: the API's event stream; not the controller's
 *                     wake channel, which would wake this loop again)
 */
import type { Logger } from '../../common/logger.js';
import type { NormalizedPool } from '../../common/spec/schema.js';
import { decide, fixedDecision, type Backlog } from '../autoscale/decide.js';
import { emptyMemory, type PoolDecision } from '../autoscale/records.js';
import { observeCompletions } from '../autoscale/service-time.js';
import {
  activePin,
  readPool,
  readWorkers,
  registerPool,
  WORKER_STALE_MS,
  type PoolRecord,
} from '../pools.js';
import type { ControllerContext } from './context.js';

/** A pool queue's counts (queue-counts.ts queueBacklog). */
export type BacklogOf = (pool: string) => Promise<Backlog & { paused: boolean }>;

/** Completions read per pass at most: the rest are read by the next pass. */
const COMPLETIONS_PER_PASS = 1000;

export async function sizePools(ctx: ControllerContext, backlogOf: BacklogOf): Promise<void> {
  if (!ctx.backend?.ensurePool) return;
  for (const name of await ctx.redis.smembers(ctx.keys.pools())) {
    try {
      await sizePool(ctx, name, backlogOf);
    } catch (err) {
      ctx.log.warn({ err, pool: name }, 'cannot size pool');
    }
  }
}

async function sizePool(ctx: ControllerContext, name: string, backlogOf: BacklogOf) {
  const { redis, keys, backend, log } = ctx;
  // 1. Observe.
  const pool = await readPool(redis, keys, name);
  if (!pool || !backend?.ensurePool) return;
  const now = ctx.clock();
  const counts = await backlogOf(name);
  const backlog: Backlog = counts.paused
    ? { waiting: 0, prioritized: 0, delayed: 0, active: counts.active }
    : counts;
  let pin = activePin(pool.pin);
  if (pin?.untilMs !== null && pin !== null && pin.untilMs <= now) {
    await redis.hdel(keys.pool(name), 'pin');
    log.info({ pool: name, replicas: pin.replicas }, 'pool pin ended');
    pin = null;
  }
  // 2. Decide.
  const { decision, memory } = pool.autoscale
    ? await autoscaled(ctx, pool, backlog, pin, now)
    : {
        decision: fixedDecision({
          nowMs: now,
          minReplicas: pool.minReplicas,
          maxReplicas: pool.maxReplicas,
          replicas: pool.replicas,
          users: await redis.scard(keys.poolUsers(name)),
          backlog,
          pin,
        }),
        memory: null,
      };
  const stamped: PoolDecision = { ...decision, at: new Date(now).toISOString() };
  // 3. Converge.
  try {
    await backend.ensurePool(pool, decision.desired);
  } catch (err) {
    log.warn({ err, pool: name, desired: decision.desired }, 'cannot resize pool');
    stamped.conditions = stamped.conditions.map((c) =>
      c.type === 'AbleToScale'
        ? { ...c, status: 'False', reason: 'FailedRescale', message: (err as Error).message }
        : c,
    );
  }
  // 4. Write what changed.
  await writeDecision(ctx, pool, stamped, memory, log);
}

/** Step 2 for an autoscaled pool: the shard durations since the last pass, then decide(). */
async function autoscaled(
  ctx: ControllerContext,
  pool: PoolRecord,
  backlog: Backlog,
  pin: ReturnType<typeof activePin>,
  now: number,
) {
  const { redis, keys } = ctx;
  const prev = pool.memory ?? emptyMemory(pool.desired);
  const raw = await redis.zrangebyscore(
    keys.poolCompletions(pool.name),
    `(${prev.service.cursorMs}`,
    '+inf',
    'WITHSCORES',
    'LIMIT',
    0,
    COMPLETIONS_PER_PASS,
  );
  const completions: Array<[string, number]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2)
    completions.push([raw[i] as string, Number(raw[i + 1])]);
  const workers = (await readWorkers(redis, keys, pool.name)).filter(
    (w) => now - Date.parse(w.heartbeatAt) < WORKER_STALE_MS,
  );
  const count = (s: string) => workers.filter((w) => w.state === s).length;
  const { memory, ...decision } = decide({
    nowMs: now,
    minReplicas: pool.minReplicas,
    maxReplicas: pool.maxReplicas,
    autoscale: pool.autoscale as NonNullable<PoolRecord['autoscale']>,
    backlog,
    workers: {
      ready: count('idle') + count('busy'),
      starting: count('starting'),
      busy: count('busy'),
      draining: count('draining'),
    },
    memory: { ...prev, service: observeCompletions(prev.service, completions) },
    pin,
  });
  return { decision, memory };
}

/** Step 4: the decision, desired and memory, each only if it changed; a notice on a new size or reason. */
async function writeDecision(
  ctx: ControllerContext,
  pool: PoolRecord,
  decision: PoolDecision,
  memory: PoolRecord['memory'],
  log: Logger,
): Promise<void> {
  const { redis, keys } = ctx;
  const fields: Record<string, string> = {};
  const { at: _at, ...now } = decision;
  const before = pool.decision ? (({ at: _a, ...rest }) => rest)(pool.decision) : null;
  if (JSON.stringify(now) !== JSON.stringify(before)) fields.decision = JSON.stringify(decision);
  if (decision.desired !== pool.desired) fields.desired = String(decision.desired);
  if (memory && JSON.stringify(memory) !== JSON.stringify(pool.memory))
    fields.autoscaler = JSON.stringify(memory);
  if (Object.keys(fields).length === 0) return;
  const multi = redis.multi().hset(keys.pool(pool.name), fields);
  const noticed = decision.desired !== pool.desired || decision.reason !== pool.decision?.reason;
  if (noticed) multi.publish(keys.changesChannel(), `pool:${pool.name}`);
  await multi.exec();
  if (decision.desired !== pool.desired)
    log.info(
      {
        pool: pool.name,
        from: pool.desired,
        to: decision.desired,
        reason: decision.reason,
        message: decision.message,
      },
      'pool resized',
    );
}

/**
 * Register `user` (`${runId}/${stage}`) on the pool, then size pools (a failure is logged).
 * A live pool with other settings keeps its own unless `takeOver`; that is logged.
 */
export async function claimPool(
  ctx: ControllerContext,
  pool: NormalizedPool,
  user: string,
  opts: { takeOver: boolean; backlogOf: BacklogOf },
): Promise<void> {
  const { differences, applied } = await registerPool(ctx.redis, ctx.keys, pool, user, {
    takeOver: opts.takeOver,
  });
  if (differences.length)
    ctx.log.warn(
      { pool: pool.name, user, differences },
      applied
        ? 'the run takes the pool over: its settings replace the live ones'
        : "the pool keeps its live settings, not the spec's",
    );
  await sizePools(ctx, opts.backlogOf).catch((err: unknown) =>
    ctx.log.warn({ err }, 'cannot size pools'),
  );
}

export async function releasePool(
  ctx: ControllerContext,
  pool: string,
  user: string,
): Promise<void> {
  await ctx.redis.srem(ctx.keys.poolUsers(pool), user);
}
