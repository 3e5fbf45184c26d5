/**
 * One reconcile's view of a Job's progress: the status it started from, the conditions
 * as this reconcile leaves them, the completed indexes and the succeeded / failed counts
 * (with the FailJob message of a podFailurePolicy rule, if one matched), and the status
 * it ends with, counted from the Job's pods.
 *
 * Decisions read the conditions the Job had when the reconcile started (`had`); the
 * conditions it sets go into the status written at the end (`setCondition`), with the
 * real controller's lastProbeTime and lastTransitionTime (kept while the value holds).
 */
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IJobCondition } from 'kubernetes-models/batch/v1/JobCondition';
import type { IJobStatus } from 'kubernetes-models/batch/v1/JobStatus';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { clone, kubeTime } from '../objects/meta.js';
import { formatIndexes, parseIndexes } from './indexes.js';

export const isTerminal = (p: IPod): boolean =>
  p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

export function condTrue(status: IJobStatus | undefined, type: string): IJobCondition | undefined {
  return (status?.conditions ?? []).find((c) => c.type === type && c.status === 'True');
}

export class JobProgress {
  readonly status: IJobStatus;
  readonly conditions: IJobCondition[];
  readonly indexed: boolean;
  readonly completed: Set<number>;
  succeeded: number;
  failed: number;
  /** The message of the first FailJob rule that matched a pod this time. */
  failJob: string | undefined;
  readonly now: number;

  constructor(job: IJob, now: number) {
    this.now = now;
    this.status = clone(job.status ?? {});
    this.conditions = [...(this.status.conditions ?? [])];
    this.indexed = job.spec!.completionMode === 'Indexed';
    this.completed = parseIndexes(this.status.completedIndexes);
    this.succeeded = this.status.succeeded ?? 0;
    this.failed = this.status.failed ?? 0;
  }

  /** The condition of this type that was True when the reconcile started. */
  had(type: string): IJobCondition | undefined {
    return condTrue(this.status, type);
  }

  setCondition(type: string, value: 'True' | 'False', reason: string, message: string): void {
    const conditions = this.conditions;
    const i = conditions.findIndex((c) => c.type === type);
    const prev = i >= 0 ? conditions[i] : undefined;
    if (prev && prev.status === value && prev.reason === reason && prev.message === message) return;
    const t = kubeTime(this.now);
    const c: IJobCondition = {
      type,
      status: value,
      reason,
      message,
      lastProbeTime: t,
      lastTransitionTime: prev && prev.status === value ? (prev.lastTransitionTime ?? t) : t,
    };
    if (i >= 0) conditions[i] = c;
    else conditions.push(c);
  }

  /** The status to write, with the counts of `pods` (the Job's pods now). */
  finalStatus(pods: IPod[]): IJobStatus {
    const status = this.status;
    const nowActive = pods.filter((p) => !isTerminal(p) && !p.metadata?.deletionTimestamp);
    status.active = nowActive.length;
    status.ready = nowActive.filter((p) =>
      (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    ).length;
    status.terminating = pods.filter(
      (p) => !isTerminal(p) && !!p.metadata?.deletionTimestamp,
    ).length;
    status.succeeded = this.succeeded;
    status.failed = this.failed;
    const ci = formatIndexes(this.completed);
    if (this.indexed && ci !== undefined) status.completedIndexes = ci;
    status.uncountedTerminatedPods = {};
    if (this.conditions.length) status.conditions = this.conditions;
    if (!status.active) delete status.active;
    if (!status.succeeded) delete status.succeeded;
    if (!status.failed) delete status.failed;
    return status;
  }
}
