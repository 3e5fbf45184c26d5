/**
 * What a pool worker publishes about itself in \`pool:{name}:workers\` (workerId -> JSON):
 * written by the worker (worker/pool/), read by the controller, \`stoker pools\`
 * and the kubernetes backend's scale-down (idle workers go first).
 */
import { z } from 'zod';

export const WorkerState = z.object({
  workerId: z.string(),
  pid: z.number().int(),
  host: z.string(),
  state: z.enum(['starting', 'idle', 'busy', 'draining']),
  shard: z.string().nullable(),
  since: z.string(),
  heartbeatAt: z.string(),
  shardsDone: z.number().int(),
});
export type WorkerState = z.infer<typeof WorkerState>;
