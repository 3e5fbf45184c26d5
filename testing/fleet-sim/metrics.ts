/**
 * The fleet benchmark's figures, from the traces of the model (model.ts):
 *
 *   spikeToRequest     per spike, seconds until the replicas requested first rose above what
 *                      was requested just before it (a spike the pool already covered, with
 *                      no rise before the next one, is not a sample: `covered`)
 *   drain              per drainFrom mark (a spike, a sawtooth's burst, the ramp's last
 *                      arrival), seconds until every shard that had arrived by then was done;
 *                      against the ideal fleet's drain of the same mark
 *   gpuIdleFraction    GPU-seconds of pods up (scheduled, holding their GPU) but not running a
 *                      shard / GPU-seconds up, over the whole run (until every shard is done
 *                      and the pool has scaled to 0); gpuUnproductiveFraction also counts the
 *                      shard time a busy kill threw away (a cut-short shard ran, then ran again)
 *   directionChanges   how often the requested replicas went up after going down or down after
 *                      going up, per hour of the load
 *   busyKills          workers stopped with their shard unfinished (cut short after the grace)
 *   overCreatedPods    pods created that never ran a shard (unschedulable ones given up,
 *                      pods that came up after the backlog was gone)
 *   exactlyOnce        every shard completed exactly once; shardsRunTwice: shards started again
 *                      after a busy kill (their completion is still one)
 */
import type { Scenario, Trace } from './model.js';

export interface RunFigures {
  spikeToRequestS: number[];
  covered: number;
  drainS: number[];
  idealDrainS: number[];
  upGpuHours: number;
  /** Up but not running a shard. */
  idleGpuHours: number;
  /** Of idleGpuHours: pods starting and loading their model. */
  coldGpuHours: number;
  /** Running shards that a busy kill cut short (their work is thrown away). */
  wastedGpuHours: number;
  directionChanges: number;
  loadHours: number;
  busyKills: number;
  overCreatedPods: number;
  podsCreated: number;
  maxPods: number;
  shards: number;
  exactlyOnce: boolean;
  shardsRunTwice: number;
  unfinished: number;
  passes: number;
  seconds: number;
}

/** Seconds from each spike to the first rise of the requested replicas. */
export function spikeToRequest(
  trace: Trace,
  spikes: readonly number[],
): { samples: number[]; covered: number } {
  const samples: number[] = [];
  let covered = 0;
  spikes.forEach((at, i) => {
    const next = spikes[i + 1] ?? Number.POSITIVE_INFINITY;
    let before = 0;
    for (const [t, n] of trace.requests) if (t < at) before = n;
    const rise = trace.requests.find(([t, n]) => t >= at && t < next && n > before);
    if (rise) samples.push(rise[0] - at);
    else covered++;
  });
  return { samples, covered };
}

/** Up-after-down and down-after-up changes of the requested replicas before `until`. */
export function directionChanges(
  requests: ReadonlyArray<readonly [number, number]>,
  until: number,
): number {
  let last = 0;
  let changes = 0;
  for (let i = 1; i < requests.length; i++) {
    const [t, n] = requests[i] as readonly [number, number];
    if (t > until) break;
    const d = Math.sign(n - (requests[i - 1] as readonly [number, number])[1]);
    if (d !== 0 && last !== 0 && d !== last) changes++;
    if (d !== 0) last = d;
  }
  return changes;
}

