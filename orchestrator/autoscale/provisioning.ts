/**
 * Provisioning awareness (issue 13, item 4), pure: what a pool's worker pods say about
 * the capacity on its way, and how that limits the replicas the pool asks for.
 *
 *   podView(pod)                       the few fields of a V1Pod this needs
 *   observeProvisioning(pods, now, s)  running, on the way, unschedulable (with the
 *                                      scheduler's message), stuck past the setting
 *   limitByProvisioning(desired, p)    the replicas to ask for, the pods to give up, and
 *                                      the condition that says why
 *
 * A pod is
 *   running     phase Running (its worker may still be loading its model);
 *   on the way  Pending and not known unschedulable: scheduled and pulling its image, or
 *               not yet seen by the scheduler, or unschedulable for less than the setting
 *               (a cluster autoscaler may be adding a node for it): counted, like a
 *               running one, so the scaler does not ask for it again (KEDA's
 *               over-creation, kedacore/keda#7329);
 *   stuck       PodScheduled=False, reason Unschedulable, for longer than the setting
 *               (unschedulableAfterSeconds, default 120, from the condition's
 *               lastTransitionTime, else the pod's creation): not counted, and reported
 *               with the scheduler's message;
 *   leaving     being deleted, or finished: not counted (the backend replaces or forgets it).
 *
 * The rule (what the decision does with it):
 *   1. a pod that the scheduler has said it cannot place (unschedulable, stuck or not):
 *      no new pods. Another pod would wait behind it: the pool asks for no more than the
 *      pods it has (ScalingLimited, reason PodsUnschedulable);
 *   2. stuck pods: the pool asks for the pods it can count plus one. The one (the oldest
 *      stuck) stays as the pool's standing request to the scheduler and any cluster
 *      autoscaler; the others are given up (their names in `release`: the backend deletes
 *      them first, before any worker), so they hold no quota and no place in the queue
 *      (ScalingLimited, reason Unschedulable, with the scheduler's message);
 *   3. once no pod is unschedulable the pool grows again, at its rate limits.
 * Asking for fewer than that is never limited here: a scale-down goes through as decided.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { ScalingCondition } from './records.js';
import { medianOf } from './startup.js';

/** Seconds a pod may stay unschedulable before it is no longer counted. */
export const DEFAULT_UNSCHEDULABLE_AFTER_SECONDS = 120;

export interface WorkerPodView {
  name: string;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
  createdMs: number;
  /** The PodScheduled condition, once the scheduler has set it. */
  scheduled?: {
    status: 'True' | 'False' | 'Unknown';
    reason?: string | undefined;
    message?: string | undefined;
    /** lastTransitionTime (ms). */
    sinceMs?: number | undefined;
  };
  /** It carries a deletionTimestamp (a draining worker). */
  deleting?: boolean;
  /** When its (first running) container started (ms): the pod start ends there. */
  containerStartedMs?: number | undefined;
}

export interface UnschedulablePod {
  name: string;
  /** Seconds since it became unschedulable. */
  seconds: number;
  message: string;
}

export interface Provisioning {
  running: number;
  /** Pending pods counted as capacity on the way (unschedulable ones within the setting included). */
  pending: number;
  /** running + pending: what the pool can count on. */
  capacity: number;
  /** Unschedulable within the setting (counted in `pending`), oldest first. */
  waiting: UnschedulablePod[];
  /** Unschedulable for longer than the setting (not counted), oldest first. */
  stuck: UnschedulablePod[];
}

/** The fields observeProvisioning() reads, from a pod as the API server returns it. */
export function podView(pod: V1Pod): WorkerPodView {
  const cond = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  const phase = pod.status?.phase ?? 'Pending';
  const ms = (d: Date | string | undefined) =>
    d === undefined ? undefined : new Date(d).getTime();
  return {
    name: pod.metadata?.name ?? '',
    phase: (['Pending', 'Running', 'Succeeded', 'Failed'].includes(phase)
      ? phase
      : 'Unknown') as WorkerPodView['phase'],
    createdMs: ms(pod.metadata?.creationTimestamp) ?? 0,
    ...(cond
      ? {
          scheduled: {
            status: cond.status as 'True' | 'False' | 'Unknown',
            reason: cond.reason,
            message: cond.message,
            sinceMs: ms(cond.lastTransitionTime),
          },
        }
      : {}),
    deleting: pod.metadata?.deletionTimestamp !== undefined,
    containerStartedMs: ms(
      pod.status?.containerStatuses?.find((c) => c.state?.running?.startedAt)?.state?.running
        ?.startedAt,
    ),
  };
}

