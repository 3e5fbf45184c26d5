/**
 * The planner's createTask action: start a stage whose dependencies all succeeded.
 *
 *   1. resolve the stage's `${...}` references (run, params, upstream outputs) into the
 *      payload its worker runs; one that cannot be resolved fails the stage
 *      (InvalidReference)
 *   2. describe what it consumes from upstream stages (its lineage)
 *   3. queue it: a pulled stage (a pool and an input) as shards on its pool's queue
 *      (pulled.ts), any other as one task on `train` or `steps` (dispatched.ts)
 *
 * The payload's output directory is `<runDir>/stages/<stage>`.
 */
import { runRoots } from '../untrusted-path.js';
import { join } from 'node:path';
import type { ResolvedPayload, StageStatus } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import { resolveStage } from '../../common/spec/interpolate.js';
import type { NormalizedStage } from '../../common/spec/schema.js';
import { failStage, type ControllerContext } from './context.js';
import type { DispatchedTasks } from './dispatched.js';
import type { Plan } from './plan.js';
import type { PulledStages } from './pulled.js';
import type { RunLineage } from './run-lineage.js';

/** The parts that do the queueing and the describing. */
export interface StageStarters {
  dispatched: DispatchedTasks;
  pulled: PulledStages;
  lineage: RunLineage;
}

type Upstream = Record<string, { outputs: Record<string, string> }>;

export async function startStage(
  ctx: ControllerContext,
  parts: StageStarters,
  run: RunRecord,
  stageName: string,
  plan: Plan,
): Promise<void> {
  const stage = run.spec.stages.find((s) => s.name === stageName);
  const status = plan.stages[stageName] ?? (await ctx.store.getStages(run.id))[stageName];
  if (!stage || !status) return;
  // 1. Resolve.
  const outputDir = join(run.runDir, 'stages', stage.name);
  const upstream: Upstream = Object.fromEntries(
    Object.entries(plan.stages)
      .filter(([, s]) => s.phase === 'Succeeded')
      .map(([n, s]) => [n, { outputs: s.outputs }]),
  );
  let resolved: ReturnType<typeof resolveStage>;
  try {
    resolved = resolveStage(stage, {
      run: { id: run.id, dir: run.runDir },
      params: run.spec.params,
      stageOutputDir: outputDir,
      stages: upstream,
    });
  } catch (err) {
    const message = `cannot resolve the stage's payload: ${(err as Error).message}`;
    await failStage(ctx, run.id, status, 'InvalidReference', message);
    return;
  }
  const payload = payloadOf(run, stage, resolved, outputDir);
  // 2. Describe the inputs.
  const started: StageStatus = {
    ...status,
    lineage: await parts.lineage.consumed(stage, upstream, runRoots(run)),
  };
  // 3. Queue.
  if (stage.pool && resolved.input) {
    const { input, outputs } = resolved;
    await parts.pulled.create(run, stage, started, payload, input, outputs);
    return;
  }
  await parts.dispatched.create(run, stage, status, started, {
    payload,
    outputs: resolved.outputs,
  });
}

/** What the worker runs: the resolved command and env, secrets by reference, the stage's limits. */
function payloadOf(
  run: RunRecord,
  stage: NormalizedStage,
  resolved: ReturnType<typeof resolveStage>,
  outputDir: string,
): ResolvedPayload {
  return {
    command: resolved.command,
    env: resolved.env,
    secretEnv: stage.payload.secretEnv.map((s) => ({
      name: s.name,
      fromEnv: s.fromEnv ?? s.name,
    })),
    workingDir: resolved.workingDir ?? run.workDir,
    // A spec that lists files: the run works in its files directory (run.workDir).
    ...(resolved.workingDir === undefined && run.spec.files?.length ? { runFiles: run.id } : {}),
    outputDir,
    terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
    stallTimeoutSeconds: stage.stallTimeoutSeconds,
  };
}
