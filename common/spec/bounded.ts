/**
 * Values of a spec that have a size, each with its bound (SPEC_LIMITS, normalized.ts):
 *
 *   Duration        seconds: a number, or "30s", "10m", "2h", "1d"; at most 366 days
 *   TimerDuration   the same, at most 7 days: it becomes a Node timer (grace, stall)
 *   BackoffDelay    the same, at most 1 day (retry.backoff.delay)
 *   Quantity        a Kubernetes quantity (16Gi, 500m, 2), more than 0, as a string
 *   Replicas        a pool's worker count, an integer at most 10,000
 *   StabilizationWindow, ScalingPeriod, BacklogDuration
 *                   an autoscaled pool's durations: a window at most 1 hour, a policy's
 *                   period more than 0 and at most 30 minutes (the HPA's bounds), a
 *                   backlog or shard time more than 0 and at most 1 day
 *
 * Every refusal says the bound and what was written, at the value's path.
 */
import { z } from 'zod';
import { SPEC_LIMITS } from './normalized.js';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** `604800` -> `7d`, `3600` -> `1h`, `1800` -> `30m`, `90` -> `90s`: a bound as a spec would write it. */
const durationText = (seconds: number): string =>
  seconds % 86400 === 0
    ? `${seconds / 86400}d`
    : seconds % 3600 === 0
      ? `${seconds / 3600}h`
      : seconds % 60 === 0
        ? `${seconds / 60}m`
        : `${seconds}s`;

/**
 * A duration as seconds: a number, or a string such as "30s", "10m", "2h"; at most
 * `maxSeconds`, whose reason `why` the error gives (1e308 and "30d" for a timer are
 * refused, not overflowed).
 */
const duration = (maxSeconds: number, why: string) =>
  z
    .union([
      z.number().nonnegative(),
      z.string().transform((value, ctx) => {
        const m = DURATION.exec(value.trim());
        if (!m) {
          ctx.addIssue({
            code: 'custom',
            message: `"${value}" is not a duration (expected e.g. 30s, 10m, 2h)`,
          });
          return z.NEVER;
        }
        return Number(m[1]) * (UNIT_SECONDS[m[2] as string] ?? 1);
      }),
    ])
    .superRefine((seconds, ctx) => {
      if (seconds > maxSeconds)
        ctx.addIssue({
          code: 'custom',
          message: `must be at most ${durationText(maxSeconds)} (${maxSeconds} s): ${why} (got ${Number.isFinite(seconds) ? `${seconds} s` : 'a number too large to hold'})`,
        });
    });

/** A duration as seconds: a number, or a string such as "30s", "10m", "2h"; at most 366 days. */
export const Duration = duration(SPEC_LIMITS.durationSeconds, 'a longer one is surely a mistake');
/** A duration that becomes a timer in the worker or the controller: at most 7 days. */
export const TimerDuration = duration(
  SPEC_LIMITS.timerSeconds,
  'it becomes a timer, and a longer one is surely a mistake',
);
export const BackoffDelay = duration(
  SPEC_LIMITS.backoffSeconds,
  'a longer wait between attempts is surely a mistake',
);

/** A duration that must be more than 0 (a rate over no time, a target of no work). */
const positive = (d: ReturnType<typeof duration>, what: string) =>
  d.refine((seconds) => seconds > 0, `must be more than 0: ${what}`);

/** A scale-up or scale-down stabilisation window: at most 1 hour, as the HPA's. */
export const StabilizationWindow = duration(
  SPEC_LIMITS.stabilizationWindowSeconds,
  'the recommendations of a longer window would hold a pool at a stale size (the HPA bounds it alike)',
);
/** A scaling policy's period: more than 0, at most 30 minutes, as the HPA's. */
export const ScalingPeriod = positive(
  duration(SPEC_LIMITS.scalingPeriodSeconds, 'the HPA bounds a policy period alike'),
  'a policy limits the change over a period of time',
);
/** Seconds of work: a backlog per worker, or a shard's assumed duration. */
export const BacklogDuration = positive(
  duration(SPEC_LIMITS.backlogSeconds, 'a longer one is surely a mistake'),
  'the seconds of work it stands for',
);

/** The error of a count over its bound, with the count written. */
export const atMost = (max: number, what: string) => ({
  error: (issue: { input?: unknown }) =>
    `must be at most ${max.toLocaleString('en-US')} ${what} (got ${String(issue.input)})`,
});

const QUANTITY = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/;

/** A Kubernetes quantity (16Gi, 500m, 2), more than zero whether written as a number or a string. */
export const Quantity = z
  .union([
    z.number().positive('must be more than 0 (a request of nothing is a mistake)'),
    z
      .string()
      .regex(QUANTITY, 'a Kubernetes quantity such as 16Gi or 500m')
      .refine(
        (value) => Number(QUANTITY.exec(value)?.[1] ?? 1) > 0,
        'must be more than 0 (a request of nothing is a mistake)',
      ),
  ])
  .transform(String);

/** A worker count of a pool: at most SPEC_LIMITS.replicas. */
export const Replicas = z
  .number()
  .int()
  .max(SPEC_LIMITS.replicas, atMost(SPEC_LIMITS.replicas, 'workers in a pool'));
