/**
 * What a pool worker publishes about itself in \`pool:{name}:workers\` (workerId -> JSON):
 * written by the worker (worker/pool/), read by the controller, \`stoker pools\`
 * and both backends' scale-down (orchestrator/autoscale/drain-order.ts: idle and cold
 * workers go first; \`shardsDone\` 0 is a worker whose model is not loaded yet).
 */
import { z } from 'zod';

export const WorkerState = z.object({
  workerId: z.string(),
  pid: z.number().int(),
  host: z.string(),
  state: z.enum(['starting', 'idle', 'busy', 'draining']),
  shard: z.string().nullable(),
  /**
   * When `shard` began on this worker (absent from workers of older versions): a
   * scale-down drains the worker whose shard is nearest its start first.
   */
  shardSince: z.string().nullable().optional(),
  since: z.string(),
  heartbeatAt: z.string(),
  /**
   * When the worker process started, and when its payload server first reported ready
   * (its model loaded; null until then). Absent from workers of older versions. The
   * autoscaler's start-to-ready time is loadedAt - startedAt over the workers up
   * (orchestrator/autoscale/decide.ts).
   */
  startedAt: z.string().optional(),
  loadedAt: z.string().nullable().optional(),
  shardsDone: z.number().int(),
});
export type WorkerState = z.infer<typeof WorkerState>;
