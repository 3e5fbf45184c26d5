/**
 * Reading a task attempt's metric history (written by worker/metric-history.ts; point
 * format in common/metric-history.ts), downsampled for charts.
 *
 * Sources, best first:
 *   file   the attempt's metrics.jsonl under the run's folder: the whole history. Read
 *          incrementally: the points parsed so far are kept (columns of numbers, per
 *          metric) for the last CACHE_FILES files with the byte offset they reach, and a
 *          later read parses only what was appended since. A live chart polling a run at
 *          100k points costs the new lines, not the whole file.
 *   redis  the task's capped `metrics` stream (the last METRICS_MAXLEN points of all
 *          attempts), when the file is not on this machine (a pod's volume elsewhere).
 *
 * Downsampling (min/max buckets): a series longer than `points` is cut into points/2
 * buckets of consecutive points, and each bucket keeps its lowest and its highest value,
 * in their order; the last point is always kept. Unlike a mean or a stride, a spike in
 * the loss survives at any zoom. Hand-written, some 30 lines: the npm packages that do
 * this (LTTB ports) take arrays of point objects, which would be 100k allocations per
 * read of a long run.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Keys } from '../common/keys.js';
import { decodeMetricPoint, type MetricPoint } from '../common/metric-history.js';

export const MetricSeries = z.object({
  name: z.string(),
  /** The steps (x: "step") or seconds since the attempt's first point (x: "time"). */
  x: z.array(z.number()),
  y: z.array(z.number()),
  /** Points of this metric before downsampling. */
  total: z.number().int(),
  last: z.number().nullable(),
});
export type MetricSeries = z.infer<typeof MetricSeries>;

export const MetricHistoryView = z.object({
  task: z.string(),
  attempt: z.number().int(),
  source: z.enum(['file', 'redis']),
  x: z.enum(['step', 'time']),
  /** Points of the attempt (all metrics) before downsampling. */
  points: z.number().int(),
  series: z.array(MetricSeries),
  /** Lines of the file that were not points (a torn write, a hand edit): skipped. */
  skipped: z.number().int(),
});
export type MetricHistoryView = z.infer<typeof MetricHistoryView>;

/** One metric's points, as columns (NaN: no step). */
interface Column {
  s: number[];
  t: number[];
  v: number[];
}

interface Parsed {
  columns: Map<string, Column>;
  points: number;
  skipped: number;
  firstT: number | null;
}

const emptyParsed = (): Parsed => ({ columns: new Map(), points: 0, skipped: 0, firstT: null });

function addPoint(p: Parsed, pt: MetricPoint): void {
  p.points += 1;
  if (p.firstT === null) p.firstT = pt.t;
  for (const [name, v] of Object.entries(pt.m)) {
    let c = p.columns.get(name);
    if (!c) p.columns.set(name, (c = { s: [], t: [], v: [] }));
    c.s.push(pt.s ?? Number.NaN);
    c.t.push(pt.t);
    c.v.push(v);
  }
}

const CACHE_FILES = 8;
const READ_CHUNK = 4 * 1024 * 1024;

interface FileEntry {
  parsed: Parsed;
  offset: number;
  ino: number;
}

/** The files' parsed points, least recently used first (Map keeps insertion order). */
const fileCache = new Map<string, FileEntry>();

