/**
 * `stoker worker --pool NAME`: a warm worker of a pool (pulled execution, DESIGN.md
 * section 2). It pulls shard tasks from the pool's queue (`pool.NAME`) one at a time and
 * feeds them to a payload started once in server mode (worker/server-process.ts), so
 * what the payload loads (a model) serves every shard of the stage.
 *
 * Job contract (queue `pool.NAME`): id = shard task id, data = {taskId, runId}; the
 * task hash holds the resolved payload and `shard` {index, input, output, params}.
 *
 * Per shard, three Redis round trips: the start, the end, and BullMQ's moveToFinished
 * (which brings the next job):
 *   1. its outcome already Succeeded (a redelivery after a crash) -> done, nothing runs
 *   2. cancel requested -> Cancelled, not retried
 *      (1. and 2. are read, and otherwise the Running status, the attempt's progress
 *      record and `attempt` event and the worker's state written, by one script:
 *      TaskStore.beginShard)
 *   3. the server for this stage's payload is started if needed (restarted if it died,
 *      replaced if the stage's payload differs from the one it runs)
 *   4. the shard is written to `${output}.partial-<worker>-a<attempt>` and renamed to
 *      `output` after `done`: a retried shard never leaves a half file or a duplicate
 *   5. outcome recorded once, with the final status, the completion (the pool's
 *      shards/s) and the worker's state, by one script (TaskStore.finishShard)
 * A `failed` answer with a non-retryable reason (BAD_DATA...) fails the shard at once;
 * a crash or a malformed answer fails the attempt (retried) and restarts the server.
 *
 * SIGTERM drains: the current shard finishes, then the worker exits (scale-down never
 * kills a shard half-way). A second SIGTERM aborts the shard, which is requeued
 * without spending an attempt.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { ExitCode, classifyExit, type ExitCodeName } from '../common/exit-codes.js';
import { poolQueueName, shardStageOf, type Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import {
  nowIso,
  type ResolvedPayload,
  type ShardOutcome,
  type TaskStatus,
} from '../common/model.js';
import { attemptLogFile } from '../common/paths.js';
import { newTaskStatus, TaskStore } from '../common/task-store.js';
import type { WorkerState } from '../common/worker-state.js';
import { buildPayloadEnv, type EnvSource } from './env.js';
import { TaskReporter } from './reporter.js';
import { ServerProcess, ServerStartError, type ShardResult } from './server-process.js';

export interface PoolWorkerOptions {
  redis: Redis;
  keys: Keys;
  connection: ConnectionOptions;
  pool: string;
  workerId: string;
  parentEnv: EnvSource;
  log: Logger;
  /** Where the worker's own and idle payload output goes. */
  logDir: string;
  /** Aborted on the first SIGTERM: drain. */
  drain: AbortSignal;
  /** Aborted on the second SIGTERM: abort the running shard. */
  force: AbortSignal;
  heartbeatMs?: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
}

interface RunningServer {
  key: string;
  /** The payload it was started for (or last matched). */
  payload: ResolvedPayload;
  server: ServerProcess;
}

const isExitCodeName = (s: string): s is ExitCodeName => Object.hasOwn(ExitCode, s);

