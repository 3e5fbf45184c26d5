/**
 * The fleet benchmark's cluster, pool and load (README, "Benchmarks"): one GPU per worker,
 * up to 1,000 workers (quick: 100) on a cluster of 1,024 GPUs (quick: 128) where a
 * training stage of this controller holds 64 (quick: 8) throughout, under three loads:
 *
 *   spike     an idle pool (0 workers) gets 20,000 shards at once (quick: 2,000), about
 *             900,000 GPU-seconds; 5 runs with other seeds (quick: 2), the spike at 60-90 s
 *   sawtooth  2 hours of a burst of 2,500 shards (quick: 250) every 4 minutes: a full pool
 *             drains one in about 2 minutes, then the queue is empty until the next
 *   ramp      the arrival rate grows from 0 to 20 shards/s (quick: 2) over an hour (a pool
 *             of about 900 keeps up with the end), Poisson batches every 5 s; from minute
 *             10 to 40 another team's jobs hold 400 GPUs (quick: 40), unknown to Stoker's
 *             budget: pods of the pool become unschedulable
 *
 * Model constants: a pod starts 20 s (median; log-normal, sigma 0.4) after it is scheduled
 * (image on the node, container start), its worker loads the model in 45 s (sigma 0.3), a
 * shard takes 40 s (median; sigma 0.5: mean 45 s, 1 in 100 above 130 s). Grace period and
 * BullMQ lock 30 s.
 *
 * Stoker's pool is a spec through the real loader: minReplicas 0, maxReplicas 1,000,
 * target 45 s of backlog per worker (a mean shard), assumeShardDuration 45s, everything
 * else the defaults of a pool of GPU workers (scale up by 4 workers or 100% per 15 s, the
 * HPA's; scale down after a 15 s window, idleTimeout 60 s: DEFAULT_GPU_AUTOSCALE); its GPU
 * budget is the cluster's 1,024 GPUs, the training stage's counted in it. The KEDA-like baselines: listLength 1 (a waiting shard per
 * replica: the same backlog per worker), cooldownPeriod 300 s (KEDA's default, like the
 * idleTimeout).
 */
import { stringify } from 'yaml';
import { parseSpec } from '../../common/spec/load.js';
import {
  DEFAULT_AUTOSCALE,
  NormalizedAutoscale,
  type NormalizedPool,
  type NormalizedStage,
} from '../../common/spec/schema.js';
import type { FleetModel, Holder, Scenario } from './model.js';
import type { KedaOptions, StokerOptions } from './policies.js';
import { derive, poisson, stream } from './random.js';

export interface FleetSize {
  workers: number;
  clusterGpus: number;
  training: number;
  tenant: number;
  spikeShards: number;
  spikeRuns: number;
  toothShards: number;
  rampPeakPerSecond: number;
}

export const FULL: FleetSize = {
  workers: 1000,
  clusterGpus: 1024,
  training: 64,
  tenant: 400,
  spikeShards: 20_000,
  spikeRuns: 5,
  toothShards: 2_500,
  rampPeakPerSecond: 20,
};

export const QUICK: FleetSize = {
  workers: 100,
  clusterGpus: 128,
  training: 8,
  tenant: 40,
  spikeShards: 2_000,
  spikeRuns: 2,
  toothShards: 250,
  rampPeakPerSecond: 2,
};

export function fleetModel(size: FleetSize): FleetModel {
  return {
    gpusPerWorker: 1,
    gpusPerNode: 8,
    podStart: { median: 20, sigma: 0.4 },
    modelLoad: { median: 45, sigma: 0.3 },
    shard: { median: 40, sigma: 0.5 },
    graceSeconds: 30,
    lockSeconds: 30,
    minReplicas: 0,
    maxReplicas: size.workers,
  };
}

const training = (size: FleetSize, to: number): Holder => ({
  name: 'r-sft/train',
  from: 0,
  to,
  gpus: size.training,
  kind: 'training',
});

export function spike(size: FleetSize, seed: number): Scenario {
  const at = 60 + Math.round(stream(derive(seed, 'spike'))() * 3000) / 100;
  return {
    name: 'spike',
    seed,
    clusterGpus: size.clusterGpus,
    budgetGpus: size.clusterGpus,
    arrivals: [[at, size.spikeShards]],
    spikes: [at],
    drainFrom: [at],
    holders: [training(size, 1e9)],
    maxSeconds: 6 * 3600,
  };
}

export const SAWTOOTH_PERIOD = 240;
export const SAWTOOTH_TEETH = 30;

