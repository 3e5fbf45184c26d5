/**
 * `stoker queues [--json]`: BullMQ's counts per queue (train, steps and every pool's)
 * and the connected workers. `paused` is a boolean: BullMQ 5+ keeps a paused queue's
 * jobs in `waiting` and flags the queue. Through the HTTP API when STOKER_URL is set.
 */
import type { Command } from 'commander';
import { table } from '../../../common/table.js';
import { QueueReader, JOB_STATES, type QueueRow } from '../../queue-counts.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print, printJson } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

const COLUMNS = [...JOB_STATES, 'paused', 'workers'] as const;

export async function action(o: { json?: boolean }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) {
    const { queues } = await new ApiClient(remote).get<{ queues: QueueRow[] }>('/api/v1/queues');
    return show(queues, o);
  }
  const client = await connectClient(ctx);
  const reader = new QueueReader(client.redis, ctx.keys, client.url);
  try {
    const rows: QueueRow[] = [];
    for (const name of await reader.names()) rows.push(await reader.counts(name));
    show(rows, o);
  } finally {
    await reader.close();
    await client.close();
  }
}

function show(rows: QueueRow[], o: { json?: boolean }): void {
  if (o.json) return printJson({ queues: rows });
  print(
    table([
      ['QUEUE', ...COLUMNS.map((c) => c.toUpperCase())],
      ...rows.map((q) => [q.name, ...COLUMNS.map((c) => String(q[c]))]),
    ]),
  );
}
