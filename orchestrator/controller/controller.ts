/**
 * The controller: a level-triggered reconcile loop. Events (a published wake-up after
 * a submit, a task status write, a cancel request) only wake it, naming the run; a pass
 * re-reads that run's state and converges it. A periodic resync re-reads every active
 * run and covers lost wake-ups.
 *
 * reconcileRun(), one page of numbered steps:
 *   1. load the run; a pending resume request applied (resume.ts); terminal -> done
 *   2. observe stages, tasks, artifacts, the cancel request
 *   3. plan (pure, plan.ts): stage and run status + actions
 *   4. converge: start stages (start-stage.ts: resolve ${...}, queue a task or shards
 *      with deterministic ids), remove queued jobs of a cancelled run, write the shard
 *      manifest of a finished pulled stage; then observe and plan again
 *   5. write stage and run status, only what changed (and lineage.json)
 *
 * Each pass also sizes the pools (pool-sizing.ts). context.ts lists the other parts.
 */
import type { Logger } from '../../common/logger.js';
import { isTerminal, nowIso } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import { readTaskProgress } from '../../common/progress.js';
import type { ControllerContext, ControllerOptions } from './context.js';
import { DispatchedTasks } from './dispatched.js';
import { planRun, type Plan, type RunObservation } from './plan.js';
import { sizePools } from './pool-sizing.js';
import { PulledStages } from './pulled.js';
import { RunResumer } from './resume.js';
import { RunLineage, type Lineage } from './run-lineage.js';
import { runRoots } from '../untrusted-path.js';
import { startStage } from './start-stage.js';
import { rejectIfUnrunnable } from './unrunnable.js';

export type { ControllerOptions } from './context.js';

export class Controller {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private pendingAll = false;
  private readonly pendingRuns = new Set<string>();
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();
  private readonly ctx: ControllerContext;
  private readonly log: Logger;
  private readonly dispatched: DispatchedTasks;
  private readonly pulled: PulledStages;
  private readonly lineage: RunLineage;
  private readonly resumer: RunResumer;
  /** Reconcile passes and status writes, for tests and the reconcile benchmark. */
  readonly stats = { passes: 0, writes: 0 };
  /** Told the duration of every reconcile pass, in seconds (the HTTP server's /metrics). */
  onPass: ((seconds: number) => void) | null = null;

  constructor(private readonly opts: ControllerOptions) {
    this.ctx = { ...opts, clock: opts.clock ?? Date.now };
    this.log = opts.log;
    this.dispatched = new DispatchedTasks(this.ctx);
    this.pulled = new PulledStages(this.ctx);
    this.lineage = new RunLineage(opts.log);
    this.resumer = new RunResumer(this.ctx, { dispatched: this.dispatched, pulled: this.pulled });
  }

  async start(): Promise<void> {
    const { subscriber, keys } = this.opts;
    // A wake-up names the run it concerns: only that run is reconciled, so the work per
    // event does not grow with the number of active runs. Anything else (a pool, '*')
    // and the periodic resync reconcile everything.
    subscriber.on('message', (_channel: string, message: string) => this.wake(message));
    await subscriber.subscribe(keys.wakeChannel());
    this.timer = setInterval(() => this.wake(), this.opts.resyncMs ?? 2000);
    this.wake();
  }

  /** Ask for a reconcile pass; passes never overlap, wake-ups during one coalesce into one more. */
  wake(runId?: string): void {
    if (this.stopped) return;
    if (runId && runId !== '*' && !runId.startsWith('pool:')) this.pendingRuns.add(runId);
    else this.pendingAll = true;
    if (this.running) return;
    this.running = true;
    this.idle = this.drainWakeUps();
  }

