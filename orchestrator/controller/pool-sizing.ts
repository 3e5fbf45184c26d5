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
 *                  3. converge: the backend's ensurePool (none: nothing to size), the
 *                     pools that shrink first; a failure is the decision's AbleToScale
 *                     False, FailedRescale
 *                  4. write the decision, `desired` and the memory, each only if it
 *                     changed; a change of size or reason is published on the changes
 *                     channel (`pool:NAME`: the API's event stream; not the controller's
 *                     wake channel, which would wake this loop again)
 */
import type { Logger } from '../../common/logger.js';
import type { NormalizedPool } from '../../common/spec/schema.js';
import { isTerminal } from '../../common/model.js';
import { allocateGpus, backlogGpuSeconds, type TrainingDemand } from '../autoscale/budget.js';
import { decide, fixedDecision, type Backlog, type Decision } from '../autoscale/decide.js';
import { applyLimits, type Limit } from '../autoscale/limits.js';
import {
  limitByProvisioning,
  observeProvisioning,
  podStartSeconds,
  podView,
} from '../autoscale/provisioning.js';
import { DEFAULT_AUTOSCALE_SETTINGS } from '../autoscale/settings.js';
import { emptyMemory, type PoolDecision } from '../autoscale/records.js';
import { observeCompletions } from '../autoscale/service-time.js';
import { startupOfWorkers } from '../autoscale/startup.js';
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
  const planned: Planned[] = [];
  for (const name of await ctx.redis.smembers(ctx.keys.pools())) {
    try {
      const p = await planPool(ctx, name, backlogOf);
      if (p) planned.push(p);
    } catch (err) {
      ctx.log.warn({ err, pool: name }, 'cannot size pool');
    }
  }
  try {
    await limitPools(ctx, planned);
  } catch (err) {
    ctx.log.warn({ err }, 'cannot apply the GPU budget or the pods’ provisioning to pools');
  }
  // Shrinking pools first: a pool that grows into GPUs another gives up in the same pass
  // (the GPU budget's shares moved) is asked for after they are released, never before.
  const shrinking = (p: Planned) => (p.decision.desired < p.pool.desired ? 0 : 1);
  for (const p of [...planned].sort((a, b) => shrinking(a) - shrinking(b))) {
    try {
      await convergePool(ctx, p);
    } catch (err) {
      ctx.log.warn({ err, pool: p.pool.name }, 'cannot size pool');
    }
  }
}

/** A pool after steps 1-2, before the limits across pools (limits.ts) and step 3. */
interface Planned {
  pool: PoolRecord;
  now: number;
  backlog: Backlog;
  decision: Decision;
  /** The autoscaler's memory to keep (null: a fixed pool keeps none). */
  keepMemory: boolean;
  workers: { alive: number; draining: number };
}

async function planPool(
  ctx: ControllerContext,
  name: string,
  backlogOf: BacklogOf,
): Promise<Planned | null> {
  const { redis, keys, backend, log } = ctx;
  // 1. Observe.
  const pool = await readPool(redis, keys, name);
  if (!pool || !backend?.ensurePool) return null;
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
  const workers = (await readWorkers(redis, keys, name)).filter(
    (w) => now - Date.parse(w.heartbeatAt) < WORKER_STALE_MS,
  );
  const draining = workers.filter((w) => w.state === 'draining').length;
  // 2. Decide.
  if (pool.autoscale) {
    const decision = await autoscaled(ctx, pool, backlog, pin, now);
    return {
      pool,
      now,
      backlog,
      decision,
      keepMemory: true,
      workers: { alive: workers.length - draining, draining },
    };
  }
  const fixed = fixedDecision({
    nowMs: now,
    minReplicas: pool.minReplicas,
    maxReplicas: pool.maxReplicas,
    replicas: pool.replicas,
    users: await redis.scard(keys.poolUsers(name)),
    backlog,
    pin,
  });
  return {
    pool,
    now,
    backlog,
    decision: { ...fixed, memory: emptyMemory(pool.desired) },
    keepMemory: false,
    workers: { alive: workers.length - draining, draining },
  };
}

/**
 * The limits across pools, each lowering a decision with its reason (autoscale/limits.ts):
 *   - provisioning (a backend that knows its pods: Kubernetes): pods still pending count
 *     as capacity on the way; while the scheduler cannot place one the pool asks for no
 *     more, and one unschedulable for longer than the setting is no longer counted and
 *     is reported with the scheduler's message (autoscale/provisioning.ts);
 *   - the GPU budget (STOKER_GPU_BUDGET, STOKER_GPU_BUDGET_QUEUES): the GPU pools share
 *     it by their backlog in GPU-seconds, after the GPUs of training stages running or
 *     waiting (autoscale/budget.ts).
 */
