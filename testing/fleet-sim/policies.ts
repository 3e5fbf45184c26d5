/**
 * The scaling policies the fleet benchmark compares, each acting on the model (model.ts)
 * as it would on a cluster:
 *
 *   stoker           the real decision (orchestrator/autoscale/decide.ts) with the GPU
 *                    budget (budget.ts), provisioning awareness (provisioning.ts), both
 *                    applied by limits.ts, and the real drain order (drain-order.ts). A pass
 *                    runs within `wake` seconds of a queue change (the controller is woken
 *                    by it, and a pass gathers wake-ups for 50 ms) and at every resync
 *                    (2 s, the controller's default); scale-down drains. The pool's
 *                    start-to-ready time is measured as the controller measures it
 *                    (process start to model loaded, plus the pods' start).
 *   keda             the issue's baseline, KEDA's ScaledObject on a list-length trigger:
 *                    every 30 s, desired = ceil(waiting / listLength), waiting being
 *                    BullMQ's wait list only (not the active shards); 1 replica while the
 *                    trigger was active within cooldownPeriod (300 s), then 0; no pending-pod
 *                    awareness, no GPU budget; the Deployment's ReplicaSet picks the victims
 *                    of a scale-down (unscheduled, then not ready, then the most recently
 *                    ready first), which get SIGTERM and the grace period.
 *   keda-hpa         the same trigger through the HPA KEDA creates, with the HPA's defaults:
 *                    15 s sync, 10% tolerance, scale up by max(4 pods, 100%) per 15 s, scale
 *                    down to the highest recommendation of the last 300 s (the HPA's
 *                    algorithm, as behavior.ts implements it); KEDA's 30 s poll still takes
 *                    the pool from 0 to 1 and back.
 *   ideal            maxReplicas warm workers from the start (as many as the cluster can
 *                    hold): the drain time nothing can beat, the figure drains are set against.
 */
import { performance } from 'node:perf_hooks';
import type { NormalizedAutoscale, NormalizedPool } from '../../common/spec/schema.js';
import { rateLimit, remember, stabilize } from '../../orchestrator/autoscale/behavior.js';
import {
  allocateGpus,
  backlogGpuSeconds,
  type TrainingDemand,
} from '../../orchestrator/autoscale/budget.js';
import {
  decide,
  type Backlog,
  type Decision,
  type DecideInput,
} from '../../orchestrator/autoscale/decide.js';
import { drainOrder, type DrainCandidate } from '../../orchestrator/autoscale/drain-order.js';
import { applyLimits, type Limit } from '../../orchestrator/autoscale/limits.js';
import {
  limitByProvisioning,
  observeProvisioning,
  podStartSeconds,
  type WorkerPodView,
} from '../../orchestrator/autoscale/provisioning.js';
import { emptyMemory, type AutoscalerMemory } from '../../orchestrator/autoscale/records.js';
import { observeCompletions } from '../../orchestrator/autoscale/service-time.js';
import { medianOf } from '../../orchestrator/autoscale/startup.js';
import type { Pod, Policy, Sim } from './model.js';
import { derive, stream, type Random } from './random.js';

/** Seconds of one Stoker pass's decision, with the pods it looked at. */
export interface PassCost {
  pods: number;
  micros: number;
}

export interface StokerOptions {
  pool: NormalizedPool & { autoscale: NormalizedAutoscale };
  resyncSeconds: number;
  /** A pass follows a queue change within [min, max] seconds. */
  wake: [number, number];
  unschedulableAfterSeconds: number;
}

export class StokerPolicy implements Policy {
  readonly costs: PassCost[] = [];
  /** Reasons of the passes whose desired a limit lowered, by reason. */
  readonly limited: Record<string, number> = {};
  private memory: AutoscalerMemory = emptyMemory(0);
  private cursor = 0;
  private woken = false;
  private random: Random = Math.random;

  constructor(
    private readonly o: StokerOptions,
    readonly name = 'stoker',
  ) {}

  start(sim: Sim): void {
    this.random = stream(derive(sim.scenario.seed, 'stoker'));
    this.memory = emptyMemory(sim.requested);
    const resync = () => {
      this.pass(sim);
      sim.after(this.o.resyncSeconds, resync);
    };
    sim.after(this.random() * this.o.resyncSeconds, resync);
  }

