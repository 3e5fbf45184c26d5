/**
 * A complete stoker on one Redis: controller, dispatcher and a backend, composed.
 * `stoker up`, `stoker run` and the integration tests start one of these.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { makeKeys, QUEUES, type DispatchQueue, type Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import { bullConnection, connectRedis } from '../common/redis.js';
import { LocalBackend } from './backends/local.js';
import type { Backend } from './backends/types.js';
import { Controller } from './controller/controller.js';
import { Dispatcher, type DispatchJobData } from './dispatcher.js';
import { acquireLeadership, type Leadership } from './leader.js';
import { RunStore } from './store.js';

export interface SystemOptions {
  redisUrl: string;
  prefix?: string;
  log: Logger;
  concurrency?: { train: number; steps: number };
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
  backend?: (ctx: {
    redis: Redis;
    keys: Keys;
    redisUrl: string;
    log: Logger;
    store: RunStore;
  }) => Backend | Promise<Backend>;
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

export async function startSystem(opts: SystemOptions): Promise<System> {
  const { log } = opts;
  const keys = makeKeys(opts.prefix);
  const redis = await connectRedis(opts.redisUrl, { name: 'stoker-controller' });
  const subscriber = redis.duplicate();
  const leadership = await acquireLeadership(redis, keys, {
    log,
    ...(opts.leaderTtlMs === undefined ? {} : { ttlMs: opts.leaderTtlMs }),
    ...(opts.leaderWaitMs === undefined ? {} : { waitMs: opts.leaderWaitMs }),
  });
  if (!leadership) {
    redis.disconnect();
    throw new Error('another stoker controller holds the lock on this Redis');
  }
  const store = new RunStore(redis, keys);
  const connection = bullConnection(opts.redisUrl);
  const queues = {
    [QUEUES.train]: new Queue<DispatchJobData>(QUEUES.train, {
      connection,
      prefix: keys.bullPrefix,
    }),
    [QUEUES.steps]: new Queue<DispatchJobData>(QUEUES.steps, {
      connection,
      prefix: keys.bullPrefix,
    }),
  } as Record<DispatchQueue, Queue<DispatchJobData>>;
  const backend: Backend =
    (opts.backend
      ? await opts.backend({ redis, keys, redisUrl: opts.redisUrl, log, store })
      : undefined) ??
    new LocalBackend({
      redis,
      keys,
      redisUrl: opts.redisUrl,
      log,
      ...(opts.stokerCommand ? { stokerCommand: opts.stokerCommand } : {}),
      ...(opts.workerEnv ? { env: opts.workerEnv } : {}),
      ...(opts.home ? { home: opts.home } : {}),
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
    redis,
    subscriber,
    keys,
    store,
    queues,
    connection,
    backend,
    log,
    ...(opts.resyncMs === undefined ? {} : { resyncMs: opts.resyncMs }),
  });
  await controller.start();
  dispatcher.start();
  let stopping: Promise<void> | undefined;
  let forced = false;
  const stop = (mode: 'preempt' | 'force' = 'preempt') => {
    if (mode === 'force' && !forced) {
      forced = true;
      // A force during a drain (the second Ctrl-C of `stoker up`): kill what the drain is
      // waiting for. Units that outlive the controller (Kubernetes Jobs) were detached,
      // not drained: they are left to the next controller either way.
      if (stopping && !backend.unitsOutliveController) {
        void dispatcher.stop('force');
        void backend.stopPools?.({ force: true });
      }
    }
    return (stopping ??= (async () => {
      await dispatcher.stop(backend.unitsOutliveController && mode === 'preempt' ? 'detach' : mode);
      await controller.stop();
      // Pool workers finish their shard and exit (force: killed).
      await backend.stopPools?.({ force: mode === 'force' });
      await Promise.all(Object.values(queues).map((q) => q.close()));
      await backend.close();
      await leadership.release();
      subscriber.disconnect();
      redis.disconnect();
    })());
  };
  leadership.lost
    .then(() => {
      log.error('stopping: this controller lost leadership');
      void stop('preempt');
    })
    .catch(() => undefined);
  return { redis, keys, store, controller, dispatcher, backend, queues, leadership, stop };
}
