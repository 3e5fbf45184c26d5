/**
 * Garbage collection of what a previous controller left behind (issue: "at start it
 * re-attaches to existing Jobs and garbage-collects orphans it owns"). Pure: the collector
 * (collector.ts) passes what the caches hold and what the run store says of each Job's
 * attempt, and deletes what the plan names (propagationPolicy Background).
 *
 * Only train units are judged (app.kubernetes.io/component=train-worker with stoker's
 * managed-by label); pool workers belong to pool sizing, and objects stoker did not
 * label are never touched.
 *
 *   the Job's run or task is gone from the run store   delete the Job, finished or not
 *                                                      (nobody will look at it through
 *                                                      stoker again)
 *   its attempt is not the task's live one (superseded  delete it while it still runs
 *   by a later attempt, or the task is terminal)        (it burns GPUs for nothing); a
 *                                                      finished one stays for its TTL
 *                                                      (ttlSecondsAfterFinished: kept
 *                                                      for inspection, as documented)
 *   the task's live attempt (Running, this attempt,     keep: the dispatcher re-attaches
 *   or a later attempt than recorded)                   to it (launch: 409 = attached)
 *   a gang's Service whose Job is gone                 delete (a Service owned by its
 *                                                      Job also goes with it; older
 *                                                      Services were not owned)
 *   a pod with no owning Job whose Job is gone         delete
 *   (orphaned by a delete with propagationPolicy
 *   Orphan)
 */
import type { V1Job, V1Pod, V1Service } from '@kubernetes/client-node';
import { ANNOTATIONS, COMPONENTS, LABELS, MANAGED_BY } from './names.js';

/** What the run store says of one Job's attempt. */
export type AttemptVerdict = 'live' | 'stale' | 'gone';

/** The attempt a Job runs, from its annotations (undefined: not a train unit of stoker's). */
export interface JobAttempt {
  runId: string;
  taskId: string;
  attempt: number;
}

export interface GarbageItem {
  kind: 'Job' | 'Service' | 'Pod';
  name: string;
  why: string;
}

const isTrainUnit = (o: { metadata?: { labels?: Record<string, string> } }): boolean =>
  o.metadata?.labels?.[LABELS.managedBy] === MANAGED_BY &&
  o.metadata?.labels?.[LABELS.component] === COMPONENTS.train;

export function jobAttemptOf(job: V1Job): JobAttempt | undefined {
  if (!isTrainUnit(job)) return undefined;
  const a = job.metadata?.annotations ?? {};
  const runId = a[ANNOTATIONS.runId];
  const taskId = a[ANNOTATIONS.taskId];
  const attempt = Number(a[ANNOTATIONS.attempt]);
  if (!runId || !taskId || !Number.isInteger(attempt) || attempt < 1) return undefined;
  return { runId, taskId, attempt };
}

export function isFinished(job: V1Job): boolean {
  return (job.status?.conditions ?? []).some(
    (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
  );
}

/** The verdict on one attempt, given its task's status (null: no such run or task). */
export function attemptVerdict(
  attempt: number,
  task: { phase: string; attempt: number } | null,
): AttemptVerdict {
  if (!task) return 'gone';
  if (attempt > task.attempt) return 'live'; // launched just before a crash, not yet recorded
  if (attempt === task.attempt && task.phase === 'Running') return 'live';
  return 'stale';
}

export function planGarbage(input: {
  jobs: V1Job[];
  pods: V1Pod[];
  services: V1Service[];
  /** By Job name, for every Job jobAttemptOf() recognised. */
  verdicts: ReadonlyMap<string, AttemptVerdict>;
}): GarbageItem[] {
  const out: GarbageItem[] = [];
  const jobNames = new Set(input.jobs.map((j) => j.metadata?.name ?? ''));
  const doomed = new Set<string>();
  for (const job of input.jobs) {
    const name = job.metadata?.name ?? '';
    const verdict = input.verdicts.get(name);
    if (!verdict || verdict === 'live' || job.metadata?.deletionTimestamp) continue;
    if (verdict === 'gone') {
      out.push({ kind: 'Job', name, why: 'its run or task no longer exists' });
      doomed.add(name);
    } else if (!isFinished(job)) {
      out.push({ kind: 'Job', name, why: 'its attempt is superseded or its task has finished' });
      doomed.add(name);
    }
  }
  for (const svc of input.services) {
    if (!isTrainUnit(svc) || svc.metadata?.deletionTimestamp) continue;
    const name = svc.metadata?.name ?? '';
    const jobName =
      svc.spec?.selector?.[LABELS.job] ??
      svc.metadata?.ownerReferences?.find((r) => r.kind === 'Job')?.name;
    if (!jobName) continue;
    const owned = (svc.metadata?.ownerReferences ?? []).some((r) => r.kind === 'Job');
    if (!jobNames.has(jobName))
      out.push({ kind: 'Service', name, why: `its Job ${jobName} no longer exists` });
    else if (doomed.has(jobName) && !owned)
      out.push({ kind: 'Service', name, why: `its Job ${jobName} is collected` });
  }
  for (const pod of input.pods) {
    if (!isTrainUnit(pod) || pod.metadata?.deletionTimestamp) continue;
    // A pod still owned by a Job is that Job's (the cluster's garbage collector removes
    // it with its owner); only a pod orphaned from its Job is ours to collect.
    if ((pod.metadata?.ownerReferences ?? []).some((r) => r.kind === 'Job')) continue;
    const jobName =
      pod.metadata?.labels?.[LABELS.job] ??
      pod.metadata?.labels?.['batch.kubernetes.io/job-name'] ??
      pod.metadata?.labels?.['job-name'];
    if (!jobName || jobNames.has(jobName)) continue;
    out.push({
      kind: 'Pod',
      name: pod.metadata?.name ?? '',
      why: `its Job ${jobName} no longer exists`,
    });
  }
  return out;
}
