/**
 * `stoker worker --task ID --unit NAME --attempt N`: one attempt of a dispatched task
 * (README, "How a run flows": dispatched).
 *
 * Reads     task:{id}            payload (JSON ResolvedPayload), runDir, status (JSON;
 *                                runId and stage, else taken from the id `${runId}.${stage}`)
 *           task:{id}:progress   the last checkpoint, for RESUME_FROM
 * Writes    task:{id}:progress, :events, :logs   through TaskReporter (common/progress.ts)
 *           unit:{name}          after spawn: payloadPgid, logFile
 *                                at the end:  exitCode, signal ('' if none), finishedAt,
 *                                             stderrTail (JSON), reason, message,
 *                                             retryable ('true'/'false'), terminated
 *                                             ('abort' | 'stall' | '')
 *           ${runDir}/logs/${taskId}.attempt-${attempt}.log   the full log
 * Returns   the exit code the worker process should exit with: the payload's code,
 *           128+N when a signal N killed it, BAD_CONFIG (64) for a payload that fails
 *           validation or a missing secret, MISSING_INPUT (66) for a missing task or
 *           working directory. The dispatcher classifies it with classifyExit().
 * Signals   the CLI turns SIGTERM/SIGINT to the worker into `signal` (an AbortSignal):
 *           the payload gets SIGTERM, its grace period, then SIGKILL of its group; the
 *           attempt's outcome is still recorded. (A second signal may force: the CLI's
 *           choice; this function only needs the one abort.)
 *
 * The caller owns the Redis connection and the logger; no process.env is read here.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import { isNonRetryable, NonRetryableError } from '../common/errors.js';
import { classifyExit, ExitCode } from '../common/exit-codes.js';
import type { Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import { emptyProgress, nowIso, ResolvedPayload } from '../common/model.js';
import { procStartTime } from '../common/proc.js';
import { attemptLogFile, attemptMetricsFile } from '../common/paths.js';
import { readTaskProgress } from '../common/progress.js';
import { buildPayloadEnv, payloadWorkingDir, rankEnvFrom, type EnvSource } from './env.js';
import { unretriedFailure } from './failure-exit.js';
import type { Timers } from './progress-store.js';
import { MetricHistory } from './metric-history.js';
import { PayloadLogFile } from './payload-log.js';
import { TaskReporter } from './reporter.js';
import { runPayload, type PayloadOutcome } from './runner.js';

export interface TaskWorkerOptions {
  redis: Redis;
  keys: Keys;
  taskId: string;
  unitName: string;
  attempt: number;
  /** The worker's environment (its own plus STOKER_SECRETS_FD's: worker/secrets-fd.ts). */
  parentEnv: EnvSource;
  log: Logger;
  /** Aborted on SIGTERM/SIGINT to the worker (wired by the CLI). */
  signal?: AbortSignal;
  /** Rank variables; default: those present in parentEnv (rankEnvFrom). */
  rankEnv?: Record<string, string>;
  clock?: () => number;
  timers?: Timers;
  flushIntervalMs?: number;
  heartbeatIntervalMs?: number;
  /** Called with the finished attempt's outcome (tests, the local backend's logs). */
  onOutcome?: (outcome: PayloadOutcome) => void;
}

interface LoadedTask {
  payload: ResolvedPayload;
  runDir: string;
  runId: string;
  stage: string;
}