export async function runPoolWorker(opts: PoolWorkerOptions): Promise<number> {
  const { redis, keys, pool, workerId } = opts;
  const log = opts.log.child({ pool, workerId });
  const store = new TaskStore(redis, keys);
  let state: WorkerState = {
    workerId,
    pid: process.pid,
    host: hostname(),
    state: 'starting',
    shard: null,
    since: nowIso(),
    heartbeatAt: nowIso(),
    shardsDone: 0,
  };
  /** The worker's state after `patch`: heartbeatAt now, `since` moved when the state changed. */
  const withState = (patch: Partial<WorkerState>): WorkerState => {
    const now = nowIso();
    const changed = patch.state !== undefined && patch.state !== state.state;
    return { ...state, ...patch, heartbeatAt: now, ...(changed ? { since: now } : {}) };
  };
  const publish = async (patch: Partial<WorkerState>) => {
    state = withState(patch);
    await redis
      .hset(keys.poolWorkers(pool), workerId, JSON.stringify(state))
      .catch((err: unknown) => log.warn({ err }, 'cannot publish worker state'));
  };
  await publish({});
  const heartbeat = setInterval(() => void publish({}), opts.heartbeatMs ?? 2000);
  let running: RunningServer | null = null;

  const ensureServer = async (
    p: ResolvedPayload,
    runId: string,
    stage: string,
  ): Promise<ServerProcess> => {
    // The store hands out the same parsed payload while it does not change.
    if (running && running.payload === p && running.server.alive) return running.server;
    const key = JSON.stringify([p.command, p.env, p.workingDir, p.secretEnv]);
    if (running && running.key === key && running.server.alive) {
      running.payload = p;
      return running.server;
    }
    if (running) {
      log.info('replacing the payload server');
      await running.server.stop(p.terminationGracePeriodSeconds * 1000);
      running = null;
    }
    const { env, secretValues } = buildPayloadEnv({
      parentEnv: opts.parentEnv,
      payload: { ...p, env: { ...p.env, STOKER_POOL: pool, STOKER_WORKER_ID: workerId } },
      identity: { runId, taskId: workerId, stage, attempt: 0 },
    });
    const server = new ServerProcess({
      argv: p.command,
      env,
      cwd: p.workingDir,
      idleLogFile: join(opts.logDir, `${workerId}.payload.log`),
      secretValues,
      log,
      graceMs: p.terminationGracePeriodSeconds * 1000,
    });
    log.info({ command: p.command[0] }, 'starting the payload server');
    await server.start();
    log.info({ pid: server.pid }, 'payload server ready');
    running = { key, payload: p, server };
    return server;
  };

  const processShard = async (
    job: Job<{ taskId: string; runId: string }>,
    token?: string,
  ): Promise<{ items: number }> => {
    const { taskId, runId } = job.data;
    const stage = shardStageOf(runId, taskId);
    if (!stage) throw new UnrecoverableError(`${taskId} is not a shard task of run ${runId}`);
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const slog = log.child({ taskId, attempt });
    // The shard's status, kept current across writes. A shard's status does not wake the
    // controller: its outcome does (FINISH_SHARD). Every field is this attempt's: a
    // shard's status has no history (only dispatched tasks keep one).
    let current: TaskStatus = {
      ...newTaskStatus({ id: taskId, runId, stage, queue: job.queueName, maxAttempts }),
      phase: 'Running',
      attempt,
      unit: workerId,
      startedAt: nowIso(),
    };
    const reporter = TaskReporter.forRedis(redis, keys, taskId, { log: slog });
    const busy = withState({ state: 'busy', shard: taskId });
    // 1.-2. In one round trip: the task; done already (a redelivery after a crash that
    // followed the outcome)? cancel requested? Else the Running status, the attempt's
    // progress record and event, and the worker's state are written.
    const begin = await store.beginShard({
      runId,
      stage,
      taskId,
      status: current,
      progress: reporter.openAttempt(attempt),
      worker: { pool, workerId, state: busy },
    });
    if (begin.kind === 'missing')
      throw new UnrecoverableError(`shard task ${taskId} does not exist`);
    if (begin.kind === 'done') return { items: begin.prior.items };
    const { shard, payload, runDir } = begin.task;
    const outcome = (
      phase: ShardOutcome['phase'],
      reason: string,
      message: string,
      items = 0,
    ): ShardOutcome => ({
      taskId,
      index: shard.index,
      phase,
      items,
      output: phase === 'Succeeded' ? shard.output : null,
      reason,
      message,
      attempt,
      worker: workerId,
      finishedAt: nowIso(),
    });
    if (begin.kind === 'cancelled') {
      await store.finishShard({
        runId,
        stage,
        outcome: outcome('Cancelled', 'CancelRequested', 'the run was cancelled'),
        status: {
          ...begin.status,
          attempt,
          unit: workerId,
          phase: 'Cancelled',
          reason: 'CancelRequested',
          message: 'the run was cancelled',
          finishedAt: nowIso(),
        },
      });
      throw new UnrecoverableError('cancelled');
    }
    state = busy;
    current = { ...current, startedAt: begin.startedAt };
    reporter.attemptOpened(begin.kept);
    const writeStatus = async (patch: Partial<TaskStatus>) => {
      current = { ...current, ...patch };
      await store.writeTaskStatus(current, { wake: false });
    };
    /** The worker's state once this shard is over, published with the outcome where there is one. */
    const after = () =>
      withState({
        state: opts.drain.aborted ? 'draining' : 'idle',
        shard: null,
        shardsDone: state.shardsDone + 1,
      });
    let published = false;
    /** The outcome, final status and worker state in one script; the job ends after it. */
    const finish = async (o: ShardOutcome, status: Partial<TaskStatus>, completed: boolean) => {
      current = { ...current, ...status };
      const next = after();
      const now = Date.now();
      await store.finishShard({
        runId,
        stage,
        outcome: o,
        status: current,
        ...(completed
          ? {
              completion: {
                pool,
                member: `${taskId}:${attempt}`,
                atMs: now,
                // Completions feed `stoker pools` (shards/s over the last minute): keep an hour.
                ...(state.shardsDone % 100 === 0 ? { dropBeforeMs: now - 3600_000 } : {}),
              },
            }
          : {}),
        worker: { pool, workerId, state: next },
      });
      state = next;
      published = true;
    };
    const logFile = attemptLogFile(runDir, taskId, attempt);
    const tmp = `${shard.output}.partial-${workerId}-a${attempt}`;
    let renamed = false;
    let result: ShardResult;
    // Abort the shard on a cancel request or a forced stop.
    const abort = new AbortController();
    const onForce = () => abort.abort();
    opts.force.addEventListener('abort', onForce, { once: true });
    const cancelWatch = setInterval(() => {
      void store.cancelRequestedAt(runId).then(
        (c) => c && abort.abort(),
        () => undefined,
      );
    }, 500);
    try {
      // 3. The server.
      let server: ServerProcess;
      try {
        server = await ensureServer(payload, runId, stage);
      } catch (err) {
        const e = err as ServerStartError;
        const c = classifyExit(e.exitCode ?? null, e.signal ?? null);
        result = {
          kind: 'crashed',
          exitCode: e.exitCode ?? null,
          signal: e.signal ?? null,
          stderrTail: e.stderrTail ?? [],
        };
        if (e instanceof ServerStartError && !c.retryable && e.exitCode !== null) {
          result = {
            kind: 'failed',
            reason: c.reason,
            message: `${e.message}: ${e.stderrTail.slice(-3).join(' | ')}`,
          };
        }
        running = null;
        throw new ShardAttemptEnd(result);
      }
      // 4. The shard.
      result = await server.runShard(
        {
          type: 'shard',
          id: taskId,
          input: shard.input,
          output: tmp,
          attempt,
          params: shard.params,
        },
        reporter,
        logFile,
        abort.signal,
      );
    } catch (err) {
      if (!(err instanceof ShardAttemptEnd)) throw err;
      result = err.result;
    } finally {
      clearInterval(cancelWatch);
      opts.force.removeEventListener('abort', onForce);
      await reporter.close();
    }
    // 5. The outcome.
    try {
      return await settle(result);
    } finally {
      if (!renamed) rmSync(tmp, { force: true });
      if (!published) await publish(after());
    }

    async function settle(r: ShardResult): Promise<{ items: number }> {
      if (r.kind === 'done') {
        try {
          renameSync(tmp, shard.output);
          renamed = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || existsSync(tmp)) throw err;
          return fail('MissingOutput', `the payload reported done but wrote no ${tmp}`, true);
        }
        const message = `${r.items} items`;
        await finish(
          outcome('Succeeded', 'Completed', message, r.items),
          {
            phase: 'Succeeded',
            reason: 'Completed',
            message,
            exitCode: 0,
            finishedAt: nowIso(),
          },
          true,
        );
        // Thousands of shards a minute would drown the worker's log: debug only.
        slog.debug({ items: r.items }, 'shard done');
        return { items: r.items };
      }
      if (r.kind === 'aborted') {
        await running?.server.kill();
        running = null;
        if (await store.cancelRequestedAt(runId)) {
          await finish(
            outcome('Cancelled', 'CancelRequested', 'cancelled while running'),
            {
              phase: 'Cancelled',
              reason: 'CancelRequested',
              message: 'cancelled while running',
              finishedAt: nowIso(),
            },
            false,
          );
          throw new UnrecoverableError('cancelled');
        }
        // A forced stop of this worker: requeue without spending an attempt.
        await writeStatus({
          phase: 'Pending',
          reason: 'Preempted',
          message: 'its worker was stopped; requeued',
        });
        await job.moveToDelayed(Date.now() + 500, token);
        throw new DelayedError();
      }
      if (r.kind === 'failed') {
        const retryable = isExitCodeName(r.reason)
          ? classifyExit(ExitCode[r.reason]).retryable
          : true;
        return fail(r.reason, r.message, retryable);
      }
      // crashed or malformed: the server's state is unknown; restart it for the next shard.
      await running?.server.kill();
      running = null;
      if (r.kind === 'malformed') return fail('MalformedResponse', r.message, true);
      const how = r.signal ? `killed by ${r.signal}` : `exited with code ${r.exitCode}`;
      const tail = r.stderrTail.filter((l) => l.trim()).slice(-3);
      return fail(
        'PayloadCrashed',
        `the payload server ${how} during the shard${tail.length ? `; stderr: ${tail.join(' | ')}` : ''}`,
        true,
        r.stderrTail,
      );
    }

    async function fail(
      reason: string,
      message: string,
      retryable: boolean,
      stderrTail: string[] = [],
    ): Promise<never> {
      const last = !retryable || attempt >= maxAttempts;
      slog.warn({ reason, retryable, last }, 'shard attempt failed');
      if (last) {
        const why = retryable
          ? `${message}; gave up after ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'}`
          : `${message}; not retryable`;
        await finish(
          outcome('Failed', reason, why),
          {
            phase: 'Failed',
            reason,
            message: why,
            retryable,
            stderrTail,
            finishedAt: nowIso(),
          },
          false,
        );
        if (!retryable) throw new UnrecoverableError(`${reason}: ${message}`);
        throw new Error(`${reason}: ${message}`);
      }
      await writeStatus({
        phase: 'Pending',
        reason,
        message: `attempt ${attempt} failed: ${message}; retrying`,
        retryable,
        stderrTail,
      });
      throw new Error(`${reason}: ${message}`);
    }
  };

  const worker = new Worker<{ taskId: string; runId: string }>(poolQueueName(pool), processShard, {
    connection: opts.connection,
    prefix: keys.bullPrefix,
    concurrency: 1,
    lockDuration: opts.lockDurationMs ?? 30_000,
    stalledInterval: opts.stalledIntervalMs ?? 15_000,
    maxStalledCount: 5,
    name: workerId,
  });
  worker.on('error', (err) => log.error({ err }, 'pool worker error'));
  await worker.waitUntilReady();
  await publish({ state: 'idle' });
  log.info('pool worker ready');

  await new Promise<void>((resolve) => {
    if (opts.drain.aborted) resolve();
    opts.drain.addEventListener('abort', () => resolve(), { once: true });
  });
  log.info('draining: finishing the current shard');
  await publish({ state: 'draining' });
  await worker.close();
  clearInterval(heartbeat);
  await (running as RunningServer | null)?.server.stop();
  await redis.hdel(keys.poolWorkers(pool), workerId);
  log.info('pool worker stopped');
  return 0;
}

class ShardAttemptEnd extends Error {
  constructor(readonly result: ShardResult) {
    super('shard attempt ended');
  }
}

export type { ResolvedPayload };
