/**
 * `stoker pools [--json]`: per pool, its status (Idle, ScalingUp, ScalingDown, Ready),
 * desired/running/busy/idle workers, the backlog (waiting + prioritized + delayed
 * shards), shards per second over the last minute, the ETA of the backlog at that rate,
 * its bounds, how it is scaled (auto, fixed, or pinned with the pin's end) and the reason
 * of the controller's last decision, then each decision's message. JSON: {pools:
 * [PoolView]} (orchestrator/pools.ts).
 * Through the HTTP API when STOKER_URL is set.
 */
import type { Command } from 'commander';
import { table } from '../../../common/table.js';
import { printable } from '../../../common/terminal.js';
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

function poolTable(views: PoolView[], now = Date.now()): string {
  const rows = table([
    [
      'POOL',
      'STATUS',
      'DESIRED',
      'RUNNING',
      'BUSY',
      'IDLE',
      'BACKLOG',
      'SHARDS/S',
      'ETA',
      'BOUNDS',
      'SCALING',
      'REASON',
    ],
    ...views.map((v) => [
      v.paused ? `${v.name} (paused)` : v.name,
      v.status,
      String(v.desired),
      String(v.running),
      String(v.busy),
      String(v.idle),
      String(v.backlog),
      v.shardsPerSecond.toFixed(2),
      formatDuration(v.etaSeconds),
      `${v.minReplicas}-${v.maxReplicas}`,
      scaling(v, now),
      v.decision?.reason ?? '-',
    ]),
  ]);
  // Each decision's message: why this size, in words.
  const why = views
    .filter((v) => v.decision)
    .map((v) => `  ${printable(v.name)}: ${printable(v.decision?.message ?? '')}`);
  return why.length ? `${rows}\n\n${why.join('\n')}` : rows;
}

/** `auto`, `fixed`, or the pin and its end: `pinned 2 until 14:05:00 (in 12m)`. */
function scaling(v: PoolView, now: number): string {
  if (v.pin) {
    if (!v.pin.until) return `pinned ${v.pin.replicas} (until --auto)`;
    const left = (Date.parse(v.pin.until) - now) / 1000;
    return `pinned ${v.pin.replicas} until ${v.pin.until.slice(11, 19)}Z (${left > 0 ? `in ${formatDuration(left)}` : 'ending'})`;
  }
  return v.autoscale ? 'auto' : 'fixed';
}
