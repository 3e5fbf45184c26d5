/**
 * The fake cluster's Job controller (batch/v1), in-process on the fake API server's store
 * and driven by its events (no polling): creates pods from a Job's template (NonIndexed,
 * or Indexed with stable hostnames and JOB_COMPLETION_INDEX), tracks them with the
 * `batch.kubernetes.io/job-tracking` finalizer like the real controller, and writes Job
 * status (active/ready/terminating/succeeded/failed, startTime, completionTime,
 * completedIndexes) and conditions:
 *
 * - Complete (with SuccessCriteriaMet) when enough pods succeeded;
 * - Failed (after FailureTarget, once no pod is still terminating) with reason
 *   BackoffLimitExceeded, DeadlineExceeded (activeDeadlineSeconds) or PodFailurePolicy
 *   (a FailJob rule matched exit codes or pod conditions); Ignore rules (e.g. on
 *   DisruptionTarget) neither count the failure nor stop a replacement;
 * - Suspended while spec.suspend (no pods; running pods are deleted).
 *
 * A rejected pod create (e.g. a missing PriorityClass) is a Warning event FailedCreate
 * on the Job, retried with backoff and when a PriorityClass appears.
 * ttlSecondsAfterFinished deletes a finished Job (propagationPolicy Background).
 *
 * This file is the controller's loop (store events -> a work queue of Jobs -> reconcile,
 * a page of numbered steps) and its decisions; the parts: pod-tracking.ts (counting
 * finished pods once, the finalizer), failure-policy.ts, pod-creation.ts, progress.ts
 * (one reconcile's counts, conditions and status), indexes.ts, memory.ts.
 */
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IJobCondition } from 'kubernetes-models/batch/v1/JobCondition';
import type { IJobStatus } from 'kubernetes-models/batch/v1/JobStatus';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { Clock } from '../clock.js';
import type { FakeApiServer } from '../apiserver/types.js';
import { type KubeObject, KubeApiError, deepEqual, kubeTime } from '../objects/meta.js';
import { WorkQueue } from '../work-queue.js';
import { JOB_TRACKING_FINALIZER } from '../objects/resources.js';
import type { StoreEvent } from '../store/object-table.js';
import type { FakeKubeStore } from '../store/store.js';
import { type JobMemory, forgetJob, newJobMemory } from './memory.js';
import { type JobPods, createPods, podsWanted } from './pod-creation.js';
import { countFinished, releasePod } from './pod-tracking.js';
import { JobProgress, condTrue, isTerminal } from './progress.js';

export interface FakeJobControllerOptions {
  /** Time for startTime/completionTime, activeDeadlineSeconds and TTLs (default: the server's clock). */
  clock?: Clock;
  /** Delete finished Jobs after ttlSecondsAfterFinished (default true). */
  ttlAfterFinished?: boolean;
  /** First retry delay after a rejected pod create, doubling up to 10 s (real ms; default 500). */
  createRetryMs?: number;
}

export interface FakeJobController {
  /** Reconcile every Job now (normally event-driven; for tests that changed the clock). */
  resync(): void;
  stop(): void;
}

class JobControllerImpl implements FakeJobController {
  private readonly store: FakeKubeStore;
  private readonly clock: Clock;
  private readonly ttlEnabled: boolean;
  private readonly createRetryMs: number;
  private readonly queue = new WorkQueue(
    'fake job controller',
    () => this.stopped,
    (ns, name) => this.reconcile(ns, name),
  );
  private stopped = false;
  private readonly memory = new Map<string, JobMemory>();
  private readonly unsubscribe: () => void;

  constructor(server: FakeApiServer, opts: FakeJobControllerOptions) {
    this.store = server.store;
    this.clock = opts.clock ?? server.clock;
    this.ttlEnabled = opts.ttlAfterFinished ?? true;
    this.createRetryMs = opts.createRetryMs ?? 500;
    this.unsubscribe = this.store.subscribe((ev) => this.onEvent(ev));
    this.resync();
  }

  resync(): void {
    for (const j of this.store.list('jobs')) this.enqueue(j.metadata.namespace!, j.metadata.name!);
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe();
    for (const m of this.memory.values()) forgetJob(m);
    this.memory.clear();
  }

  private mem(uid: string): JobMemory {
    let m = this.memory.get(uid);
    if (!m) {
      m = newJobMemory(this.createRetryMs);
      this.memory.set(uid, m);
    }
    return m;
  }

