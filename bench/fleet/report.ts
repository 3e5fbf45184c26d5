/**
 * How the fleet benchmark's JSON line shows the figures of testing/fleet-sim/metrics.ts:
 * one object per policy and scenario, rounded, and the spike-to-request summary.
 */
import {
  drainVsIdeal,
  idleFraction,
  perHour,
  unproductiveFraction,
  type RunFigures,
} from '../../testing/fleet-sim/metrics.js';
import { percentile, round } from '../lib/harness.js';

/** n, p50, p99 (nearest rank: with fewer than 100 spikes, the largest) and max, in seconds. */
export function spikeToRequestSummary(
  samples: readonly number[],
): { n: number; p50: number; p99: number; max: number } | null {
  if (samples.length === 0) return null;
  return {
    n: samples.length,
    p50: round(percentile(samples, 50), 2),
    p99: round(percentile(samples, 99), 2),
    max: round(Math.max(...samples), 2),
  };
}

/** What the JSON line shows of one policy under one scenario. */
export function report(f: RunFigures): Record<string, unknown> {
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const drain = total(f.drainS);
  const ideal = total(f.idealDrainS);
  return {
    spikeToRequestS: spikeToRequestSummary(f.spikeToRequestS),
    spikesAlreadyCovered: f.covered,
    drainSeconds: round(drain / Math.max(1, f.drainS.length), 1),
    idealDrainSeconds: round(ideal / Math.max(1, f.idealDrainS.length), 1),
    drainVsIdeal: ((r) => (r === null ? null : round(r, 3)))(drainVsIdeal(f)),
    gpuIdleFraction: round(idleFraction(f), 3),
    gpuUnproductiveFraction: round(unproductiveFraction(f), 3),
    upGpuHours: round(f.upGpuHours, 1),
    coldGpuHours: round(f.coldGpuHours, 1),
    wastedGpuHours: round(f.wastedGpuHours, 2),
    directionChangesPerHour: round(perHour(f), 1),
    busyKills: f.busyKills,
    overCreatedPods: f.overCreatedPods,
    podsCreated: f.podsCreated,
    maxPods: f.maxPods,
    shards: f.shards,
    exactlyOnce: f.exactlyOnce,
    shardsRunTwice: f.shardsRunTwice,
    passes: f.passes,
  };
}
