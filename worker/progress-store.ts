/**
 * The reporter's ports (worker/reporter.ts): where its writes go (a ProgressStore: Redis,
 * or a fake in tests) and the timers it flushes and beats on, injected so that tests
 * move time themselves.
 *
 * The Redis store writes each ProgressWrite as one MULTI (layout in common/progress.ts):
 *   task:{id}:progress  HSET of the encoded fields
 *   task:{id}:events    XADD MAXLEN ~ EVENTS_MAXLEN, one entry per event, in order
 *   task:{id}:logs      RPUSH of the lines, LTRIM to the last LOG_TAIL_LINES
 *   task:{id}:metrics   XADD MAXLEN ~ METRICS_MAXLEN, one entry per metric point
 */
import type { Redis } from 'ioredis';
import { EVENTS_MAXLEN, LOG_TAIL_LINES, METRICS_MAXLEN, type Keys } from '../common/keys.js';
import type { MetricPoint } from '../common/metric-history.js';
import type { TaskProgress } from '../common/model.js';
import {
  encodeStreamEvent,
  readTaskProgress,
  type TaskStreamEventType,
} from '../common/progress.js';

export interface ProgressWrite {
  /** Fields to HSET on task:{id}:progress (already encoded). */
  fields: Record<string, string>;
  /** Entries to XADD to task:{id}:events, in order. */
  events: Array<{ type: TaskStreamEventType; at: string; data: unknown }>;
  /** Lines to append to task:{id}:logs. */
  logs: string[];
  /** Metric history points to XADD to task:{id}:metrics (worker/metric-history.ts). */
  points?: MetricPoint[];
}

/** Where the reporter's writes go. */
export interface ProgressStore {
  write(w: ProgressWrite): Promise<void>;
  read(): Promise<TaskProgress>;
}

export interface Timers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realTimers: Timers = {
  setInterval: (fn, ms) => {
    const h = setInterval(fn, ms);
    // The worker's lifetime is the payload's, not the timers'.
    h.unref();
    return h;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

/**
 * The Redis store: one MULTI per write (HSET, XADD ~ MAXLEN, RPUSH + LTRIM). With
 * `changes`, a write of progress fields also publishes `task:<id>` on the changes channel
 * in the same MULTI (the API's event stream; at most one per flush, a few a second).
 */
export function redisProgressStore(
  redis: Redis,
  keys: Keys,
  taskId: string,
  opts: { eventsMaxLen?: number; logTailLines?: number; changes?: boolean | undefined } = {},
): ProgressStore {
  const maxLen = opts.eventsMaxLen ?? EVENTS_MAXLEN;
  const tail = opts.logTailLines ?? LOG_TAIL_LINES;
  const progressKey = keys.taskProgress(taskId);
  const eventsKey = keys.taskEvents(taskId);
  const logsKey = keys.taskLogs(taskId);
  const metricsKey = keys.taskMetrics(taskId);
  return {
    async write(w) {
      const m = redis.multi();
      if (Object.keys(w.fields).length > 0) {
        m.hset(progressKey, w.fields);
        if (opts.changes) m.publish(keys.changesChannel(), `task:${taskId}`);
      }
      for (const e of w.events)
        m.xadd(eventsKey, 'MAXLEN', '~', maxLen, '*', ...encodeStreamEvent(e.type, e.at, e.data));
      for (const p of w.points ?? [])
        m.xadd(metricsKey, 'MAXLEN', '~', METRICS_MAXLEN, '*', 'p', JSON.stringify(p));
      if (w.logs.length > 0) {
        m.rpush(logsKey, ...w.logs);
        m.ltrim(logsKey, -tail, -1);
      }
      const results = await m.exec();
      const failed = results?.find(([err]) => err);
      if (failed?.[0]) throw failed[0];
    },
    read: () => readTaskProgress(redis, keys, taskId),
  };
}
