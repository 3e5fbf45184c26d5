/**
 * The fleet benchmark's goals over several seeds (README, "The fleet benchmark"): `npm run
 * bench` reports seed 1; this runs each scenario once per seed under `stoker` and the
 * baseline `keda` (and the ideal fleet the drain is set against) and prints, per seed and
 * for the worst seed, each goal's figure against the baseline's.
 *
 *   npm run bench:fleet-seeds [-- --seeds 1-5] [--quick] [--json]
 *
 * --seeds   a range (1-5) or a list (1,3,7); default 1-5
 * --quick   the quick fleet (100 workers)
 * --json    one JSON object on stdout instead of the table
 *
 * Per seed: one spike (that seed's, so seeds 1-5 are the bench's five spike runs of seed
 * 1), the sawtooth and the ramp. The goals: spike-to-request p99 <= 5 s; GPU idle
 * fraction (counting work thrown away) and drain time / ideal below the baseline's in
 * each scenario; fewer sawtooth direction changes per hour; 0 busy kills. `margin` is
 * baseline - stoker (positive: the goal holds), so the worst seed is the smallest margin.
 * Exit: 0 every goal holds on every seed, 1 otherwise, 2 bad usage.
 */
import { UsageError } from '../../common/errors.js';
import {
  drainVsIdeal,
  figures,
  perHour,
  unproductiveFraction,
  type RunFigures,
} from '../../testing/fleet-sim/metrics.js';
import type { Scenario } from '../../testing/fleet-sim/model.js';
import { idealRun, policyFor, runScenario } from '../../testing/fleet-sim/run.js';
import {
  FULL,
  QUICK,
  fleetModel,
  ramp,
  sawtooth,
  spike,
  type FleetSize,
} from '../../testing/fleet-sim/scenarios.js';
import { percentile, round } from '../lib/harness.js';

const SPIKE_TO_REQUEST_S = 5;
const LOADS = { spike, sawtooth, ramp } as const;

export interface SeedGoal {
  goal: string;
  stoker: number;
  keda: number;
  /** keda - stoker for "lower than the baseline"; the limit - stoker otherwise. */
  margin: number;
  met: boolean;
}

export function parseSeeds(raw: string): number[] {
  const range = /^(\d+)-(\d+)$/.exec(raw);
  const seeds = range
    ? Array.from(
        { length: Number(range[2]) - Number(range[1]) + 1 },
        (_, i) => Number(range[1]) + i,
      )
    : raw.split(',').map((s) => Number(s.trim()));
  if (seeds.length === 0 || seeds.length > 100 || seeds.some((s) => !Number.isInteger(s) || s < 0))
    throw new UsageError(
      `--seeds: ${JSON.stringify(raw)} is not a range (1-5) or a list (1,3,7) of up to 100 whole numbers`,
    );
  return seeds;
}

/** Every goal of one seed: each scenario run under stoker and keda. */
export function seedGoals(size: FleetSize, seed: number): SeedGoal[] {
  const model = fleetModel(size);
  const out: SeedGoal[] = [];
  const lower = (goal: string, s: number, k: number) =>
    out.push({ goal, stoker: round(s, 3), keda: round(k, 3), margin: round(k - s, 3), met: s < k });
  const s2r: number[] = [];
  let kills = [0, 0];
  for (const [name, load] of Object.entries(LOADS)) {
    const scenario: Scenario = load(size, seed);
    const ideal = idealRun(scenario, model);
    const run = (p: 'stoker' | 'keda'): RunFigures =>
      figures(runScenario(scenario, model, policyFor(p, size)), scenario, ideal);
    const [s, k] = [run('stoker'), run('keda')];
    s2r.push(...s.spikeToRequestS);
    kills = [(kills[0] as number) + s.busyKills, (kills[1] as number) + k.busyKills];
    lower(`${name} idle`, unproductiveFraction(s), unproductiveFraction(k));
    const drain = (f: RunFigures) => drainVsIdeal(f) ?? Number.POSITIVE_INFINITY;
    lower(`${name} drain/ideal`, drain(s), drain(k));
    if (name === 'sawtooth') lower('sawtooth changes/h', perHour(s), perHour(k));
  }
  const p99 = s2r.length ? percentile(s2r, 99) : 0;
  out.unshift({
    goal: 'spike-to-request p99 s',
    stoker: round(p99, 2),
    keda: Number.NaN,
    margin: round(SPIKE_TO_REQUEST_S - p99, 2),
    met: p99 <= SPIKE_TO_REQUEST_S,
  });
  out.push({
    goal: 'busy kills',
    stoker: kills[0] as number,
    keda: kills[1] as number,
    margin: -(kills[0] as number),
    met: kills[0] === 0,
  });
  return out;
}

export interface SeedsReport {
  size: 'full' | 'quick';
  seeds: number[];
  perSeed: Record<string, SeedGoal[]>;
  /** Per goal, the seed with the smallest margin. */
  worst: Array<SeedGoal & { seed: number }>;
  met: boolean;
  seconds: number;
}

export function seedsReport(size: FleetSize, seeds: readonly number[]): SeedsReport {
  const t0 = performance.now();
  const perSeed: Record<string, SeedGoal[]> = {};
  for (const seed of seeds) perSeed[seed] = seedGoals(size, seed);
  const first = perSeed[seeds[0] as number] ?? [];
  const worst = first.map((g, i) => {
    let w = { ...g, seed: seeds[0] as number };
    for (const seed of seeds) {
      const x = (perSeed[seed] as SeedGoal[])[i] as SeedGoal;
      if (x.margin < w.margin) w = { ...x, seed };
    }
    return w;
  });
  return {
    size: size === QUICK ? 'quick' : 'full',
    seeds: [...seeds],
    perSeed,
    worst,
    met: worst.every((g) => g.met),
    seconds: round((performance.now() - t0) / 1000, 1),
  };
}

function table(r: SeedsReport): string {
  const goals = (r.perSeed[r.seeds[0] as number] ?? []).map((g) => g.goal);
  const cell = (g: SeedGoal) =>
    Number.isNaN(g.keda) ? `${g.stoker}` : `${g.stoker} / ${g.keda}${g.met ? '' : ' !'}`;
  const head = ['goal (stoker / keda)', ...r.seeds.map((s) => `seed ${s}`), 'worst (seed)'];
  const rows = goals.map((goal, i) => [
    goal,
    ...r.seeds.map((s) => cell((r.perSeed[s] as SeedGoal[])[i] as SeedGoal)),
    ((w) => `${cell(w)} (${w.seed})`)(r.worst[i] as SeedGoal & { seed: number }),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]?.length ?? 0)));
  const line = (cells: string[]) => cells.map((x, c) => x.padEnd(widths[c] as number)).join('  ');
  return [
    line(head),
    ...rows.map(line),
    `${r.met ? 'every goal holds on every seed' : 'NOT MET on some seed (marked !)'} (${r.size} fleet, ${r.seconds} s)`,
  ].join('\n');
}

function main(argv: readonly string[]): number {
  let seeds = parseSeeds('1-5');
  let quick = false;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--seeds') seeds = parseSeeds(argv[++i] ?? '');
    else if (a.startsWith('--seeds=')) seeds = parseSeeds(a.slice('--seeds='.length));
    else if (a === '--quick') quick = true;
    else if (a === '--json') json = true;
    else throw new UsageError(`unknown option ${a} (--seeds RANGE, --quick, --json)`);
  }
  const r = seedsReport(quick ? QUICK : FULL, seeds);
  process.stdout.write(json ? `${JSON.stringify(r)}\n` : `${table(r)}\n`);
  return r.met ? 0 : 1;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}