async function limitPools(ctx: ControllerContext, planned: Planned[]): Promise<void> {
  const settings = ctx.autoscale ?? DEFAULT_AUTOSCALE_SETTINGS;
  const limits = new Map<string, Limit[]>();
  const add = (pool: string, l: Limit) => limits.set(pool, [...(limits.get(pool) ?? []), l]);
  // Provisioning.
  const poolPods = ctx.backend?.poolPods?.bind(ctx.backend);
  if (poolPods) {
    for (const p of planned) {
      const prov = observeProvisioning(
        poolPods(p.pool.name).map(podView),
        p.now,
        settings.unschedulableAfterSeconds,
      );
      const lim = limitByProvisioning(p.decision.desired, prov, settings.unschedulableAfterSeconds);
      if (lim.condition)
        add(p.pool.name, {
          replicas: lim.desired,
          reason: lim.condition.reason,
          message: lim.condition.message,
        });
    }
  }
  // The GPU budget.
  const { budget } = settings;
  const gpuPools = planned.filter((p) => p.pool.resources.gpus > 0);
  if ((budget.controller !== null || Object.keys(budget.queues).length > 0) && gpuPools.length) {
    const queues = new Map<string, string | undefined>();
    for (const p of gpuPools) queues.set(p.pool.name, await poolQueueName(ctx, p.pool));
    const allocation = allocateGpus({
      budget,
      pools: gpuPools.map((p) => ({
        name: p.pool.name,
        gpusPerWorker: p.pool.resources.gpus,
        desired: Math.min(
          p.decision.desired,
          ...(limits.get(p.pool.name) ?? []).map((l) => l.replicas),
        ),
        backlogGpuSeconds: backlogGpuSeconds(
          p.backlog.waiting + p.backlog.prioritized + p.backlog.delayed + p.backlog.active,
          p.decision.inputs.shardSeconds,
          p.pool.resources.gpus,
        ),
        queue: queues.get(p.pool.name),
        workers: p.workers.alive,
        draining: p.workers.draining,
      })),
      training: await trainingDemand(ctx),
    });
    for (const g of allocation.pools)
      if (g.reason && g.message)
        add(g.name, { replicas: g.replicas, reason: g.reason, message: g.message });
  }
  for (const p of planned) {
    const ls = limits.get(p.pool.name);
    if (ls) p.decision = applyLimits(p.decision, p.pool.desired, p.now, ls);
  }
}

/** The Kueue LocalQueue a pool's worker Jobs name: its declaring stage's. */
async function poolQueueName(
  ctx: ControllerContext,
  pool: PoolRecord,
): Promise<string | undefined> {
  if (!pool.declaredBy) return undefined;
  const slash = pool.declaredBy.lastIndexOf('/');
  const run = await ctx.store.getRun(pool.declaredBy.slice(0, slash));
  const stage = run?.spec.stages.find((s) => s.name === pool.declaredBy?.slice(slash + 1));
  return stage?.kubernetes?.queueName;
}

/** The GPUs of training stages of active runs: running, or queued for their turn. */
async function trainingDemand(ctx: ControllerContext): Promise<TrainingDemand[]> {
  const out: TrainingDemand[] = [];
  for (const id of await ctx.store.activeRunIds()) {
    const run = await ctx.store.getRun(id);
    if (!run) continue;
    const stages = await ctx.store.getStages(id);
    for (const s of run.spec.stages) {
      const st = stages[s.name];
      if (s.pool || !(s.resources.gpus > 0) || !st || isTerminal(st.phase)) continue;
      if (st.tasks.length === 0) continue;
      out.push({
        name: `${id}/${s.name}`,
        gpus: s.resources.gpus * s.resources.nodes,
        queue: s.kubernetes?.queueName,
        state: st.phase === 'Running' ? 'running' : 'waiting',
      });
    }
  }
  return out;
}

/** Steps 3-4: the backend's ensurePool, then the decision written where it changed. */
async function convergePool(ctx: ControllerContext, p: Planned): Promise<void> {
  const { backend, log } = ctx;
  const { pool, decision } = p;
  const { memory, ...made } = decision;
  const stamped: PoolDecision = { ...made, at: new Date(p.now).toISOString() };
  // 3. Converge.
  try {
    await backend?.ensurePool?.(pool, decision.desired);
  } catch (err) {
    log.warn({ err, pool: pool.name, desired: decision.desired }, 'cannot resize pool');
    stamped.conditions = stamped.conditions.map((c) =>
      c.type === 'AbleToScale'
        ? { ...c, status: 'False', reason: 'FailedRescale', message: (err as Error).message }
        : c,
    );
  }
  // 4. Write what changed.
  await writeDecision(ctx, pool, stamped, p.keepMemory ? memory : null, log);
}

/** Step 2 for an autoscaled pool: the shard durations since the last pass, then decide(). */
async function autoscaled(
  ctx: ControllerContext,
  pool: PoolRecord,
  backlog: Backlog,
  pin: ReturnType<typeof activePin>,
  now: number,
): Promise<Decision> {
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
  return decide({
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
    startupSeconds: startupOf(ctx, pool.name, workers),
  });
}

/** Start-to-ready: the workers' process start to model loaded, plus the pods' start (Kubernetes). */
function startupOf(
  ctx: ControllerContext,
  pool: string,
  workers: Parameters<typeof startupOfWorkers>[0],
): number | null {
  const load = startupOfWorkers(workers);
  if (load === null) return null;
  const pods = ctx.backend?.poolPods?.(pool);
  return load + (pods ? (podStartSeconds(pods.map(podView)) ?? 0) : 0);
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
