/**
 * Putting the kubernetes backend together: the builder gets each attempt's stage spec
 * from the run store, and unit names map to Job names.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../../common/logger.js';
import { jobNameFor, type NormalizedSpec } from '../../../common/spec/schema.js';
import type { RunStore } from '../../store.js';
import type { LaunchRequest } from '../types.js';
import { KubernetesBackend } from './backend.js';
import { buildTrainJob } from './objects.js';
import type { KubernetesSettings } from './settings.js';

/** `${taskId}-a${attempt}` -> the Job's name. */
export function jobNameOfUnit(unitName: string): string {
  const m = /^(.*)-a(\d+)$/.exec(unitName);
  if (!m) throw new Error(`not a unit name: ${unitName}`);
  return jobNameFor(m[1] as string, Number(m[2]));
}

export async function createKubernetesBackend(opts: {
  kc: KubeConfig;
  settings: KubernetesSettings;
  store: RunStore;
  log: Logger;
  /** Plain variables for workers (STOKER_PREFIX...). */
  workerEnv?: Record<string, string>;
}): Promise<KubernetesBackend> {
  const { settings, store } = opts;
  const backend = new KubernetesBackend({
    kc: opts.kc,
    namespace: settings.namespace,
    log: opts.log,
    jobName: jobNameOfUnit,
    async build(req: LaunchRequest) {
      const run = await store.mustGetRun(req.runId);
      const stageSpec = (run.spec as NormalizedSpec).stages.find((s) => s.name === req.stage);
      if (!stageSpec) throw new Error(`stage ${req.stage} is not in run ${req.runId}`);
      return buildTrainJob({
        ...req,
        stageSpec,
        image: stageSpec.image ?? settings.workerImage,
        namespace: settings.namespace,
        workerCommand: settings.workerCommand,
        env: opts.workerEnv ?? {},
        settings,
        runLabels: (run.spec as NormalizedSpec).labels,
      });
    },
  });
  await backend.start();
  return backend;
}
