/**
 * How the Job controller tracks its pods with the `batch.kubernetes.io/job-tracking`
 * finalizer, as the real one does: a pod keeps the finalizer until the controller has
 * counted it, so no finished pod is lost or counted twice.
 *
 * - countFinished: each tracked pod that finished counts once (a success, or a failure
 *   unless the podFailurePolicy ignores it or the controller deleted the pod itself), then
 *   loses the finalizer. Without a podFailurePolicy a pod counts as failed as soon as it
 *   is terminating.
 * - releasePod: a pod whose Job is gone (or going) loses the finalizer once it has
 *   finished or is being deleted.
 * - failUnscheduled: the pod garbage collector's part: a deleted pod that never got a
 *   node is marked Failed (DisruptionTarget, DeletionByPodGC) so that it can be counted.
 */
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { Clock } from '../clock.js';
import { kubeTime } from '../objects/meta.js';
import { JOB_TRACKING_FINALIZER } from '../objects/resources.js';
import type { FakeKubeStore } from '../store/store.js';
import { classify } from './failure-policy.js';
import { COMPLETION_INDEX } from './indexes.js';
import type { JobMemory } from './memory.js';
import { type JobProgress, isTerminal } from './progress.js';

/**
 * Count each tracked pod that finished once (a success, a failure by podFailurePolicy,
 * or nothing for an ignored one or one we deleted), then drop our finalizer from it.
 */
export function countFinished(
  store: FakeKubeStore,
  clock: Clock,
  job: IJob,
  m: JobMemory,
  pods: IPod[],
  progress: JobProgress,
): void {
  const spec = job.spec!;
  for (const p of pods) {
    const tracked = (p.metadata?.finalizers ?? []).includes(JOB_TRACKING_FINALIZER);
    if (!tracked) continue;
    const puid = p.metadata!.uid!;
    if (!isTerminal(p)) {
      if (p.metadata?.deletionTimestamp && !p.spec?.nodeName) failUnscheduled(store, clock, p);
      else if (
        p.metadata?.deletionTimestamp &&
        !spec.podFailurePolicy &&
        !m.deletedByUs.has(puid) &&
        !m.countedEarly.has(puid)
      ) {
        // Without a podFailurePolicy a terminating pod is a failure at once (as in the real controller).
        m.countedEarly.add(puid);
        progress.failed += 1;
      }
      continue;
    }
    if (m.countedEarly.has(puid)) {
      m.countedEarly.delete(puid);
    } else if (!m.deletedByUs.has(puid) || p.status?.phase === 'Succeeded') {
      countOutcome(job, p, progress);
    }
    m.deletedByUs.delete(puid);
    store.mutate<IPod>('pods', p.metadata!.namespace, p.metadata!.name!, (o) => {
      o.metadata!.finalizers = (o.metadata!.finalizers ?? []).filter(
        (f) => f !== JOB_TRACKING_FINALIZER,
      );
    });
  }
  if (progress.indexed) progress.succeeded = progress.completed.size;
}

function countOutcome(job: IJob, p: IPod, progress: JobProgress): void {
  const outcome = classify(job, p);
  const idx = Number(p.metadata?.annotations?.[COMPLETION_INDEX]);
  if (outcome.kind === 'succeeded') {
    if (progress.indexed && Number.isInteger(idx)) progress.completed.add(idx);
    else progress.succeeded += 1;
  } else if (outcome.kind === 'failed') progress.failed += 1;
  else if (outcome.kind === 'failJob') {
    progress.failed += 1;
    progress.failJob ??= outcome.message;
  }
}

/** Drop our finalizer from a pod nobody will count any more, once it is finished or going. */
export function releasePod(store: FakeKubeStore, clock: Clock, p: IPod): void {
  if (!isTerminal(p) && !p.metadata?.deletionTimestamp) return;
  if (!p.spec?.nodeName && !isTerminal(p)) failUnscheduled(store, clock, p);
  store.mutate<IPod>('pods', p.metadata!.namespace, p.metadata!.name!, (o) => {
    o.metadata!.finalizers = (o.metadata!.finalizers ?? []).filter(
      (f) => f !== JOB_TRACKING_FINALIZER,
    );
  });
}

/** Pod GC: a deleted pod that never got a node is marked Failed so it can be counted. */
export function failUnscheduled(store: FakeKubeStore, clock: Clock, p: IPod): void {
  store.mutate<IPod>('pods', p.metadata!.namespace, p.metadata!.name!, (o) => {
    const status = (o.status ??= {});
    status.phase = 'Failed';
    const conds = (status.conditions ?? []).filter((c) => c.type !== 'DisruptionTarget');
    conds.push({
      type: 'DisruptionTarget',
      status: 'True',
      reason: 'DeletionByPodGC',
      message: 'PodGC: node no longer exists',
      lastTransitionTime: kubeTime(clock.now()),
    });
    status.conditions = conds;
  });
}
