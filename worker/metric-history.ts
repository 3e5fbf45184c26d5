/**
 * The worker's side of a task attempt's metric history (format: common/metric-history.ts):
 * every `metrics` event becomes a point, appended to the attempt's metrics.jsonl (the
 * whole history, which outlives Redis) and queued for the reporter's next write, which
 * adds the points to the task's capped `metrics` stream (the live views' source, and
 * the only one for a reader that does not see the runs folder).
 *
 * Memory is bounded: between two writes at most MAX_PENDING points wait for Redis; past
 * that the oldest waiting ones are left out of the stream (counted in `dropped`; the
 * file still has them). The file is written in batches (PayloadLogFile-like writer).
 */
import type { MetricPoint } from '../common/metric-history.js';

/** Where the file lines go: whole lines, batched by the writer (worker/payload-log.ts). */
export interface LineWriter {
  write(text: string): void;
  close(): Promise<void>;
}

const MAX_PENDING = 5000;

export class MetricHistory {
  private pending: MetricPoint[] = [];
  /** Points left out of the stream because too many waited between two writes. */
  dropped = 0;

  constructor(
    private readonly attempt: number,
    private readonly file: LineWriter | null,
  ) {}

  /** One metrics event: its numbers at `step` (the task's latest when the event had none). */
  record(step: number | null, at: number, values: Record<string, number>): void {
    if (Object.keys(values).length === 0) return;
    const point: MetricPoint = { a: this.attempt, s: step, t: at, m: values };
    this.file?.write(`${JSON.stringify(point)}\n`);
    this.pending.push(point);
    if (this.pending.length > MAX_PENDING) {
      const extra = this.pending.length - MAX_PENDING;
      this.pending.splice(0, extra);
      this.dropped += extra;
    }
  }

  /** The points not yet written to Redis, oldest first (and forget them). */
  take(): MetricPoint[] {
    if (this.pending.length === 0) return [];
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /** Flush and close the file. */
  async close(): Promise<void> {
    await this.file?.close();
  }
}
