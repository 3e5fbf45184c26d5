/**
 * `/metrics`: stoker's state in the Prometheus text format (prom-client). Every scrape
 * reads the state once (refresh()) and sets the gauges from it; counters and histograms
 * are fed as things happen (reconcile passes).
 *
 * Families (names and labels after Prometheus' conventions; no run id on a histogram,
 * and the per-task gauges carry only running dispatched tasks, so label sets stay
 * bounded by what runs now):
 *   stoker_leader                          1 while this process holds the controller lock
 *   stoker_redis_round_trip_seconds        a PING's round trip, timed at the scrape
 *   stoker_runs{phase}                     runs by phase (every run in the index)
 *   stoker_tasks{phase}                    tasks of active runs by phase (shards included)
 *   stoker_queue_jobs{queue,state}         BullMQ's counts per queue and job state
 *   stoker_queue_paused{queue}             1 while a queue is paused
 *   stoker_pool_workers{pool,state}        desired, running, busy, idle, starting, draining
 *   stoker_pool_backlog_shards{pool}       waiting + prioritized + delayed shards
 *   stoker_pool_shards_per_second{pool}    completions over the last minute / 60
 *   stoker_task_progress_ratio{run,stage}  step / totalSteps of a running dispatched task
 *   stoker_task_steps_per_second{run,stage}, stoker_task_eta_seconds{run,stage},
 *   stoker_task_loss{run,stage}            from its last progress report
 *   stoker_reconcile_duration_seconds      histogram of the controller's passes
 *   stoker_task_duration_seconds{queue,phase}, stoker_task_queue_wait_seconds{queue}
 *                                          histograms of dispatched attempts (Dispatcher)
 *   stoker_scrape_duration_seconds         how long reading the state for this scrape took
 * plus prom-client's process and Node.js metrics (process_*, nodejs_*).
 */
import type { Redis } from 'ioredis';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Keys } from '../../common/keys.js';
import { isTerminal } from '../../common/model.js';
import { readTaskProgress } from '../../common/progress.js';
import { buildPoolView } from '../pools.js';
import { JOB_STATES, type QueueReader } from '../queue-counts.js';
import type { AttemptEnded } from '../dispatcher.js';
import type { RunStore } from '../store.js';
import { etaSeconds } from '../views.js';

export interface MetricsSource {
  redis: Redis;
  keys: Keys;
  store: RunStore;
  queues: QueueReader;
  /** True while this process holds the controller lock. */
  isLeader(): boolean;
}

/** Active runs whose tasks are read at once. */
const CONCURRENT = 64;

/** Runs counted per scrape, newest first: beyond this the oldest are left out. */
const MAX_RUNS_COUNTED = 10_000;

export class StokerMetrics {
  readonly registry = new Registry();
  private readonly g: ReturnType<typeof makeGauges>;
  readonly reconcile: Histogram;
  private readonly taskDuration: Histogram;
  private readonly queueWait: Histogram;