export function figures(trace: Trace, scenario: Scenario, ideal: Trace | null): RunFigures {
  const { samples, covered } = spikeToRequest(trace, scenario.spikes);
  const firstArrival = scenario.arrivals[0]?.[0] ?? 0;
  const lastArrival = scenario.arrivals[scenario.arrivals.length - 1]?.[0] ?? 0;
  // The load lasts from the first arrival to one spacing after the last (one tooth).
  const spacing =
    scenario.spikes.length > 1
      ? (scenario.spikes[1] as number) - (scenario.spikes[0] as number)
      : 0;
  const until = lastArrival + spacing;
  const drainS: number[] = [];
  const idealDrainS: number[] = [];
  trace.drains.forEach((d, i) => {
    const id = ideal?.drains[i];
    if (d === null || d === undefined) return;
    drainS.push(d);
    if (id !== null && id !== undefined) idealDrainS.push(id);
  });
  let once = trace.unfinished === 0;
  let twice = 0;
  for (let i = 0; i < trace.shards; i++) {
    if (trace.completions[i] !== 1) once = false;
    if ((trace.starts[i] ?? 0) > 1) twice++;
  }
  return {
    spikeToRequestS: samples,
    covered,
    drainS,
    idealDrainS,
    upGpuHours: trace.upGpuSeconds / 3600,
    idleGpuHours: (trace.upGpuSeconds - trace.busyGpuSeconds) / 3600,
    coldGpuHours: trace.coldGpuSeconds / 3600,
    wastedGpuHours: trace.wastedGpuSeconds / 3600,
    directionChanges: directionChanges(trace.requests, until),
    loadHours: Math.max(until - firstArrival, 1) / 3600,
    busyKills: trace.busyKills,
    overCreatedPods: trace.podsNeverUsed,
    podsCreated: trace.podsCreated,
    maxPods: trace.maxPods,
    shards: trace.shards,
    exactlyOnce: once,
    shardsRunTwice: twice,
    unfinished: trace.unfinished,
    passes: trace.passes,
    seconds: trace.end,
  };
}

/** Several runs of one scenario (other seeds) as one: samples joined, sums added. */
export function merge(runs: readonly RunFigures[]): RunFigures {
  const sum = (f: (r: RunFigures) => number) => runs.reduce((a, r) => a + f(r), 0);
  return {
    spikeToRequestS: runs.flatMap((r) => r.spikeToRequestS),
    covered: sum((r) => r.covered),
    drainS: runs.flatMap((r) => r.drainS),
    idealDrainS: runs.flatMap((r) => r.idealDrainS),
    upGpuHours: sum((r) => r.upGpuHours),
    idleGpuHours: sum((r) => r.idleGpuHours),
    coldGpuHours: sum((r) => r.coldGpuHours),
    wastedGpuHours: sum((r) => r.wastedGpuHours),
    directionChanges: sum((r) => r.directionChanges),
    loadHours: sum((r) => r.loadHours),
    busyKills: sum((r) => r.busyKills),
    overCreatedPods: sum((r) => r.overCreatedPods),
    podsCreated: sum((r) => r.podsCreated),
    maxPods: Math.max(...runs.map((r) => r.maxPods)),
    shards: sum((r) => r.shards),
    exactlyOnce: runs.every((r) => r.exactlyOnce),
    shardsRunTwice: sum((r) => r.shardsRunTwice),
    unfinished: sum((r) => r.unfinished),
    passes: sum((r) => r.passes),
    seconds: sum((r) => r.seconds),
  };
}

/** GPU-seconds up but not running a shard / GPU-seconds up (the figure). */
export const idleFraction = (f: RunFigures): number =>
  f.upGpuHours > 0 ? f.idleGpuHours / f.upGpuHours : 0;

/** The same, counting shard time a busy kill threw away as not productive either. */
export const unproductiveFraction = (f: RunFigures): number =>
  f.upGpuHours > 0 ? (f.idleGpuHours + f.wastedGpuHours) / f.upGpuHours : 0;

/** Drain time / the ideal fleet's, over all marks (null when a mark did not drain). */
export function drainVsIdeal(f: RunFigures): number | null {
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const ideal = total(f.idealDrainS);
  return ideal > 0 && f.drainS.length === f.idealDrainS.length ? total(f.drainS) / ideal : null;
}

export const perHour = (f: RunFigures): number => f.directionChanges / f.loadHours;
