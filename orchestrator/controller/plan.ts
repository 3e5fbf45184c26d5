/**
 * Pure reconcile logic: from what is observed (run, stages, tasks, cancel request),
 * compute the stages' and the run's status and the actions that converge the world.
 * No I/O here; controller.ts observes, converges and writes.
 */
import type { Condition, Phase, StageStatus, TaskStatus } from '../../common/model.js';
import type { RunRecord } from '../run-record.js';
import { isTerminal, newStageStatus } from '../../common/model.js';
import type { NormalizedSpec, NormalizedStage } from '../../common/spec/schema.js';

export interface RunObservation {
  run: RunRecord;
  stages: Record<string, StageStatus>;
  tasks: Record<string, TaskStatus>;
  /** Artifacts the payloads reported, per task id. */
  artifacts: Record<string, Record<string, string>>;
  cancelRequested: boolean;
  now: string;
  /** Pulled stages: shard counts. */
  shardCounts: Record<string, { succeeded: number; failed: number; items: number }>;
}

export type Action =
  | { type: 'createTask'; stage: string }
  | { type: 'cancelQueued'; taskId: string }
  /** Remove the queued shard jobs of a pulled stage (cancel, or too many failures). */
  | { type: 'cancelShards'; stage: string }
  /** Write the list of shard outputs of a finished pulled stage. */
  | { type: 'writeShardManifest'; stage: string };

/** Outputs every pulled stage has once it succeeded. */
export const shardManifestPath = (runDir: string, stage: string): string =>
  `${runDir}/stages/${stage}/shards.json`;

export interface Plan {
  run: RunRecord;
  stages: Record<string, StageStatus>;
  actions: Action[];
}

/** Set a condition, keeping lastTransitionTime when its status did not change. */
export function setCondition(
  conditions: Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: string,
): Condition[] {
  const prev = conditions.find((c) => c.type === next.type);
  const lastTransitionTime = prev && prev.status === next.status ? prev.lastTransitionTime : now;
  const updated: Condition = { ...next, lastTransitionTime };
  return prev
    ? conditions.map((c) => (c.type === next.type ? updated : c))
    : [...conditions, updated];
}

/** Stages in an order where every stage comes after its dependencies (validated acyclic). */
export function topoOrder(stages: NormalizedStage[]): NormalizedStage[] {
  const done = new Set<string>();
  const out: NormalizedStage[] = [];
  let progress = true;
  while (out.length < stages.length && progress) {
    progress = false;
    for (const s of stages) {
      if (!done.has(s.name) && s.dependsOn.every((d) => done.has(d))) {
        done.add(s.name);
        out.push(s);
        progress = true;
      }
    }
  }
  // A cycle cannot pass validation; keep any leftovers so nothing is silently dropped.
  for (const s of stages) if (!done.has(s.name)) out.push(s);
  return out;
}

function taskPhaseToStage(t: TaskStatus): Phase {
  if (t.phase === 'Pending') return t.attempt > 0 ? 'Running' : 'Pending';
  return t.phase;
}

/**
 * The plan of one pass. Each stage, in an order where its dependencies come first, by
 * what it is now:
 *   terminal      kept as it is
 *   pulled        shards done of total, the failure policy (planShardedStage)
 *   no task yet   cancelled, failed by a dependency, started or waiting (planUnstartedStage)
 *   with tasks    their outcome, or running, queued, retrying (planTaskStage)
 * then the run's status from its stages' (runStatus).
 */
export function planRun(obs: RunObservation): Plan {
  const spec = obs.run.spec;
  const actions: Action[] = [];
  const stages: Record<string, StageStatus> = {};
  for (const s of topoOrder(spec.stages)) {
    const cur = obs.stages[s.name] ?? newStageStatus(s);
    if (isTerminal(cur.phase)) stages[s.name] = cur;
    else if (cur.shards) stages[s.name] = planShardedStage(obs, s, { ...cur }, actions);
    else if (cur.tasks.length === 0)
      stages[s.name] = planUnstartedStage(obs, s, cur, stages, actions);
    else stages[s.name] = planTaskStage(obs, cur, actions);
  }
  return { run: runStatus(obs.run, spec, stages, obs.cancelRequested, obs.now), stages, actions };
}

/** A stage nothing was recorded of yet. */
/**
 * A stage with no task yet: cancelled (the run, or a dependency), failed (a dependency
 * failed), started (every dependency succeeded: createTask), or still waiting. `stages`
 * holds the statuses planned so far, every dependency's among them.
 */
