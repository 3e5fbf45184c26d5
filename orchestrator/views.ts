/**
 * What `stoker status --json`, `stoker run --json` and (later) the HTTP API return for a
 * run. The schema below is the documented contract (README "JSON output"); consumers
 * may rely on every field listed; new fields may be added.
 */
import { existsSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { classifyFailure } from '../common/failure-class.js';
import { poolQueueName, type Keys } from '../common/keys.js';
import {
  Condition,
  isTerminal,
  Phase,
  StageLineage,
  type StageStatus,
  type TaskProgress,
  type TaskStatus,
} from '../common/model.js';
import { readTaskProgress } from '../common/progress.js';
import { RunResume, type RunRecord } from './run-record.js';
import { queuePaused } from './queue-paused.js';
import { QueueWait, runWaiting, stageWait } from './queue-wait.js';
import type { RunStore } from './store.js';

export const TaskView = z.object({
  id: z.string(),
  phase: Phase,
  attempt: z.number(),
  maxAttempts: z.number(),
  reason: z.string().nullable(),
  message: z.string().nullable(),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  stderrTail: z.array(z.string()),
  logFile: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  progress: z.object({
    step: z.number().nullable(),
    totalSteps: z.number().nullable(),
    epoch: z.number().nullable(),
    stepsPerSec: z.number().nullable(),
    etaSeconds: z.number().nullable(),
    metrics: z.record(z.string(), z.number().nullable()),
    checkpoint: z.object({ path: z.string(), step: z.number() }).nullable(),
    updatedAt: z.string().nullable(),
    heartbeatAt: z.string().nullable(),
  }),
  artifacts: z.record(z.string(), z.string()),
  result: z.record(z.string(), z.unknown()).nullable(),
  warnings: z.array(z.string()),
  /** What the failed attempt's stderr says went wrong (common/failure-class.ts). */
  failure: z.object({ class: z.string(), evidence: z.string(), hint: z.string() }).nullable(),
  history: z.array(
    z.object({
      attempt: z.number(),
      reason: z.string(),
      message: z.string(),
      exitCode: z.number().nullable(),
      signal: z.string().nullable(),
      finishedAt: z.string(),
    }),
  ),
});
export type TaskView = z.infer<typeof TaskView>;

/** A task with its run and stage (GET /api/v1/tasks/TASK, the event stream's `task`). */
export const TaskDetail = TaskView.extend({ runId: z.string(), stage: z.string() });

export const StageView = z.object({
  name: z.string(),
  kind: z.string(),
  phase: Phase,
  message: z.string().nullable(),
  dependsOn: z.array(z.string()),
  outputs: z.record(z.string(), z.string()),
  conditions: z.array(Condition),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  tasks: z.array(TaskView),
  /** Pulled stages: shards done of total, items per second, the failed shards. */
  shards: z
    .object({
      pool: z.string(),
      total: z.number(),
      succeeded: z.number(),
      failed: z.number(),
      items: z.number(),
      itemsPerSec: z.number().nullable(),
      failures: z.array(
        z.object({
          index: z.number(),
          taskId: z.string(),
          reason: z.string(),
          message: z.string(),
        }),
      ),
    })
    .nullable(),
  /** What the stage read from upstream stages and wrote, by content (orchestrator/lineage.ts). */
  lineage: StageLineage.nullable(),
  /**
   * The queue a stage that has not ended waits in (`train`, `steps`, or its pool's) and
   * whether it is paused (from outside: Bull Board, BullMQ); null once the stage ended
   * or before it queued anything.
   */
  queue: z
    .object({
      name: z.string(),
      paused: z.boolean(),
      /**
       * Its next job's place in the queue and estimated start (queue-wait.ts); null once
       * nothing of the stage waits.
       */
      wait: QueueWait.nullable(),
    })
    .nullable(),
});
export type StageView = z.infer<typeof StageView>;

export const RunView = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.string(),
  phase: Phase,
  message: z.string().nullable(),
  conditions: z.array(Condition),
  runDir: z.string(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  cancelRequestedAt: z.string().nullable(),
  /** Every resume of the run, oldest first (stoker resume; orchestrator/controller/resume.ts). */
  resumes: z.array(RunResume),
  stages: z.array(StageView),
});
export type RunView = z.infer<typeof RunView>;

