/**
 * The scenario list and how one is run: its own cleanup scope, its verdict, its line.
 * Shared by bench/chaos/index.ts (`npm run chaos`) and test/integration/chaos.test.ts.
 */
import type { Cleanup } from '../lib/harness.js';
import {
  controllerKill,
  payloadKill,
  redisSigstop10s,
  redisSigstop5s,
  workerKill,
} from './dispatched.js';
import { apiServerFaults } from './api-server.js';
import { diskFull } from './disk.js';
import { controllerKillDispatchSteps } from './dispatch-steps.js';
import { type Check, type Scenario, verdict } from './lib/scenario.js';
import type { ChaosContext } from './lib/stack.js';
import type { Counts } from './lib/workloads.js';
import { clientKill, poolWorkerKill, redisRestartAof, scaleDown } from './sharded.js';
import { redisSigstop60s } from './sigstop-60s.js';

/** In the order of the priorities. */
export const SCENARIOS: readonly Scenario[] = [
  poolWorkerKill,
  payloadKill,
  workerKill,
  controllerKill,
  controllerKillDispatchSteps,
  redisSigstop5s,
  redisSigstop10s,
  redisSigstop60s,
  clientKill,
  redisRestartAof,
  scaleDown,
  diskFull,
  apiServerFaults,
];

export type ScenarioLine =
  | { name: string; skipped: string }
  | { name: string; fault: string; error: string; ok: false; cleanupErrors?: string[] }
  | (Counts & {
      name: string;
      fault: string;
      checks: Check[];
      ok: boolean;
      failures: string[];
      details?: Record<string, unknown>;
      cleanupErrors?: string[];
    });

export async function runScenario(
  sc: Scenario,
  ctx: ChaosContext,
  cleanup: Cleanup,
): Promise<ScenarioLine> {
  const why = sc.skip?.(ctx) ?? null;
  if (why !== null) return { name: sc.name, skipped: why };
  const scope = cleanup.child(sc.name);
  let line: ScenarioLine;
  try {
    const o = await sc.run(ctx, scope);
    const v = verdict(o);
    line = {
      name: sc.name,
      fault: sc.fault,
      ...o.counts,
      checks: o.checks,
      ok: v.ok,
      failures: v.failures,
      ...(o.details ? { details: o.details } : {}),
    };
  } catch (err) {
    line = { name: sc.name, fault: sc.fault, error: (err as Error).message, ok: false };
  }
  const errors = await scope.run();
  if (errors.length > 0 && !('skipped' in line)) {
    line = { ...line, ok: false, cleanupErrors: errors };
  }
  return line;
}
