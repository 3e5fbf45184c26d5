/**
 * The controller's record of a run (`run:{id}` in Redis, orchestrator/store.ts). Apart
 * from common/model.ts because its spec is the whole normalised spec schema, which a
 * worker process has no use for and should not build at every start.
 */
import { z } from 'zod';
import { Condition, Phase } from '../common/model.js';
import { NormalizedSpec } from '../common/spec/normalized.js';

/**
 * One resume of a run (`stoker resume`, POST /api/v1/runs/RUN/resume, a queue's retry),
 * as the controller applied it (orchestrator/controller/resume.ts): when, who asked, the
 * phase it left, and what each stage that runs again starts from.
 */
export const RunResume = z.object({
  /** When it was requested. */
  at: z.string(),
  /** When the controller applied it. */
  appliedAt: z.string(),
  /** Who asked: `api:admin` (the API's token role), `cli:<user>` (a local CLI). */
  by: z.string(),
  /** The phase and message the run had. */
  from: z.object({ phase: Phase, message: z.string().nullable() }),
  /** The stages that run again (the succeeded ones are kept as they were). */
  stages: z.array(
    z.object({
      name: z.string(),
      /** The stage's phase before the resume. */
      phase: Phase,
      /** A dispatched stage: the checkpoint its next attempt resumes from (RESUME_FROM). */
      checkpoint: z.object({ path: z.string(), step: z.number() }).nullable(),
      /** A pulled stage: shards kept (succeeded) and shards to run again. */
      shards: z.object({ kept: z.number().int(), rerun: z.number().int() }).nullable(),
    }),
  ),
});
export type RunResume = z.infer<typeof RunResume>;

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
  /** Every resume of this run, oldest first (absent: never resumed). */
  resumes: z.array(RunResume).optional(),
  /**
   * Submitted with --take-over-pools: a pool its spec declares with other settings than
   * the live pool's takes the spec's when its stage starts (pool-settings.ts).
   */
  takeOverPools: z.boolean().optional(),
});
export type RunRecord = z.infer<typeof RunRecord>;
