/**
 * Every scenario under every policy (scenarios.ts, policies.ts), in this process: the
 * figures side by side, and what Stoker's passes cost at the fleet's size.
 *
 *   runScenario(scenario, model, policy)  one run: its trace (model.ts)
 *   runFleet(size, seed)                   all of them: figures per scenario and policy
 */
import { Sim, type FleetModel, type Policy, type Scenario, type Trace } from './model.js';
import { figures, merge, type RunFigures } from './metrics.js';
import { IdealPolicy, KedaPolicy, StokerPolicy, type PassCost } from './policies.js';
import {
  fleetModel,
  kedaOptions,
  ramp,
  sawtooth,
  spike,
  stokerOptions,
  type FleetSize,
} from './scenarios.js';

export const POLICIES = ['stoker', 'stoker-300s', 'keda', 'keda-hpa'] as const;
export type PolicyName = (typeof POLICIES)[number];

/** Run until the backlog is empty after the last arrival and, but for the ideal fleet, no pod is left. */
export function runScenario(scenario: Scenario, model: FleetModel, policy: Policy): Trace {
  const sim = new Sim(scenario, model, policy.name);
  const settled = policy instanceof IdealPolicy ? () => true : (s: Sim) => s.live.size === 0;
  return sim.run(policy, settled);
}

export function policyFor(name: PolicyName, size: FleetSize): Policy {
  if (name === 'stoker') return new StokerPolicy(stokerOptions(size));
  if (name === 'stoker-300s') return new StokerPolicy(stokerOptions(size, true), name);
  return new KedaPolicy(kedaOptions(size, name === 'keda-hpa'));
}

/**
 * The ideal fleet: maxReplicas warm workers from the start (or what the cluster holds
 * beside the training stage), other tenants left out: no policy can drain sooner.
 */
export function idealRun(scenario: Scenario, model: FleetModel): Trace {
  const training = scenario.holders.filter((h) => h.kind === 'training');
  const held = training.reduce((n, h) => n + h.gpus, 0);
  const workers = Math.min(
    model.maxReplicas,
    Math.floor((scenario.clusterGpus - held) / model.gpusPerWorker),
  );
  return runScenario({ ...scenario, holders: training }, model, new IdealPolicy(workers));
}

export interface FleetResult {
  scenarios: Record<string, Record<PolicyName, RunFigures>>;
  /** Stoker's decision per pass, with the pods it saw, over every run. */
  passCosts: PassCost[];
  /** Passes whose desired a limit lowered, by reason (GpuBudget, Unschedulable, ...). */
  limited: Record<string, number>;
  wallSeconds: number;
}

export function runFleet(size: FleetSize, seed: number): FleetResult {
  const t0 = performance.now();
  const model = fleetModel(size);
  const loads: Record<string, Scenario[]> = {
    spike: Array.from({ length: size.spikeRuns }, (_, i) => spike(size, seed + i)),
    sawtooth: [sawtooth(size, seed)],
    ramp: [ramp(size, seed)],
  };
  const passCosts: PassCost[] = [];
  const limited: Record<string, number> = {};
  const scenarios: FleetResult['scenarios'] = {};
  for (const [name, runs] of Object.entries(loads)) {
    const per = Object.fromEntries(POLICIES.map((p) => [p, [] as RunFigures[]])) as Record<
      PolicyName,
      RunFigures[]
    >;
    for (const scenario of runs) {
      const ideal = idealRun(scenario, model);
      for (const p of POLICIES) {
        const policy = policyFor(p, size);
        const trace = runScenario(scenario, model, policy);
        per[p].push(figures(trace, scenario, ideal));
        if (policy instanceof StokerPolicy) {
          passCosts.push(...policy.costs);
          for (const [r, n] of Object.entries(policy.limited)) limited[r] = (limited[r] ?? 0) + n;
        }
      }
    }
    scenarios[name] = Object.fromEntries(POLICIES.map((p) => [p, merge(per[p])])) as Record<
      PolicyName,
      RunFigures
    >;
  }
  return { scenarios, passCosts, limited, wallSeconds: (performance.now() - t0) / 1000 };
}
