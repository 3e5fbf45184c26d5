/**
 * Pools as the controller uses them (pulled execution; the records are orchestrator/pools.ts).
 *
 *   claimPool    a pulled stage starts: register the pool with the stage as a user
 *                (`${runId}/${stage}` in pool:{name}:users), then size pools at once, so
 *                that its workers load while the shards are being queued
 *   releasePool  the stage is done (finished, failed or cancelled): it no longer uses it
 *   sizePools    every pool at its desired replicas while a stage uses it, at its
 *                minimum otherwise, through the backend's ensurePool (none: nothing to do)
 */
import type { NormalizedPool } from '../../common/spec/schema.js';
import { readPool, registerPool } from '../pools.js';
import type { ControllerContext } from './context.js';

export async function sizePools(ctx: ControllerContext): Promise<void> {
  const { backend, redis, keys } = ctx;
  if (!backend?.ensurePool) return;
  for (const name of await redis.smembers(keys.pools())) {
    const pool = await readPool(redis, keys, name);
    if (!pool) continue;
    const users = await redis.scard(keys.poolUsers(name));
    await backend.ensurePool(pool, users > 0 ? pool.desired : pool.minReplicas);
  }
}

/** Register `user` (`${runId}/${stage}`) on the pool, then size pools (a failure is logged). */
export async function claimPool(
  ctx: ControllerContext,
  pool: NormalizedPool,
  user: string,
): Promise<void> {
  await registerPool(ctx.redis, ctx.keys, pool, user);
  await sizePools(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'cannot size pools'));
}

export async function releasePool(
  ctx: ControllerContext,
  pool: string,
  user: string,
): Promise<void> {
  await ctx.redis.srem(ctx.keys.poolUsers(pool), user);
}
