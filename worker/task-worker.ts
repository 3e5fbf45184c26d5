/**
 * `stoker worker --task ID --unit NAME --attempt N`: one attempt of a dispatched task
 * (DESIGN.md section 2, "Dispatched").
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
import { attemptLogFile } from '../common/paths.js';
import { readTaskProgress } from '../common/progress.js';
import { buildPayloadEnv, rankEnvFrom, type EnvSource } from './env.js';
import { TaskReporter, type Timers } from './reporter.js';
import { runPayload, type PayloadOutcome } from './runner.js';

export interface TaskWorkerOptions {
  redis: Redis;
  keys: Keys;
  taskId: string;
  unitName: string;
  attempt: number;
  /** The worker's environment (process.env at the entry point). */
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

/** Run one attempt; resolves with the worker's exit code. Throws only if Redis fails. */
export async function runTaskWorker(opts: TaskWorkerOptions): Promise<number> {
  const { redis, keys, taskId, unitName, attempt } = opts;
  const clock = opts.clock ?? Date.now;
  const log = opts.log.child({ taskId, attempt, unit: unitName });
  const unitKey = keys.unit(unitName);
  // In a multi-node gang every node runs a worker; only node 0 writes the task's progress
  // and the unit's result (one writer per record). The others run their payload rank and
  // keep its log in a file of their own.
  const nodeRank =
    Number(opts.parentEnv.NODE_RANK ?? opts.parentEnv.JOB_COMPLETION_INDEX ?? 0) || 0;
  const leader = nodeRank === 0;

  const finish = async (fields: {
    exitCode: number;
    signal: string | null;
    reason: string;
    message: string;
    retryable: boolean;
    stderrTail: string[];
    terminated: string | null;
  }): Promise<number> => {
    if (!leader) return fields.exitCode;
    await redis.hset(unitKey, {
      exitCode: String(fields.exitCode),
      signal: fields.signal ?? '',
      finishedAt: nowIso(clock),
      stderrTail: JSON.stringify(fields.stderrTail),
      reason: fields.reason,
      message: fields.message,
      retryable: String(fields.retryable),
      terminated: fields.terminated ?? '',
    });
    return fields.exitCode;
  };

  const reporterOptions = {
    clock,
    timers: opts.timers,
    log,
    flushIntervalMs: opts.flushIntervalMs,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
  };
  const reporter = leader
    ? TaskReporter.forRedis(redis, keys, taskId, reporterOptions)
    : new TaskReporter({
        ...reporterOptions,
        store: { write: async () => undefined, read: async () => emptyProgress() },
      });

  // 1. Load and validate the task; anything wrong here fails the same way next time.
  let task: LoadedTask;
  let env: ReturnType<typeof buildPayloadEnv>;
  let resumeFrom: string | null = null;
  try {
    task = await loadTask(redis, keys, taskId);
    if (!existsSync(task.payload.workingDir)) {
      throw new NonRetryableError(
        `working directory ${task.payload.workingDir} does not exist`,
        'MISSING_INPUT',
      );
    }
    // 2. Resume pointer: the last recorded checkpoint, if its files are still there.
    const previous = await readTaskProgress(redis, keys, taskId);
    await reporter.beginAttempt(attempt);
    if (previous.checkpoint) {
      const path = isAbsolute(previous.checkpoint.path)
        ? previous.checkpoint.path
        : resolve(task.payload.workingDir, previous.checkpoint.path);
      if (existsSync(path)) {
        resumeFrom = path;
        log.info({ resumeFrom, step: previous.checkpoint.step }, 'resuming from checkpoint');
      } else {
        reporter.warn(
          `checkpoint ${path} (step ${previous.checkpoint.step}) no longer exists; starting without RESUME_FROM`,
        );
        log.warn({ path }, 'recorded checkpoint is missing; not resuming');
      }
    }
    // 3. The payload's environment (allowlist + spec + secrets + stoker's).
    env = buildPayloadEnv({
      parentEnv: opts.parentEnv,
      payload: task.payload,
      identity: { runId: task.runId, taskId, stage: task.stage, attempt },
      resumeFrom,
      rankEnv: opts.rankEnv ?? rankEnvFrom(opts.parentEnv),
    });
    mkdirSync(task.payload.outputDir, { recursive: true });
  } catch (err) {
    if (!isNonRetryable(err)) {
      await reporter.close();
      throw err;
    }
    const reason = (err as NonRetryableError).reason ?? 'BAD_CONFIG';
    const exitCode = EXIT_FOR_REASON[reason] ?? ExitCode.BAD_CONFIG;
    const message = (err as Error).message;
    log.error({ err, reason }, 'task cannot run');
    reporter.warn(message);
    await reporter.close();
    return finish({
      exitCode,
      signal: null,
      reason,
      message,
      retryable: false,
      stderrTail: [message],
      terminated: null,
    });
  }

  // 4. Run it, unless the worker was told to stop while it was getting ready (a
  //    shutdown: retryable, reported as 128+SIGTERM like a payload stopped by it).
  if (opts.signal?.aborted) {
    await reporter.close();
    const message = 'the worker was stopped before the payload started';
    log.info(message);
    const exitCode = classifyExit(null, 'SIGTERM').exitCode ?? ExitCode.FAILURE;
    return finish({
      exitCode,
      signal: null,
      reason: 'Aborted',
      message,
      retryable: true,
      stderrTail: [],
      terminated: 'abort',
    });
  }
  const logFile = leader
    ? attemptLogFile(task.runDir, taskId, attempt)
    : attemptLogFile(task.runDir, taskId, attempt).replace(/\.log$/, `.node-${nodeRank}.log`);
  let spawnWrite: Promise<unknown> = Promise.resolve();
  log.info({ argv: task.payload.command, logFile, resumeFrom }, 'starting payload');
  const outcome = await runPayload({
    argv: task.payload.command,
    cwd: task.payload.workingDir,
    env: env.env,
    secretValues: env.secretValues,
    logFile,
    sink: reporter,
    signal: opts.signal,
    terminationGraceMs: task.payload.terminationGracePeriodSeconds * 1000,
    stallTimeoutMs: task.payload.stallTimeoutSeconds * 1000,
    log,
    clock,
    onSpawn: (pid) => {
      if (!leader) return;
      spawnWrite = redis
        .hset(unitKey, { payloadPgid: String(pid), logFile })
        .catch((err: unknown) => {
          log.warn({ err }, 'cannot record the payload process group');
        });
    },
  });
  await spawnWrite;
  if (outcome.terminated === 'stall') {
    reporter.warn(
      `no step progress for ${task.payload.stallTimeoutSeconds} s (last step ${outcome.lastStep ?? 'none'}): terminated as hung`,
    );
  }
  await reporter.close();
  opts.onOutcome?.(outcome);

  // 5. Record how it ended.
  const c = outcome.classification;
  const exitCode = outcome.spawnError
    ? c.retryable
      ? ExitCode.FAILURE
      : ExitCode.MISSING_DEPENDENCY
    : (c.exitCode ?? ExitCode.FAILURE);
  log.info(
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
  return finish({
    exitCode,
    signal: outcome.signal,
    // A hang is reported as such: the exit after our SIGTERM is only its consequence.
    reason: stalled ? 'Stalled' : c.reason,
    message: stalled
      ? `no step progress for ${task.payload.stallTimeoutSeconds} s (last step ${outcome.lastStep ?? 'none'}): terminated as hung`
      : c.description,
    retryable: stalled ? true : c.retryable,
    stderrTail: outcome.stderrTail,
    terminated: outcome.terminated,
  });
}