  /** Passes until no wake-up is pending (one at a time; see wake()). */
  private async drainWakeUps(): Promise<void> {
    try {
      while (!this.stopped && (this.pendingAll || this.pendingRuns.size > 0)) {
        const all = this.pendingAll;
        const runs = [...this.pendingRuns];
        this.pendingAll = false;
        this.pendingRuns.clear();
        if (all) await this.reconcileAll();
        else await this.reconcileSome(runs);
        // Under a stream of events (shards finishing by the hundred), let them gather a
        // moment: one pass then covers many. An isolated event is handled at once.
        if (this.pendingAll || this.pendingRuns.size > 0)
          await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      this.log.error({ err }, 'reconcile pass failed');
    } finally {
      this.running = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.idle;
    await this.opts.subscriber.unsubscribe().catch(() => undefined);
    await this.pulled.close();
  }

  /** One pass over every active run, then the pools. */
  async reconcileAll(): Promise<void> {
    this.stats.passes++;
    await this.reconcileEach(await this.opts.store.activeRunIds());
  }

  private async reconcileSome(runIds: string[]): Promise<void> {
    this.stats.passes++;
    await this.reconcileEach(runIds);
  }

  private async reconcileEach(runIds: string[]): Promise<void> {
    const started = performance.now();
    await this.reconcileRuns(runIds);
    this.onPass?.((performance.now() - started) / 1000);
  }

  private async reconcileRuns(runIds: string[]): Promise<void> {
    for (const runId of runIds) {
      try {
        await this.reconcileRun(runId);
      } catch (err) {
        this.log.error({ err, runId }, 'reconcile of run failed');
      }
    }
    try {
      await this.reconcilePools();
    } catch (err) {
      this.log.error({ err }, 'reconcile of pools failed');
    }
  }

  async reconcileRun(runId: string): Promise<void> {
    const { store } = this.opts;
    // 1. Load; a resume request applied (null: it waits for a job to end); a terminal
    // run needs nothing.
    const loaded = await store.getRun(runId);
    const run = loaded && (await this.resumer.apply(loaded));
    if (!run) return;
    if (run.phase === 'Succeeded' || run.phase === 'Failed' || run.phase === 'Cancelled') {
      await this.opts.redis.srem(`${this.opts.keys.runIndex()}:active`, runId);
      this.lineage.forget(runId);
      return;
    }
    // 1b. A run the backend cannot run (a namespace it does not manage): every stage
    // fails before anything starts, naming the spec's paths.
    if (run.phase === 'Pending') await rejectIfUnrunnable(this.ctx, run);
    // 2.-3. Observe and plan.
    let obs = await this.observe(run);
    await this.dispatched.ensureQueued(run, obs);
    let plan = planRun(obs);
    // 4. Converge, then plan again from what is now true.
    if (plan.actions.length > 0) {
      await this.converge(run, plan, obs);
      obs = await this.observe(run);
      plan = planRun(obs);
    }
    // 5. Write what changed.
    await this.writeStatus(run, obs, plan);
  }

  private async observe(run: RunRecord): Promise<RunObservation> {
    const { store, keys, redis } = this.opts;
    const stages = await store.getStages(run.id);
    const taskIds = Object.values(stages).flatMap((s) => s.tasks);
    const tasks = await store.getTaskStatuses(taskIds);
    const artifacts: Record<string, Record<string, string>> = {};
    for (const id of taskIds) {
      if (tasks[id]?.phase === 'Succeeded')
        artifacts[id] = (await readTaskProgress(redis, keys, id)).artifacts;
    }
    const shardCounts: RunObservation['shardCounts'] = {};
    for (const st of Object.values(stages)) {
      if (st.shards && !isTerminal(st.phase))
        shardCounts[st.name] = await store.shardCounts(run.id, st.name);
    }
    return {
      run,
      stages,
      tasks,
      artifacts,
      cancelRequested: (await store.cancelRequestedAt(run.id)) !== null,
      now: nowIso(this.ctx.clock),
      shardCounts,
    };
  }

  private async converge(run: RunRecord, plan: Plan, obs: RunObservation): Promise<void> {
    const parts = { dispatched: this.dispatched, pulled: this.pulled, lineage: this.lineage };
    for (const action of plan.actions) {
      switch (action.type) {
        case 'createTask':
          await startStage(this.ctx, parts, run, action.stage, plan);
          break;
        case 'cancelQueued':
          await this.dispatched.cancelQueued(action.taskId, obs);
          break;
        case 'cancelShards':
          await this.pulled.cancelShards(run, action.stage, obs);
          break;
        case 'writeShardManifest':
          await this.pulled.writeManifest(run, action.stage);
          break;
      }
    }
  }

  /**
   * Step 5: each stage's status, then lineage.json, then the run's status, each written
   * only if it changed. A stage that just succeeded gets its outputs described first.
   */
  private async writeStatus(run: RunRecord, obs: RunObservation, plan: Plan): Promise<void> {
    const { store } = this.opts;
    const lineage: Record<string, Lineage> = {};
    for (const [name, planned] of Object.entries(plan.stages)) {
      const before = obs.stages[name];
      const stage =
        planned.phase === 'Succeeded' && before?.phase !== 'Succeeded'
          ? await this.lineage.withProduced(planned, runRoots(run))
          : planned;
      if (await store.writeStageIfChanged(run.id, before, stage)) this.stats.writes++;
      if (stage.lineage) lineage[name] = stage.lineage;
    }
    this.lineage.writeFile(run, lineage);
    if (await store.writeRunIfChanged(run, plan.run)) {
      this.stats.writes++;
      if (plan.run.phase !== run.phase)
        this.log.info(
          { runId: run.id, phase: plan.run.phase, message: plan.run.message },
          'run phase changed',
        );
    }
  }

  /** Size every pool: autoscaled from its backlog, or a fixed pool's size (pool-sizing.ts). */
  async reconcilePools(): Promise<void> {
    await sizePools(this.ctx, this.pulled.poolBacklog);
  }
}
