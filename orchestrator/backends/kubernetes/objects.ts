/**
 * Desired objects of the kubernetes backend (README, "Kubernetes"; docs/kubernetes.md): pure
 * functions from a launch request and the stage's normalised spec to the Jobs and
 * Services the backend creates. Nothing here talks to the API server; the backend
 * creates these (AlreadyExists = already launched), watches them by label, and deletes
 * them with propagationPolicy Background. One builder per kind of object:
 *
 *   buildTrainJob(req)          train-job.ts: one attempt of a dispatched task, a Job of
 *                               one pod per node, and a gang's headless Service
 *   buildPoolWorkers(pool, ctx) pool-worker-job.ts: one Job per pool worker (why not a
 *                               Deployment: see there)
 *   buildAll(spec, runId, s)    here: every object a run would create (`stoker render`)
 *
 * and what they share: job-spec.ts (the Job around the pod, its failure policy and
 * labels), pod-spec.ts (the pod: security, resources, placement, volumes) and pod-env.ts
 * (its environment). Every pod runs `stoker worker ...` (the worker command, never a
 * shell string) through the launcher stoker-env-fd as a non-root user with a restricted
 * security context, gets the Redis URL and the spec's secrets as secretKeyRef references
 * (never values: a value in an object would be readable by anyone who may read Jobs),
 * which the launcher moves out of the worker's environ (its payload could read them
 * there), and no service-account token (workers never call the API server).
 */
import type { V1ConfigMap, V1Job, V1Service } from '@kubernetes/client-node';
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import { taskIdFor } from '../../store.js';
import { kubernetesOf } from './job-spec.js';
import { poolWorkerIdFor } from './names.js';
import { buildPoolWorkers } from './pool-worker-job.js';
import { runFilesConfigMap, runFilesOf } from './run-files.js';
import type { KubernetesSettings } from './settings.js';
import { buildTrainJob } from './train-job.js';

export { NON_RETRYABLE_EXIT_CODES } from './job-spec.js';
export { WORKER_CONTAINER } from './pod-spec.js';
export {
  buildPoolWorkerJob,
  buildPoolWorkers,
  type PoolWorkersContext,
} from './pool-worker-job.js';
export {
  buildTrainJob,
  ownedByJob,
  type TrainJobObjects,
  type TrainJobRequest,
} from './train-job.js';

/**
 * Every object a run would create, in creation order, as the backend would build them
 * with these settings: the first attempt of each dispatched stage (its Job, then the
 * ConfigMap of the run's files when its spec lists any, then a gang's Service), and each pool's workers at the replicas the spec starts it with
 * (worker ids `${pool}-0`, `${pool}-1`...; the backend uses random ones), each with its
 * ConfigMap of the run's files. Owner references are set only when created (they need
 * the Job's uid). For
 * `stoker render`.
 */
export function buildAll(
  spec: NormalizedSpec,
  runId: string,
  settings: KubernetesSettings,
): Array<V1Job | V1Service | V1ConfigMap> {
  const objects: Array<V1Job | V1Service | V1ConfigMap> = [];
  const pools = new Set<string>();
  const home = settings.runsVolume?.mountPath ?? '/var/lib/stoker';
  const runFiles = runFilesOf(runId, spec);
  for (const stage of spec.stages) {
    const image = stage.image ?? settings.workerImage;
    const namespace = kubernetesOf(stage, false).namespace ?? settings.namespace;
    if (stage.pool && stage.input) {
      if (pools.has(stage.pool.name)) continue;
      pools.add(stage.pool.name);
      const workers = buildPoolWorkers(
        { name: stage.pool.name, resources: stage.pool.resources },
        {
          stageSpec: stage,
          workerIds: Array.from({ length: stage.pool.replicas }, (_, i) =>
            poolWorkerIdFor(stage.pool?.name ?? '', i),
          ),
          image,
          namespace,
          workerCommand: settings.workerCommand,
          env: {},
          settings,
          runFiles,
        },
      );
      for (const job of workers)
        objects.push(job, ...(runFiles ? [runFilesConfigMap(job, runFiles)] : []));
      continue;
    }
    const taskId = taskIdFor(runId, stage.name);
    const attempt = 1;
    const { job, service, configMap } = buildTrainJob({
      // The unit name as orchestrator/dispatcher.ts's unitNameFor makes it.
      unitName: `${taskId}-a${attempt}`,
      taskId,
      runId,
      stage: stage.name,
      attempt,
      runDir: `${home}/runs/${runId}`,
      resources: stage.resources,
      activeDeadlineSeconds: stage.activeDeadlineSeconds,
      terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
      stageSpec: stage,
      image,
      namespace,
      workerCommand: settings.workerCommand,
      env: {},
      settings,
      runLabels: spec.labels,
      runFiles,
    });
    objects.push(job);
    if (configMap) objects.push(configMap);
    if (service) objects.push(service);
  }
  return objects;
}
