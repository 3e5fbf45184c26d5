/**
 * A discrete-event model of one pool on a simulated Kubernetes cluster: what the fleet
 * benchmark runs the scaling policies against. A pod per worker on the simulated API
 * server (testing/kube-sim) costs a process-sized share of 2 cores; 1,000 of them under
 * three policies would measure the simulator, not the policies. The model keeps what
 * the policies can see and what they are judged on:
 *
 *   cluster    GPUs (nodes x 8); other tenants and training stages hold some over time.
 *              A pod that does not fit waits, PodScheduled=False reason Unschedulable with
 *              the scheduler's message, and is scheduled, oldest first, once GPUs free up
 *              (other tenants first: they are ahead of it in the scheduler's queue).
 *   pod        created -> scheduled -> container started after the pod start delay (image
 *              pull, container start) -> the model loaded after the model-load delay ->
 *              idle. Its GPUs are held from scheduling to its end ("up").
 *   worker     takes one shard at a time from the pool's queue, FIFO (a BullMQ worker of
 *              concurrency 1); a shard takes its drawn time (the same shard takes the same
 *              time under every policy); each completion is recorded as the pool worker
 *              records it (`${taskId}:${attempt}:${ms}`: the service-time estimate's input).
 *   queue      waiting shards (BullMQ's wait list: what a list-length scaler sees); active
 *              ones (held by a worker, or by a killed worker until its lock expires).
 *   stop       drain (Stoker): a busy worker finishes its shard, then exits; anything not
 *              busy exits at once. kill (a Deployment's scale-down): SIGTERM, the shard
 *              goes on for the grace period, then the process is killed: the shard is cut
 *              short (a busy kill), stays active until its lock expires (lockSeconds), then
 *              waits again and runs a second time.
 *
 * Policies (policies.ts) see the model as a controller sees a cluster and Redis: the queue's
 * counts, the pods with their phase and scheduler condition, the completions; they act
 * through request() (the replicas asked for), create() and stop() (a stuck pod given up is a stop).
 *
 * Time is in seconds. Everything random is drawn from streams seeded by the scenario, so
 * a run is a pure function of (scenario, policy).
 */
import { Events, Fifo } from './events.js';
import { derive, logNormal, stream, type Random } from './random.js';
import {
  emptyTrace,
  type FleetModel,
  type Holder,
  type Pod,
  type Policy,
  type Scenario,
  type Trace,
} from './types.js';

export type * from './types.js';

export class Sim {
  t = 0;
  readonly pods: Pod[] = [];
  /** Pods not gone (pending included); leaving ones too, until they end. */
  readonly live = new Set<Pod>();
  /** Completions as the pool worker records them: [member, ms]. */
  readonly completionLog: Array<readonly [string, number]> = [];
  readonly shardSeconds: Float64Array;
  readonly scenario: Scenario;
  readonly model: FleetModel;

  private readonly events = new Events();
  private readonly queue = new Fifo<number>();
  private readonly requeued: number[] = [];
  private readonly idle = new Fifo<Pod>();
  private readonly pendingPods = new Fifo<Pod>();
  private busy = 0;
  private stalled = 0;
  private usedGpus = 0;
  private heldByOthers = 0;
  private othersWant = 0;
  private arrived = 0;
  private readonly podDelays: Random;
  private readonly openMarks: number[] = [];
  /** Per drainFrom mark: the shards that had arrived by then (all must be done). */
  private readonly markShards: number[] = [];
  /** The lowest shard id not yet completed. */
  private doneBelow = 0;
  private nextShard = 0;
  private readonly trace: Trace;
  private stopped = false;

  constructor(scenario: Scenario, model: FleetModel, policyName: string) {
    this.scenario = scenario;
    this.model = model;
    const total = scenario.arrivals.reduce((n, [, k]) => n + k, 0);
    const shardRandom = stream(derive(scenario.seed, 'shards'));
    this.shardSeconds = Float64Array.from({ length: total }, () =>
      logNormal(shardRandom, model.shard),
    );
    this.podDelays = stream(derive(scenario.seed, 'pods'));
    this.trace = emptyTrace(scenario, policyName, total);
  }