  onChange(sim: Sim): void {
    if (this.woken) return;
    this.woken = true;
    const [lo, hi] = this.o.wake;
    sim.after(lo + this.random() * (hi - lo), () => {
      this.woken = false;
      this.pass(sim);
    });
  }

  private startup: { at: number; seconds: number | null } = { at: -Infinity, seconds: null };

  /**
   * The start-to-ready time (see the header); null when no worker is up (decide() keeps
   * the last one). Measured again at most every resync: two sorts of 1,000 pods on every
   * pass would triple the model's run time, and the figure moves slowly.
   */
  private startupOf(sim: Sim, pods: readonly Pod[]): number | null {
    if (sim.t - this.startup.at < this.o.resyncSeconds) return this.startup.seconds;
    const up = pods.filter((p) => p.readyAt !== null && p.view.containerStartedMs !== undefined);
    const load = medianOf(
      up.map((p) => (p.readyAt as number) - (p.view.containerStartedMs as number) / 1000),
    );
    const seconds = load === null ? null : load + (podStartSeconds(pods.map((p) => p.view)) ?? 0);
    this.startup = { at: sim.t, seconds };
    return seconds;
  }

  /** One controller pass: observe, decide and limit (timed), converge. */
  pass(sim: Sim): void {
    sim.countPass();
    const t0 = performance.now();
    // 1. Observe: the queue, the completions since the last pass, the pods.
    const pods = sim.activePods();
    const draining = sim.live.size - pods.length;
    const out = stokerPass({
      nowMs: sim.t * 1000,
      pool: this.o.pool,
      budgetGpus: sim.scenario.budgetGpus,
      training: sim
        .holding('training')
        .map((h) => ({ name: h.name, gpus: h.gpus, state: 'running' as const })),
      backlog: { waiting: sim.waiting, prioritized: 0, delayed: 0, active: sim.active },
      pods: pods.map((p) => p.view),
      workers: workerCounts(pods, draining),
      candidates: () => pods.map(candidate),
      completions: sim.completionLog.slice(this.cursor),
      memory: this.memory,
      unschedulableAfterSeconds: this.o.unschedulableAfterSeconds,
      startupSeconds: this.startupOf(sim, pods),
    });
    this.costs.push({ pods: pods.length, micros: (performance.now() - t0) * 1000 });
    this.cursor = sim.completionLog.length;
    this.memory = out.decision.memory;
    if (out.limitedBy) this.limited[out.limitedBy] = (this.limited[out.limitedBy] ?? 0) + 1;
    // 4. Converge, as the backend does: stuck pods first, then the drain order's victims.
    const leaving = new Set([...out.release, ...out.victims]);
    for (const p of pods) if (leaving.has(p.name)) sim.stop(p, 'drain');
    for (let n = sim.activePods().length; n < out.decision.desired; n++) sim.create();
    sim.request(out.decision.desired);
  }
}

export interface PassInput {
  nowMs: number;
  pool: NormalizedPool & { autoscale: NormalizedAutoscale };
  budgetGpus: number | null;
  training: TrainingDemand[];
  backlog: Backlog;
  /** The pool's pods that are not leaving, as the API server shows them. */
  pods: WorkerPodView[];
  workers: DecideInput['workers'];
  /** The same pods as drain-order.ts sees them (asked for only when the pool shrinks). */
  candidates: () => DrainCandidate[];
  /** Completions since the last pass, [member, ms]. */
  completions: ReadonlyArray<readonly [string, number]>;
  memory: AutoscalerMemory;
  unschedulableAfterSeconds: number;
  startupSeconds?: number | null;
}

export interface PassOutput {
  decision: Decision;
  /** The limit that lowered the decision (its reason), if any. */
  limitedBy: string | null;
  /** Stuck pods to give up. */
  release: string[];
  /** Workers to drain, in the drain order. */
  victims: string[];
}

/**
 * Stoker's decision for one pool in one pass, as the leader would make it: the service
 * estimate, decide(), the GPU budget, the provisioning limits (applied by limits.ts), and
 * the victims of a scale-down in the drain order. Pure: what the fleet model runs each pass
 * and what bench/fleet times at 1,000 workers and 1,000,000 queued shards.
 */
