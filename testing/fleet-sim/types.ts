/**
 * The fleet model's vocabulary (model.ts runs it): the pool and cluster constants, a
 * scenario's load, a pod as the model keeps it, a policy, and the trace of a run.
 */
import type { WorkerPodView } from '../../orchestrator/autoscale/provisioning.js';
import type { LogNormal } from './random.js';
import type { Sim } from './model.js';

export interface FleetModel {
  gpusPerWorker: number;
  gpusPerNode: number;
  podStart: LogNormal;
  modelLoad: LogNormal;
  shard: LogNormal;
  /** A killed pod's shard runs on this long after SIGTERM (terminationGracePeriodSeconds). */
  graceSeconds: number;
  /** A cut-short shard waits again after this (BullMQ's lock, then the stalled check). */
  lockSeconds: number;
  minReplicas: number;
  maxReplicas: number;
}

/** GPUs held from `from` to `to` by someone else than the pool. */
export interface Holder {
  name: string;
  from: number;
  to: number;
  gpus: number;
  /** A training stage of this controller (counted in Stoker's GPU budget), or another tenant. */
  kind: 'training' | 'tenant';
}

export interface Scenario {
  name: string;
  seed: number;
  clusterGpus: number;
  /** Stoker's GPU budget (null: none). */
  budgetGpus: number | null;
  /** [time, shards] batches of arriving shards. */
  arrivals: ReadonlyArray<readonly [number, number]>;
  /** Arrivals that are backlog spikes: spike-to-request is measured from them. */
  spikes: readonly number[];
  /** Arrivals the drain time is measured from (until every shard arrived by then is done). */
  drainFrom: readonly number[];
  holders: readonly Holder[];
  /** The run stops here even if a policy has not settled. */
  maxSeconds: number;
}

export type Phase = 'pending' | 'starting' | 'loading' | 'idle' | 'busy' | 'gone';

export interface Pod {
  id: number;
  name: string;
  createdAt: number;
  scheduledAt: number | null;
  readyAt: number | null;
  phase: Phase;
  /** Asked to stop: how. */
  leaving: 'drain' | 'kill' | null;
  shard: number;
  shardStart: number;
  shardsDone: number;
  /** Bumped when the pod ends: its pending events are then stale. */
  epoch: number;
  /** Drawn at creation: container start after scheduling, then the model load. */
  startDelay: number;
  loadDelay: number;
  /** What a controller reads of it from the API server. */
  view: WorkerPodView;
}

export interface Policy {
  name: string;
  start(sim: Sim): void;
  /** The queue changed (a shard arrived, started, finished, came back). */
  onChange?(sim: Sim): void;
}

/** What a run measured (metrics.ts turns it into the report). */
export interface Trace {
  scenario: string;
  policy: string;
  end: number;
  /** [t, replicas] each time the requested replicas changed. */
  requests: Array<[number, number]>;
  /** Per drainFrom mark: seconds until every shard arrived by then was done (null: not within the run). */
  drains: Array<number | null>;
  upGpuSeconds: number;
  /** Of upGpuSeconds: from scheduling until the model is loaded (container start, model load). */
  coldGpuSeconds: number;
  busyGpuSeconds: number;
  /** GPU-seconds of shards cut short (in busyGpuSeconds too). */
  wastedGpuSeconds: number;
  podsCreated: number;
  /** Pods that ended (or the run ended) without starting a shard. */
  podsNeverUsed: number;
  busyKills: number;
  shards: number;
  /** Completions per shard (exactly-once: all 1). */
  completions: Uint8Array;
  /** Starts per shard (a busy kill makes one start twice). */
  starts: Uint16Array;
  /** Shards that were still queued or running at the end. */
  unfinished: number;
  maxPods: number;
  passes: number;
}

export function emptyTrace(scenario: Scenario, policy: string, shards: number): Trace {
  return {
    scenario: scenario.name,
    policy,
    end: 0,
    requests: [[0, 0]],
    drains: scenario.drainFrom.map(() => null),
    upGpuSeconds: 0,
    coldGpuSeconds: 0,
    busyGpuSeconds: 0,
    wastedGpuSeconds: 0,
    podsCreated: 0,
    podsNeverUsed: 0,
    busyKills: 0,
    shards,
    completions: new Uint8Array(shards),
    starts: new Uint16Array(shards),
    unfinished: 0,
    maxPods: 0,
    passes: 0,
  };
}
