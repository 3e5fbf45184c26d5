/**
 * `stoker pools [--json]`: per pool, desired/running/busy/idle workers, the backlog
 * (waiting + prioritized + delayed shards), shards per second over the last minute and
 * the ETA of the backlog at that rate. JSON: {pools: [PoolView]} (orchestrator/pools.ts).
 * Through the HTTP API when STOKER_URL is set.
 */
import type { Command } from 'commander';
import { table } from '../../../common/table.js';
import { buildPoolView, type PoolView } from '../../pools.js';
import { QueueReader } from '../../queue-counts.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { formatDuration } from '../format.js';
import { globals, print, printJson } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

export async function action(o: { json?: boolean }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) {
    const { pools } = await new ApiClient(remote).get<{ pools: PoolView[] }>('/api/v1/pools');
    return show(pools, o);
  }
  const client = await connectClient(ctx);
  const reader = new QueueReader(client.redis, ctx.keys, client.url);
  try {
    const views: PoolView[] = [];
    for (const name of (await client.redis.smembers(ctx.keys.pools())).sort()) {
      const v = await buildPoolView(client.redis, ctx.keys, name, reader.poolCounts);
      if (v) views.push(v);
    }
    show(views, o);
  } finally {
    await reader.close();
    await client.close();
  }
}

function show(views: PoolView[], o: { json?: boolean }): void {
  if (o.json) return printJson({ pools: views });
  if (views.length === 0)
    return print('no pools yet: a pool exists once a stage that uses it has started');
  print(poolTable(views));
}

function poolTable(views: PoolView[]): string {
  return table([
    ['POOL', 'DESIRED', 'RUNNING', 'BUSY', 'IDLE', 'BACKLOG', 'SHARDS/S', 'ETA', 'BOUNDS'],
    ...views.map((v) => [
      v.paused ? `${v.name} (paused)` : v.name,
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
