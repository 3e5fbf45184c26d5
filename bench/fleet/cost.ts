/**
 * What Stoker's decision costs the leader per pass (testing/fleet-sim/policies.ts
 * stokerPass: the service estimate, decide(), the GPU budget, the provisioning limits and
 * the drain order), at a pool's size and backlog, in this process:
 *
 *   For (workers, queued shards) = (100, 1,000), (1,000, 1,000), (1,000, 1,000,000):
 *   passes one simulated second apart, each with 1,000 / 45 completions of the last second
 *   (a 45 s shard per worker), the pods as the API server shows them (5% of them pending),
 *   and the drain order run on every pass over every worker for 10% of them (the worst
 *   case: a real pass picks victims only when the pool shrinks). 500 passes to warm up,
 *   then 5,000 timed: wall time per pass (median, p99) and CPU per pass
 *   (process.cpuUsage); the heap after a full GC before and after the timed passes, and the
 *   size of the memory a pass carries to the next (AutoscalerMemory as JSON).
 *
 * Flat: the backlog enters the decision as four counts, so 1,000 or 1,000,000 queued
 * shards cost the same; the pass is linear in the pool's pods (their views and the drain
 * order's sort), and what it keeps between passes is bounded by the stabilisation windows
 * and policy periods, not by the run's length.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { drainOrder, type DrainCandidate } from '../../orchestrator/autoscale/drain-order.js';
import type { WorkerPodView } from '../../orchestrator/autoscale/provisioning.js';
import { emptyMemory, type AutoscalerMemory } from '../../orchestrator/autoscale/records.js';
import { stokerPass } from '../../testing/fleet-sim/policies.js';
import { stokerPool, type FleetSize } from '../../testing/fleet-sim/scenarios.js';
import { percentile, round } from '../lib/harness.js';

export interface PassCostPoint {
  workers: number;
  queuedShards: number;
  passes: number;
  wallMicrosP50: number;
  wallMicrosP99: number;
  cpuMicrosPerPass: number;
  heapGrowthKiB: number;
  carriedMemoryBytes: number;
}

function collectGarbage(): void {
  setFlagsFromString('--expose_gc');
  (runInNewContext('gc') as () => void)();
}

export function passCost(
  size: FleetSize,
  workers: number,
  queued: number,
  passes = 5000,
): PassCostPoint {
  const pool = stokerPool({ ...size, workers });
  const now0 = 1_000_000_000;
  const pods: WorkerPodView[] = Array.from({ length: workers }, (_, i) =>
    i % 20 === 19
      ? { name: `w-${i}`, phase: 'Pending', createdMs: now0 - 10_000 }
      : {
          name: `w-${i}`,
          phase: 'Running',
          createdMs: now0 - 600_000,
          scheduled: { status: 'True' },
        },
  );
  const candidates = (): DrainCandidate[] =>
    pods.map((p, i) => ({
      id: p.name,
      state: p.phase === 'Pending' ? null : i % 3 === 0 ? 'idle' : 'busy',
      shardsDone: p.phase === 'Pending' ? 0 : 5,
      shardSinceMs: p.phase === 'Pending' ? null : now0 - ((i * 7919) % 45_000),
      startedMs: p.createdMs,
    }));
  const perSecond = Math.max(1, Math.round(workers / 45));
  let memory: AutoscalerMemory = { ...emptyMemory(workers) };
  let seq = 0;
  const pass = (k: number): void => {
    const nowMs = now0 + k * 1000;
    const completions = Array.from({ length: perSecond }, () => {
      seq++;
      return [`r.gen.s${seq}:1:${40_000 + ((seq * 7919) % 20_000)}`, nowMs] as const;
    });
    const active = Math.min(queued, workers);
    const out = stokerPass({
      nowMs,
      pool,
      budgetGpus: null,
      training: [],
      backlog: { waiting: queued - active, prioritized: 0, delayed: 0, active },
      pods,
      workers: { ready: workers, starting: 0, busy: active, draining: 0 },
      candidates,
      completions,
      memory,
      unschedulableAfterSeconds: 120,
    });
    memory = out.decision.memory;
    // The worst case: victims picked on every pass.
    drainOrder(candidates(), Math.ceil(workers / 10));
  };
  for (let k = 0; k < 500; k++) pass(k);
  collectGarbage();
  const heapBefore = process.memoryUsage().heapUsed;
  const walls: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let k = 500; k < 500 + passes; k++) {
    const t0 = performance.now();
    pass(k);
    walls.push((performance.now() - t0) * 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  collectGarbage();
  const heapAfter = process.memoryUsage().heapUsed;
  return {
    workers,
    queuedShards: queued,
    passes,
    wallMicrosP50: round(percentile(walls, 50), 1),
    wallMicrosP99: round(percentile(walls, 99), 1),
    cpuMicrosPerPass: round((cpu.user + cpu.system) / passes, 1),
    heapGrowthKiB: round((heapAfter - heapBefore) / 1024, 1),
    carriedMemoryBytes: JSON.stringify(memory).length,
  };
}