  // -- what a policy reads --------------------------------------------------------------

  /** BullMQ's wait list: what a list-length scaler sees. */
  get waiting(): number {
    return this.queue.size + this.requeued.length;
  }
  /** Shards held by a worker, or by a killed one until its lock expires. */
  get active(): number {
    return this.busy + this.stalled;
  }
  /** The requested replicas last recorded. */
  get requested(): number {
    return (this.trace.requests[this.trace.requests.length - 1] as [number, number])[1];
  }
  /** GPUs other holders keep now, by kind. */
  holding(kind: Holder['kind']): Holder[] {
    return this.scenario.holders.filter(
      (h) => h.kind === kind && h.from <= this.t && this.t < h.to,
    );
  }
  after(seconds: number, fn: () => void): void {
    this.events.push(this.t + Math.max(0, seconds), fn);
  }
  countPass(): void {
    this.trace.passes++;
  }

  // -- what a policy does ---------------------------------------------------------------

  /** Record the replicas asked for (the figure spike-to-request and direction changes read). */
  request(replicas: number): void {
    if (replicas !== this.requested) this.trace.requests.push([this.t, replicas]);
  }

  /** A new worker pod; `warm` starts it loaded and scheduled (the ideal fleet only). */
  create(warm = false): Pod {
    const id = this.pods.length;
    const name = `w-${id}`;
    // Drawn in creation order: the k-th pod of every policy gets the same delays.
    const startDelay = warm ? 0 : logNormal(this.podDelays, this.model.podStart);
    const loadDelay = warm ? 0 : logNormal(this.podDelays, this.model.modelLoad);
    const pod: Pod = {
      id,
      name,
      createdAt: this.t,
      scheduledAt: null,
      readyAt: null,
      phase: 'pending',
      leaving: null,
      shard: -1,
      shardStart: 0,
      shardsDone: 0,
      epoch: 0,
      startDelay,
      loadDelay,
      view: { name, phase: 'Pending', createdMs: this.t * 1000 },
    };
    this.pods.push(pod);
    this.live.add(pod);
    this.trace.podsCreated++;
    this.trace.maxPods = Math.max(this.trace.maxPods, this.live.size);
    this.pendingPods.push(pod);
    this.schedule();
    return pod;
  }

  /** Stop a pod: drain (a busy one finishes its shard) or kill (after the grace period). */
  stop(pod: Pod, how: 'drain' | 'kill'): void {
    if (pod.phase === 'gone' || pod.leaving) return;
    if (pod.phase !== 'busy') return this.end(pod);
    pod.leaving = how;
    pod.view.deleting = true;
    if (how === 'kill') {
      const { epoch, shard } = pod;
      this.after(this.model.graceSeconds, () => {
        if (pod.epoch !== epoch || pod.phase !== 'busy' || pod.shard !== shard) return;
        this.cutShort(pod);
      });
    }
  }

  /** Pods that count as the pool's workers: not gone, not leaving. */
  activePods(): Pod[] {
    const out: Pod[] = [];
    for (const p of this.live) if (!p.leaving) out.push(p);
    return out;
  }

  // -- the run --------------------------------------------------------------------------

  run(policy: Policy, settled: (sim: Sim) => boolean): Trace {
    for (const [t, n] of this.scenario.arrivals) this.events.push(t, () => this.arrive(n));
    for (const h of this.scenario.holders) {
      this.events.push(h.from, () => this.hold(h.gpus));
      this.events.push(h.to, () => this.hold(-h.gpus));
    }
    const lastArrival = Math.max(0, ...this.scenario.arrivals.map(([t]) => t));
    policy.start(this);
    const onChange = policy.onChange?.bind(policy);
    this.changed = onChange ? () => onChange(this) : () => undefined;
    while (!this.stopped) {
      const e = this.events.pop();
      if (!e || e.t > this.scenario.maxSeconds) break;
      this.t = e.t;
      e.fn();
      if (this.t >= lastArrival && this.waiting + this.active === 0 && settled(this)) break;
    }
    return this.finish();
  }

