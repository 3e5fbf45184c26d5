/**
 * What the autoscaler keeps and shows, as zod schemas: the types are inferred from them,
 * the pool record (orchestrator/pools.ts) checks them when read back from Redis, and the
 * OpenAPI document (PoolView) is built from them.
 *
 *   PoolDecision     the decision of the last pass: replicas, reason and message, the
 *                    HPA-like conditions, and the figures it was made from (shown by
 *                    `stoker pools`, GET /api/v1/pools and the dashboard)
 *   AutoscalerMemory what the next decision needs of the past: the last desired count,
 *                    the recommendations of the stabilisation windows, the changes
 *                    within the rate-limit periods, since when the queue is empty, and
 *                    the service-time estimate with its cursor over the completions
 *   PoolPin          a manual size set by `stoker scale` (until `--auto`, or an end)
 */
import { z } from 'zod';

/** Like the HPA's: AbleToScale, ScalingActive, ScalingLimited. */
export const ScalingCondition = z.object({
  type: z.enum(['AbleToScale', 'ScalingActive', 'ScalingLimited']),
  status: z.enum(['True', 'False']),
  /** CamelCase, e.g. ScaleDownStabilized, Pinned, TooManyReplicas. */
  reason: z.string(),
  message: z.string(),
});
export type ScalingCondition = z.infer<typeof ScalingCondition>;

/** Where the seconds a shard takes came from. */
export const ServiceSource = z.enum(['measured', 'assumed', 'none']);
export type ServiceSource = z.infer<typeof ServiceSource>;

export const PoolDecision = z.object({
  /** The replicas asked of the backend. */
  desired: z.number().int().nonnegative(),
  /** What the backlog asks for, before stabilisation, rate limits and bounds. */
  recommendation: z.number().int().nonnegative(),
  /** The one reason that explains `desired` (a condition's reason, e.g. ScaleUpLimit). */
  reason: z.string(),
  message: z.string(),
  conditions: z.array(ScalingCondition),
  /** When it was made (ISO). */
  at: z.string(),
  /** The figures it was made from. */
  inputs: z.object({
    /** waiting + prioritized + delayed + active shards of the pool's queue. */
    backlog: z.number().int().nonnegative(),
    active: z.number().int().nonnegative(),
    /** Seconds one worker takes per shard (null: not known). */
    shardSeconds: z.number().nullable(),
    shardSecondsSource: ServiceSource,
    /** Shard durations the estimate has seen. */
    samples: z.number().int().nonnegative(),
    /** Since when the queue has been empty (ISO; null: it holds shards). */
    emptySince: z.string().nullable(),
    /**
     * Seconds from asking for a worker to its being ready (pod start and model load) the
     * decision assumed, and where it came from (absent: a fixed pool).
     */
    startupSeconds: z.number().optional(),
    startupSource: z.enum(['measured', 'default']).optional(),
  }),
});
export type PoolDecision = z.infer<typeof PoolDecision>;

/** The seconds a shard takes on one worker: an EWMA over shard durations (service-time.ts). */
export const ServiceEstimate = z.object({
  seconds: z.number().nullable(),
  samples: z.number().int().nonnegative(),
  /** The score (ms) of the newest completion read: the next pass reads after it. */
  cursorMs: z.number(),
});
export type ServiceEstimate = z.infer<typeof ServiceEstimate>;

export const AutoscalerMemory = z.object({
  /** The replicas last decided: the base of the rate limits and the stabilisation. */
  desired: z.number().int().nonnegative(),
  /**
   * Recommendations as a step function, [atMs, replicas], oldest first: an entry only
   * where the value changed, the one in force at the start of the longest window kept.
   */
  recommendations: z.array(z.tuple([z.number(), z.number().int()])),
  /** Changes of `desired` within the longest policy period, [atMs, delta], oldest first. */
  changes: z.array(z.tuple([z.number(), z.number().int()])),
  /** Since when the queue holds no shard (null: it holds some). */
  emptySinceMs: z.number().nullable(),
  service: ServiceEstimate,
  /**
   * The pool's start-to-ready time last measured (seconds; absent or null: never), kept
   * for when no worker is up to measure it (decide.ts, provisioning-aware sizing).
   */
  startupSeconds: z.number().nullable().optional(),
});
export type AutoscalerMemory = z.infer<typeof AutoscalerMemory>;

export const emptyMemory = (desired: number): AutoscalerMemory => ({
  desired,
  recommendations: [],
  changes: [],
  emptySinceMs: null,
  service: { seconds: null, samples: 0, cursorMs: 0 },
});

export const PoolPin = z.object({
  replicas: z.number().int().nonnegative(),
  /** When it was set (ISO). */
  at: z.string(),
  /** When it ends (ISO; null: until `stoker scale POOL --auto`). */
  until: z.string().nullable(),
  /** Who set it: `cli:<user>`, `api:admin`. */
  by: z.string(),
});
export type PoolPin = z.infer<typeof PoolPin>;
