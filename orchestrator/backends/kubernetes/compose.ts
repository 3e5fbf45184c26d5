/**
 * Putting the kubernetes backend together: the builder gets each attempt's stage spec
 * from the run store, unit names map to Job names, and once the caches are filled the
 * orphans of earlier controllers are collected (gc.ts), before the dispatcher takes any
 * work: startSystem() calls this after this controller became the leader, so a standby
 * never deletes anything.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../../common/logger.js';
import { jobNameFor, type NormalizedSpec } from '../../../common/spec/schema.js';
import type { RunStore } from '../../store.js';
import type { LaunchRequest } from '../types.js';
import { attemptLookup, KubernetesBackend, type KubernetesBackendOptions } from './backend.js';
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
  /** Collect orphans at start (default true). */
  collectGarbage?: boolean;
  /** Watch liveness, rate limit (tests). */
  tuning?: Pick<KubernetesBackendOptions, 'quietMs' | 'gate'>;
}): Promise<KubernetesBackend> {
  const { settings, store } = opts;
  const backend = new KubernetesBackend({
    kc: opts.kc,
    namespace: settings.namespace,
    log: opts.log,
    jobName: jobNameOfUnit,
    ...opts.tuning,
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
  if (opts.collectGarbage ?? true) {
    try {
      const collected = await backend.collectGarbage(
        attemptLookup(
          (taskId) => store.getTask(taskId),
          async (runId) => (await store.getRun(runId)) !== null,
        ),
      );
      opts.log.info({ collected: collected.length }, 'orphans collected');
    } catch (err) {
      // Not fatal: the orphans stay until the next start (or their TTL).
      opts.log.error({ err }, 'garbage collection failed');
    }
  }
  return backend;
}
