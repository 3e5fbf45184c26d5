/**
 * The workers of a pool, one Job (of one pod) per worker, not a Deployment:
 *
 *   - Scale-down must stop idle workers first and never kill a busy one mid-shard. A
 *     Deployment's scale-down picks its victims by its own rules (pod-deletion-cost
 *     annotations can steer it, but they would have to be rewritten on every
 *     idle/busy change, and the ReplicaSet still races them); with one Job per worker the
 *     controller chooses exactly which worker stops: it asks that worker to drain (Redis),
 *     or deletes that worker's Job.
 *   - A draining worker finishes its shard and exits 0. In a Deployment (restartPolicy
 *     Always) the kubelet would start it again; a Job's pod that exits 0 is done.
 *   - A crashed worker fails its Job (backoffLimit 0); the controller's next pass sees
 *     fewer workers than desired and starts a new one: one level-triggered path for
 *     scale-up and replacement, as in the local backend.
 *   - With Kueue, each worker is admitted on its own, so a pool grows as quota allows.
 *
 * Labels carry the pool and the worker id; annotations the full names, which pool
 * sizing reads (pools.ts). The pods are built from the spec of the pulled stage that
 * declares the pool (compose.ts says why).
 */
import type { V1Job } from '@kubernetes/client-node';
import {
  labelValueFor,
  type NormalizedStage,
  type Resources,
} from '../../../common/spec/schema.js';
import type { PoolSpec } from '../types.js';
import { commonLabels, kubernetesOf, workerJob } from './job-spec.js';
import { ANNOTATIONS, COMPONENTS, LABELS, poolWorkerJobName } from './names.js';
import { buildPodSpec } from './pod-spec.js';
import { mountRunFiles, type RunFiles } from './run-files.js';
import type { KubernetesSettings } from './settings.js';

export interface PoolWorkersContext {
  /** The pulled stage that declares the pool: its image, kubernetes block, secrets, grace. */
  stageSpec: NormalizedStage;
  /** One Job per id (the backend picks ids: poolWorkerIdFor(pool, randomHex)). */
  workerIds: string[];
  image: string;
  namespace: string;
  workerCommand: string[];
  env: Record<string, string>;
  settings: KubernetesSettings;
  /**
   * The declaring run's files (spec.files), mounted from a ConfigMap per worker Job
   * (run-files.ts: poolWorkerFiles builds it).
   */
  runFiles?: RunFiles | undefined;
}

/** The Jobs of the given workers of a pool (buildAll, tests). */
export function buildPoolWorkers(pool: PoolSpec, ctx: PoolWorkersContext): V1Job[] {
  return ctx.workerIds.map((id) => buildPoolWorkerJob(pool, id, ctx));
}

/**
 * The Job of one worker of the pool: `stoker worker --pool NAME --worker-id ID` (through
 * settings.workerLauncher: pod-spec.ts), one pod.
 */
export function buildPoolWorkerJob(
  pool: PoolSpec,
  workerId: string,
  ctx: Omit<PoolWorkersContext, 'workerIds'>,
): V1Job {
  const resources: Resources = { ...pool.resources, nodes: 1 };
  const k = kubernetesOf(ctx.stageSpec, resources.gpus > 0);
  const name = poolWorkerJobName(workerId);
  const labels: Record<string, string> = {
    ...commonLabels(COMPONENTS.pool),
    [LABELS.pool]: labelValueFor(pool.name),
    [LABELS.workerId]: labelValueFor(workerId),
  };
  const annotations = { [ANNOTATIONS.pool]: pool.name, [ANNOTATIONS.workerId]: workerId };
  const podSpec = buildPodSpec({
    settings: ctx.settings,
    k,
    kind: ctx.stageSpec.kind,
    resources,
    image: ctx.image,
    command: [...ctx.workerCommand, 'worker', '--pool', pool.name, '--worker-id', workerId],
    env: ctx.env,
    secretEnv: ctx.stageSpec.payload.secretEnv,
    extraEnv: [],
    graceSeconds: ctx.stageSpec.terminationGracePeriodSeconds,
    ports: [],
  });
  if (ctx.runFiles) mountRunFiles(podSpec, name, ctx.runFiles);
  return workerJob({
    name,
    namespace: ctx.namespace,
    labels,
    annotations,
    k,
    pods: 1,
    indexed: false,
    podSpec,
  });
}