export async function buildRunView(
  store: RunStore,
  redis: Redis,
  keys: Keys,
  runId: string,
): Promise<RunView> {
  const run = await store.mustGetRun(runId);
  const stages = await store.getStages(runId);
  const spec = run.spec;
  const taskIds = Object.values(stages).flatMap((s) => s.tasks);
  const statuses = await store.getTaskStatuses(taskIds);
  const views: StageView[] = [];
  for (const s of spec.stages) {
    const st = stages[s.name];
    if (!st) continue;
    const tasks: TaskView[] = [];
    for (const id of st.tasks) {
      const t = statuses[id];
      if (t) tasks.push(await taskView(redis, keys, id, t));
    }
    views.push({
      name: st.name,
      kind: st.kind,
      phase: st.phase,
      message: st.message,
      dependsOn: s.dependsOn,
      outputs: st.outputs,
      conditions: st.conditions,
      startedAt: st.startedAt,
      finishedAt: st.finishedAt,
      tasks,
      shards: st.shards ? await shardSummary(store, runId, st) : null,
      lineage: st.lineage ?? null,
      queue: await stageQueue(redis, keys, st, statuses),
    });
  }
  return {
    id: run.id,
    name: run.name,
    kind: run.kind,
    phase: run.phase,
    message: run.message,
    conditions: run.conditions,
    runDir: run.runDir,
    createdAt: run.createdAt,
    startedAt: run.startedAt,
    finishedAt: run.finishedAt,
    cancelRequestedAt: await store.cancelRequestedAt(runId),
    resumes: run.resumes ?? [],
    stages: views,
  };
}

/** StageView.queue: where a stage that has not ended waits, and whether that is paused. */
async function stageQueue(
  redis: Redis,
  keys: Keys,
  st: StageStatus,
  statuses: Record<string, TaskStatus>,
): Promise<StageView['queue']> {
  if (isTerminal(st.phase)) return null;
  const name = st.shards
    ? poolQueueName(st.shards.pool)
    : st.tasks.map((id) => statuses[id]?.queue).find((q) => q);
  if (!name) return null;
  return {
    name,
    paused: await queuePaused(redis, keys, name),
    wait: await stageWait(redis, keys, st, statuses, name),
  };
}

/** Seconds left at the reported rate; null without a step, a total or a rate. */
export function etaSeconds(p: TaskProgress): number | null {
  return p.step !== null && p.totalSteps !== null && p.stepsPerSec && p.stepsPerSec > 0
    ? Math.max(0, (p.totalSteps - p.step) / p.stepsPerSec)
    : null;
}

/** One task: its status, what its payload reported (progress, artifacts), its unit's log file. */
export async function taskView(
  redis: Redis,
  keys: Keys,
  id: string,
  t: TaskStatus,
): Promise<TaskView> {
  const p = await readTaskProgress(redis, keys, id);
  const unit = t.unit ? await redis.hget(keys.unit(t.unit), 'logFile') : null;
  const eta = t.phase === 'Running' ? etaSeconds(p) : null;
  return {
    id,
    phase: t.phase,
    attempt: t.attempt,
    maxAttempts: t.maxAttempts,
    reason: t.reason,
    message: t.message,
    exitCode: t.exitCode,
    signal: t.signal,
    stderrTail: t.stderrTail,
    logFile: unit && existsSync(unit) ? unit : (unit ?? null),
    startedAt: t.startedAt,
    finishedAt: t.finishedAt,
    progress: {
      step: p.step,
      totalSteps: p.totalSteps,
      epoch: p.epoch,
      stepsPerSec: p.stepsPerSec,
      etaSeconds: eta,
      metrics: p.metrics,
      checkpoint: p.checkpoint,
      updatedAt: p.updatedAt,
      heartbeatAt: p.heartbeatAt,
    },
    artifacts: p.artifacts,
    result: p.result,
    warnings: p.warnings,
    failure:
      t.phase === 'Succeeded' || t.phase === 'Running' ? null : classifyFailure(t.stderrTail),
    history: t.history,
  };
}

