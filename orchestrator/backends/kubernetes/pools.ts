/**
 * Sizing a pool on Kubernetes, the pure part: from what the caches hold (the pool's worker
 * Jobs and pods) and what the workers say of themselves in Redis (pool:{name}:workers,
 * written by worker/pool/), what to delete, what to create and what to forget.
 * pool-workers.ts (the backend's ensurePool) observes, calls planPool() and converges.
 *
 * Each worker is one Job of one pod (objects.ts buildPoolWorkerJob says why), named after
 * its worker id. A worker Job is
 *
 *   leaving   deleted by this backend (the cache may show it a moment longer) or carrying
 *             a deletionTimestamp: its pod got SIGTERM and drains (finishes its shard,
 *             then exits) within its terminationGracePeriodSeconds. Never counted, never
 *             deleted again, never replaced by the same name.
 *   finished  Complete or Failed (a crashed worker, an OOM kill; a drained worker exits 0
 *             only after SIGTERM, so after its Job was deleted): deleted, not counted. The
 *             pass that sees fewer active workers than wanted starts new ones: replacement
 *             and scale-up are one path, as in the local backend.
 *   active    everything else, suspended (Kueue) included.
 *
 * Scale-down deletes the Jobs of idle workers first, then starting ones (no state yet),
 * then busy ones; among equals the newest first (the ReplicaSet's habit: the oldest have
 * warmed caches). Deleting the Job (propagationPolicy Background) is how a worker is asked
 * to drain: the pod gets SIGTERM, which the worker reads as "finish the current shard,
 * then exit". A busy worker is only chosen when there are not enough others, and even
 * then its shard is not cut short by stoker: only the pod's grace period bounds it (a
 * shard killed by the kubelet after that is redelivered by BullMQ: at least once).
 *
 * A worker's Redis record is forgotten once the worker has neither a Job that is not
 * finished nor a pod that is still running in the caches (a worker that drains removes
 * its own record as it exits; one killed does not).
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { isFinished } from './gc.js';
import { ANNOTATIONS, COMPONENTS, LABELS, MANAGED_BY } from './names.js';

export const isPoolWorkerObject = (o: {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
}): boolean =>
  o.metadata?.labels?.[LABELS.managedBy] === MANAGED_BY &&
  o.metadata?.labels?.[LABELS.component] === COMPONENTS.pool;

/** The pool a worker Job or pod belongs to (its annotation: labels may be cut and hashed). */
export const poolOf = (o: { metadata?: { annotations?: Record<string, string> } }) =>
  o.metadata?.annotations?.[ANNOTATIONS.pool];

export const workerIdOf = (o: { metadata?: { annotations?: Record<string, string> } }) =>
  o.metadata?.annotations?.[ANNOTATIONS.workerId];

export const isPodRunning = (p: V1Pod): boolean =>
  p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed';

export interface PoolPlanInput {
  /** The pool's worker Jobs (the cache, plus ones created a moment ago). */
  jobs: V1Job[];
  /** The pool's worker pods (the cache). */
  pods: V1Pod[];
  /** Job names this backend deleted that the cache may still show. */
  deleting: ReadonlySet<string>;
  /** Worker id -> the state it published. */
  states: ReadonlyMap<string, string>;
  replicas: number;
}

export interface PoolPlan {
  /** Workers counted towards the replicas. */
  active: V1Job[];
  /** Finished Jobs to delete. */
  finished: V1Job[];
  /** Jobs to delete to scale down, in order (idle first, then starting, then busy). */
  victims: V1Job[];
  /** Workers to start. */
  create: number;
  /** Worker ids whose Redis record is left over from a worker that is gone. */
  forget: string[];
}

const ORDER: Record<string, number> = { draining: 0, idle: 0, starting: 1, busy: 2 };

export function planPool(input: PoolPlanInput): PoolPlan {
  const leaving = (j: V1Job) =>
    input.deleting.has(j.metadata?.name ?? '') || Boolean(j.metadata?.deletionTimestamp);
  const finished = input.jobs.filter((j) => !leaving(j) && isFinished(j));
  const active = input.jobs.filter((j) => !leaving(j) && !isFinished(j));

  const present = new Set<string>();
  for (const j of input.jobs) if (!isFinished(j)) present.add(workerIdOf(j) ?? '');
  for (const p of input.pods) if (isPodRunning(p)) present.add(workerIdOf(p) ?? '');
  const forget = [...input.states.keys()].filter((id) => !present.has(id));

  const surplus = active.length - input.replicas;
  const rank = (j: V1Job) => ORDER[input.states.get(workerIdOf(j) ?? '') ?? 'starting'] ?? 1;
  const created = (j: V1Job) => new Date(j.metadata?.creationTimestamp ?? 0).getTime();
  const victims =
    surplus > 0
      ? [...active].sort((a, b) => rank(a) - rank(b) || created(b) - created(a)).slice(0, surplus)
      : [];
  return { active, finished, victims, create: Math.max(0, -surplus), forget };
}
