/**
 * The controller: a level-triggered reconcile loop. Events (a published wake-up after
 * a submit, a task status write, a cancel request) only wake it, naming the run; a pass
 * re-reads that run's state and converges it. A periodic resync re-reads every active
 * run and covers lost wake-ups.
 *
 * reconcileRun(), one page of numbered steps:
 *   1. load the run; terminal -> done
 *   2. observe stages, tasks, artifacts, the cancel request
 *   3. plan (pure): stage and run status + actions
 *   4. converge: create tasks (resolve ${...}, enqueue a BullMQ job with a
 *      deterministic id), remove queued jobs of a cancelled run; then observe and plan again
 *   5. write stage and run status, only what changed
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Keys } from '../../common/keys.js';
import { poolQueueName, QUEUES, shardTaskId, type DispatchQueue } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import {
  isTerminal,
  nowIso,
  type ResolvedPayload,
  type RunRecord,
  type StageStatus,
} from '../../common/model.js';
import { readTaskProgress } from '../../common/progress.js';
import { resolveStage } from '../../common/spec/interpolate.js';
import { stagePath } from '../../common/spec/rules.js';
import { formatPath } from '../../common/spec/values.js';
import {
  CPU_STEP_KINDS,
  type NormalizedPool,
  type NormalizedStage,
} from '../../common/spec/schema.js';
import type { SpecIssue } from '../../common/errors.js';
import type { Backend } from '../backends/types.js';
import type { DispatchJobData } from '../dispatcher.js';
import { LineageRecorder } from '../lineage.js';
import { readPool, registerPool } from '../pools.js';
import { planShards, type ShardPlan } from '../sharding.js';
import { newTaskStatus } from '../../common/task-store.js';
import { taskIdFor, type RunStore, type TaskRecord } from '../store.js';
import {
  planRun,
  setCondition,
  shardManifestPath,
  type Plan,
  type RunObservation,
} from './plan.js';

export interface ControllerOptions {
  redis: Redis;
  /** A separate connection for SUBSCRIBE. */
  subscriber: Redis;
  keys: Keys;
  store: RunStore;
  queues: Record<DispatchQueue, Queue<DispatchJobData>>;
  /** BullMQ connection, for the queues of pools. */
  connection: ConnectionOptions;
  /** Sizes pools (pulled execution). */
  backend?: Backend;
  log: Logger;
  resyncMs?: number;
  clock?: () => number;
}

/** BullMQ options of a task's job: the id is the task id, retries are the stage's. */
function jobOptions(stage: NormalizedStage, jobId: string, keep: number): JobsOptions {
  return {
    jobId,
    attempts: stage.retry.attempts,
    backoff: {
      type: stage.retry.backoff.type,
      delay: Math.round(stage.retry.backoff.delay * 1000),
    },
    ...(stage.priority === undefined ? {} : { priority: stage.priority }),
    removeOnComplete: { age: 7 * 24 * 3600, count: keep },
    removeOnFail: { age: 30 * 24 * 3600, count: keep },
  };
}

export function queueForStage(stage: NormalizedStage): DispatchQueue {
  return CPU_STEP_KINDS.has(stage.kind) ? QUEUES.steps : QUEUES.train;
}

export class Controller {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private pendingAll = false;
  private readonly pendingRuns = new Set<string>();
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();
  private readonly clock: () => number;
  private readonly ensured = new Set<string>();
  private readonly poolQueues = new Map<string, Queue<DispatchJobData>>();
  private readonly lineage = new LineageRecorder();
  /** The last lineage.json text written per run. */
  private readonly lineageWritten = new Map<string, string>();
  /** Reconcile passes and status writes, for tests and the reconcile benchmark. */
  readonly stats = { passes: 0, writes: 0 };