export function sawtooth(size: FleetSize, seed: number): Scenario {
  // Each tooth within 15 s of its slot: not in step with a 30 s poll.
  const r = stream(derive(seed, 'sawtooth'));
  const first = 30 + Math.round(r() * 6000) / 100;
  const teeth = Array.from(
    { length: SAWTOOTH_TEETH },
    (_, i) => first + i * SAWTOOTH_PERIOD + Math.round((r() - 0.5) * 3000) / 100,
  );
  return {
    name: 'sawtooth',
    seed,
    clusterGpus: size.clusterGpus,
    budgetGpus: size.clusterGpus,
    arrivals: teeth.map((t) => [t, size.toothShards] as const),
    spikes: teeth,
    drainFrom: teeth,
    holders: [training(size, 1e9)],
    maxSeconds: 6 * 3600,
  };
}

export function ramp(size: FleetSize, seed: number): Scenario {
  const r = stream(derive(seed, 'ramp'));
  const arrivals: Array<readonly [number, number]> = [];
  for (let t = 5; t <= 3600; t += 5) {
    const n = poisson(r, size.rampPeakPerSecond * (t / 3600) * 5);
    if (n > 0) arrivals.push([t, n]);
  }
  const last = (arrivals[arrivals.length - 1] as readonly [number, number])[0];
  return {
    name: 'ramp',
    seed,
    clusterGpus: size.clusterGpus,
    budgetGpus: size.clusterGpus,
    arrivals,
    spikes: [],
    drainFrom: [last],
    holders: [
      training(size, 1e9),
      { name: 'other-team', from: 600, to: 2400, gpus: size.tenant, kind: 'tenant' },
    ],
    maxSeconds: 6 * 3600,
  };
}

/**
 * stoker-300s: the same pool with the HPA's windows, a 300 s scale-down window and
 * idleTimeout (what a pool of CPU workers gets by default; a GPU pool's defaults are 15 s
 * and 60 s, DEFAULT_GPU_AUTOSCALE): what holding warm workers costs in idle GPUs, and
 * what letting them go saves in direction changes and cold starts.
 */
export const HPA_WINDOW_SECONDS = 300;

/**
 * The fleet's generate stage, as a spec declares it (through the real loader and its
 * defaults: those of a pool of GPU workers), or with the HPA's windows written out.
 */
export function fleetStage(size: FleetSize, hpaWindows = false): NormalizedStage {
  const spec = parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'SelfPlay',
      metadata: { name: 'fleet' },
      spec: {
        payload: { command: ['python3', '-m', 'gen'] },
        input: { file: 'prompts.jsonl', shardSize: 16 },
        pool: {
          name: 'gen',
          minReplicas: 0,
          maxReplicas: size.workers,
          resources: { gpus: 1 },
          autoscale: {
            target: { backlogSecondsPerWorker: 45 },
            assumeShardDuration: '45s',
            ...(hpaWindows
              ? {
                  idleTimeout: `${HPA_WINDOW_SECONDS}s`,
                  behavior: { scaleDown: { stabilizationWindow: `${HPA_WINDOW_SECONDS}s` } },
                }
              : {}),
          },
        },
      },
    }),
  );
  const stage = spec.stages[0];
  if (!stage) throw new Error('the fleet spec has no stage');
  return stage;
}

/** Stoker's pool: the fleet stage's. */
export function stokerPool(
  size: FleetSize,
  hpaWindows = false,
): NormalizedPool & { autoscale: NormalizedAutoscale } {
  const pool = fleetStage(size, hpaWindows).pool;
  if (!pool?.autoscale) throw new Error('the fleet pool has no autoscale block');
  return { ...pool, autoscale: pool.autoscale };
}

export function stokerOptions(size: FleetSize, hpaWindows = false): StokerOptions {
  return {
    pool: stokerPool(size, hpaWindows),
    resyncSeconds: 2,
    wake: [0.05, 1],
    unschedulableAfterSeconds: 120,
  };
}

export function kedaOptions(size: FleetSize, hpa: boolean): KedaOptions {
  return {
    pollSeconds: 30,
    listLength: 1,
    cooldownSeconds: 300,
    minReplicas: 0,
    maxReplicas: size.workers,
    ...(hpa
      ? {
          hpa: {
            syncSeconds: 15,
            tolerance: 0.1,
            behavior: NormalizedAutoscale.parse({
              ...DEFAULT_AUTOSCALE,
              target: { shardsPerWorker: 1 },
              assumeShardSeconds: null,
            }),
          },
        }
      : {}),
  };
}
