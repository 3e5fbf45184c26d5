/**
 * Units of the kubernetes backend: one attempt of a dispatched task is one Job (one pod,
 * or an Indexed Job with one pod per node plus a headless Service for rendezvous), built
 * by the caller's `build` (objects.ts).
 *
 *   launch     create the Job, then a gang's Service and the ConfigMap of the run's
 *              files (run-files.ts), each owned by it. Idempotent: the Job's
 *              name is deterministic (jobNameFor(taskId, attempt)) and 409 AlreadyExists
 *              means "re-attach" (created by a controller that died, or by this request
 *              before its answer was lost); a Service or ConfigMap missing after a crash
 *              between the creates is created on re-attach
 *   observe    what the caches say of the Job (observe.ts turns it into a UnitState);
 *              the only request is one GET of a Job not cached yet and not just created
 *              by this backend (re-attaching to one an earlier controller created a
 *              moment before it died)
 *   wait       observe at every change of the Job, its pods or its events (cache.ts),
 *              until it is no longer Running. A Job that failed for good (its pods can
 *              never start) is deleted at once, or it would wait for ever. Once the
 *              backend is closed a wait never answers: the unit goes on running, and the
 *              next leader re-attaches
 *   terminate  delete the Job (Background): its pods get SIGTERM and their grace period
 *              (force: none)
 */
import type { V1ConfigMap, V1Job, V1Service } from '@kubernetes/client-node';
import type { LaunchRequest, UnitState } from '../types.js';
import { isHttpStatus } from './api-gate.js';
import type { BackendParts } from './cache.js';
import { ownedByJob } from './train-job.js';
import { observeJob, type Observed } from './observe.js';

export interface UnitBuilders {
  /** Builds the objects of one attempt (objects.ts), given what the dispatcher knows. */
  build(req: LaunchRequest): Promise<UnitObjects> | UnitObjects;
  /** Job name of a unit: the unit name is `${taskId}-a${attempt}`; the Job name is DNS-safe. */
  jobName(unitName: string): string;
}

/** What one attempt creates: its Job, and owned by it a gang's Service and the run's files. */
export interface UnitObjects {
  job: V1Job;
  service?: V1Service | undefined;
  configMap?: V1ConfigMap | undefined;
}

export class Units {
  constructor(
    private readonly parts: BackendParts,
    private readonly builders: UnitBuilders,
  ) {}

  async launch(req: LaunchRequest): Promise<{ attached: boolean }> {
    const { api, cache, log } = this.parts;
    const { job, service, configMap } = await this.builders.build(req);
    const name = job.metadata?.name ?? this.builders.jobName(req.unitName);
    let uid: string | undefined;
    let attached = false;
    try {
      const created = await api.createJob(job);
      uid = created.metadata?.uid;
      cache.noteCreated(name, created);
      log.info({ job: name }, 'created Job');
    } catch (err) {
      // AlreadyExists: created before (by a controller that died, or by this request
      // before its answer was lost): the same attempt, so re-attach.
      if (!isHttpStatus(err, 409)) throw err;
      attached = true;
    }
    if (service || configMap) {
      // Created after their Job and owned by it, so that deleting the Job (or its TTL)
      // deletes them. A crash between the creates is mended here on re-attach.
      uid ??= (cache.cachedJob(name) ?? (await api.readJob(name)))?.metadata?.uid;
      const own = <T extends V1Service | V1ConfigMap>(o: T): T =>
        uid ? ownedByJob(o, { name, uid }) : o;
      if (configMap) await api.createConfigMap(own(configMap));
      if (service) await api.createService(own(service));
    }
    return { attached };
  }

  async observe(unitName: string): Promise<UnitState> {
    return (await this.observeName(this.builders.jobName(unitName))).state;
  }

  async wait(
    unitName: string,
    signal?: AbortSignal,
    onNote?: (note: string) => void,
  ): Promise<UnitState> {
    const { api, cache, log } = this.parts;
    const name = this.builders.jobName(unitName);
    for (;;) {
      // Closed (this controller stops; units outlive it): never answer, or the dispatcher
      // would record an outcome for a unit that goes on running. The next leader re-attaches.
      if (this.parts.closed()) await new Promise<never>(() => undefined);
      const seen = cache.versionOf(name);
      const { state, note } = await this.observeName(name);
      log.debug({ unit: unitName, phase: state.phase, note }, 'unit observed');
      if (note) onNote?.(note);
      if (state.phase !== 'Running' || signal?.aborted) {
        if (state.phase === 'Failed' && state.retryable === false) {
          // Fail fast: a Job whose pods cannot start would otherwise wait for ever.
          await api.deleteJob(name, 0).catch(() => undefined);
        }
        return state;
      }
      // Something changed while we read: read again before sleeping.
      if (cache.versionOf(name) !== seen) continue;
      await cache.nextChange(name, signal);
    }
  }

  async terminate(
    unitName: string,
    opts: { graceSeconds: number; force?: boolean },
  ): Promise<void> {
    const name = this.builders.jobName(unitName);
    await this.parts.api.deleteJob(name, opts.force ? 0 : opts.graceSeconds);
  }

  /**
   * What the caches say of a Job. One not cached yet is the one this backend just created
   * (the create's answer), or else is read once.
   */
  private async observeName(name: string): Promise<Observed> {
    const { api, cache } = this.parts;
    const job = cache.job(name) ?? (await api.readJob(name));
    const failedCreates = cache.failedCreatesOf(name, job?.metadata?.uid);
    return observeJob(job, cache.podsOf(name), failedCreates);
  }
}