  constructor(private readonly opts: ControllerOptions) {
    this.clock = opts.clock ?? Date.now;
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
    this.idle = (async () => {
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
        this.opts.log.error({ err }, 'reconcile pass failed');
      } finally {
        this.running = false;
      }
    })();
  }

  private async reconcileSome(runIds: string[]): Promise<void> {
    this.stats.passes++;
    for (const runId of runIds) {
      try {
        await this.reconcileRun(runId);
      } catch (err) {
        this.opts.log.error({ err, runId }, 'reconcile of run failed');
      }
    }
    try {
      await this.reconcilePools();
    } catch (err) {
      this.opts.log.error({ err }, 'reconcile of pools failed');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.idle;
    await this.opts.subscriber.unsubscribe().catch(() => undefined);
    await Promise.all([...this.poolQueues.values()].map((q) => q.close()));
  }

  async reconcileAll(): Promise<void> {
    this.stats.passes++;
    for (const runId of await this.opts.store.activeRunIds()) {
      try {
        await this.reconcileRun(runId);
      } catch (err) {
        this.opts.log.error({ err, runId }, 'reconcile of run failed');
      }
    }
    try {
      await this.reconcilePools();
    } catch (err) {
      this.opts.log.error({ err }, 'reconcile of pools failed');
    }
  }

  async reconcileRun(runId: string): Promise<void> {
    const { store } = this.opts;
    // 1. Load; a terminal run needs nothing.
    const run = await store.getRun(runId);
    if (!run) return;
    if (run.phase === 'Succeeded' || run.phase === 'Failed' || run.phase === 'Cancelled') {
      await this.opts.redis.srem(`${this.opts.keys.runIndex()}:active`, runId);
      this.lineageWritten.delete(runId);
      return;
    }
    // 1b. A run the backend cannot run (a namespace it does not manage): every stage
    // fails before anything starts, naming the spec's paths.
    if (run.phase === 'Pending') await this.rejectIfUnrunnable(run);
    // 2.-3. Observe and plan.
    let obs = await this.observe(run);
    await this.ensureQueued(run, obs);
    let plan = planRun(obs);
    // 4. Converge, then plan again from what is now true.
    if (plan.actions.length > 0) {
      await this.converge(run, plan, obs);
      obs = await this.observe(run);
      plan = planRun(obs);
    }
    // 5. Write what changed.
    const lineage: Record<string, NonNullable<StageStatus['lineage']>> = {};
    for (const [name, planned] of Object.entries(plan.stages)) {
      const before = obs.stages[name];
      const stage =
        planned.phase === 'Succeeded' && before?.phase !== 'Succeeded'
          ? await this.withProducedLineage(planned)
          : planned;
      if (await store.writeStageIfChanged(runId, before, stage)) this.stats.writes++;
      if (stage.lineage) lineage[name] = stage.lineage;
    }
    this.writeLineageFile(run, lineage);
    if (await store.writeRunIfChanged(run, plan.run)) {
      this.stats.writes++;
      if (plan.run.phase !== run.phase)
        this.opts.log.info(
          { runId, phase: plan.run.phase, message: plan.run.message },
          'run phase changed',
        );
    }
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
      now: nowIso(this.clock),
      shardCounts,
    };
  }

  private async converge(run: RunRecord, plan: Plan, obs: RunObservation): Promise<void> {
    for (const action of plan.actions) {
      switch (action.type) {
        case 'createTask':
          await this.createTask(run, action.stage, plan);
          break;
        case 'cancelQueued':
          await this.cancelQueued(action.taskId, obs);
          break;
        case 'cancelShards':
          await this.cancelShards(run, action.stage, obs);
          break;
        case 'writeShardManifest':
          await this.writeShardManifest(run, action.stage);
          break;
      }
    }
  }

  private async createTask(run: RunRecord, stageName: string, plan: Plan): Promise<void> {
    const { store, log } = this.opts;
    const spec = run.spec;
    const stage = spec.stages.find((s) => s.name === stageName);
    const status = plan.stages[stageName] ?? (await store.getStages(run.id))[stageName];
    if (!stage || !status) return;
    const outputDir = join(run.runDir, 'stages', stage.name);
    const upstream = Object.fromEntries(
      Object.entries(plan.stages)
        .filter(([, s]) => s.phase === 'Succeeded')
        .map(([n, s]) => [n, { outputs: s.outputs }]),
    );
    let resolved: ReturnType<typeof resolveStage>;
    try {
      resolved = resolveStage(stage, {
        run: { id: run.id, dir: run.runDir },
        params: spec.params,
        stageOutputDir: outputDir,
        stages: upstream,
      });
    } catch (err) {
      await this.failStage(
        run.id,
        status,
        'InvalidReference',
        `cannot resolve the stage's payload: ${(err as Error).message}`,
      );
      return;
    }
    const payload: ResolvedPayload = {
      command: resolved.command,
      env: resolved.env,
      secretEnv: stage.payload.secretEnv.map((s) => ({
        name: s.name,
        fromEnv: s.fromEnv ?? s.name,
      })),
      workingDir: resolved.workingDir ?? run.workDir,
      outputDir,
      terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
      stallTimeoutSeconds: stage.stallTimeoutSeconds,
    };
    const started: StageStatus = {
      ...status,
      lineage: await this.consumedLineage(stage, upstream),
    };
    if (stage.pool && resolved.input) {
      await this.createShards(run, stage, started, payload, resolved.input, resolved.outputs);
      return;
    }
    const taskId = taskIdFor(run.id, stage.name);
    const queue = queueForStage(stage);
    await store.createTask({
      status: newTaskStatus({
        id: taskId,
        runId: run.id,
        stage: stage.name,
        queue,
        maxAttempts: stage.retry.attempts,
      }),
      payload,
      runDir: run.runDir,
    });
    // Record the task on the stage before enqueueing: a crash in between leaves a task
    // the next pass re-adds (same job id: no duplicate), never an orphan job.
    await store.writeStageIfChanged(run.id, status, {
      ...started,
      tasks: [taskId],
      outputs: resolved.outputs,
      message: 'queued',
    });
    await this.enqueue(run.id, taskId, stage);
    log.info({ runId: run.id, taskId, queue }, 'task queued');
  }

  /**
   * `<runDir>/lineage.json`: every stage's lineage, for payloads (a report stage) that
   * cannot read the run store. Rewritten when it changed; a write failure is logged only.
   */
  private writeLineageFile(
    run: RunRecord,
    stages: Record<string, NonNullable<StageStatus['lineage']>>,
  ): void {
    if (Object.keys(stages).length === 0) return;
    const text = `${JSON.stringify({ run: run.id, name: run.name, stages }, null, 2)}\n`;
    if (this.lineageWritten.get(run.id) === text) return;
    const path = join(run.runDir, 'lineage.json');
    try {
      mkdirSync(run.runDir, { recursive: true });
      writeFileSync(`${path}.tmp`, text);
      renameSync(`${path}.tmp`, path);
      this.lineageWritten.set(run.id, text);
    } catch (err) {
      this.opts.log.warn({ err, runId: run.id, path }, 'cannot write lineage.json');
    }
  }

  /** What a starting stage reads from upstream stages, by content (never fails the stage). */
  private async consumedLineage(
    stage: NormalizedStage,
    upstream: Record<string, { outputs: Record<string, string> }>,
  ): Promise<StageStatus['lineage']> {
    const { entries, problems } = await this.lineage.consumed(stage, upstream);
    if (problems.length > 0)
      this.opts.log.warn({ stage: stage.name, problems }, 'cannot describe some inputs');
    return { consumed: entries, produced: [], problems };
  }

  /** A stage that just succeeded, with its outputs described by content. */
  private async withProducedLineage(stage: StageStatus): Promise<StageStatus> {
    const { entries, problems } = await this.lineage.produced(stage.outputs);
    const prev = stage.lineage ?? { consumed: [], produced: [], problems: [] };
    return {
      ...stage,
      lineage: {
        consumed: prev.consumed,
        produced: entries,
        problems: [...prev.problems, ...problems],
      },
    };
  }

  /** A spec the backend cannot run: its stages fail (InvalidSpec) before any starts. */
  private async rejectIfUnrunnable(run: RunRecord): Promise<void> {
    const spec = run.spec;
    const issues = this.opts.backend?.checkSpec?.(spec) ?? [];
    if (issues.length === 0) return;
    const text = (i: SpecIssue) => `${i.path}: ${i.message}`;
    this.opts.log.warn(
      { runId: run.id, backend: this.opts.backend?.name, issues: issues.map(text) },
      'the backend cannot run this spec; failing the run',
    );
    /** Where a stage's fields are in the spec, as the backend's issues name them. */
    const pathOf = (name: string) =>
      `${formatPath(
        stagePath(
          spec.kind,
          spec.stages.findIndex((s) => s.name === name),
        ),
      )}.`;
    const stages = await this.opts.store.getStages(run.id);
    for (const status of Object.values(stages)) {
      if (isTerminal(status.phase) || status.tasks.length > 0) continue;
      const own = issues.filter((i) => i.path.startsWith(pathOf(status.name)));
      const message = own.length
        ? own.map(text).join('; ')
        : `not run: ${issues.map(text).join('; ')}`;
      await this.failStage(run.id, status, 'InvalidSpec', message);
    }
  }

  /** A stage that cannot start (its payload or input cannot be resolved) fails with the reason. */
  private async failStage(
    runId: string,
    status: StageStatus,
    reason: string,
    message: string,
  ): Promise<void> {
    const now = nowIso(this.clock);
    await this.opts.store.writeStageIfChanged(runId, status, {
      ...status,
      phase: 'Failed',
      message,
      finishedAt: now,
      conditions: setCondition(
        status.conditions,
        { type: 'Failed', status: 'True', reason, message },
        now,
      ),
    });
  }

  private async enqueue(runId: string, taskId: string, stage: NormalizedStage): Promise<void> {
    await this.opts.queues[queueForStage(stage)].add(
      stage.kind,
      { taskId, runId },
      jobOptions(stage, taskId, 10_000),
    );
    this.ensured.add(taskId);
  }

  /**
   * Once per task and controller lifetime, re-add the job of a task that is still
   * Pending: a controller that died between recording a task and enqueueing it left a
   * task without a job. The job id is the task id, so this never duplicates a job.
   */
  private async ensureQueued(run: RunRecord, obs: RunObservation): Promise<void> {
    const spec = run.spec;
    for (const task of Object.values(obs.tasks)) {
      if (task.phase !== 'Pending' || this.ensured.has(task.id) || obs.cancelRequested) continue;
      const stage = spec.stages.find((s) => s.name === task.stage);
      if (stage) await this.enqueue(run.id, task.id, stage);
    }
  }

  /**
   * A pulled stage: split its input into shards (once), register its pool, create one
   * task per shard with a deterministic id and enqueue them on the pool's queue.
   */
  private async createShards(
    run: RunRecord,
    stage: NormalizedStage,
    status: StageStatus,
    payload: ResolvedPayload,
    input: { file?: string; shardSize?: number; shards?: string[] },
    outputs: Record<string, string>,
  ): Promise<void> {
    const { store, log } = this.opts;
    const pool = stage.pool as NormalizedPool;
    let plan: ShardPlan;
    try {
      plan = await planShards(input, { workDir: run.workDir, outputDir: payload.outputDir });
    } catch (err) {
      await this.failStage(
        run.id,
        status,
        'InvalidInput',
        `cannot shard the input: ${(err as Error).message}`,
      );
      return;
    }
    await registerPool(this.opts.redis, this.opts.keys, pool, `${run.id}/${stage.name}`);
    // Start the pool's workers now: they load while the shards are being queued.
    await this.reconcilePools().catch((err: unknown) => log.warn({ err }, 'cannot size pools'));
    const queue = poolQueueName(pool.name);
    const tasks: TaskRecord[] = plan.inputs.map((inputPath, index) => ({
      status: newTaskStatus({
        id: shardTaskId(run.id, stage.name, index),
        runId: run.id,
        stage: stage.name,
        queue,
        maxAttempts: stage.retry.attempts,
      }),
      payload,
      runDir: run.runDir,
      shard: {
        index,
        input: inputPath,
        output: plan.outputs[index] as string,
        pool: pool.name,
        params: stage.shardParams,
      },
    }));
    await store.createTasks(tasks);
    await store.setShardTotal(run.id, stage.name, tasks.length);
    await store.writeStageIfChanged(run.id, status, {
      ...status,
      outputs: { ...outputs, dir: join(payload.outputDir, 'shards') },
      shards: { total: tasks.length, succeeded: 0, failed: 0, items: 0, pool: pool.name },
      message: `${tasks.length} shards queued on pool ${pool.name}`,
    });
    const q = this.poolQueue(pool.name);
    for (let i = 0; i < tasks.length; i += 1000) {
      await q.addBulk(
        tasks.slice(i, i + 1000).map((t) => ({
          name: stage.kind,
          data: { taskId: t.status.id, runId: run.id },
          opts: jobOptions(stage, t.status.id, 100_000),
        })),
      );
    }
    log.info(
      { runId: run.id, stage: stage.name, shards: tasks.length, pool: pool.name },
      'shards queued',
    );
  }

  private poolQueue(name: string): Queue<DispatchJobData> {
    let q = this.poolQueues.get(name);
    if (!q) {
      q = new Queue<DispatchJobData>(poolQueueName(name), {
        connection: this.opts.connection,
        prefix: this.opts.keys.bullPrefix,
      });
      this.poolQueues.set(name, q);
    }
    return q;
  }

  /** Remove the queued shards of a stage that was cancelled or failed; running ones stop by themselves. */
  private async cancelShards(
    run: RunRecord,
    stageName: string,
    obs: RunObservation,
  ): Promise<void> {
    const st = obs.stages[stageName];
    if (!st?.shards || isTerminal(st.phase)) return;
    const q = this.poolQueue(st.shards.pool);
    const reason = obs.cancelRequested ? 'CancelRequested' : 'StageFailed';
    for (let i = 0; i < st.shards.total; i++) {
      const id = shardTaskId(run.id, stageName, i);
      if ((await q.remove(id)) === 1) {
        await this.opts.store.recordShardOutcome(run.id, stageName, {
          taskId: id,
          index: i,
          phase: 'Cancelled',
          items: 0,
          output: null,
          reason,
          message: obs.cancelRequested ? 'cancelled while queued' : 'not run: the stage failed',
          attempt: 0,
          worker: '',
          finishedAt: nowIso(this.clock),
        });
      }
    }
    await this.opts.redis.srem(this.opts.keys.poolUsers(st.shards.pool), `${run.id}/${stageName}`);
  }

  private async writeShardManifest(run: RunRecord, stageName: string): Promise<void> {
    const outcomes = await this.opts.store.shardOutcomes(run.id, stageName);
    const path = shardManifestPath(run.runDir, stageName);
    mkdirSync(dirname(path), { recursive: true });
    const manifest = {
      stage: stageName,
      shards: outcomes
        .filter((o) => o.phase === 'Succeeded')
        .map((o) => ({ index: o.index, path: o.output, items: o.items })),
      failed: outcomes
        .filter((o) => o.phase !== 'Succeeded')
        .map((o) => ({ index: o.index, reason: o.reason, message: o.message })),
    };
    writeFileSync(`${path}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
    renameSync(`${path}.tmp`, path);
    const pool = run.spec.stages.find((s) => s.name === stageName)?.pool?.name;
    if (pool) await this.opts.redis.srem(this.opts.keys.poolUsers(pool), `${run.id}/${stageName}`);
  }

  /** Size every pool: its desired replicas while a stage uses it, its minimum otherwise. */
  async reconcilePools(): Promise<void> {
    const { backend } = this.opts;
    if (!backend?.ensurePool) return;
    for (const name of await this.opts.redis.smembers(this.opts.keys.pools())) {
      const pool = await readPool(this.opts.redis, this.opts.keys, name);
      if (!pool) continue;
      const users = await this.opts.redis.scard(this.opts.keys.poolUsers(name));
      await backend.ensurePool(pool, users > 0 ? pool.desired : pool.minReplicas);
    }
  }

  private async cancelQueued(taskId: string, obs: RunObservation): Promise<void> {
    const task = obs.tasks[taskId];
    if (!task) return;
    const queue = this.opts.queues[task.queue as DispatchQueue];
    // remove() refuses a job that is locked by a processor: the dispatcher cancels those.
    const removed = queue ? await queue.remove(taskId) : 0;
    if (removed === 1) {
      await this.opts.store.writeTaskStatus({
        ...task,
        phase: 'Cancelled',
        reason: 'CancelRequested',
        message: 'cancelled while queued',
        finishedAt: nowIso(this.clock),
      });
    }
  }
}