  constructor(private readonly src: MetricsSource) {
    collectDefaultMetrics({ register: this.registry });
    this.g = makeGauges(this.registry);
    this.reconcile = new Histogram({
      name: 'stoker_reconcile_duration_seconds',
      help: "Duration of the controller's reconcile passes",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.taskDuration = new Histogram({
      name: 'stoker_task_duration_seconds',
      help: 'Duration of dispatched task attempts, from the dispatcher taking the job to the end, by queue and the phase after it',
      labelNames: ['queue', 'phase'],
      buckets: [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400],
      registers: [this.registry],
    });
    this.queueWait = new Histogram({
      name: 'stoker_task_queue_wait_seconds',
      help: "Time dispatched tasks' first attempts waited in their queue",
      labelNames: ['queue'],
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400],
      registers: [this.registry],
    });
  }

  /** An attempt ended (Dispatcher.onAttempt). */
  attemptEnded(e: AttemptEnded): void {
    if (e.durationSeconds !== null)
      this.taskDuration.observe({ queue: e.queue, phase: e.phase }, e.durationSeconds);
    if (e.waitSeconds !== null) this.queueWait.observe({ queue: e.queue }, e.waitSeconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text of one scrape: the state read now. */
  async scrape(): Promise<string> {
    const started = performance.now();
    await this.refresh();
    this.g.scrape.set((performance.now() - started) / 1000);
    return this.registry.metrics();
  }

  private async refresh(): Promise<void> {
    const { redis, keys, store, queues } = this.src;
    const g = this.g;
    g.leader.set(this.src.isLeader() ? 1 : 0);
    const pinged = performance.now();
    await redis.ping();
    g.rtt.set((performance.now() - pinged) / 1000);

    g.runs.reset();
    for (const run of await store.listRuns(MAX_RUNS_COUNTED)) g.runs.inc({ phase: run.phase });

    for (const gauge of [g.tasks, g.progress, g.stepsPerSec, g.eta, g.loss]) gauge.reset();
    // Runs read CONCURRENT at a time: their commands share the connection's round trips.
    const active = await store.activeRunIds();
    for (let i = 0; i < active.length; i += CONCURRENT)
      await Promise.all(active.slice(i, i + CONCURRENT).map((id) => this.runTasks(id)));

    g.queueJobs.reset();
    g.queuePaused.reset();
    for (const name of await queues.names()) {
      const c = await queues.counts(name);
      for (const state of JOB_STATES) g.queueJobs.set({ queue: name, state }, c[state]);
      g.queuePaused.set({ queue: name }, c.paused ? 1 : 0);
    }

    for (const gauge of [g.poolWorkers, g.poolBacklog, g.poolRate]) gauge.reset();
    for (const name of await redis.smembers(keys.pools())) {
      const v = await buildPoolView(redis, keys, name, queues.poolCounts);
      if (!v) continue;
      for (const state of ['desired', 'running', 'busy', 'idle', 'starting', 'draining'] as const)
        g.poolWorkers.set({ pool: name, state }, v[state]);
      g.poolBacklog.set({ pool: name }, v.backlog);
      g.poolRate.set({ pool: name }, v.shardsPerSecond);
    }
  }

  /** Tasks of one active run by phase; the progress of its running dispatched tasks. */
  private async runTasks(runId: string): Promise<void> {
    const { redis, keys, store } = this.src;
    const g = this.g;
    const stages = await store.getStages(runId);
    for (const st of Object.values(stages)) {
      const statuses = await store.getTaskStatuses(st.tasks);
      for (const t of Object.values(statuses)) g.tasks.inc({ phase: t.phase });
      if (st.shards || isTerminal(st.phase)) continue;
      const running = Object.values(statuses).filter((t) => t.phase === 'Running');
      const progress = await Promise.all(running.map((t) => readTaskProgress(redis, keys, t.id)));
      for (const p of progress) {
        const labels = { run: runId, stage: st.name };
        if (p.step !== null && p.totalSteps) g.progress.set(labels, p.step / p.totalSteps);
        if (p.stepsPerSec !== null) g.stepsPerSec.set(labels, p.stepsPerSec);
        const eta = etaSeconds(p);
        if (eta !== null) g.eta.set(labels, eta);
        const loss = p.metrics.loss;
        if (typeof loss === 'number' && Number.isFinite(loss)) g.loss.set(labels, loss);
      }
    }
  }
}

function makeGauges(registry: Registry) {
  const gauge = (name: string, help: string, labelNames: string[] = []) =>
    new Gauge({ name, help, labelNames, registers: [registry] });
  return {
    leader: gauge('stoker_leader', '1 while this process holds the controller lock'),
    rtt: gauge('stoker_redis_round_trip_seconds', "A Redis PING's round trip at the scrape"),
    scrape: gauge(
      'stoker_scrape_duration_seconds',
      "Time spent reading stoker's state for this scrape",
    ),
    runs: gauge('stoker_runs', 'Runs by phase', ['phase']),
    tasks: gauge('stoker_tasks', 'Tasks of active runs by phase, shards included', ['phase']),
    queueJobs: gauge('stoker_queue_jobs', 'BullMQ jobs per queue and state', ['queue', 'state']),
    queuePaused: gauge('stoker_queue_paused', '1 while the queue is paused', ['queue']),
    poolWorkers: gauge('stoker_pool_workers', 'Pool workers: desired, and alive by state', [
      'pool',
      'state',
    ]),
    poolBacklog: gauge(
      'stoker_pool_backlog_shards',
      "Shards waiting in a pool's queue (waiting + prioritized + delayed)",
      ['pool'],
    ),
    poolRate: gauge(
      'stoker_pool_shards_per_second',
      "A pool's shard completions over the last minute, per second",
      ['pool'],
    ),
    progress: gauge(
      'stoker_task_progress_ratio',
      'Step / total steps of a running dispatched task',
      ['run', 'stage'],
    ),
    stepsPerSec: gauge(
      'stoker_task_steps_per_second',
      'Steps per second of a running dispatched task',
      ['run', 'stage'],
    ),
    eta: gauge('stoker_task_eta_seconds', 'Estimated seconds left of a running dispatched task', [
      'run',
      'stage',
    ]),
    loss: gauge('stoker_task_loss', 'Last reported loss of a running dispatched task', [
      'run',
      'stage',
    ]),
  };
}
