/**
 * The controller's record of a run (`run:{id}` in Redis, orchestrator/store.ts). Apart
 * from common/model.ts because its spec is the whole normalised spec schema, which a
 * worker process has no use for and should not build at every start.
 */
import { z } from 'zod';
import { Condition, Phase } from '../common/model.js';
import { NormalizedSpec } from '../common/spec/normalized.js';

export const RunRecord = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.string(),
  /**
   * The frozen, normalised spec, exactly as validated at submit; checked when read back
   * for the shape the controller relies on (common/spec/normalized.ts says what and why).
   */
  spec: NormalizedSpec,
  phase: Phase,
  conditions: z.array(Condition),
  message: z.string().nullable(),
  runDir: z.string(),
  /** Working directory of the payloads unless a stage sets one: where the run was submitted from. */
  workDir: z.string(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
export type RunRecord = z.infer<typeof RunRecord>;
