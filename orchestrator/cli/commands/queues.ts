/**
 * `stoker queues [--json]`: BullMQ's counts per queue (train, steps and every pool's)
 * and the connected workers. `paused` is a boolean: BullMQ 5+ keeps a paused queue's
 * jobs in `waiting` and flags the queue.
 */
import { Queue } from 'bullmq';
import type { Command } from 'commander';
import { poolQueueName, QUEUES } from '../../../common/keys.js';
import { bullConnection } from '../../../common/redis.js';
import { table } from '../../../common/table.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print, printJson } from '../options.js';

const COLUMNS = [
  'waiting',
  'prioritized',
  'delayed',
  'active',
  'completed',
  'failed',
  'paused',
  'workers',
] as const;

type QueueRow = { name: string } & Record<(typeof COLUMNS)[number], number | boolean>;

export async function action(o: { json?: boolean }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const client = await connectClient(ctx);
  try {
    const pools = (await client.redis.smembers(ctx.keys.pools())).sort().map(poolQueueName);
    const rows: QueueRow[] = [];
    for (const name of [...Object.values(QUEUES), ...pools]) {
      const q = new Queue(name, {
        connection: bullConnection(client.url),
        prefix: ctx.keys.bullPrefix,
      });
      try {
        rows.push(await countsOf(name, q));
      } finally {
        await q.close();
      }
    }
    if (o.json) return printJson({ queues: rows });
    print(
      table([
        ['QUEUE', ...COLUMNS.map((c) => c.toUpperCase())],
        ...rows.map((q) => [q.name, ...COLUMNS.map((c) => String(q[c]))]),
      ]),
    );
  } finally {
    await client.close();
  }
}

async function countsOf(name: string, q: Queue): Promise<QueueRow> {
  const c = await q.getJobCounts(
    'waiting',
    'prioritized',
    'delayed',
    'active',
    'completed',
    'failed',
  );
  return {
    name,
    waiting: c.waiting ?? 0,
    prioritized: c.prioritized ?? 0,
    delayed: c.delayed ?? 0,
    active: c.active ?? 0,
    completed: c.completed ?? 0,
    failed: c.failed ?? 0,
    paused: await q.isPaused(),
    workers: await q.getWorkersCount(),
  };
}
