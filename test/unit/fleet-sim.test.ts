/**
 * The fleet benchmark's model (testing/fleet-sim/): a tiny cluster under a spike and a few
 * bursts, run under Stoker's policy (the real decide(), budget, provisioning, drain order)
 * and the KEDA-like baseline. Invariants only, never times: every shard completes exactly
 * once under both; Stoker's drain-safe scale-down kills no busy worker and stays within its
 * GPU budget; the baseline's busy kills are counted, each one a shard started twice; a seed
 * gives the same run twice. And the figures' helpers over hand-made traces.
 */
import { describe, expect, it } from 'vitest';
import { directionChanges, spikeToRequest } from '../../testing/fleet-sim/metrics.js';
import type { Scenario, Trace } from '../../testing/fleet-sim/model.js';
import type { StokerPolicy } from '../../testing/fleet-sim/policies.js';
import { policyFor, runScenario } from '../../testing/fleet-sim/run.js';
import { fleetModel, type FleetSize } from '../../testing/fleet-sim/scenarios.js';

const TINY: FleetSize = {
  workers: 8,
  clusterGpus: 12,
  training: 2,
  tenant: 6,
  spikeShards: 60,
  spikeRuns: 1,
  toothShards: 20,
  rampPeakPerSecond: 0.2,
};

/**
 * Shards of about 2 minutes (longer than the 30 s grace period: a busy worker that is killed
 * is cut short) on workers that start in about 10 s.
 *   30 s         a spike of 60 shards. Budget 9 GPUs, 2 of them training stage r1's: 7 workers
 *   120-400 s    while the spike's shards run on every worker, training stage r2 takes 3 GPUs
 *                of the budget: the pool must shrink to 4 with every worker busy
 *   1450-2500 s  another team holds 6 of the 12 GPUs (unknown to the budget): 4 workers fit
 *   1600, 2000, 2400 s  bursts of 20 shards
 */
const scenario: Scenario = {
  name: 'tiny',
  seed: 7,
  clusterGpus: TINY.clusterGpus,
  budgetGpus: 9,
  arrivals: [
    [30, 60],
    [1600, 20],
    [2000, 20],
    [2400, 20],
  ],
  spikes: [30, 1600, 2000, 2400],
  drainFrom: [30, 1600, 2000, 2400],
  holders: [
    { name: 'r1/train', from: 0, to: 1e9, gpus: TINY.training, kind: 'training' },
    { name: 'r2/train', from: 120, to: 400, gpus: 3, kind: 'training' },
    { name: 'other-team', from: 1450, to: 2500, gpus: TINY.tenant, kind: 'tenant' },
  ],
  maxSeconds: 4 * 3600,
};

const model = {
  ...fleetModel(TINY),
  podStart: { median: 5, sigma: 0.2 },
  modelLoad: { median: 5, sigma: 0.2 },
  shard: { median: 120, sigma: 0.2 },
};
const run = (policy: 'stoker' | 'keda', p = policyFor(policy, TINY)) =>
  runScenario(scenario, model, p);

function exactlyOnce(t: Trace): void {
  expect(t.shards).toBe(120);
  expect(t.unfinished).toBe(0);
  expect([...t.completions].every((c) => c === 1)).toBe(true);
}

describe('the fleet model under Stoker policy', () => {
  const policy = policyFor('stoker', TINY) as StokerPolicy;
  const t = run('stoker', policy);

  it('shrinks to what the budget leaves when a training stage takes GPUs while every worker is busy', () => {
    const during = t.requests.filter(([at]) => at > 120 && at < 400).map(([, n]) => n);
    expect(during).toContain(4);
  });

  it('completes every shard exactly once and kills no busy worker', () => {
    exactlyOnce(t);
    expect(t.busyKills).toBe(0);
    expect(t.wastedGpuSeconds).toBe(0);
    expect([...t.starts].every((s) => s === 1)).toBe(true);
  });

  it('asks for workers after the spike and scales back to 0 once the queue stays empty', () => {
    expect(t.requests.some(([at, n]) => at >= 30 && n > 0)).toBe(true);
    expect(t.requests[t.requests.length - 1]?.[1]).toBe(0);
  });

  it('never asks for more than its GPU budget leaves beside the training stage', () => {
    // budget 9 - training 2: 7 workers of 1 GPU, although maxReplicas is 8.
    expect(Math.max(...t.requests.map(([, n]) => n))).toBe(7);
    expect(t.maxPods).toBe(7);
    expect(policy.limited['GpuBudget']).toBeGreaterThan(0);
  });

  it('stops counting pods unschedulable past 120 s: 4 running and 1 kept waiting, the others given up', () => {
    expect(policy.limited['Unschedulable']).toBeGreaterThan(0);
    const whileHeld = t.requests.filter(([at]) => at > 1600 && at < 2500).map(([, n]) => n);
    expect(whileHeld).toContain(5);
    expect(t.podsNeverUsed).toBe(2);
  });

  it('is the same run for the same seed', () => {
    const again = run('stoker');
    expect(again.requests).toEqual(t.requests);
    expect(again.upGpuSeconds).toBe(t.upGpuSeconds);
  });
});

describe('the fleet model under the KEDA-like baseline', () => {
  const t = run('keda');

  it('still completes every shard exactly once: a killed shard comes back after its lock', () => {
    exactlyOnce(t);
  });

  it('kills busy workers as the waiting list shrinks, each kill a shard started twice', () => {
    expect(t.busyKills).toBeGreaterThan(0);
    const extraStarts = [...t.starts].reduce((n, s) => n + s - 1, 0);
    expect(extraStarts).toBe(t.busyKills);
    expect(t.wastedGpuSeconds).toBeGreaterThan(0);
  });
});

describe('the figures', () => {
  const trace = (requests: Array<[number, number]>) => ({ requests }) as Trace;

  it('times a spike to the first rise of the requested replicas, and skips one already covered', () => {
    const t = trace([
      [0, 0],
      [10.5, 4],
      [25, 8],
      [200, 2],
      [330, 6],
    ]);
    expect(spikeToRequest(t, [10, 100, 300])).toEqual({ samples: [0.5, 30], covered: 1 });
  });

  it('counts direction changes, not steps in one direction', () => {
    const t = [
      [0, 0],
      [1, 4],
      [2, 8],
      [3, 6],
      [4, 2],
      [5, 5],
      [6, 5],
      [7, 9],
    ] as Array<[number, number]>;
    expect(directionChanges(t, 100)).toBe(2);
    expect(directionChanges(t, 4)).toBe(1);
  });
});
