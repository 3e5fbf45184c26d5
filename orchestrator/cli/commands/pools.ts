/**
 * `stoker pools [--json]`: per pool, desired/running/busy/idle workers, the backlog
 * (waiting + prioritized + delayed shards), shards per second over the last minute and
 * the ETA of the backlog at that rate. JSON: {pools: [PoolView]} (orchestrator/pools.ts).
 */
import { Queue } from 'bullmq';
import type { Command } from 'commander';
import { bullConnection } from '../../../common/redis.js';
import { table } from '../../../common/table.js';
import { buildPoolView, type PoolView } from '../../pools.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { formatDuration } from '../format.js';
import { globals, print, printJson } from '../options.js';

export async function action(o: { json?: boolean }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const client = await connectClient(ctx);
  const queues = new Map<string, Queue>();
  try {
    const counts = async (name: string) => {
      let q = queues.get(name);
      if (!q) {
        q = new Queue(name, {
          connection: bullConnection(client.url),
          prefix: ctx.keys.bullPrefix,
        });
        queues.set(name, q);
      }
      const c = await q.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
      return {
        waiting: c.waiting ?? 0,
        prioritized: c.prioritized ?? 0,
        delayed: c.delayed ?? 0,
        active: c.active ?? 0,
      };
    };
    const views: PoolView[] = [];
    for (const name of (await client.redis.smembers(ctx.keys.pools())).sort()) {
      const v = await buildPoolView(client.redis, ctx.keys, name, counts);
      if (v) views.push(v);
    }
    if (o.json) return printJson({ pools: views });
    if (views.length === 0)
      return print('no pools yet: a pool exists once a stage that uses it has started');
    print(poolTable(views));
  } finally {
    await Promise.all([...queues.values()].map((q) => q.close()));
    await client.close();
  }
}

function poolTable(views: PoolView[]): string {
  return table([
    ['POOL', 'DESIRED', 'RUNNING', 'BUSY', 'IDLE', 'BACKLOG', 'SHARDS/S', 'ETA', 'BOUNDS'],
    ...views.map((v) => [
      v.name,
      String(v.desired),
      String(v.running),
      String(v.busy),
      String(v.idle),
      String(v.backlog),
      v.shardsPerSecond.toFixed(2),
      formatDuration(v.etaSeconds),
      `${v.minReplicas}-${v.maxReplicas}`,
    ]),
  ]);
}
