/**
 * The HPA's behavior, applied to a pool's recommendations (decide.ts step 4 and 5), pure:
 *
 *   remember    the recommendations as a step function (an entry where the value
 *               changes), kept as far back as the longest stabilisation window
 *   stabilize   a scale up goes to the lowest recommendation of the scale-up window, a
 *               scale down to the highest of the scale-down window (the HPA's
 *               stabilizeRecommendationWithBehaviors)
 *   rateLimit   each policy allows, within its period, `value` workers (or percent) more
 *               or fewer than the size at the period's start; Max takes the policy that
 *               allows the largest change, Min the smallest, Disabled none (the HPA's
 *               convertDesiredReplicasWithBehaviorRate, without the bounds)
 *
 * A step function rather than the HPA's list of samples: the leader passes every few
 * hundred ms under load, and a value held for a minute is one entry, not hundreds. A
 * value counts in a window for as long as it was in force, up to the next change.
 */
import type { NormalizedAutoscale, NormalizedScalingRules } from '../../common/spec/schema.js';
import type { AutoscalerMemory } from './records.js';

type Steps = AutoscalerMemory['recommendations'];
type Changes = AutoscalerMemory['changes'];

/** Add `value` at `now` to the step function, keeping what the longest window needs. */
export function remember(recs: Steps, now: number, value: number, keepMs: number): Steps {
  const out = recs.filter(([at]) => at <= now);
  if (out[out.length - 1]?.[1] !== value) out.push([now, value]);
  // Drop what ended before the window began; the entry in force at its start stays.
  const start = now - keepMs;
  let first = 0;
  while (first + 1 < out.length && (out[first + 1] as [number, number])[0] <= start) first++;
  return out.slice(first);
}

/** The values of the step function over [now - ms, now]. */
function within(recs: Steps, now: number, ms: number): number[] {
  const start = now - ms;
  const values: number[] = [];
  recs.forEach(([at, v], i) => {
    const next = recs[i + 1]?.[0] ?? Number.POSITIVE_INFINITY;
    if (next > start && at <= now) values.push(v);
  });
  return values;
}

/** Step 4 (the HPA's stabilizeRecommendationWithBehaviors). */
export function stabilize(
  current: number,
  recommended: number,
  recs: Steps,
  now: number,
  as: NormalizedAutoscale,
): { replicas: number; held: 'ScaleUpStabilized' | 'ScaleDownStabilized' | null } {
  const up = Math.min(
    recommended,
    ...within(recs, now, as.scaleUp.stabilizationWindowSeconds * 1000),
  );
  const down = Math.max(
    recommended,
    ...within(recs, now, as.scaleDown.stabilizationWindowSeconds * 1000),
  );
  let replicas = current;
  if (replicas < up) replicas = up;
  if (replicas > down) replicas = down;
  const held =
    replicas > recommended
      ? 'ScaleDownStabilized'
      : replicas < recommended
        ? 'ScaleUpStabilized'
        : null;
  return { replicas, held };
}

export interface Limited {
  replicas: number;
  reason: 'ScaleUpLimit' | 'ScaleDownLimit' | null;
  limit: number;
}

/** Step 5 (the HPA's convertDesiredReplicasWithBehaviorRate, without the bounds). */
export function rateLimit(
  current: number,
  wanted: number,
  changes: Changes,
  now: number,
  as: NormalizedAutoscale,
): Limited {
  if (wanted > current) {
    const limit = upLimit(current, changes, now, as.scaleUp);
    return wanted > limit
      ? { replicas: Math.max(current, limit), reason: 'ScaleUpLimit', limit }
      : { replicas: wanted, reason: null, limit };
  }
  if (wanted < current) {
    const limit = downLimit(current, changes, now, as.scaleDown);
    return wanted < limit
      ? { replicas: Math.min(current, limit), reason: 'ScaleDownLimit', limit }
      : { replicas: wanted, reason: null, limit };
  }
  return { replicas: wanted, reason: null, limit: wanted };
}

/** The change in one direction (sign) within the period ending now. */
function changed(changes: Changes, now: number, periodS: number, sign: 1 | -1) {
  return changes
    .filter(([at, d]) => at > now - periodS * 1000 && Math.sign(d) === sign)
    .reduce((sum, [, d]) => sum + Math.abs(d), 0);
}

function upLimit(
  current: number,
  changes: Changes,
  now: number,
  rules: NormalizedScalingRules,
): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const limits = rules.policies.map((p) => {
    const start = current - changed(changes, now, p.periodSeconds, 1);
    return p.type === 'Workers' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
  });
  return rules.selectPolicy === 'Max' ? Math.max(...limits) : Math.min(...limits);
}

function downLimit(
  current: number,
  changes: Changes,
  now: number,
  rules: NormalizedScalingRules,
): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const limits = rules.policies.map((p) => {
    const start = current + changed(changes, now, p.periodSeconds, -1);
    return Math.max(
      0,
      p.type === 'Workers' ? start - p.value : Math.floor(start * (1 - p.value / 100)),
    );
  });
  // Max: the policy that allows the largest change, the lowest floor.
  return rules.selectPolicy === 'Max' ? Math.min(...limits) : Math.max(...limits);
}
