/**
 * GET /api/v1/pools/NAME/backlog: a pool's backlog as one number, for scalers outside
 * stoker (README, "Autoscaling with KEDA"). KEDA's `metrics-api` scaler reads it with
 * `valueLocation: backlog` and a read token (`authMode: bearer`); k8s/keda/ has the
 * ScaledObject.
 *
 *   backlog   the shards that want a worker now: waiting + prioritized + delayed +
 *             active (the ones running keep theirs busy), the figure stoker's own
 *             autoscaler starts from. A paused queue gives only its active shards: the
 *             waiting ones cannot be taken, so no worker should be added for them.
 *   the parts (waiting, prioritized, delayed, active), paused, and the workers alive
 *   (busy, idle, starting, draining), so a dashboard or a script can tell why.
 *
 * A pool that no stage has used yet is a 404; a pool with nothing to do reads 0, which
 * KEDA takes as "scale to zero" (minReplicaCount 0).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { poolQueueName } from '../../common/keys.js';
import { readWorkers, WORKER_STALE_MS } from '../pools.js';
import { NotFoundError, type ApiSource } from './source.js';

export const PoolBacklog = z.object({
  pool: z.string(),
  backlog: z.number().int().nonnegative(),
  waiting: z.number().int().nonnegative(),
  prioritized: z.number().int().nonnegative(),
  delayed: z.number().int().nonnegative(),
  active: z.number().int().nonnegative(),
  paused: z.boolean(),
  workers: z.object({
    busy: z.number().int(),
    idle: z.number().int(),
    starting: z.number().int(),
    draining: z.number().int(),
  }),
});
export type PoolBacklog = z.infer<typeof PoolBacklog>;

export async function poolBacklog(src: ApiSource, pool: string): Promise<PoolBacklog> {
  const { redis, keys, queues } = src;
  if (!(await redis.sismember(keys.pools(), pool)))
    throw new NotFoundError(`no pool "${pool}" (GET /api/v1/pools lists them)`);
  const c = await queues.poolCounts(poolQueueName(pool));
  const now = Date.now();
  const alive = (await readWorkers(redis, keys, pool)).filter(
    (w) => now - Date.parse(w.heartbeatAt) < WORKER_STALE_MS,
  );
  const count = (s: string) => alive.filter((w) => w.state === s).length;
  return {
    pool,
    backlog: c.paused ? c.active : c.waiting + c.prioritized + c.delayed + c.active,
    waiting: c.waiting,
    prioritized: c.prioritized,
    delayed: c.delayed,
    active: c.active,
    paused: c.paused,
    workers: {
      busy: count('busy'),
      idle: count('idle'),
      starting: count('starting'),
      draining: count('draining'),
    },
  };
}

export function backlogRoutes(app: FastifyInstance, src: ApiSource): void {
  app.get<{ Params: { pool: string } }>(
    '/pools/:pool/backlog',
    { config: { access: 'read' } },
    async (req) => poolBacklog(src, req.params.pool),
  );
}
