/**
 * `stoker queues [--json]`: BullMQ's counts per queue (train, steps and every pool's)
 * and the connected workers. `paused` is a boolean: BullMQ 5+ keeps a paused queue's
 * jobs in `waiting` and flags the queue.
 *
 * `stoker queues retry NAME [--limit N] [--json]`: retry the queue's failed jobs as
 * stoker's records allow (orchestrator/queue-retry.ts): a run that ended is resumed, a
 * failed shard of a stage still running is retried in place, anything else is skipped
 * with the reason.
 *
 * Both through the HTTP API when STOKER_URL is set (retry: the admin token).
 */
import type { Command } from 'commander';
import { table } from '../../../common/table.js';
import { UsageError } from '../../../common/errors.js';
import { QueueReader, JOB_STATES, type QueueRow } from '../../queue-counts.js';
import { retryFailedJobs, type QueueRetryResult } from '../../queue-retry.js';
import { localRequester } from '../../resume.js';
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

export async function retryAction(
  name: string,
  o: { limit?: number; json?: boolean },
  cmd: Command,
): Promise<void> {
  const ctx = makeContext(globals(cmd));
  // `queues retry NAME --json`: commander gives a --json after the subcommand to `queues`.
  o = { ...o, json: Boolean(o.json || (cmd.optsWithGlobals() as { json?: boolean }).json) };
  const limit = o.limit ?? 1000;
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw new UsageError(`--limit must be an integer from 1 to 10000, not ${o.limit}`);
  const remote = remoteFrom(ctx.env);
  if (remote) {
    const path = `/api/v1/queues/${encodeURIComponent(name)}/retry`;
    return showRetry(await new ApiClient(remote).post<QueueRetryResult>(path, { limit }), o);
  }
  const client = await connectClient(ctx);
  const reader = new QueueReader(client.redis, ctx.keys, client.url);
  try {
    if (!(await reader.names()).includes(name))
      throw new UsageError(`no queue "${name}" (stoker queues lists them)`, 1);
    const queue = reader.queue(name);
    const by = localRequester();
    const { redis, store } = client;
    showRetry(await retryFailedJobs({ redis, keys: ctx.keys, store, queue, by }, limit), o);
  } finally {
    await reader.close();
    await client.close();
  }
}

function showRetry(r: QueueRetryResult, o: { json?: boolean }): void {
  if (o.json) return printJson(r);
  const lines = [
    `${r.queue}: ${r.failed} failed job${r.failed === 1 ? '' : 's'}, ${r.retried} retried`,
  ];
  if (r.resumedRuns.length) lines.push(`  runs resumed: ${r.resumedRuns.join(', ')}`);
  if (r.retriedShards.length) lines.push(`  shards retried: ${r.retriedShards.join(', ')}`);
  for (const s of r.skipped) lines.push(`  skipped ${s.job}: ${s.reason}`);
  print(lines.join('\n'));
}
