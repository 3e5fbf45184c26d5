/**
 * A spec's pools against the live ones, at submit (RunStore.createRun: the CLI's submit
 * and run, and POST /api/v1/runs, go through it). Pools are global by name and keep their
 * settings across runs (pools.ts), so a spec that declares a live pool with other bounds,
 * autoscale, replicas or resources would otherwise change nothing while its author thinks
 * it did, or (as before) silently change the pool under other runs. It is refused, with
 * each difference named, unless the run takes the pools over (--take-over-pools,
 * `?takeOverPools=true`): its stage then replaces the live settings as it starts.
 * Two stages of one spec that declare one pool differently are refused either way.
 */
import type { Redis } from 'ioredis';
import { UsageError } from '../common/errors.js';
import type { Keys } from '../common/keys.js';
import type { NormalizedPool, NormalizedSpec } from '../common/spec/schema.js';
import { poolDifferences, readPool, type PoolRecord } from './pools.js';

/** A spec whose pools differ from the live ones (exit 2; HTTP 422). */
export class PoolConflictError extends UsageError {
  override readonly name = 'PoolConflictError';
}

/** The spec's pools checked against each other and the live ones; a PoolConflictError if any differs. */
export async function checkSpecPools(
  redis: Redis,
  keys: Keys,
  spec: NormalizedSpec,
  opts: { takeOver: boolean },
): Promise<void> {
  const problems: string[] = [];
  const first = new Map<string, { stage: string; pool: NormalizedPool }>();
  for (const stage of spec.stages) {
    const pool = stage.pool;
    if (!pool) continue;
    const earlier = first.get(pool.name);
    if (earlier) {
      const diff = poolDifferences(asRecord(earlier.pool), pool).map((d) =>
        d.replace('(live)', `(stage ${earlier.stage})`).replace('(spec)', `(stage ${stage.name})`),
      );
      if (diff.length)
        problems.push(
          `stages ${earlier.stage} and ${stage.name} declare pool ${pool.name} differently:\n    ${diff.join('\n    ')}`,
        );
      continue;
    }
    first.set(pool.name, { stage: stage.name, pool });
    const live = await readPool(redis, keys, pool.name);
    const diff = live ? poolDifferences(live, pool) : [];
    if (diff.length && !opts.takeOver)
      problems.push(
        `pool ${pool.name} (stage ${stage.name}) is live with other settings:\n    ${diff.join('\n    ')}`,
      );
  }
  if (problems.length)
    throw new PoolConflictError(
      `${problems.join('\n')}\nGive the spec the live pool's settings (stoker pools shows them), or submit with --take-over-pools to replace them: the pool's other users then run with the new ones. Nothing was submitted.`,
    );
}

/** A spec's pool as a record, to compare two declarations of one spec. */
const asRecord = (pool: NormalizedPool): PoolRecord => ({
  ...pool,
  autoscale: pool.autoscale ?? null,
  desired: pool.replicas,
  declaredBy: undefined,
  pin: null,
  decision: null,
  memory: null,
});