async function loadTask(redis: Redis, keys: Keys, taskId: string): Promise<LoadedTask> {
  const hash = await redis.hgetall(keys.task(taskId));
  if (!hash.payload || !hash.runDir) {
    throw new NonRetryableError(
      `task ${taskId} has no ${hash.payload ? 'runDir' : 'payload'} in ${keys.task(taskId)}`,
      'MISSING_INPUT',
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(hash.payload);
  } catch (err) {
    throw new NonRetryableError(
      `task ${taskId}: payload is not JSON: ${(err as Error).message}`,
      'BAD_CONFIG',
    );
  }
  const parsed = ResolvedPayload.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => `${i.path.join('.') || '<root>'}: ${i.message}`)
      .join('; ');
    throw new NonRetryableError(`task ${taskId}: invalid payload: ${issues}`, 'BAD_CONFIG');
  }
  let runId = '';
  let stage = '';
  try {
    const status = JSON.parse(hash.status ?? '{}') as { runId?: unknown; stage?: unknown };
    if (typeof status.runId === 'string') runId = status.runId;
    if (typeof status.stage === 'string') stage = status.stage;
  } catch {
    // status is the dispatcher's; fall back on the id's shape
  }
  const dot = taskId.lastIndexOf('.');
  if (!runId) runId = dot > 0 ? taskId.slice(0, dot) : taskId;
  if (!stage) stage = dot > 0 ? taskId.slice(dot + 1) : '';
  return { payload: parsed.data, runDir: hash.runDir, runId, stage };
}

const EXIT_FOR_REASON: Record<string, number> = {
  MISSING_INPUT: ExitCode.MISSING_INPUT,
  BAD_CONFIG: ExitCode.BAD_CONFIG,
};

/** How an attempt ended, as the unit record keeps it (the dispatcher reads it). */
interface AttemptEnd {
  exitCode: number;
  signal: string | null;
  reason: string;
  message: string;
  retryable: boolean;
  stderrTail: string[];
  terminated: string | null;
}

/** One attempt's context: who writes what (only node 0 of a gang), its reporter, its clock. */
interface Attempt {
  opts: TaskWorkerOptions;
  clock: () => number;
  log: Logger;
  unitKey: string;
  /** Node rank in a multi-node gang (NODE_RANK or JOB_COMPLETION_INDEX), 0 alone. */
  nodeRank: number;
  leader: boolean;
  reporter: TaskReporter;
}

/** What the payload runs with, once the task has been loaded and checked. */
interface Prepared {
  task: LoadedTask;
  env: ReturnType<typeof buildPayloadEnv>;
  resumeFrom: string | null;
}

/**
 * Run one attempt; resolves with the worker's exit code. Throws only if Redis fails.
 *
 *   1. load and check the task, its resume pointer and the payload's environment
 *      (prepare); anything wrong here is not retryable: recorded, BAD_CONFIG or
 *      MISSING_INPUT
 *   2. stopped while getting ready: recorded as aborted (retryable), nothing runs
 *   3. run the payload (runPayload), its events through the reporter
 *   4. record how it ended (endOf, recordEnd)
 */
export async function runTaskWorker(opts: TaskWorkerOptions): Promise<number> {
  const a = openAttempt(opts);
  // Our pid, unless the backend recorded it (a controller that died right after the spawn
  // did not): the local backend then knows its unit was spawned.
  if (a.leader) {
    await opts.redis.hsetnx(a.unitKey, 'pid', String(process.pid));
    await opts.redis.hsetnx(a.unitKey, 'pidStartTime', procStartTime(process.pid) ?? '');
  }
  let prepared: Prepared;
  try {
    prepared = await prepare(a);
  } catch (err) {
    const end = isNonRetryable(err) ? cannotRun(a, err as NonRetryableError) : null;
    await a.reporter.close();
    if (!end) throw err;
    return recordEnd(a, end);
  }
  if (opts.signal?.aborted) {
    await a.reporter.close();
    return recordEnd(a, abortedBeforeStart(a));
  }
  const outcome = await run(a, prepared);
  return recordEnd(a, endOf(a, prepared.task, outcome));
}

function openAttempt(opts: TaskWorkerOptions): Attempt {
  const clock = opts.clock ?? Date.now;
  const log = opts.log.child({ taskId: opts.taskId, attempt: opts.attempt, unit: opts.unitName });
  // In a multi-node gang every node runs a worker; only node 0 writes the task's progress
  // and the unit's result (one writer per record). The others run their payload rank and
  // keep its log in a file of their own.
  const nodeRank =
    Number(opts.parentEnv.NODE_RANK ?? opts.parentEnv.JOB_COMPLETION_INDEX ?? 0) || 0;
  const leader = nodeRank === 0;
  const reporterOptions = {
    clock,
    timers: opts.timers,
    log,
    flushIntervalMs: opts.flushIntervalMs,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
  };
  const reporter = leader
    ? TaskReporter.forRedis(opts.redis, opts.keys, opts.taskId, {
        ...reporterOptions,
        changes: true,
      })
    : new TaskReporter({
        ...reporterOptions,
        store: { write: async () => undefined, read: async () => emptyProgress() },
      });
  return { opts, clock, log, unitKey: opts.keys.unit(opts.unitName), nodeRank, leader, reporter };
}