export function stokerPass(input: PassInput): PassOutput {
  const { pool, nowMs: now } = input;
  const service = observeCompletions(input.memory.service, input.completions);
  // 2. Decide (the real decision).
  const d = decide({
    nowMs: now,
    minReplicas: pool.minReplicas,
    maxReplicas: pool.maxReplicas,
    autoscale: pool.autoscale,
    backlog: input.backlog,
    workers: input.workers,
    memory: { ...input.memory, service },
    pin: null,
    startupSeconds: input.startupSeconds ?? null,
  });
  // 3. Limit: the GPU budget, then what the scheduler can place.
  const seen = observeProvisioning(input.pods, now, input.unschedulableAfterSeconds);
  const gpus = pool.resources.gpus;
  const grant = allocateGpus({
    budget: { controller: input.budgetGpus, queues: {} },
    pools: [
      {
        name: pool.name,
        gpusPerWorker: gpus,
        desired: d.desired,
        backlogGpuSeconds: backlogGpuSeconds(d.inputs.backlog, d.inputs.shardSeconds, gpus),
        workers: seen.capacity + Math.min(1, seen.stuck.length),
        draining: input.workers.draining,
      },
    ],
    training: input.training,
  }).pools[0];
  const budget: Limit | null =
    grant?.reason && grant.message
      ? { replicas: grant.replicas, reason: grant.reason, message: grant.message }
      : null;
  const placed = limitByProvisioning(
    Math.min(d.desired, grant?.replicas ?? d.desired),
    seen,
    input.unschedulableAfterSeconds,
  );
  const provisioning: Limit | null = placed.condition
    ? {
        replicas: placed.desired,
        reason: placed.condition.reason,
        message: placed.condition.message,
      }
    : null;
  const decision = applyLimits(d, input.memory.desired, now, [budget, provisioning]);
  // The backend's part: after the stuck pods, the drain order picks who leaves.
  const release = new Set(placed.release);
  const left = input.pods.length - release.size;
  const victims =
    decision.desired < left
      ? drainOrder(
          input.candidates().filter((c) => !release.has(c.id)),
          left - decision.desired,
        ).map((c) => c.id)
      : [];
  return {
    decision,
    limitedBy: decision === d ? null : decision.reason,
    release: placed.release,
    victims,
  };
}

function workerCounts(pods: readonly Pod[], draining: number) {
  let ready = 0;
  let starting = 0;
  let busy = 0;
  for (const p of pods) {
    if (p.phase === 'idle' || p.phase === 'busy') ready++;
    else starting++;
    if (p.phase === 'busy') busy++;
  }
  return { ready, starting, busy, draining };
}

/**
 * A pod as drain-order.ts sees a worker. A model worker loads its model before it is idle,
 * so an idle or busy one is warm (drain-order reads warmth from shardsDone > 0: the real
 * worker loads on its first shard); pending, starting and loading pods have no state yet.
 */
function candidate(p: Pod): DrainCandidate {
  const state = p.phase === 'idle' ? 'idle' : p.phase === 'busy' ? 'busy' : null;
  return {
    id: p.name,
    state,
    shardsDone: p.readyAt === null ? 0 : Math.max(1, p.shardsDone),
    shardSinceMs: p.phase === 'busy' ? p.shardStart * 1000 : null,
    startedMs: p.createdAt * 1000,
  };
}

export interface KedaOptions {
  pollSeconds: number;
  /** The trigger's listLength: waiting shards per replica. */
  listLength: number;
  cooldownSeconds: number;
  minReplicas: number;
  maxReplicas: number;
  /** With the HPA's algorithm and behavior between KEDA's polls (keda-hpa). */
  hpa?: { syncSeconds: number; tolerance: number; behavior: NormalizedAutoscale };
}

export class KedaPolicy implements Policy {
  readonly name: string;
  private lastActive = Number.NEGATIVE_INFINITY;
  private recs: AutoscalerMemory['recommendations'] = [];
  private changes: AutoscalerMemory['changes'] = [];

  constructor(private readonly o: KedaOptions) {
    this.name = o.hpa ? 'keda-hpa' : 'keda';
  }

