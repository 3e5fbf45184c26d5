/**
 * BullMQ's counts for stoker's queues (the dispatch queues and every pool's), read by
 * long-lived readers (the HTTP API, /metrics): one Queue object per name, opened on first
 * use and kept, so a scrape does not open and close connections.
 *
 * `paused` is a flag: BullMQ 5+ keeps a paused queue's jobs in `waiting` and marks the
 * queue paused.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { poolQueueName, QUEUES, type Keys } from '../common/keys.js';
import { bullConnection } from '../common/redis.js';

export const JOB_STATES = [
  'waiting',
  'prioritized',
  'delayed',
  'active',
  'completed',
  'failed',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** One queue as `stoker queues --json` and GET /api/v1/queues show it. */
export const QueueRow = z.object({
  name: z.string(),
  waiting: z.number().int(),
  prioritized: z.number().int(),
  delayed: z.number().int(),
  active: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  /** BullMQ 5+ keeps a paused queue's jobs in `waiting` and flags the queue. */
  paused: z.boolean(),
  workers: z.number().int(),
});
export type QueueRow = z.infer<typeof QueueRow>;

/**
 * The backlog of a pool's queue: its waiting, prioritized, delayed and active jobs, and
 * whether it is paused (buildPoolView, and the controller's autoscaler).
 */
export async function queueBacklog(q: Queue): Promise<{
  waiting: number;
  prioritized: number;
  delayed: number;
  active: number;
  paused: boolean;
}> {
  const c = await q.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
  return {
    waiting: c.waiting ?? 0,
    prioritized: c.prioritized ?? 0,
    delayed: c.delayed ?? 0,
    active: c.active ?? 0,
    paused: await q.isPaused(),
  };
}

export class QueueReader {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly redisUrl: string,
  ) {}

  /** The dispatch queues, then each pool's, sorted. */
  async names(): Promise<string[]> {
    const pools = (await this.redis.smembers(this.keys.pools())).sort().map(poolQueueName);
    return [...Object.values(QUEUES), ...pools];
  }

  /** The queue of this name (opened once). */
  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, {
        connection: bullConnection(this.redisUrl),
        prefix: this.keys.bullPrefix,
      });
      q.on('error', () => undefined); // connection errors surface on the next call
      this.queues.set(name, q);
    }
    return q;
  }

  async counts(name: string): Promise<QueueRow> {
    const q = this.queue(name);
    const c = await q.getJobCounts(...JOB_STATES);
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, c[s] ?? 0])) as Record<
      JobState,
      number
    >;
    return { name, ...counts, paused: await q.isPaused(), workers: await q.getWorkersCount() };
  }

  /** For buildPoolView: the backlog's parts and the active shards of a pool's queue. */
  readonly poolCounts = (name: string) => queueBacklog(this.queue(name));

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}