/** Step 1: the task, the working directory, the resume pointer, the payload's environment. */
async function prepare(a: Attempt): Promise<Prepared> {
  const { redis, keys, taskId, attempt, parentEnv } = a.opts;
  const loaded = await loadTask(redis, keys, taskId);
  // A run that lists files works in them: in a pod, where its ConfigMap is mounted.
  const task: LoadedTask = {
    ...loaded,
    payload: { ...loaded.payload, workingDir: payloadWorkingDir(loaded.payload, parentEnv) },
  };
  if (!existsSync(task.payload.workingDir)) {
    throw new NonRetryableError(
      `working directory ${task.payload.workingDir} does not exist`,
      'MISSING_INPUT',
    );
  }
  const previous = await readTaskProgress(redis, keys, taskId);
  await a.reporter.beginAttempt(attempt);
  const resumeFrom = previous.checkpoint ? resumePointer(a, task, previous.checkpoint) : null;
  const env = buildPayloadEnv({
    parentEnv,
    payload: task.payload,
    identity: { runId: task.runId, taskId, stage: task.stage, attempt },
    resumeFrom,
    rankEnv: a.opts.rankEnv ?? rankEnvFrom(parentEnv),
  });
  mkdirSync(task.payload.outputDir, { recursive: true });
  return { task, env, resumeFrom };
}

/** The last recorded checkpoint, if its files are still there (RESUME_FROM). */
function resumePointer(
  a: Attempt,
  task: LoadedTask,
  checkpoint: { path: string; step: number | null },
): string | null {
  const path = isAbsolute(checkpoint.path)
    ? checkpoint.path
    : resolve(task.payload.workingDir, checkpoint.path);
  if (existsSync(path)) {
    a.log.info({ resumeFrom: path, step: checkpoint.step }, 'resuming from checkpoint');
    return path;
  }
  a.reporter.warn(
    `checkpoint ${path} (step ${checkpoint.step}) no longer exists; starting without RESUME_FROM`,
  );
  a.log.warn({ path }, 'recorded checkpoint is missing; not resuming');
  return null;
}

/** Step 1 failed: what cannot run now cannot run next time either. */
function cannotRun(a: Attempt, err: NonRetryableError): AttemptEnd {
  const reason = err.reason ?? 'BAD_CONFIG';
  a.log.error({ err, reason }, 'task cannot run');
  a.reporter.warn(err.message);
  return {
    exitCode: EXIT_FOR_REASON[reason] ?? ExitCode.BAD_CONFIG,
    signal: null,
    reason,
    message: err.message,
    retryable: false,
    stderrTail: [err.message],
    terminated: null,
  };
}

/** Step 2: stopped while getting ready (a shutdown): retryable, as 128+SIGTERM. */
function abortedBeforeStart(a: Attempt): AttemptEnd {
  const message = 'the worker was stopped before the payload started';
  a.log.info(message);
  return {
    exitCode: classifyExit(null, 'SIGTERM').exitCode ?? ExitCode.FAILURE,
    signal: null,
    reason: 'Aborted',
    message,
    retryable: true,
    stderrTail: [],
    terminated: 'abort',
  };
}

