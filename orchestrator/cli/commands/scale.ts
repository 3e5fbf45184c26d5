/**
 * `stoker scale POOL --replicas N`: a pool's desired workers, within its bounds (an
 * unknown pool or a value outside them is an error and changes nothing). Scaling down
 * stops idle workers first; a busy one finishes its shard. Through the HTTP API when
 * STOKER_URL is set (the admin token).
 */
import type { Command } from 'commander';
import { scalePool, type PoolRecord, type PoolView } from '../../pools.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

export async function action(pool: string, o: { replicas: number }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  let rec: Pick<PoolRecord, 'desired' | 'minReplicas' | 'maxReplicas'>;
  if (remote) {
    rec = await new ApiClient(remote).post<PoolView>(
      `/api/v1/pools/${encodeURIComponent(pool)}/scale`,
      { replicas: o.replicas },
    );
  } else {
    const client = await connectClient(ctx);
    try {
      rec = await scalePool(client.redis, ctx.keys, pool, o.replicas);
    } finally {
      await client.close();
    }
  }
  print(`pool ${pool}: desired ${rec.desired} (bounds ${rec.minReplicas}-${rec.maxReplicas})`);
}
