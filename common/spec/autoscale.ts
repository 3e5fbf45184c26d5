/**
 * The `autoscale` block of a pool as a spec writes it (README, "Autoscaled pools"); the
 * normalised form with the defaults is NormalizedAutoscale (normalized.ts), which
 * orchestrator/autoscale/ reads.
 *
 *   autoscale:
 *     target: {backlogSecondsPerWorker: 30}    # or {shardsPerWorker: 5}; exactly one
 *     assumeShardDuration: 10s                 # until a shard has been measured
 *     idleTimeout: 5m                          # queue empty this long: minReplicas
 *     behavior:                                # the HPA's: windows and rate limits
 *       scaleUp: {stabilizationWindow: 0s, selectPolicy: Max,
 *                 policies: [{type: Workers, value: 4, period: 15s}, {type: Percent, value: 100, period: 15s}]}
 *       scaleDown: {stabilizationWindow: 5m, policies: [{type: Percent, value: 100, period: 15s}]}
 *
 * Bounds (SPEC_LIMITS): windows at most 1 hour and periods at most 30 minutes (the HPA's),
 * idleTimeout 7 days (a timer), backlog seconds and shard durations 1 day, shardsPerWorker
 * 1,000,000, a Percent policy 1000.
 */
import { z } from 'zod';
import {
  atMost,
  BacklogDuration,
  ScalingPeriod,
  StabilizationWindow,
  TimerDuration,
} from './bounded.js';
import { SPEC_LIMITS } from './normalized.js';

/** One rate limit on scaling: at most `value` workers (or percent) per `period`. */
export const ScalingPolicy = z
  .object({
    type: z.enum(['Workers', 'Percent']),
    value: z
      .number()
      .int()
      .positive()
      .max(SPEC_LIMITS.replicas, atMost(SPEC_LIMITS.replicas, 'workers or percent')),
    period: ScalingPeriod,
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.type === 'Percent' && p.value > SPEC_LIMITS.scalingPercent)
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: `a Percent policy must be at most ${SPEC_LIMITS.scalingPercent} (got ${p.value})`,
      });
  });

/** One direction of `behavior` (the HPA's HPAScalingRules); fields left out take the defaults. */
export const ScalingRules = z
  .object({
    stabilizationWindow: StabilizationWindow.optional(),
    selectPolicy: z.enum(['Max', 'Min', 'Disabled']).optional(),
    policies: z.array(ScalingPolicy).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.policies?.length === 0 && r.selectPolicy !== 'Disabled')
      ctx.addIssue({
        code: 'custom',
        path: ['policies'],
        message:
          'at least one policy (or leave policies out for the defaults; selectPolicy: Disabled turns this direction off)',
      });
  });

/**
 * A pool sized by its backlog. The bounds are the pool's minReplicas and maxReplicas (one
 * place for them, which `stoker scale` holds to as well).
 */
export const AutoscaleRequest = z
  .object({
    /** The backlog one worker should hold: seconds of work, or shards. Exactly one. */
    target: z
      .object({
        backlogSecondsPerWorker: BacklogDuration.optional(),
        shardsPerWorker: z
          .number()
          .int()
          .positive()
          .max(
            SPEC_LIMITS.shardsPerWorker,
            atMost(SPEC_LIMITS.shardsPerWorker, 'shards per worker'),
          )
          .optional(),
      })
      .strict()
      .superRefine((t, ctx) => {
        const n =
          Number(t.backlogSecondsPerWorker !== undefined) + Number(t.shardsPerWorker !== undefined);
        if (n !== 1)
          ctx.addIssue({
            code: 'custom',
            message: `give exactly one of backlogSecondsPerWorker (seconds of work per worker) or shardsPerWorker (${n === 0 ? 'neither was given' : 'not both'})`,
          });
      }),
    /** What a shard is taken to need until one has finished (backlogSecondsPerWorker). */
    assumeShardDuration: BacklogDuration.optional(),
    /** The queue empty this long: the pool goes to its minReplicas (0 included). */
    idleTimeout: TimerDuration.optional(),
    behavior: z
      .object({ scaleUp: ScalingRules.optional(), scaleDown: ScalingRules.optional() })
      .strict()
      .optional(),
  })
  .strict();
export type AutoscaleRequest = z.infer<typeof AutoscaleRequest>;