/** Parse what was appended to `file` since the last read; null when there is no file. */
export function readMetricsFile(file: string): Parsed | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return null;
    let entry = fileCache.get(file);
    // Rewritten or truncated (a new run folder at the same path): start again.
    if (entry && (entry.ino !== st.ino || st.size < entry.offset)) entry = undefined;
    entry ??= { parsed: emptyParsed(), offset: 0, ino: st.ino };
    fileCache.delete(file);
    fileCache.set(file, entry);
    while (fileCache.size > CACHE_FILES) fileCache.delete(fileCache.keys().next().value as string);
    while (entry.offset < st.size) {
      const len = Math.min(READ_CHUNK, st.size - entry.offset);
      const buf = Buffer.alloc(len);
      const n = readSync(fd, buf, 0, len, entry.offset);
      const end = buf.subarray(0, n).lastIndexOf(0x0a);
      if (end < 0) {
        // One line longer than a chunk is not a point a worker writes: skip past it.
        if (n === READ_CHUNK) {
          entry.parsed.skipped += 1;
          entry.offset += n;
          continue;
        }
        break; // a line still being written
      }
      for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
        if (line === '') continue;
        const pt = decodeMetricPoint(line);
        if (pt) addPoint(entry.parsed, pt);
        else entry.parsed.skipped += 1;
      }
      entry.offset += end + 1;
    }
    return entry.parsed;
  } finally {
    closeSync(fd);
  }
}

/** The attempt's points from the task's stream (oldest first). */
export async function readMetricsStream(
  redis: Redis,
  keys: Keys,
  taskId: string,
  attempt: number,
): Promise<Parsed> {
  const parsed = emptyParsed();
  const entries = (await redis.xrange(keys.taskMetrics(taskId), '-', '+')) as Array<
    [string, string[]]
  >;
  for (const [, fields] of entries) {
    const at = fields.indexOf('p');
    const pt = at >= 0 && at % 2 === 0 ? decodeMetricPoint(fields[at + 1] ?? '') : null;
    if (!pt) parsed.skipped += 1;
    else if (pt.a === attempt) addPoint(parsed, pt);
  }
  return parsed;
}

/**
 * At most `max` of the indices [0, n) of `v`: per bucket its lowest and highest value,
 * and the last index. All of them when n <= max.
 */
export function downsampleIndices(v: ArrayLike<number>, max: number): number[] {
  const n = v.length;
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const buckets = Math.max(1, Math.floor((max - 1) / 2));
  const out: number[] = [];
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor((b * n) / buckets);
    const to = Math.floor(((b + 1) * n) / buckets);
    let lo = from;
    let hi = from;
    for (let i = from + 1; i < to; i++) {
      if ((v[i] as number) < (v[lo] as number)) lo = i;
      if ((v[i] as number) > (v[hi] as number)) hi = i;
    }
    if (lo === hi) out.push(lo);
    else out.push(Math.min(lo, hi), Math.max(lo, hi));
  }
  if (out[out.length - 1] !== n - 1) out.push(n - 1);
  return out;
}

export interface HistoryQuery {
  /** At most this many points per series (>= 3). */
  points: number;
  /** Only these metrics (all when empty). */
  metrics: string[];
  /** The x axis: steps (points without a step are left out), or seconds. */
  x: 'step' | 'time';
}

/** The series of `parsed`, downsampled. */
export function toSeries(parsed: Parsed, q: HistoryQuery): MetricSeries[] {
  const names = [...parsed.columns.keys()].sort();
  const out: MetricSeries[] = [];
  const t0 = parsed.firstT ?? 0;
  for (const name of names) {
    if (q.metrics.length > 0 && !q.metrics.includes(name)) continue;
    const c = parsed.columns.get(name) as Column;
    let xs: number[];
    let ys: number[];
    if (q.x === 'step') {
      xs = [];
      ys = [];
      for (let i = 0; i < c.v.length; i++) {
        const s = c.s[i] as number;
        if (Number.isNaN(s)) continue;
        xs.push(s);
        ys.push(c.v[i] as number);
      }
    } else {
      xs = c.t.map((t) => Math.round(t - t0) / 1000);
      ys = c.v;
    }
    const keep = downsampleIndices(ys, q.points);
    out.push({
      name,
      x: keep.map((i) => xs[i] as number),
      y: keep.map((i) => ys[i] as number),
      total: ys.length,
      last: ys.length > 0 ? (ys[ys.length - 1] as number) : null,
    });
  }
  return out;
}
