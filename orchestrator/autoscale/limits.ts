/**
 * Lowering a decision after decide() (budget.ts, provisioning.ts), pure: the decision
 * keeps one story. `desired` becomes the limit, the memory the next pass starts from
 * records the limited size (the rate limits and the stabilisation count from what was
 * asked of the backend, not from what the backlog wanted), ScalingLimited carries the
 * limit's reason and message, and `reason`/`message` say it first.
 *
 *   applyLimits(decision, previousDesired, nowMs, limits) -> Decision
 *
 * Limits apply in order, each to what the one before left; one that does not lower
 * `desired` leaves no trace. A pinned pool is limited too (a pin cannot hold GPUs the
 * budget does not have, nor pods the scheduler cannot place).
 */
import type { Decision } from './decide.js';
import type { ScalingCondition } from './records.js';

export interface Limit {
  /** The most replicas allowed. */
  replicas: number;
  /** CamelCase, e.g. GpuBudget, Unschedulable. */
  reason: string;
  message: string;
}

export function applyLimits(
  d: Decision,
  previousDesired: number,
  nowMs: number,
  limits: ReadonlyArray<Limit | null>,
): Decision {
  const cut = limits.filter((l): l is Limit => l !== null);
  let desired = d.desired;
  let last: Limit | null = null;
  for (const l of cut) {
    if (l.replicas < desired) {
      desired = Math.max(0, l.replicas);
      last = l;
    }
  }
  if (!last) return d;
  const changes = d.memory.changes.filter(([at]) => at !== nowMs);
  if (desired !== previousDesired) changes.push([nowMs, desired - previousDesired]);
  const conditions: ScalingCondition[] = d.conditions.map((c) => {
    if (c.type === 'ScalingLimited')
      return { ...c, status: 'True', reason: last.reason, message: last.message };
    if (c.type === 'AbleToScale' && /^(ReadyForNewScale|SucceededRescale)$/.test(c.reason))
      return desired === previousDesired
        ? { ...c, reason: 'ReadyForNewScale', message: 'recommended size matches current size' }
        : {
            ...c,
            reason: 'SucceededRescale',
            message: `scaling from ${previousDesired} to ${desired}`,
          };
    return c;
  });
  if (!conditions.some((c) => c.type === 'ScalingLimited'))
    conditions.push({
      type: 'ScalingLimited',
      status: 'True',
      reason: last.reason,
      message: last.message,
    });
  return {
    ...d,
    desired,
    reason: last.reason,
    message: `${last.message}; ${d.message}`,
    conditions,
    memory: { ...d.memory, desired, changes },
  };
}
