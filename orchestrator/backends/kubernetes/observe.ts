/**
 * Turning what the cluster says about a Job and its pods into a UnitState, in words a
 * user understands. Pure: the backend passes what its informers cached.
 *
 *   Job Complete                         -> Succeeded
 *   Job Failed, a container terminated   -> Failed with its exit code (OOMKilled: 137, retried);
 *                                           in a gang, the node that failed first, named
 *   Job Failed: DeadlineExceeded         -> Failed, not retried (the stage's budget)
 *   a pod with DisruptionTarget          -> Failed, evicted or preempted: retried free
 *   a pod waiting on ErrImagePull...     -> Failed fast, not retried, with the reason
 *   a pod waiting on a config error      -> Failed, not retried (a missing Secret or key)
 *   a pod unschedulable                  -> still waiting, with the scheduler's message
 *                                           (a missing PVC: Failed, not retried)
 *   no pod, a FailedCreate event          -> Failed, not retried, when no retry of the Job
 *     (the Job controller could not         controller can help: a missing PriorityClass
 *     create one)                           (MissingPriorityClass), a Pod Security
 *                                           violation, a missing ServiceAccount, an invalid
 *                                           pod; otherwise (an exceeded quota, a webhook
 *                                           timeout) still waiting, with the message
 *
 * A FailedCreate is an Event, not a Job condition: the Job's status says nothing of pods
 * it could not create, so the backend watches those events (reason=FailedCreate on Jobs).
 */
import type {
  CoreV1Event,
  V1ContainerStatus,
  V1Job,
  V1JobCondition,
  V1Pod,
} from '@kubernetes/client-node';
import { unitState as state, type UnitState } from '../types.js';
import { COMPLETION_INDEX_ANNOTATION } from './names.js';

const IMAGE_PULL = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
]);
const CONFIG = new Set(['CreateContainerConfigError', 'CreateContainerError']);

export interface Observed {
  state: UnitState;
  /** Why it is not running yet, for the task's message (unschedulable, pulling...). */
  note: string | null;
}

/** FailedCreate messages that no retry of the Job controller fixes, and the reason stoker gives. */
const PERMANENT_CREATE_FAILURES: readonly { pattern: RegExp; reason: string }[] = [
  { pattern: /no PriorityClass with name \S+ was found/, reason: 'MissingPriorityClass' },
  { pattern: /violates PodSecurity/, reason: 'PodSecurityViolation' },
  {
    pattern: /serviceaccounts? "[^"]*" not found|error looking up service account/,
    reason: 'MissingServiceAccount',
  },
  { pattern: /is invalid/, reason: 'InvalidPod' },
];

/** The newest FailedCreate event's message, and whether it is permanent. */
export function classifyFailedCreate(
  events: readonly CoreV1Event[],
): { reason: string | null; message: string } | undefined {
  const newest = [...events].sort((a, b) => stamp(b) - stamp(a))[0];
  if (!newest) return undefined;
  const message = newest.message ?? 'the Job could not create its pods';
  const permanent = PERMANENT_CREATE_FAILURES.find((p) => p.pattern.test(message));
  return { reason: permanent?.reason ?? null, message };
}

function stamp(e: CoreV1Event): number {
  const t = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp;
  return t ? new Date(t as unknown as string).getTime() : 0;
}

export function observeJob(
  job: V1Job | undefined,
  pods: V1Pod[],
  failedCreates: readonly CoreV1Event[] = [],
): Observed {
  if (!job) return { state: state('NotFound'), note: null };
  const conditions = job.status?.conditions ?? [];
  const cond = (type: string) => conditions.find((c) => c.type === type && c.status === 'True');
  if (cond('Complete'))
    return {
      state: state('Succeeded', { exitCode: 0, reason: 'Completed', message: 'the Job completed' }),
      note: null,
    };
  const failed = cond('Failed');
  if (failed || (job.status?.failed ?? 0) > 0)
    return { state: failedJobState(failed, pods, job.spec?.completions ?? 1), note: null };
  return podProblem(pods) ?? notRunningYet(job, pods, failedCreates);
}

/**
 * A Job that failed (its Failed condition, or a failed pod): disrupted (retried free),
 * past its deadline (not retried), a container's exit code (OOMKilled: retried), else
 * the condition's reason. In a gang (nodes > 1) the failure is the node that failed
 * first, named: the others are then stopped by the Job controller (143) or fail for
 * want of it (a collective that lost a rank), and neither is the cause.
 */