  start(sim: Sim): void {
    const random = stream(derive(sim.scenario.seed, this.name));
    const every = (s: number, fn: () => void) => {
      const tick = () => {
        fn();
        sim.after(s, tick);
      };
      sim.after(random() * s, tick);
    };
    every(this.o.pollSeconds, () => this.poll(sim));
    const hpa = this.o.hpa;
    if (hpa) every(hpa.syncSeconds, () => this.sync(sim, hpa));
  }

  /** KEDA's poll: activation from 0, deactivation after the cooldown; without the HPA, the size too. */
  private poll(sim: Sim): void {
    sim.countPass();
    const waiting = sim.waiting;
    if (waiting > 0) this.lastActive = sim.t;
    const current = sim.requested;
    const cooling = current > 0 && sim.t - this.lastActive < this.o.cooldownSeconds;
    if (!this.o.hpa) {
      const want =
        waiting > 0 ? Math.max(1, Math.ceil(waiting / this.o.listLength)) : cooling ? 1 : 0;
      return this.apply(sim, this.bound(want));
    }
    if (current === 0 && waiting > 0) this.apply(sim, this.bound(1));
    else if (current > 0 && waiting === 0 && !cooling) this.apply(sim, 0);
  }

  /** The HPA's sync: the metric through its tolerance, stabilisation and rate limits. */
  private sync(sim: Sim, hpa: NonNullable<KedaOptions['hpa']>): void {
    const current = sim.requested;
    if (current === 0) return; // KEDA's to activate
    sim.countPass();
    const now = sim.t * 1000;
    let raw = Math.max(1, Math.ceil(sim.waiting / this.o.listLength));
    if (Math.abs(raw / current - 1) <= hpa.tolerance) raw = current;
    const b = hpa.behavior;
    const keep =
      Math.max(b.scaleUp.stabilizationWindowSeconds, b.scaleDown.stabilizationWindowSeconds) * 1000;
    this.recs = remember(this.recs, now, raw, keep);
    const stable = stabilize(current, raw, this.recs, now, b);
    const limited = rateLimit(current, stable.replicas, this.changes, now, b);
    const desired = Math.max(1, this.bound(limited.replicas));
    const period =
      Math.max(...[...b.scaleUp.policies, ...b.scaleDown.policies].map((p) => p.periodSeconds)) *
      1000;
    this.changes = this.changes.filter(([at]) => at > now - period);
    if (desired !== current) this.changes.push([now, desired - current]);
    this.apply(sim, desired);
  }

  private bound(n: number): number {
    return Math.min(this.o.maxReplicas, Math.max(this.o.minReplicas, n));
  }

  /** The Deployment converges: new pods, or the ReplicaSet's victims get SIGTERM. */
  private apply(sim: Sim, desired: number): void {
    const pods = sim.activePods();
    if (desired > pods.length) for (let i = pods.length; i < desired; i++) sim.create();
    else if (desired < pods.length) {
      const victims = [...pods].sort(replicaSetOrder).slice(0, pods.length - desired);
      for (const v of victims) sim.stop(v, 'kill');
    }
    sim.request(desired);
  }
}

/**
 * The ReplicaSet's scale-down ranking (controller.ActivePods): unscheduled first, then
 * Pending before Running, not ready before ready, the most recently ready first, the newest
 * first. It knows nothing of shards: a busy worker and an idle one rank alike.
 */
function replicaSetOrder(a: Pod, b: Pod): number {
  const rank = (p: Pod) =>
    p.phase === 'pending' ? 0 : p.phase === 'starting' ? 1 : p.phase === 'loading' ? 2 : 3;
  return (
    rank(a) - rank(b) ||
    (b.readyAt ?? 0) - (a.readyAt ?? 0) ||
    b.createdAt - a.createdAt ||
    b.id - a.id
  );
}

/** maxReplicas warm workers (or what the cluster holds) from the start: the ideal drain. */
export class IdealPolicy implements Policy {
  readonly name = 'ideal';
  constructor(private readonly workers: number) {}
  start(sim: Sim): void {
    for (let i = 0; i < this.workers; i++) sim.create(true);
    sim.request(this.workers);
  }
}