/**
 * The pool's pod start now: the median over its pods of scheduled (PodScheduled True) to
 * container started, null when no pod has both. Added to the workers' own process start
 * to model loaded, it is the start-to-ready time the decision counts on (decide.ts).
 */
export function podStartSeconds(pods: readonly WorkerPodView[]): number | null {
  const xs: number[] = [];
  for (const p of pods) {
    const s = p.scheduled;
    if (s?.status !== 'True' || s.sinceMs === undefined || p.containerStartedMs === undefined)
      continue;
    const d = (p.containerStartedMs - s.sinceMs) / 1000;
    if (Number.isFinite(d) && d >= 0) xs.push(d);
  }
  return medianOf(xs);
}

export function observeProvisioning(
  pods: readonly WorkerPodView[],
  nowMs: number,
  unschedulableAfterSeconds = DEFAULT_UNSCHEDULABLE_AFTER_SECONDS,
): Provisioning {
  let running = 0;
  let pending = 0;
  const waiting: UnschedulablePod[] = [];
  const stuck: UnschedulablePod[] = [];
  for (const p of pods) {
    if (p.deleting || p.phase === 'Succeeded' || p.phase === 'Failed') continue;
    if (p.phase !== 'Pending') {
      running++;
      continue;
    }
    const s = p.scheduled;
    if (s?.status === 'False' && s.reason === 'Unschedulable') {
      const seconds = (nowMs - (s.sinceMs ?? p.createdMs)) / 1000;
      const u = { name: p.name, seconds, message: s.message ?? 'unschedulable' };
      if (seconds > unschedulableAfterSeconds) stuck.push(u);
      else {
        waiting.push(u);
        pending++;
      }
    } else pending++;
  }
  const oldest = (a: UnschedulablePod, b: UnschedulablePod) =>
    b.seconds - a.seconds || a.name.localeCompare(b.name);
  return {
    running,
    pending,
    capacity: running + pending,
    waiting: waiting.sort(oldest),
    stuck: stuck.sort(oldest),
  };
}

export interface ProvisioningLimit {
  desired: number;
  /** Stuck pods to give up (the backend deletes these before any worker). */
  release: string[];
  /** ScalingLimited when the rule cut `desired`; null otherwise. */
  condition: ScalingCondition | null;
}

export function limitByProvisioning(
  desired: number,
  p: Provisioning,
  unschedulableAfterSeconds = DEFAULT_UNSCHEDULABLE_AFTER_SECONDS,
): ProvisioningLimit {
  const pods = p.capacity + p.stuck.length;
  if (p.stuck.length > 0) {
    // 2. Count what can be counted; while the pool wants more, the oldest stuck pod stays
    // as its standing request. Stuck pods are given up first, even when shrinking.
    const keep = desired > p.capacity ? 1 : 0;
    const limit = Math.min(desired, p.capacity + keep);
    const release = p.stuck.slice(keep).map((u) => u.name);
    if (limit === desired) return { desired, release, condition: null };
    const first = p.stuck[0] as UnschedulablePod;
    return {
      desired: limit,
      release,
      condition: {
        type: 'ScalingLimited',
        status: 'True',
        reason: 'Unschedulable',
        message: `${count(p.stuck.length)} unschedulable for more than ${unschedulableAfterSeconds}s, not counted (${first.message}); asking for ${limit} (${p.capacity} running or on the way, 1 kept waiting for a node), not ${desired}, until one schedules`,
      },
    };
  }
  if (p.waiting.length > 0 && desired > pods) {
    // 1. The scheduler cannot place what exists: another pod would only wait behind it.
    const first = p.waiting[0] as UnschedulablePod;
    return {
      desired: pods,
      release: [],
      condition: {
        type: 'ScalingLimited',
        status: 'True',
        reason: 'PodsUnschedulable',
        message: `${count(p.waiting.length)} waiting for a node for up to ${Math.round(first.seconds)}s (${first.message}); no new pods until they schedule: asking for ${pods}, not ${desired}`,
      },
    };
  }
  return { desired, release: [], condition: null };
}

const count = (n: number) => `${n} pod${n === 1 ? '' : 's'}`;