function failedJobState(
  failed: V1JobCondition | undefined,
  pods: V1Pod[],
  nodes: number,
): UnitState {
  const disrupted = pods.find((p) =>
    p.status?.conditions?.some((c) => c.type === 'DisruptionTarget' && c.status === 'True'),
  );
  if (disrupted) {
    const c = disrupted.status?.conditions?.find((x) => x.type === 'DisruptionTarget');
    return state('Failed', {
      reason: c?.reason?.includes('Preempt') ? 'Preempted' : 'Evicted',
      message:
        `pod ${disrupted.metadata?.name} was ${c?.reason ?? 'disrupted'}: ${c?.message ?? ''}`.trim(),
      freeRetry: true,
      signal: 'SIGTERM',
    });
  }
  if (failed?.reason === 'DeadlineExceeded') {
    return state('Failed', {
      reason: 'DeadlineExceeded',
      message: failed.message ?? 'the Job ran past its activeDeadlineSeconds',
      retryable: false,
    });
  }
  const first = firstFailedContainer(pods);
  if (first) {
    const { pod, t } = first;
    const oom = t.reason === 'OOMKilled';
    const index = pod.metadata?.annotations?.[COMPLETION_INDEX_ANNOTATION];
    const who =
      nodes > 1 && index !== undefined
        ? `node ${index} of ${nodes} (pod ${pod.metadata?.name})`
        : `pod ${pod.metadata?.name}`;
    const gang =
      nodes > 1 && index !== undefined
        ? `; the gang fails with it (its log: stoker logs RUN --node ${index})`
        : '';
    return state('Failed', {
      exitCode: t.exitCode ?? null,
      reason: oom ? 'OOMKilled' : null,
      message: oom
        ? `${who} was OOMKilled: raise the stage's memory${gang}`
        : `${who} exited with code ${t.exitCode}${t.message ? `: ${t.message}` : ''}${gang}`,
      ...(oom ? { retryable: true } : {}),
    });
  }
  return state('Failed', {
    reason: failed?.reason ?? 'JobFailed',
    message: failed?.message ?? 'the Job failed',
  });
}

type Terminated = NonNullable<NonNullable<V1ContainerStatus['state']>['terminated']>;

/**
 * The container that failed first (exit code not 0), by the time it finished; at the same
 * time an exit of its own before one by a signal (>= 128: stopped because another failed),
 * then pod order. Undefined: none failed.
 */
function firstFailedContainer(pods: V1Pod[]): { pod: V1Pod; t: Terminated } | undefined {
  const failed = pods
    .flatMap((pod) =>
      (pod.status?.containerStatuses ?? []).map((cs) => ({
        pod,
        t: cs.state?.terminated ?? cs.lastState?.terminated,
      })),
    )
    .filter((x): x is { pod: V1Pod; t: Terminated } => !!x.t && (x.t.exitCode ?? 0) !== 0);
  const at = (t: Terminated) => (t.finishedAt ? new Date(t.finishedAt).getTime() : Infinity);
  const bySignal = (t: Terminated) => ((t.exitCode ?? 0) >= 128 ? 1 : 0);
  return failed
    .map((x, order) => ({ ...x, order }))
    .sort((a, b) => at(a.t) - at(b.t) || bySignal(a.t) - bySignal(b.t) || a.order - b.order)[0];
}

/**
 * The first pod that cannot start, in pod order: an image that cannot be pulled or a
 * config error (failed, not retried), or unschedulable (waiting, with the scheduler's
 * message; a missing PVC: failed, not retried). Undefined: no such pod.
 */
function podProblem(pods: V1Pod[]): Observed | undefined {
  for (const p of pods) {
    for (const cs of p.status?.containerStatuses ?? []) {
      const w = cs.state?.waiting;
      if (w?.reason && IMAGE_PULL.has(w.reason)) {
        return {
          state: state('Failed', {
            reason: 'ImagePullFailed',
            message: `${w.reason}: ${w.message ?? cs.image}`,
            retryable: false,
          }),
          note: null,
        };
      }
      if (w?.reason && CONFIG.has(w.reason)) {
        return {
          state: state('Failed', {
            reason: 'ConfigError',
            message: `${w.reason}: ${w.message ?? ''}`.trim(),
            retryable: false,
          }),
          note: null,
        };
      }
    }
    const sched = p.status?.conditions?.find(
      (c) => c.type === 'PodScheduled' && c.status === 'False',
    );
    if (sched?.reason === 'Unschedulable') {
      const msg = sched.message ?? 'unschedulable';
      if (/persistentvolumeclaim .* not found/i.test(msg)) {
        return {
          state: state('Failed', { reason: 'MissingVolume', message: msg, retryable: false }),
          note: null,
        };
      }
      return { state: state('Running'), note: `Unschedulable: ${msg}` };
    }
  }
  return undefined;
}

/**
 * A Job neither finished nor stuck on a pod: no pod and a FailedCreate (failed when no
 * retry helps, else waiting with its message), suspended (Kueue), or starting/running.
 */
function notRunningYet(job: V1Job, pods: V1Pod[], failedCreates: readonly CoreV1Event[]): Observed {
  const failedCreate = pods.length === 0 ? classifyFailedCreate(failedCreates) : undefined;
  if (failedCreate?.reason) {
    return {
      state: state('Failed', {
        reason: failedCreate.reason,
        message: `the Job cannot create its pods: ${failedCreate.message}`,
        retryable: false,
      }),
      note: null,
    };
  }
  if (failedCreate)
    return { state: state('Running'), note: `FailedCreate: ${failedCreate.message}` };
  if (job.spec?.suspend)
    return { state: state('Running'), note: 'Suspended: waiting for admission (Kueue)' };
  const running = pods.some((p) => p.status?.phase === 'Running');
  return {
    state: state('Running'),
    note: running || pods.length === 0 ? null : 'Pending: pods are starting',
  };
}