function planUnstartedStage(
  obs: RunObservation,
  s: NormalizedStage,
  cur: StageStatus,
  stages: Record<string, StageStatus>,
  actions: Action[],
): StageStatus {
  const { now } = obs;
  const next: StageStatus = { ...cur };
  const failedDep = s.dependsOn.find((d) => stages[d]?.phase === 'Failed');
  const cancelledDep = s.dependsOn.find((d) => stages[d]?.phase === 'Cancelled');
  if (obs.cancelRequested || cancelledDep) {
    const why = obs.cancelRequested
      ? 'the run was cancelled'
      : `stage ${cancelledDep} was cancelled`;
    return finishStage(next, 'Cancelled', 'CancelRequested', why, now);
  }
  if (failedDep)
    return finishStage(next, 'Failed', 'DependencyFailed', `stage ${failedDep} failed`, now);
  if (s.dependsOn.every((d) => stages[d]?.phase === 'Succeeded')) {
    actions.push({ type: 'createTask', stage: s.name });
    next.message = 'starting';
    return next;
  }
  const waiting = s.dependsOn.filter((d) => stages[d]?.phase !== 'Succeeded');
  next.message = `waiting for ${waiting.join(', ')}`;
  next.conditions = setCondition(
    next.conditions,
    { type: 'Ready', status: 'False', reason: 'WaitingForDependencies', message: next.message },
    now,
  );
  return next;
}

/**
 * A stage with tasks (one per dispatched stage): their outcome once all ended (every one
 * succeeded: the stage's outputs are its artifacts), else running, queued or retrying.
 * A cancel request cancels the tasks still queued.
 */
function planTaskStage(obs: RunObservation, cur: StageStatus, actions: Action[]): StageStatus {
  const { now } = obs;
  const tasks = cur.tasks
    .map((id) => obs.tasks[id])
    .filter((t): t is TaskStatus => t !== undefined);
  if (obs.cancelRequested) {
    for (const t of tasks)
      if (t.phase === 'Pending') actions.push({ type: 'cancelQueued', taskId: t.id });
  }
  const next: StageStatus = { ...cur };
  const failed = tasks.find((t) => t.phase === 'Failed');
  const allDone = tasks.length === cur.tasks.length && tasks.every((t) => isTerminal(t.phase));
  if (!allDone) return activeTaskStage(obs, next, tasks);
  // A finished stage ends when its last task ended, not when this pass noticed it.
  const endedAt =
    tasks
      .map((t) => t.finishedAt)
      .filter((x): x is string => x !== null)
      .sort()
      .at(-1) ?? now;
  if (tasks.every((t) => t.phase === 'Succeeded')) {
    const outputs = { ...cur.outputs };
    for (const t of tasks) Object.assign(outputs, obs.artifacts[t.id] ?? {});
    return finishStage({ ...next, outputs }, 'Succeeded', 'Completed', 'completed', now, endedAt);
  }
  if (failed) {
    const reason = failed.reason ?? 'TaskFailed';
    return finishStage(next, 'Failed', reason, failed.message ?? 'a task failed', now, endedAt);
  }
  if (tasks.some((t) => t.phase === 'Cancelled'))
    return finishStage(next, 'Cancelled', 'CancelRequested', 'cancelled', now, endedAt);
  return activeTaskStage(obs, next, tasks);
}

/** A stage whose tasks have not all ended: Running or Pending, and its Retrying condition. */
function activeTaskStage(obs: RunObservation, next: StageStatus, tasks: TaskStatus[]): StageStatus {
  const { now } = obs;
  const running = tasks.map(taskPhaseToStage).some((p) => p === 'Running');
  next.phase = running ? 'Running' : 'Pending';
  if (running && !next.startedAt)
    next.startedAt = tasks.map((t) => t.startedAt).find((x) => x) ?? now;
  const retrying = tasks.find((t) => t.phase === 'Pending' && t.attempt > 0);
  next.message = obs.cancelRequested
    ? 'cancelling'
    : retrying
      ? retrying.message
      : running
        ? 'running'
        : 'queued';
  next.conditions = setCondition(
    next.conditions,
    retrying
      ? {
          type: 'Retrying',
          status: 'True',
          reason: retrying.reason ?? 'AttemptFailed',
          message: retrying.message ?? 'retrying',
        }
      : {
          type: 'Retrying',
          status: 'False',
          reason: running ? 'Running' : 'Queued',
          message: '',
        },
    now,
  );
  return next;
}

