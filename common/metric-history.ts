/**
 * A task attempt's metric history: the points the worker keeps of every `metrics` event
 * a payload sends (worker/metric-history.ts), and what readers decode
 * (orchestrator/metric-history.ts).
 *
 * One point, as a line of the attempt's metrics.jsonl (common/paths.ts) and as the `p`
 * field of an entry of the task's `metrics` stream (common/keys.ts):
 *
 *   {"a": 2, "s": 140, "t": 1765120000123, "m": {"loss": 0.71, "lr": 0.0002}}
 *
 *   a  attempt; s  step (the event's, else the task's latest, null before any step);
 *   t  the worker's clock (ms); m  the event's numbers (nulls dropped: "no value").
 *
 * Short keys: a training run at 100k steps keeps 100k of these.
 */
export interface MetricPoint {
  a: number;
  s: number | null;
  t: number;
  m: Record<string, number>;
}

/** Decode one stored point; null when it is not one (a hand edit, a torn last line). */
export function decodeMetricPoint(text: string): MetricPoint | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { a, s, t, m } = v as Record<string, unknown>;
  if (typeof a !== 'number' || typeof t !== 'number') return null;
  if (s !== null && typeof s !== 'number') return null;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return null;
  const values: Record<string, number> = {};
  for (const [k, x] of Object.entries(m as Record<string, unknown>))
    if (typeof x === 'number' && Number.isFinite(x)) values[k] = x;
  return { a, s, t, m: values };
}
