/**
 * Records stoker keeps in Redis: runs, stages, tasks, units. Kubernetes-style status:
 * a phase plus conditions with machine-readable reasons and human messages.
 */
import * as z from 'zod';

export const Phase = z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Cancelled']);
export type Phase = z.infer<typeof Phase>;

export const TERMINAL_PHASES: ReadonlySet<Phase> = new Set(['Succeeded', 'Failed', 'Cancelled']);
export const isTerminal = (phase: Phase): boolean => TERMINAL_PHASES.has(phase);

export const Condition = z.object({
  /** e.g. Ready, Progressing, Failed, Cancelled, Stalled, Retrying */
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  /** CamelCase machine-readable reason, e.g. DependencyFailed, PayloadExited, CancelRequested */
  reason: z.string(),
  message: z.string(),
  lastTransitionTime: z.string(),
});
export type Condition = z.infer<typeof Condition>;

/** What the worker runs: the payload with every ${...} already resolved. */
export const ResolvedPayload = z.object({
  command: z.array(z.string()).min(1),
  env: z.record(z.string(), z.string()),
  /** Names of environment variables passed through from the worker's environment (secrets). */
  secretEnv: z.array(z.object({ name: z.string(), fromEnv: z.string() })),
  workingDir: z.string(),
  /**
   * Set when the run's spec lists files: the run whose files directory `workingDir` is;
   * a kubernetes pod that mounts that run's files runs the payload in the mount instead
   * (worker/env.ts payloadWorkingDir).
   */
  runFiles: z.string().optional(),
  outputDir: z.string(),
  /** Seconds between SIGTERM and SIGKILL. */
  terminationGracePeriodSeconds: z.number().nonnegative(),
  /** Seconds without step progress after which the task counts as hung; 0 = never. */
  stallTimeoutSeconds: z.number().nonnegative(),
});
export type ResolvedPayload = z.infer<typeof ResolvedPayload>;

export const TaskStatus = z.object({
  id: z.string(),
  runId: z.string(),
  stage: z.string(),
  queue: z.string(),
  phase: Phase,
  /** 1-based attempt number of the current or last attempt; 0 before the first. */
  attempt: z.number().int().nonnegative(),
  maxAttempts: z.number().int().positive(),
  unit: z.string().nullable(),
  reason: z.string().nullable(),
  message: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  retryable: z.boolean().nullable(),
  stderrTail: z.array(z.string()),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** One entry per finished attempt. */
  history: z.array(
    z.object({
      attempt: z.number().int(),
      reason: z.string(),
      message: z.string(),
      exitCode: z.number().int().nullable(),
      signal: z.string().nullable(),
      finishedAt: z.string(),
    }),
  ),
});
export type TaskStatus = z.infer<typeof TaskStatus>;

/** Written by the worker; read by everyone. */
export const TaskProgress = z.object({
  step: z.number().nullable(),
  totalSteps: z.number().nullable(),
  epoch: z.number().nullable(),
  metrics: z.record(z.string(), z.number().nullable()),
  /** Steps per second, smoothed. */
  stepsPerSec: z.number().nullable(),
  updatedAt: z.string().nullable(),
  heartbeatAt: z.string().nullable(),
  checkpoint: z.object({ path: z.string(), step: z.number() }).nullable(),
  artifacts: z.record(z.string(), z.string()),
  result: z.record(z.string(), z.unknown()).nullable(),
  attempt: z.number().int().nullable(),
  warnings: z.array(z.string()),
});
export type TaskProgress = z.infer<typeof TaskProgress>;

export const emptyProgress = (): TaskProgress => ({
  step: null,
  totalSteps: null,
  epoch: null,
  metrics: {},
  stepsPerSec: null,
  updatedAt: null,
  heartbeatAt: null,
  checkpoint: null,
  artifacts: {},
  result: null,
  attempt: null,
  warnings: [],
});

/** What a stage consumed or produced, by content (orchestrator/lineage.ts). */
export const LineageEntry = z.object({
  /** Where the path came from: `stages.<stage>.outputs.<name>`, or `outputs.<name>`. */
  ref: z.string(),
  path: z.string(),
  /** unread: not read by the controller; the stage's lineage problems say why. */
  kind: z.enum(['file', 'directory', 'missing', 'url', 'unread']),
  sha256: z.string().nullable(),
  bytes: z.number().nullable(),
  files: z.number().int().nullable(),
  records: z.number().int().nullable(),
});
export type LineageEntry = z.infer<typeof LineageEntry>;

export const StageLineage = z.object({
  consumed: z.array(LineageEntry),
  produced: z.array(LineageEntry),
  /** A path that could not be read (permissions, vanished mid-read): named, never fatal. */
  problems: z.array(z.string()).default([]),
});
export type StageLineage = z.infer<typeof StageLineage>;

export const StageStatus = z.object({
  name: z.string(),
  kind: z.string(),
  phase: Phase,
  conditions: z.array(Condition),
  tasks: z.array(z.string()),
  /** Resolved outputs: declared outputs and artifacts reported by the payload. */
  outputs: z.record(z.string(), z.string()),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  message: z.string().nullable(),
  /** Pulled stages: shard counts (their task ids are `${runId}.${stage}.sNNNNN`, not listed in `tasks`). */
  shards: z
    .object({
      total: z.number().int(),
      succeeded: z.number().int(),
      failed: z.number().int(),
      items: z.number(),
      pool: z.string(),
    })
    .optional(),
  /** Upstream outputs read at start and outputs written, with content hashes. */
  lineage: StageLineage.optional(),
});
export type StageStatus = z.infer<typeof StageStatus>;

/** A stage's status before anything ran: as the run is stored, and as the planner starts it. */
export function newStageStatus(stage: { name: string; kind: string }): StageStatus {
  return {
    name: stage.name,
    kind: stage.kind,
    phase: 'Pending',
    conditions: [],
    tasks: [],
    outputs: {},
    startedAt: null,
    finishedAt: null,
    message: null,
  };
}

/** Where one shard of a pulled stage reads and writes. */
export const ShardInfo = z.object({
  index: z.number().int().nonnegative(),
  input: z.string(),
  output: z.string(),
  pool: z.string(),
  params: z.record(z.string(), z.unknown()),
});
export type ShardInfo = z.infer<typeof ShardInfo>;

/** The final outcome of one shard, written once by the pool worker that ran it last. */
export const ShardOutcome = z.object({
  taskId: z.string(),
  index: z.number().int(),
  phase: z.enum(['Succeeded', 'Failed', 'Cancelled']),
  items: z.number().int(),
  output: z.string().nullable(),
  reason: z.string(),
  message: z.string(),
  attempt: z.number().int(),
  worker: z.string(),
  finishedAt: z.string(),
});
export type ShardOutcome = z.infer<typeof ShardOutcome>;

/** A launched unit of execution (a local process group, later a Kubernetes Job). */
export const UnitRecord = z.object({
  name: z.string(),
  taskId: z.string(),
  attempt: z.number().int(),
  backend: z.string(),
  /** local: worker pid and its /proc start time, to tell a live process from a reused pid. */
  pid: z.number().int().nullable(),
  pidStartTime: z.string().nullable(),
  /** local: the payload's process group, written by the worker, killed if the worker dies. */
  payloadPgid: z.number().int().nullable(),
  logFile: z.string().nullable(),
  launchedAt: z.string(),
  /** Set by the worker when it finishes. */
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  finishedAt: z.string().nullable(),
  stderrTail: z.array(z.string()),
});
export type UnitRecord = z.infer<typeof UnitRecord>;

export const nowIso = (clock: () => number = Date.now): string => new Date(clock()).toISOString();