  private changed: () => void = () => undefined;

  private arrive(n: number): void {
    for (let i = 0; i < n; i++) this.queue.push(this.nextShard++);
    this.arrived += n;
    const mark = this.scenario.drainFrom.indexOf(this.t);
    if (mark >= 0) {
      this.openMarks.push(mark);
      this.markShards[mark] = this.nextShard;
    }
    this.dispatch();
    this.changed();
  }

  private hold(gpus: number): void {
    this.othersWant += gpus;
    this.heldByOthers = Math.min(this.heldByOthers, this.othersWant);
    this.schedule();
  }

  /** Place what fits: other holders first (ahead in the scheduler's queue), then pods, oldest first. */
  private schedule(): void {
    const free = () => this.scenario.clusterGpus - this.usedGpus - this.heldByOthers;
    if (this.othersWant > this.heldByOthers) {
      const take = Math.min(this.othersWant - this.heldByOthers, Math.max(0, free()));
      this.heldByOthers += take;
      if (this.othersWant > this.heldByOthers) return this.markUnschedulable();
    }
    const g = this.model.gpusPerWorker;
    for (let pod = this.pendingPods.peek(); pod; pod = this.pendingPods.peek()) {
      if (pod.phase !== 'pending') {
        this.pendingPods.shift();
        continue;
      }
      if (free() < g) break;
      this.pendingPods.shift();
      this.usedGpus += g;
      pod.scheduledAt = this.t;
      pod.phase = 'starting';
      pod.view.scheduled = { status: 'True', sinceMs: this.t * 1000 };
      const { epoch, startDelay, loadDelay } = pod;
      this.after(startDelay, () => {
        if (pod.epoch !== epoch || pod.phase !== 'starting') return;
        pod.phase = 'loading';
        pod.view.phase = 'Running';
        pod.view.containerStartedMs = this.t * 1000;
        this.after(loadDelay, () => {
          if (pod.epoch !== epoch || pod.phase !== 'loading') return;
          pod.readyAt = this.t;
          this.trace.coldGpuSeconds +=
            (this.t - (pod.scheduledAt as number)) * this.model.gpusPerWorker;
          this.becomeIdle(pod);
        });
      });
    }
    this.markUnschedulable();
  }

  /** Pods the scheduler could not place carry its condition from the first try on. */
  private markUnschedulable(): void {
    const nodes = Math.ceil(this.scenario.clusterGpus / this.model.gpusPerNode);
    const message = `0/${nodes} nodes are available: ${nodes} Insufficient nvidia.com/gpu. preemption: 0/${nodes} nodes are available: ${nodes} No preemption victims found for incoming pod.`;
    for (const pod of this.pendingPods) {
      if (pod.phase !== 'pending' || pod.view.scheduled) continue;
      pod.view.scheduled = {
        status: 'False',
        reason: 'Unschedulable',
        message,
        sinceMs: this.t * 1000,
      };
    }
  }

  private becomeIdle(pod: Pod): void {
    if (pod.leaving) return this.end(pod);
    pod.phase = 'idle';
    this.idle.push(pod);
    this.dispatch();
  }

  /** Idle workers take waiting shards (requeued ones first, as BullMQ moves stalled jobs back). */
  private dispatch(): void {
    while (this.waiting > 0 && this.idle.size > 0) {
      const pod = this.idle.shift() as Pod;
      if (pod.phase !== 'idle' || pod.leaving) continue;
      const shard =
        this.requeued.length > 0
          ? (this.requeued.shift() as number)
          : (this.queue.shift() as number);
      this.begin(pod, shard);
    }
  }