async function shardSummary(
  store: RunStore,
  runId: string,
  st: StageStatus,
): Promise<NonNullable<StageView['shards']>> {
  const shards = st.shards as NonNullable<StageStatus['shards']>;
  const counts = isTerminal(st.phase)
    ? shards
    : { ...shards, ...(await store.shardCounts(runId, st.name)) };
  const end = st.finishedAt ? Date.parse(st.finishedAt) : Date.now();
  const secs = st.startedAt ? (end - Date.parse(st.startedAt)) / 1000 : 0;
  const failures =
    counts.failed > 0
      ? (await store.shardOutcomes(runId, st.name))
          .filter((o) => o.phase === 'Failed')
          .slice(0, 20)
          .map((o) => ({ index: o.index, taskId: o.taskId, reason: o.reason, message: o.message }))
      : [];
  return {
    pool: shards.pool,
    total: shards.total,
    succeeded: counts.succeeded,
    failed: counts.failed,
    items: counts.items,
    itemsPerSec: secs > 0 ? counts.items / secs : null,
    failures,
  };
}

/** A run in a list (`stoker status --json`, GET /api/v1/runs), with its stages counted. */
export const RunSummary = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.string(),
  phase: Phase,
  message: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  stages: z.object({ succeeded: z.number().int(), total: z.number().int() }),
  /**
   * How far the run is, 0..1: its stages equally weighted, a succeeded one whole, a
   * running one by its shards done or its tasks' step of totalSteps; null without stages.
   */
  progress: z.number().min(0).max(1).nullable(),
  /**
   * For a run whose next work waits in a queue: where it stands and when it should start
   * (the first waiting stage's QueueWait summary); null otherwise.
   */
  waiting: z.string().nullable(),
});
export type RunSummary = z.infer<typeof RunSummary>;

export function runSummary(
  r: RunRecord,
  stages: Record<string, StageStatus>,
  taskFractions: ReadonlyMap<string, number> = new Map(),
  waiting: string | null = null,
): RunSummary {
  const all = Object.values(stages);
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    phase: r.phase,
    message: r.message,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    stages: { succeeded: all.filter((s) => s.phase === 'Succeeded').length, total: all.length },
    progress: all.length === 0 ? null : runProgress(all, taskFractions),
    waiting,
  };
}

function runProgress(stages: StageStatus[], taskFractions: ReadonlyMap<string, number>): number {
  let done = 0;
  for (const s of stages) {
    if (s.phase === 'Succeeded') done += 1;
    else if (s.phase !== 'Running') continue;
    else if (s.shards && s.shards.total > 0) done += s.shards.succeeded / s.shards.total;
    else if (s.tasks.length > 0)
      done += s.tasks.reduce((sum, t) => sum + (taskFractions.get(t) ?? 0), 0) / s.tasks.length;
  }
  return Math.min(1, done / stages.length);
}

/** A run's summary: its stages, and its running tasks' progress, read. */
export async function summarizeRun(store: RunStore, r: RunRecord): Promise<RunSummary> {
  const stages = await store.getStages(r.id);
  const running = Object.values(stages)
    .filter((s) => s.phase === 'Running' && !s.shards)
    .flatMap((s) => s.tasks);
  return runSummary(
    r,
    stages,
    await store.taskFractions(running),
    isTerminal(r.phase) ? null : await runWaiting(store, stages),
  );
}

/** The runs and their summaries, stages read once per run. */
export async function summarize(store: RunStore, runs: RunRecord[]): Promise<RunSummary[]> {
  const out: RunSummary[] = [];
  for (const r of runs) out.push(await summarizeRun(store, r));
  return out;
}

/**
 * The tasks of a run that `task` names (a task id or a stage name; every task when
 * absent), and the message for when it names none (`stoker logs`, GET .../logs).
 */
export function selectTasks(view: RunView, task: string | undefined) {
  const all = view.stages.flatMap((s) => s.tasks.map((t) => ({ stage: s.name, t })));
  const chosen = task ? all.filter((x) => x.t.id === task || x.stage === task) : all;
  const none = `run ${view.id} has no task or stage "${task ?? ''}" (tasks: ${all.map((x) => x.t.id).join(', ') || 'none yet'})`;
  return { chosen, none };
}
