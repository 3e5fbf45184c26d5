/**
 * `stoker worker --pool NAME`: a warm worker of a pool (pulled execution: README, "How a
 * run flows"). It pulls shard tasks from the pool's queue (`pool.NAME`) one at a time and
 * feeds them to a payload started once in server mode (worker/server-process.ts), so
 * what the payload loads (a model) serves every shard of the stage.
 *
 * Job contract (queue `pool.NAME`): id = shard task id, data = {taskId, runId}; the
 * task hash holds the resolved payload and `shard` {index, input, output, params}.
 *
 * The worker's life:
 *   1. publish its state (`starting`) and start the heartbeat (state.ts)
 *   2. a BullMQ Worker runs each job through the shard processor (shard.ts: begin, run
 *      on the resident server, settle), one shard at a time on the server; while shards
 *      are short it holds the next job in hand (lookahead.ts)
 *   3. ready: `idle`
 *   4. the first SIGTERM drains: the current shard finishes (scale-down never kills a
 *      shard half-way), no new one is taken, a job in hand goes back; a second SIGTERM aborts the shard, which
 *      is requeued without spending an attempt (settle.ts)
 *   5. the server is stopped and the worker leaves the pool's list; exit code 0
 */
import { Worker, type ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { poolQueueName, type Keys, type PoolJobData } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { TaskStore } from '../../common/task-store.js';
import type { EnvSource } from '../env.js';
import { Lookahead } from './lookahead.js';
import { ServerSlot } from './servers.js';
import { shardProcessor } from './shard.js';
import { WorkerStatePublisher } from './state.js';

export interface PoolWorkerOptions {
  redis: Redis;
  keys: Keys;
  connection: ConnectionOptions;
  pool: string;
  workerId: string;
  parentEnv: EnvSource;
  log: Logger;
  /** Where the worker's own and idle payload output goes. */
  logDir: string;
  /** Aborted on the first SIGTERM: drain. */
  drain: AbortSignal;
  /** Aborted on the second SIGTERM: abort the running shard. */
  force: AbortSignal;
  heartbeatMs?: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
}

export async function runPoolWorker(opts: PoolWorkerOptions): Promise<number> {
  const { redis, keys, pool, workerId } = opts;
  const log = opts.log.child({ pool, workerId });

  // 1. The worker's state and heartbeat.
  const states = new WorkerStatePublisher(redis, keys, pool, workerId, log);
  await states.publish({});
  states.startHeartbeat(opts.heartbeatMs ?? 2000);
  const servers = new ServerSlot({
    pool,
    workerId,
    parentEnv: opts.parentEnv,
    logDir: opts.logDir,
    log,
    onReady: () => states.loaded(),
  });

  // 2. The queue's worker.
  const lookahead = new Lookahead();
  const processor = shardProcessor({
    lookahead,
    store: new TaskStore(redis, keys),
    pool,
    workerId,
    log,
    states,
    servers,
    drain: opts.drain,
    force: opts.force,
  });
  const worker = new Worker<PoolJobData>(poolQueueName(pool), processor, {
    connection: opts.connection,
    prefix: keys.bullPrefix,
    concurrency: 1,
    lockDuration: opts.lockDurationMs ?? 30_000,
    stalledInterval: opts.stalledIntervalMs ?? 15_000,
    maxStalledCount: 5,
    name: workerId,
  });
  lookahead.attach(worker);
  worker.on('error', (err) => log.error({ err }, 'pool worker error'));
  await worker.waitUntilReady();

  // 3. Ready.
  await states.ready();
  log.info('pool worker ready');

  // 4. Until the drain.
  await new Promise<void>((resolve) => {
    if (opts.drain.aborted) resolve();
    opts.drain.addEventListener('abort', () => resolve(), { once: true });
  });
  log.info('draining: finishing the current shard');
  lookahead.stop();
  await states.publish({ state: 'draining' });
  await worker.close();

  // 5. Gone.
  await servers.stop();
  await states.remove();
  log.info('pool worker stopped');
  return 0;
}
