/**
 * A complete stoker on one Redis: controller, dispatcher and a backend, composed.
 * `stoker up`, `stoker run` and the integration tests start one of these.
 */
import { ensurePrivateDir } from '../common/private-dir.js';
import { Queue, type ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { makeKeys, QUEUES, type DispatchQueue, type Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import { bullConnection, connectRedis } from '../common/redis.js';
import { LocalBackend } from './backends/local.js';
import type { Backend } from './backends/types.js';
import { Controller } from './controller/controller.js';
import { Dispatcher, type DispatchJobData } from './dispatcher.js';
import { autoscaleSettingsFromEnv, type AutoscaleSettings } from './autoscale/settings.js';
import { fencedRedis } from './fenced-redis.js';
import { acquireLeadership, type Leadership } from './leader.js';
import { RunStore } from './store.js';
import { bounded } from '../common/timers.js';

export interface SystemOptions {
  redisUrl: string;
  prefix?: string;
  log: Logger;
  concurrency?: { train: number; steps: number };
  /** The pools' GPU budget and provisioning setting (default: from the environment). */
  autoscale?: AutoscaleSettings;
  /** Wait this long for the controller lock (default: forever). */
  leaderWaitMs?: number;
  leaderTtlMs?: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  resyncMs?: number;
  /** Command that starts stoker for worker processes (tests may point at tsx). */
  stokerCommand?: string[];
  workerEnv?: NodeJS.ProcessEnv;
  /** stoker home (pool worker logs). */
  home?: string;
  /** The backend (default: local). May start asynchronously (informers). */
  backend?: (ctx: BackendContext) => Backend | Promise<Backend>;
}

/** What a backend factory gets: this stoker's Redis connection, keys, URL, log and store. */
export interface BackendContext {
  redis: Redis;
  keys: Keys;
  redisUrl: string;
  log: Logger;
  store: RunStore;
}

export interface System {
  redis: Redis;
  keys: Keys;
  store: RunStore;
  controller: Controller;
  dispatcher: Dispatcher;
  backend: Backend;
  queues: Record<DispatchQueue, Queue<DispatchJobData>>;
  leadership: Leadership;
  /** preempt: running payloads checkpoint and are requeued; force: killed. */
  stop(mode?: 'preempt' | 'force'): Promise<void>;
}

export const DEFAULT_CONCURRENCY = { train: 2, steps: 4 };

/**
 * Start a stoker: become the leader (or throw: another controller holds the lock), then
 * the queues, the backend, the dispatcher and the controller, in that order.
 */
export async function startSystem(opts: SystemOptions): Promise<System> {
  const { log } = opts;
  // Read first: a bad setting stops the start before anything is running.
  const autoscale = opts.autoscale ?? autoscaleSettingsFromEnv(process.env);
  if (opts.home && ensurePrivateDir(opts.home) === 'tightened')
    log.warn({ home: opts.home }, 'stoker home was open to other users: made private (0700)');
  const keys = makeKeys(opts.prefix);
  const redis = await connectRedis(opts.redisUrl, { name: 'stoker-controller' });
  const subscriber = redis.duplicate();
  subscriber.on('error', () => undefined); // ioredis reconnects and resubscribes by itself
  const leadership = await acquireLeadership(redis, keys, {
    log,
    ...(opts.leaderTtlMs === undefined ? {} : { ttlMs: opts.leaderTtlMs }),
    ...(opts.leaderWaitMs === undefined ? {} : { waitMs: opts.leaderWaitMs }),
  });
  if (!leadership) {
    redis.disconnect();
    throw new Error('another stoker controller holds the lock on this Redis');
  }
  // Everything the leader writes goes through the fence (fenced-redis.ts); the lock's
  // renewal and release, and the subscriber, use the connection itself.
  const fenced = fencedRedis(redis, {
    lockKey: keys.controllerLock(),
    token: leadership.instanceId,
    onFenced: (holder) =>
      leadership.markLost(
        `a write was refused: the controller lock is ${holder ? `held by ${holder}` : 'free'}`,
      ),
  });
  const store = new RunStore(fenced, keys);
  const connection = bullConnection(opts.redisUrl);
  const queues = dispatchQueues(connection, keys);
  const backend = await startBackend(opts, {
    redis: fenced,
    keys,
    redisUrl: opts.redisUrl,
    log,
    store,
  });
  const dispatcher = new Dispatcher({
    connection,
    keys,
    store,
    backend,
    log,
    concurrency: opts.concurrency ?? DEFAULT_CONCURRENCY,
    ...(opts.lockDurationMs === undefined ? {} : { lockDurationMs: opts.lockDurationMs }),
    ...(opts.stalledIntervalMs === undefined ? {} : { stalledIntervalMs: opts.stalledIntervalMs }),
  });
  const controller = new Controller({
    autoscale,
    redis: fenced,
    subscriber,
    keys,
    store,
    queues,
    connection,
    backend,
    log,
    ...(opts.resyncMs === undefined ? {} : { resyncMs: opts.resyncMs }),
  });
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  // How many tasks of each queue run at once: queue-wait.ts estimates start times from it.
  await fenced.hset(keys.dispatchSlots(), {
    [QUEUES.train]: String(concurrency.train),
    [QUEUES.steps]: String(concurrency.steps),
  });
  await controller.start();
  dispatcher.start();
  const parts = { redis, subscriber, controller, dispatcher, backend, queues, leadership, log };
  const stop = twoStageStop(parts);
  leadership.lost
    .then(() => {
      log.error('stopping: this controller lost leadership');
      void stop('preempt');
    })
    .catch(() => undefined);
  return { redis: fenced, keys, store, controller, dispatcher, backend, queues, leadership, stop };
}

/** The queues of dispatched tasks: `train` (GPU work) and `steps` (CPU steps). */
function dispatchQueues(
  connection: ConnectionOptions,
  keys: Keys,
): Record<DispatchQueue, Queue<DispatchJobData>> {
  const open = (name: DispatchQueue) => {
    const q = new Queue<DispatchJobData>(name, { connection, prefix: keys.bullPrefix });
    // Connection errors (an outage) surface on the next call; unheard, BullMQ prints them.
    q.on('error', () => undefined);
    return q;
  };
  return {
    [QUEUES.train]: open(QUEUES.train),
    [QUEUES.steps]: open(QUEUES.steps),
  } as Record<DispatchQueue, Queue<DispatchJobData>>;
}

/** The backend the options name, else the local one (worker processes on this machine). */
async function startBackend(opts: SystemOptions, ctx: BackendContext): Promise<Backend> {
  return (
    (opts.backend ? await opts.backend(ctx) : undefined) ??
    new LocalBackend({
      redis: ctx.redis,
      keys: ctx.keys,
      redisUrl: ctx.redisUrl,
      log: ctx.log,
      ...(opts.stokerCommand ? { stokerCommand: opts.stokerCommand } : {}),
      ...(opts.workerEnv ? { env: opts.workerEnv } : {}),
      ...(opts.home ? { home: opts.home } : {}),
    })
  );
}

/**
 * System.stop: the first call stops everything in order (dispatcher, controller, pools,
 * queues, backend, the lock, the connections) and every later call returns the same
 * promise. preempt drains: running payloads checkpoint and are requeued (a backend whose
 * units outlive the controller detaches from them instead). force kills them; a force
 * during a drain (the second Ctrl-C of `stoker up`) kills what the drain is waiting for,
 * and the stop goes on without waiting for the drain any longer.
 *
 * Bounded: every step after the drain talks to Redis, which may be out of reach (the
 * reason a controller lost its lock); each is given STEP_MS (force: FORCED_STEP_MS) and
 * then left behind with a warning, so a stop always ends.
 */
const STEP_MS = 10_000;
const FORCED_STEP_MS = 2_000;

function twoStageStop(parts: {
  redis: Redis;
  subscriber: Redis;
  controller: Controller;
  dispatcher: Dispatcher;
  backend: Backend;
  queues: Record<DispatchQueue, Queue<DispatchJobData>>;
  leadership: Leadership;
  log: Logger;
}): System['stop'] {
  const { redis, subscriber, controller, dispatcher, backend, queues, leadership, log } = parts;
  let stopping: Promise<void> | undefined;
  let forced = false;
  let onForced: () => void = () => undefined;
  const forcedDone = new Promise<void>((r) => (onForced = r));
  const step = (what: string, p: Promise<unknown>) =>
    bounded(p, forced ? FORCED_STEP_MS : STEP_MS, () =>
      log.warn({ step: what }, 'a step of the stop did not finish in time; going on'),
    );
  return (mode = 'preempt') => {
    if (mode === 'force' && !forced) {
      forced = true;
      // A force during a drain: kill what the drain is waiting for. Units that outlive
      // the controller (Kubernetes Jobs) were detached, not drained: they are left to the
      // next controller either way.
      if (stopping && !backend.unitsOutliveController) {
        void Promise.all([
          bounded(dispatcher.stop('force'), FORCED_STEP_MS * 2),
          bounded(backend.stopPools?.({ force: true }) ?? Promise.resolve(), FORCED_STEP_MS * 2),
        ]).then(() => onForced());
      } else onForced();
    }
    return (stopping ??= (async () => {
      const drain = dispatcher.stop(
        backend.unitsOutliveController && mode === 'preempt' ? 'detach' : mode,
      );
      await Promise.race([drain, forcedDone]);
      await step('controller', controller.stop());
      // Pool workers finish their shard and exit (force: killed).
      await step(
        'pools',
        backend.stopPools?.({ force: mode === 'force' || forced }) ?? Promise.resolve(),
      );
      await step('queues', Promise.all(Object.values(queues).map((q) => q.close())));
      await step('backend', backend.close());
      await step('lock', leadership.release());
      subscriber.disconnect();
      redis.disconnect();
    })());
  };
}
