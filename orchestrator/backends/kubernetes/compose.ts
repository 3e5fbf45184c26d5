/**
 * Putting the kubernetes backend together: the builder gets each attempt's stage spec
 * from the run store, unit names map to Job names, and once the caches are filled the
 * orphans of earlier controllers are collected (gc.ts), before the dispatcher takes any
 * work: startSystem() calls this after this controller became the leader, so a standby
 * never deletes anything. Collection runs again every settings.gcIntervalSeconds.
 *
 * Pools: a pool's pods are built from the spec of the pulled stage that declares it (its
 * image, kubernetes block, secretEnv and grace). The pool record names that stage
 * (`declaredBy`, `${runId}/${stage}`, written by registerPool: the last stage that
 * registered the pool) and the stage spec is read from the run store, frozen with the
 * run, when a worker is created. Why a reference and not a copy of those fields in the
 * pool record: the builder takes the whole normalised stage, which already lives in the
 * run store, so nothing is duplicated and nothing can drift between the two; and it is
 * read only when a worker is started, not on every pass. A pool whose declaring run was
 * deleted cannot grow (logged) but still shrinks. Pool records from before `declaredBy`
 * fall back to a current user of the pool (pool:{name}:users).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../../common/logger.js';
import { accessPolicy } from './access-rules.js';
import { jobNameFor, type NormalizedStage } from '../../../common/spec/schema.js';
import type { RunRecord } from '../../run-record.js';
import type { RunStore } from '../../store.js';
import type { LaunchRequest, PoolSpec } from '../types.js';
import { KubernetesBackend, type KubernetesBackendOptions } from './backend.js';
import { attemptLookup } from './collector.js';
import { buildPoolWorkerJob } from './pool-worker-job.js';
import type { PoolSupport } from './pool-workers.js';
import type { PublishedState } from './pools.js';
import { runFilesConfigMap, runFilesOf } from './run-files.js';
import { WorkerState } from '../../../common/worker-state.js';
import type { KubernetesSettings } from './settings.js';
import { buildTrainJob } from './train-job.js';

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
  /**
   * Pool workers outlive this controller (default true): a normal stop leaves them to the
   * next leader. False for a cluster that stops with this process (`--simulate`).
   */
  poolsOutliveController?: boolean;
  /** Watch liveness, rate limit (tests). */
  tuning?: Pick<KubernetesBackendOptions, 'quietMs' | 'gate'>;
}): Promise<KubernetesBackend> {
  const { settings, store } = opts;
  const backend = new KubernetesBackend({
    kc: opts.kc,
    namespace: settings.namespace,
    log: opts.log,
    jobName: jobNameOfUnit,
    access: accessPolicy(settings),
    requireImageDigests: settings.requireImageDigests,
    ...opts.tuning,
    async build(req: LaunchRequest) {
      const run = await store.mustGetRun(req.runId);
      const stageSpec = run.spec.stages.find((s) => s.name === req.stage);
      if (!stageSpec) throw new Error(`stage ${req.stage} is not in run ${req.runId}`);
      return buildTrainJob({
        ...req,
        ...podBase(stageSpec, settings, opts.workerEnv),
        runLabels: run.spec.labels,
        runFiles: runFilesOf(run.id, run.spec),
      });
    },
    pools: poolSupport(opts),
  });
  await backend.start();
  if (opts.collectGarbage ?? true) {
    const lookup = attemptLookup(
      (taskId) => store.getTask(taskId),
      async (runId) => (await store.getRun(runId)) !== null,
    );
    try {
      const collected = await backend.collectGarbage(lookup);
      opts.log.info({ collected: collected.length }, 'orphans collected');
    } catch (err) {
      // Not fatal: the orphans stay until the next pass (or their TTL).
      opts.log.error({ err }, 'garbage collection failed');
    }
    backend.collectGarbageEvery(settings.gcIntervalSeconds * 1000, lookup);
  }
  return backend;
}

/** What every pod of a stage is built from: its spec, image, namespace and the settings. */
function podBase(
  stageSpec: NormalizedStage,
  settings: KubernetesSettings,
  workerEnv: Record<string, string> | undefined,
) {
  return {
    stageSpec,
    image: stageSpec.image ?? settings.workerImage,
    namespace: settings.namespace,
    workerCommand: settings.workerCommand,
    env: workerEnv ?? {},
    settings,
  };
}

/** `${runId}/${stage}` -> its parts (run ids have no "/"; stage names neither). */
function splitUser(user: string): { runId: string; stage: string } | null {
  const at = user.lastIndexOf('/');
  return at > 0 ? { runId: user.slice(0, at), stage: user.slice(at + 1) } : null;
}

function poolSupport(opts: {
  settings: KubernetesSettings;
  store: RunStore;
  workerEnv?: Record<string, string>;
  poolsOutliveController?: boolean;
}): PoolSupport {
  const { settings, store } = opts;
  const { redis, keys } = store;
  /** The pulled stage whose spec the pool's pods are built from. */
  const declaringStage = async (
    pool: PoolSpec,
  ): Promise<{ run: RunRecord; stage: NormalizedStage } | null> => {
    const users = pool.declaredBy
      ? [pool.declaredBy]
      : await redis.smembers(keys.poolUsers(pool.name));
    for (const user of users) {
      const ref = splitUser(user);
      const run = ref && (await store.getRun(ref.runId));
      const stage = run && run.spec.stages.find((s) => s.name === ref.stage);
      if (run && stage?.pool?.name === pool.name) return { run, stage };
    }
    return null;
  };
  return {
    ...(opts.poolsOutliveController === undefined
      ? {}
      : { outliveController: opts.poolsOutliveController }),
    async build(pool, workerId) {
      const declaring = await declaringStage(pool);
      if (!declaring) return null;
      // The declaring run's files: a shard of another run that lists files runs in its
      // own copy under its run folder (worker/env.ts), on the runs volume.
      const runFiles = runFilesOf(declaring.run.id, declaring.run.spec);
      const job = buildPoolWorkerJob(pool, workerId, {
        ...podBase(declaring.stage, settings, opts.workerEnv),
        runFiles,
      });
      return { job, ...(runFiles ? { configMap: runFilesConfigMap(job, runFiles) } : {}) };
    },
    async workerStates(pool) {
      const raw = await redis.hgetall(keys.poolWorkers(pool));
      return new Map(
        Object.entries(raw).map(([id, json]): [string, PublishedState] => {
          try {
            const parsed = WorkerState.safeParse(JSON.parse(json));
            return [id, parsed.success ? parsed.data : 'starting'];
          } catch {
            return [id, 'starting'];
          }
        }),
      );
    },
    async forgetWorkers(pool, workerIds) {
      if (workerIds.length) await redis.hdel(keys.poolWorkers(pool), ...workerIds);
    },
  };
}
