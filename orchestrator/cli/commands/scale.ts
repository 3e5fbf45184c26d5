/**
 * `stoker scale POOL --replicas N`: a pool's desired workers, within its bounds (an
 * unknown pool or a value outside them is an error and changes nothing). Scaling down
 * stops idle workers first; a busy one finishes its shard.
 */
import type { Command } from 'commander';
import { scalePool } from '../../pools.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';

export async function action(pool: string, o: { replicas: number }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const client = await connectClient(ctx);
  try {
    const rec = await scalePool(client.redis, ctx.keys, pool, o.replicas);
    print(`pool ${pool}: desired ${rec.desired} (bounds ${rec.minReplicas}-${rec.maxReplicas})`);
  } finally {
    await client.close();
  }
}