  private onEvent(ev: StoreEvent): void {
    if (ev.resource === 'jobs') {
      if (ev.type === 'DELETED') {
        const m = this.memory.get(ev.object.metadata.uid ?? '');
        if (m) forgetJob(m);
        this.memory.delete(ev.object.metadata.uid ?? '');
        // Its pods may still carry our finalizer: release them.
        this.releaseOrphans(ev.object);
        return;
      }
      this.enqueue(ev.object.metadata.namespace!, ev.object.metadata.name!);
    } else if (ev.resource === 'pods') {
      const owner = (ev.object.metadata.ownerReferences ?? []).find(
        (r) => r.controller && r.kind === 'Job',
      );
      const ns = ev.object.metadata.namespace!;
      const ownerAlive =
        !!owner && this.store.get('jobs', ns, owner.name)?.metadata.uid === owner.uid;
      if (owner && ownerAlive) this.enqueue(ns, owner.name);
      else if (
        (ev.object.metadata.finalizers ?? []).includes(JOB_TRACKING_FINALIZER) &&
        ev.type !== 'DELETED'
      )
        releasePod(this.store, this.clock, ev.object as unknown as IPod);
    } else if (ev.resource === 'priorityclasses' && ev.type === 'ADDED') {
      for (const j of this.store.list('jobs')) {
        if (this.memory.get(j.metadata.uid!)?.createFailing)
          this.enqueue(j.metadata.namespace!, j.metadata.name!);
      }
    }
  }

  private enqueue(ns: string, name: string): void {
    this.queue.add(ns, name);
  }

  private releaseOrphans(job: KubeObject): void {
    setImmediate(() => {
      if (this.stopped) return;
      for (const p of this.store.list<IPod>('pods', { namespace: job.metadata.namespace })) {
        const owned = (p.metadata?.ownerReferences ?? []).some((r) => r.uid === job.metadata.uid);
        if (owned) releasePod(this.store, this.clock, p);
      }
    });
  }

  /**
   * Bring one Job's pods and status in line with its spec:
   *
   * 1. Load the Job and the pods it controls; a Job being deleted only lets its pods go.
   * 2. Count the pods that finished since the last reconcile (countFinished).
   * 3. Converge: suspend, fail, complete, or create the missing pods (converge).
   * 4. Write the status, counted from the pods as they are now, if it changed.
   * 5. Arm the TTL that deletes a finished Job (scheduleTtl).
   */
  private reconcile(ns: string, name: string): void {
    const job = this.store.get<IJob>('jobs', ns, name);
    if (!job) return;
    const uid = job.metadata!.uid!;
    const m = this.mem(uid);
    const pods = this.podsOf(ns, uid);
    if (job.metadata?.deletionTimestamp) {
      for (const p of pods) releasePod(this.store, this.clock, p);
      return;
    }
    const progress = new JobProgress(job, this.clock.now());
    countFinished(this.store, this.clock, job, m, pods, progress);
    const live = this.podsOf(ns, uid);
    this.converge(job, m, progress, {
      live,
      active: live.filter((p) => !isTerminal(p) && !p.metadata?.deletionTimestamp),
      terminating: live.filter((p) => !isTerminal(p) && !!p.metadata?.deletionTimestamp),
    });
    const status = progress.finalStatus(this.podsOf(ns, uid));
    if (!deepEqual(status, job.status ?? {})) {
      this.store.mutate<IJob>('jobs', ns, name, (j) => {
        j.status = status;
      });
    }
    this.scheduleTtl(job, m, status, progress.now);
  }

  /** The pods this Job controls. */
  private podsOf(ns: string, uid: string): IPod[] {
    return this.store
      .list<IPod>('pods', { namespace: ns })
      .filter((p) =>
        (p.metadata?.ownerReferences ?? []).some((r) => r.uid === uid && r.controller),
      );
  }

  /**
   * A finished Job only keeps its pods down (Failed); a suspended one has none; a running
   * one fails (a failure target, then Failed once no pod is left), completes, or gets the
   * pods it is missing (unless a create is waiting to be retried).
   */
  private converge(job: IJob, m: JobMemory, progress: JobProgress, pods: JobPods): void {
    const spec = job.spec!;
    const deleteActive = (): void => this.deleteActive(job, m, pods.active);
    if (progress.had('Complete') ?? progress.had('Failed')) {
      if (progress.had('Failed')) deleteActive();
      return;
    }
    if (spec.suspend === true) {
      deleteActive();
      if (!progress.had('Suspended'))
        progress.setCondition('Suspended', 'True', 'JobSuspended', 'Job suspended');
      m.deadline?.cancel();
      delete m.deadline;
      return;
    }
    if (progress.had('Suspended')) {
      progress.setCondition('Suspended', 'False', 'JobResumed', 'Job resumed');
      progress.status.startTime = kubeTime(progress.now);
    }
    progress.status.startTime ??= kubeTime(progress.now);
    // Failure decisions (the first one wins; the Job fails once no pod is terminating).
    const failureTarget = progress.had('FailureTarget') ?? this.failureTarget(job, m, progress);
    if (failureTarget) {
      deleteActive();
      if (pods.active.length === 0 && pods.terminating.length === 0) {
        progress.setCondition(
          'Failed',
          'True',
          failureTarget.reason ?? 'Failed',
          failureTarget.message ?? '',
        );
        m.deadline?.cancel();
      }
    } else if (isComplete(spec, progress, pods)) {
      deleteActive();
      this.complete(job, m, progress);
    } else if (!m.retry) {
      const wanted = podsWanted(spec, pods, progress.completed, progress.succeeded);
      createPods(this.store, job, m, wanted, {
        firstMs: this.createRetryMs,
        retry: () => this.enqueue(job.metadata!.namespace!, job.metadata!.name!),
      });
    }
  }