/** A pulled stage: shards done of total, the failure policy, cancel. */
function planShardedStage(
  obs: RunObservation,
  s: NormalizedStage,
  cur: StageStatus,
  actions: Action[],
): StageStatus {
  const { now } = obs;
  const shards = cur.shards;
  if (!shards) return cur;
  const counts = obs.shardCounts[s.name] ?? { succeeded: 0, failed: 0, items: 0 };
  const next: StageStatus = { ...cur, shards: { ...shards, ...counts } };
  const done = counts.succeeded + counts.failed;
  const summary = `${counts.succeeded}/${shards.total} shards done${counts.failed ? `, ${counts.failed} failed` : ''}, ${counts.items} items`;
  if (obs.cancelRequested) {
    actions.push({ type: 'cancelShards', stage: s.name });
    return finishStage(
      next,
      'Cancelled',
      'CancelRequested',
      `the run was cancelled (${summary})`,
      now,
    );
  }
  if (counts.failed > s.maxFailedShards) {
    actions.push({ type: 'cancelShards', stage: s.name });
    return finishStage(
      next,
      'Failed',
      'TooManyShardsFailed',
      `${counts.failed} shard${counts.failed === 1 ? '' : 's'} failed, more than the ${s.maxFailedShards} the failure policy allows (${summary})`,
      now,
    );
  }
  if (done >= shards.total) {
    actions.push({ type: 'writeShardManifest', stage: s.name });
    const outputs = { ...next.outputs, shards: shardManifestPath(obs.run.runDir, s.name) };
    return finishStage({ ...next, outputs }, 'Succeeded', 'Completed', summary, now);
  }
  const started = done > 0 || obs.tasks !== undefined;
  return {
    ...next,
    phase: 'Running',
    startedAt: next.startedAt ?? (started ? now : null),
    message: summary,
  };
}

function finishStage(
  s: StageStatus,
  phase: 'Succeeded' | 'Failed' | 'Cancelled',
  reason: string,
  message: string,
  now: string,
  endedAt: string = now,
): StageStatus {
  return {
    ...s,
    phase,
    message,
    finishedAt: s.finishedAt ?? endedAt,
    conditions: setCondition(
      s.conditions.filter((c) => c.type !== 'Retrying'),
      { type: phase === 'Succeeded' ? 'Complete' : phase, status: 'True', reason, message },
      now,
    ),
  };
}

function runStatus(
  run: RunRecord,
  spec: NormalizedSpec,
  stages: Record<string, StageStatus>,
  cancelRequested: boolean,
  now: string,
): RunRecord {
  const list = spec.stages
    .map((s) => stages[s.name])
    .filter((s): s is StageStatus => s !== undefined);
  const next: RunRecord = { ...run };
  const allTerminal = list.every((s) => isTerminal(s.phase));
  if (allTerminal) {
    const failed = list.filter((s) => s.phase === 'Failed');
    const cancelled = list.some((s) => s.phase === 'Cancelled');
    let phase: Phase;
    let reason: string;
    let message: string;
    if (list.every((s) => s.phase === 'Succeeded')) {
      phase = 'Succeeded';
      reason = 'AllStagesSucceeded';
      message = `${list.length} stage${list.length === 1 ? '' : 's'} succeeded`;
    } else if (cancelRequested || (cancelled && failed.length === 0)) {
      phase = 'Cancelled';
      reason = 'CancelRequested';
      message = 'cancelled by request';
    } else {
      const first =
        failed.find(
          (s) => s.conditions.find((c) => c.type === 'Failed')?.reason !== 'DependencyFailed',
        ) ?? failed[0];
      phase = 'Failed';
      reason = 'StageFailed';
      message = `stage ${first?.name} failed: ${first?.message ?? 'unknown'}`;
    }
    next.phase = phase;
    next.message = message;
    next.finishedAt = run.finishedAt ?? now;
    next.startedAt = run.startedAt ?? now;
    next.conditions = setCondition(
      run.conditions,
      { type: phase === 'Succeeded' ? 'Complete' : phase, status: 'True', reason, message },
      now,
    );
    return next;
  }
  const started = list.some((s) => s.phase !== 'Pending' || s.tasks.length > 0);
  next.phase = started ? 'Running' : 'Pending';
  if (started && !next.startedAt) next.startedAt = now;
  const running = list.filter((s) => s.phase === 'Running').map((s) => s.name);
  next.message = cancelRequested
    ? 'cancelling'
    : running.length > 0
      ? `running ${running.join(', ')}`
      : started
        ? 'queued'
        : 'pending';
  if (cancelRequested) {
    next.conditions = setCondition(
      next.conditions,
      {
        type: 'Cancelling',
        status: 'True',
        reason: 'CancelRequested',
        message: 'cancel requested; stopping tasks',
      },
      now,
    );
  }
  return next;
}
