/**
 * GET /api/v1/runs/RUN/metrics?task=T&attempt=N&points=P&metric=a,b&x=step|time: a task
 * attempt's metric history (orchestrator/metric-history.ts), each metric a series
 * downsampled to at most `points` points on the server, for the dashboard's charts.
 *
 *   task     a task id or a stage name; may be left out when the run has one task
 *   attempt  default: the task's latest
 *   points   per series, 3..10000 (default 1000)
 *   metric   only these metrics (comma-separated, or repeated)
 *   x        step (points without a step left out), time (seconds since the first
 *            point), or auto (default): step when most points have one
 *
 * The file beside the attempt's log when this server sees the run's folder, else the
 * task's stream in Redis. 404 when the attempt has neither (no metric sent yet: an empty
 * history is `series: []`, only once the attempt has started).
 */
import { z } from 'zod';
import { attemptMetricsFile } from '../../common/paths.js';
import {
  type MetricHistoryView,
  readMetricsFile,
  readMetricsStream,
  toSeries,
} from '../metric-history.js';
import { type ApiSource, NotFoundError, oneTaskOf } from './source.js';

export const HistoryQuery = z.strictObject({
  task: z.string().max(500).optional(),
  attempt: z.coerce.number().int().min(1).optional(),
  points: z.coerce.number().int().min(3).max(10_000).default(1000),
  metric: z.union([z.string().max(2000), z.array(z.string().max(200)).max(100)]).optional(),
  x: z.enum(['step', 'time', 'auto']).default('auto'),
});

export async function readHistory(
  src: ApiSource,
  runId: string,
  q: z.infer<typeof HistoryQuery>,
): Promise<MetricHistoryView> {
  const { view, t } = await oneTaskOf(src, runId, q.task);
  const attempt = q.attempt ?? t.attempt;
  if (attempt < 1 || attempt > Math.max(t.attempt, 1) || t.phase === 'Pending')
    throw new NotFoundError(`task ${t.id} has no attempt ${attempt} yet (it is at ${t.attempt})`);
  const fromFile = readMetricsFile(attemptMetricsFile(view.runDir, t.id, attempt));
  const parsed = fromFile ?? (await readMetricsStream(src.redis, src.keys, t.id, attempt));
  const metrics = (Array.isArray(q.metric) ? q.metric : (q.metric ?? '').split(','))
    .map((m) => m.trim())
    .filter((m) => m !== '');
  let x: 'step' | 'time' = q.x === 'time' ? 'time' : 'step';
  if (q.x === 'auto') {
    let withStep = 0;
    let all = 0;
    for (const c of parsed.columns.values()) {
      all += c.s.length;
      for (const s of c.s) if (!Number.isNaN(s)) withStep += 1;
    }
    x = all > 0 && withStep * 2 < all ? 'time' : 'step';
  }
  return {
    task: t.id,
    attempt,
    source: fromFile ? 'file' : 'redis',
    x,
    points: parsed.points,
    series: toSeries(parsed, { points: q.points, metrics, x }),
    skipped: parsed.skipped,
  };
}
