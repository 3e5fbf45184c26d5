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
 * Scale-down picks its Jobs as the local backend does (autoscale/drain-order.ts: idle and
 * cold workers first, then warm idle ones, then one still loading its model, then busy
 * ones by the latest shard start; among equals the newest first, the ReplicaSet's habit:
 * the oldest have warmed caches). Deleting the Job (propagationPolicy Background) is how a worker is asked
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
import { drainOrder, type DrainCandidate } from '../../autoscale/drain-order.js';
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
  /**
   * Worker id -> what it published (pool:{name}:workers): its state, or the whole record
   * (shards done and the current shard's start order the scale-down).
   */
  states: ReadonlyMap<string, PublishedState>;
  replicas: number;
}

export interface PoolPlan {
  /** Workers counted towards the replicas. */
  active: V1Job[];
  /** Finished Jobs to delete. */
  finished: V1Job[];
  /** Jobs to delete to scale down, in order (drain-order.ts: idle and cold first, busy last). */
  victims: V1Job[];
  /** Workers to start. */
  create: number;
  /** Worker ids whose Redis record is left over from a worker that is gone. */
  forget: string[];
}

/** A worker's published state, or the parts of its record the scale-down reads. */
export type PublishedState =
  string | { state: string; shardsDone: number; shardSince?: string | null | undefined };

const KNOWN = new Set(['starting', 'idle', 'busy', 'draining']);

/** A worker Job as a drain candidate (autoscale/drain-order.ts). */
function candidate(j: V1Job, published: PublishedState | undefined) {
  const w = typeof published === 'string' ? { state: published, shardsDone: 0 } : published;
  const state = w && KNOWN.has(w.state) ? (w.state as DrainCandidate['state']) : null;
  const since = w && typeof w === 'object' && 'shardSince' in w ? w.shardSince : null;
  return {
    id: workerIdOf(j) ?? '',
    job: j,
    state,
    shardsDone: w?.shardsDone ?? 0,
    shardSinceMs: since ? Date.parse(since) : null,
    startedMs: new Date(j.metadata?.creationTimestamp ?? 0).getTime(),
  };
}

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
  const victims = drainOrder(
    active.map((j) => candidate(j, input.states.get(workerIdOf(j) ?? ''))),
    surplus,
  ).map((c) => c.job);
  return { active, finished, victims, create: Math.max(0, -surplus), forget };
}