  private begin(pod: Pod, shard: number): void {
    pod.phase = 'busy';
    pod.shard = shard;
    pod.shardStart = this.t;
    this.busy++;
    this.trace.starts[shard] = (this.trace.starts[shard] ?? 0) + 1;
    const { epoch } = pod;
    const seconds = this.shardSeconds[shard] as number;
    this.after(seconds, () => {
      if (pod.epoch !== epoch || pod.shard !== shard || pod.phase !== 'busy') return;
      this.finishShard(pod, seconds);
    });
    this.changed();
  }

  private finishShard(pod: Pod, seconds: number): void {
    const shard = pod.shard;
    this.busy--;
    this.trace.completions[shard] = (this.trace.completions[shard] ?? 0) + 1;
    this.trace.busyGpuSeconds += seconds * this.model.gpusPerWorker;
    const attempt = this.trace.starts[shard] ?? 1;
    this.completionLog.push([
      `fleet.gen.s${String(shard).padStart(5, '0')}:${attempt}:${Math.round(seconds * 1000)}`,
      this.t * 1000,
    ]);
    pod.shardsDone++;
    pod.shard = -1;
    this.closeMarks();
    if (pod.leaving) this.end(pod);
    else this.becomeIdle(pod);
    this.changed();
  }

  /** A killed worker's shard: cut short, active until its lock expires, then waiting again. */
  private cutShort(pod: Pod): void {
    const shard = pod.shard;
    const ran = this.t - pod.shardStart;
    this.busy--;
    this.stalled++;
    this.trace.busyKills++;
    this.trace.busyGpuSeconds += ran * this.model.gpusPerWorker;
    this.trace.wastedGpuSeconds += ran * this.model.gpusPerWorker;
    pod.shard = -1;
    this.end(pod);
    this.after(this.model.lockSeconds, () => {
      this.stalled--;
      this.requeued.push(shard);
      this.dispatch();
      this.changed();
    });
  }

  /** The pod is gone: its GPUs are free. */
  private end(pod: Pod): void {
    if (pod.phase === 'gone') return;
    if (pod.scheduledAt !== null) {
      this.usedGpus -= this.model.gpusPerWorker;
      this.trace.upGpuSeconds += (this.t - pod.scheduledAt) * this.model.gpusPerWorker;
      if (pod.readyAt === null)
        this.trace.coldGpuSeconds += (this.t - pod.scheduledAt) * this.model.gpusPerWorker;
    }
    if (pod.shardsDone === 0) this.trace.podsNeverUsed++;
    pod.phase = 'gone';
    pod.epoch++;
    pod.view.phase = 'Succeeded';
    this.live.delete(pod);
    this.schedule();
  }

  /** A mark is drained once every shard that had arrived by then is done. */
  private closeMarks(): void {
    const done = this.trace.completions;
    while (this.doneBelow < this.nextShard && (done[this.doneBelow] ?? 0) > 0) this.doneBelow++;
    while (this.openMarks.length > 0) {
      const i = this.openMarks[0] as number;
      if ((this.markShards[i] as number) > this.doneBelow) break;
      this.trace.drains[i] = this.t - (this.scenario.drainFrom[i] as number);
      this.openMarks.shift();
    }
  }

  private finish(): Trace {
    this.stopped = true;
    const tr = this.trace;
    tr.end = this.t;
    for (const pod of this.live) {
      if (pod.scheduledAt !== null) {
        tr.upGpuSeconds += (this.t - pod.scheduledAt) * this.model.gpusPerWorker;
        if (pod.readyAt === null)
          tr.coldGpuSeconds += (this.t - pod.scheduledAt) * this.model.gpusPerWorker;
      }
      if (pod.phase === 'busy')
        tr.busyGpuSeconds += (this.t - pod.shardStart) * this.model.gpusPerWorker;
      if (pod.shardsDone === 0 && pod.phase !== 'busy') tr.podsNeverUsed++;
    }
    tr.unfinished = this.arrived - tr.completions.reduce((n, c) => n + (c > 0 ? 1 : 0), 0);
    return tr;
  }
}