/** Step 3: the payload, its log file (a node's own beside the leader's), its process group recorded. */
async function run(a: Attempt, { task, env, resumeFrom }: Prepared): Promise<PayloadOutcome> {
  const { redis, taskId, attempt } = a.opts;
  const logFile = attemptLogFile(task.runDir, taskId, attempt, a.leader ? 0 : a.nodeRank);
  // The metric history (every metrics event: a file beside the log, and a Redis stream):
  // the leader's only, as the task's progress.
  const history = a.leader
    ? new MetricHistory(
        attempt,
        new PayloadLogFile(attemptMetricsFile(task.runDir, taskId, attempt), a.clock, a.log),
      )
    : null;
  a.reporter.setHistory(history);
  let spawnWrite: Promise<unknown> = Promise.resolve();
  a.log.info({ argv: task.payload.command, logFile, resumeFrom }, 'starting payload');
  const outcome = await runPayload({
    argv: task.payload.command,
    cwd: task.payload.workingDir,
    env: env.env,
    secretValues: env.secretValues,
    logFile,
    sink: a.reporter,
    signal: a.opts.signal,
    terminationGraceMs: task.payload.terminationGracePeriodSeconds * 1000,
    // Only the node that reports progress is stall-checked: the others' payloads print no
    // progress (rank 0 reports), so a clock there would kill a healthy node. A hung node
    // stops node 0's steps too (every step is a collective), and node 0's clock ends the gang.
    stallTimeoutMs: a.leader ? task.payload.stallTimeoutSeconds * 1000 : 0,
    log: a.log,
    clock: a.clock,
    onSpawn: (pid) => {
      if (!a.leader) return;
      spawnWrite = redis
        .hset(a.unitKey, { payloadPgid: String(pid), logFile })
        .catch((err: unknown) => {
          a.log.warn({ err }, 'cannot record the payload process group');
        });
    },
  });
  await spawnWrite;
  if (outcome.terminated === 'stall') a.reporter.warn(hangMessage(task, outcome));
  await a.reporter.close();
  await history?.close();
  if (history && history.dropped > 0)
    a.log.warn({ dropped: history.dropped }, 'metric points left out of the Redis stream');
  a.opts.onOutcome?.(outcome);
  return outcome;
}

const hangMessage = (task: LoadedTask, outcome: PayloadOutcome): string =>
  `no step progress for ${task.payload.stallTimeoutSeconds} s (last step ${outcome.lastStep ?? 'none'}): terminated as hung`;

/** Step 4: the payload's exit, classified; a hang is reported as such, not as our SIGTERM. */
function endOf(a: Attempt, task: LoadedTask, outcome: PayloadOutcome): AttemptEnd {
  const c = outcome.classification;
  const exitCode = outcome.spawnError
    ? c.retryable
      ? ExitCode.FAILURE
      : ExitCode.MISSING_DEPENDENCY
    : (c.exitCode ?? ExitCode.FAILURE);
  a.log.info(
    {
      exitCode,
      signal: outcome.signal,
      reason: c.reason,
      terminated: outcome.terminated,
      malformedLines: outcome.malformedLines,
    },
    'payload finished',
  );
  const stalled = outcome.terminated === 'stall';
  const cause = !stalled && c.retryable ? unretriedFailure(outcome.stderrTail) : null;
  return {
    // Not retried on any backend: the exit code says so (a Job's podFailurePolicy too).
    exitCode: cause ? cause.exitCode : exitCode,
    signal: outcome.signal,
    reason: stalled ? 'Stalled' : (cause?.class ?? c.reason),
    message: stalled
      ? hangMessage(task, outcome)
      : cause
        ? `${c.description}: ${cause.evidence} (${cause.hint}); not retried: ${cause.again} (stoker resume once it is fixed)`
        : c.description,
    retryable: stalled ? true : cause ? false : c.retryable,
    stderrTail: outcome.stderrTail,
    terminated: outcome.terminated,
  };
}

/** The unit record's end fields (node 0 only); the worker's exit code. */
async function recordEnd(a: Attempt, end: AttemptEnd): Promise<number> {
  if (!a.leader) return end.exitCode;
  await a.opts.redis.hset(a.unitKey, {
    exitCode: String(end.exitCode),
    signal: end.signal ?? '',
    finishedAt: nowIso(a.clock),
    stderrTail: JSON.stringify(end.stderrTail),
    reason: end.reason,
    message: end.message,
    retryable: String(end.retryable),
    terminated: end.terminated ?? '',
  });
  return end.exitCode;
}
