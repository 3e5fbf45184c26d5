/**
 * GET /api/v1/events: a server-sent event stream of changes, for dashboards and scripts
 * that would otherwise poll:
 *
 *   event: run    data: RunSummary   a run, one of its stages or one of its tasks changed
 *                                    (a task's progress included: the run's moves with it)
 *   event: task   data: TaskView + {runId, stage}
 *                                    a dispatched task reported progress (at most a few
 *                                    times a second: the worker's coalesced writes)
 *   event: pool   data: PoolView     a pool was pinned (stoker scale), or the controller
 *                                    changed its size or the reason of its decision
 *
 * One Redis subscriber per server, not per client, on the channels the writers already
 * publish on: `wake` (task statuses, cancels, scales, shard outcomes; the controller's
 * wake-ups) and `changes` (the controller's own writes of runs and stages, and the
 * progress writes of dispatched tasks' workers). Changes are
 * gathered for CHANGE_MS and each changed run or pool is read once for every client; a
 * comment line every KEEPALIVE_MS keeps proxies from closing an idle stream. A client
 * that cannot keep up is dropped (its socket buffer over MAX_BUFFERED), not waited for.
 */
import type { ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import type { TaskStatus } from '../../common/model.js';
import { bounded } from '../../common/timers.js';
import { buildPoolView } from '../pools.js';
import { summarizeRun, taskView } from '../views.js';
import type { ApiSource } from './source.js';

const CHANGE_MS = 250;
const KEEPALIVE_MS = 15_000;
const MAX_BUFFERED = 1024 * 1024;
const QUIT_MS = 2000;

export class EventHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly runs = new Set<string>();
  private readonly pools = new Set<string>();
  private readonly tasks = new Set<string>();
  private flushTimer: NodeJS.Timeout | null = null;
  private readonly keepalive: NodeJS.Timeout;
  private subscriber: Redis | null = null;

  constructor(private readonly src: ApiSource) {
    this.keepalive = setInterval(() => this.send(': keepalive\n\n'), KEEPALIVE_MS);
    this.keepalive.unref();
  }

  /** Subscribe (on the first client). */
  private async start(): Promise<void> {
    if (this.subscriber) return;
    const sub = this.src.redis.duplicate();
    this.subscriber = sub;
    sub.on('error', () => undefined); // ioredis reconnects; nothing to do meanwhile
    sub.on('message', (_channel: string, message: string) => this.noted(message));
    await sub.subscribe(this.src.keys.wakeChannel(), this.src.keys.changesChannel());
  }

  /** A client's stream: the headers, then events until it goes. */
  async attach(res: ServerResponse): Promise<void> {
    await this.start();
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': stoker events\n\n');
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
  }

  async close(): Promise<void> {
    clearInterval(this.keepalive);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    for (const c of this.clients) c.end();
    this.clients.clear();
    // QUIT waits for Redis; when it is out of reach (a reason the server closes), drop
    // the connection instead of waiting for it forever.
    const sub = this.subscriber;
    if (sub) {
      await bounded(sub.quit(), QUIT_MS);
      sub.disconnect();
    }
  }

  private noted(message: string): void {
    if (message === '*' || message === '') return;
    if (message.startsWith('pool:')) this.pools.add(message.slice('pool:'.length));
    else if (message.startsWith('task:')) this.tasks.add(message.slice('task:'.length));
    else this.runs.add(message);
    this.flushTimer ??= setTimeout(() => void this.flush(), CHANGE_MS);
  }

  private async flush(): Promise<void> {
    this.flushTimer = null;
    const runs = [...this.runs];
    const pools = [...this.pools];
    const tasks = [...this.tasks];
    this.runs.clear();
    this.pools.clear();
    this.tasks.clear();
    if (this.clients.size === 0) return;
    const { store, redis, keys, queues } = this.src;
    const statuses: Record<string, TaskStatus> = tasks.length
      ? await store.getTaskStatuses(tasks).catch(() => ({}))
      : {};
    // A task's progress moves its run's progress too: its summary goes with it.
    for (const st of Object.values(statuses)) if (!runs.includes(st.runId)) runs.push(st.runId);
    for (const id of runs) {
      const run = await store.getRun(id).catch(() => null);
      if (run) this.event('run', await summarizeRun(store, run));
    }
    for (const [id, st] of Object.entries(statuses)) {
      const view = await taskView(redis, keys, id, st).catch(() => null);
      if (view) this.event('task', { ...view, runId: st.runId, stage: st.stage });
    }
    for (const name of pools) {
      const view = await buildPoolView(redis, keys, name, queues.poolCounts).catch(() => null);
      if (view) this.event('pool', view);
    }
  }

  private event(type: string, data: unknown): void {
    this.send(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private send(text: string): void {
    for (const c of this.clients) {
      if (c.writableLength > MAX_BUFFERED) {
        c.destroy();
        this.clients.delete(c);
      } else c.write(text);
    }
  }
}