  /**
   * Whether the Job fails now: a FailJob rule matched, more failures than backoffLimit,
   * or activeDeadlineSeconds passed (until then a timer reconciles it when it passes).
   * Sets and returns the FailureTarget condition, with a Warning event.
   */
  private failureTarget(job: IJob, m: JobMemory, progress: JobProgress): IJobCondition | undefined {
    const spec = job.spec!;
    const now = progress.now;
    let reason: string | undefined;
    let message = '';
    const start = Date.parse(progress.status.startTime!);
    const ads = spec.activeDeadlineSeconds;
    if (progress.failJob) {
      reason = 'PodFailurePolicy';
      message = progress.failJob;
    } else if (progress.failed > (spec.backoffLimit ?? 6)) {
      reason = 'BackoffLimitExceeded';
      message = 'Job has reached the specified backoff limit';
    } else if (ads !== undefined && now - start >= ads * 1000) {
      reason = 'DeadlineExceeded';
      message = 'Job was active longer than specified deadline';
    } else if (ads !== undefined && m.deadlineAt !== start + ads * 1000) {
      m.deadline?.cancel();
      m.deadlineAt = start + ads * 1000;
      const ns = job.metadata!.namespace!;
      const name = job.metadata!.name!;
      m.deadline = this.clock.setTimeout(() => this.enqueue(ns, name), start + ads * 1000 - now);
    }
    if (!reason) return undefined;
    progress.setCondition('FailureTarget', 'True', reason, message);
    this.store.recordEvent(
      job as unknown as KubeObject,
      'Warning',
      reason,
      message,
      'job-controller',
    );
    return progress.conditions.find((c) => c.type === 'FailureTarget');
  }

  private complete(job: IJob, m: JobMemory, progress: JobProgress): void {
    const message = 'Reached expected number of succeeded pods';
    progress.setCondition('SuccessCriteriaMet', 'True', 'CompletionsReached', message);
    progress.setCondition('Complete', 'True', 'CompletionsReached', message);
    progress.status.completionTime = kubeTime(progress.now);
    m.deadline?.cancel();
    this.store.recordEvent(
      job as unknown as KubeObject,
      'Normal',
      'Completed',
      'Job completed',
      'job-controller',
    );
  }

  /** Delete the Job's active pods, remembering they are not failures. */
  private deleteActive(job: IJob, m: JobMemory, active: IPod[]): void {
    for (const p of active) {
      m.deletedByUs.add(p.metadata!.uid!);
      try {
        this.store.delete('pods', job.metadata!.namespace!, p.metadata!.name!);
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404)) throw err;
      }
    }
  }

  /** ttlSecondsAfterFinished: delete the finished Job (and, in the background, its pods). */
  private scheduleTtl(job: IJob, m: JobMemory, status: IJobStatus, now: number): void {
    const finishedNow = condTrue(status, 'Complete') ?? condTrue(status, 'Failed');
    const ttl = job.spec!.ttlSecondsAfterFinished;
    if (!this.ttlEnabled || !finishedNow || ttl === undefined || m.ttl) return;
    const ns = job.metadata!.namespace!;
    const name = job.metadata!.name!;
    const uid = job.metadata!.uid!;
    const at = Date.parse(finishedNow.lastTransitionTime ?? kubeTime(now)) + ttl * 1000;
    m.ttl = this.clock.setTimeout(() => {
      if (this.stopped) return;
      try {
        const cur = this.store.get<IJob>('jobs', ns, name);
        if (cur?.metadata?.uid === uid)
          this.store.delete('jobs', ns, name, {
            propagationPolicy: 'Background',
            preconditions: { uid },
          });
      } catch (err) {
        if (!(err instanceof KubeApiError)) throw err;
      }
    }, at - now);
  }
}

/** Enough pods succeeded: every index (Indexed), completions, or one with none set. */
function isComplete(
  spec: NonNullable<IJob['spec']>,
  progress: JobProgress,
  pods: JobPods,
): boolean {
  const completions = spec.completions;
  if (progress.indexed) return completions !== undefined && progress.completed.size >= completions;
  return completions !== undefined
    ? progress.succeeded >= completions
    : progress.succeeded > 0 && pods.active.length === 0;
}

export function startJobController(
  server: FakeApiServer,
  opts: FakeJobControllerOptions = {},
): FakeJobController {
  return new JobControllerImpl(server, opts);
}
