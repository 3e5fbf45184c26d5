/**
 * `stoker worker --pool NAME`: a warm worker of a pool (pulled execution, DESIGN.md
 * section 2). It pulls shard tasks from the pool's queue (`pool.NAME`) one at a time and
 * feeds them to a payload started once in server mode (worker/server-process.ts), so
 * what the payload loads (a model) serves every shard of the stage.
 *
 * Job contract (queue `pool.NAME`): id = shard task id, data = {taskId, runId}; the
 * task hash holds the resolved payload and `shard` {index, input, output, params}.
 *
 * Per shard:
 *   1. its outcome already Succeeded (a redelivery after a crash) -> done, nothing runs
 *   2. cancel requested -> Cancelled, not retried
 *   3. the server for this stage's payload is started if needed (restarted if it died,
 *      replaced if the stage's payload differs from the one it runs)
 *   4. the shard is written to `${output}.partial-<worker>-a<attempt>` and renamed to
 *      `output` after `done`: a retried shard never leaves a half file or a duplicate
 *   5. outcome recorded once (RunStore.recordShardOutcome), completion counted for the
 *      pool's shards/s
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
import { poolQueueName, type Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import {
  nowIso,
  type ResolvedPayload,
  type ShardOutcome,
  type TaskStatus,
} from '../common/model.js';
import { RunStore, type TaskRecord } from '../orchestrator/store.js';
import type { WorkerState } from '../orchestrator/pools.js';
import { buildPayloadEnv, type EnvSource } from './env.js';
import { TaskReporter } from './reporter.js';
import { ServerProcess, ServerStartError, type ShardResult } from './server-process.js';
import { attemptLogFile } from './task-worker.js';

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
  server: ServerProcess;
}

const isExitCodeName = (s: string): s is ExitCodeName => Object.hasOwn(ExitCode, s);

export async function runPoolWorker(opts: PoolWorkerOptions): Promise<number> {
  const { redis, keys, pool, workerId } = opts;
  const log = opts.log.child({ pool, workerId });
  const store = new RunStore(redis, keys);
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
  const publish = async (patch: Partial<WorkerState>) => {
    const changed = patch.state !== undefined && patch.state !== state.state;
    state = { ...state, ...patch, heartbeatAt: nowIso(), ...(changed ? { since: nowIso() } : {}) };
    await redis
      .hset(keys.poolWorkers(pool), workerId, JSON.stringify(state))
      .catch((err: unknown) => log.warn({ err }, 'cannot publish worker state'));
  };
  await publish({});
  const heartbeat = setInterval(() => void publish({}), opts.heartbeatMs ?? 2000);
  let running: RunningServer | null = null;

  const ensureServer = async (task: TaskRecord): Promise<ServerProcess> => {
    const p = task.payload;
    const key = JSON.stringify([p.command, p.env, p.workingDir, p.secretEnv]);
    if (running && running.key === key && running.server.alive) return running.server;
    if (running) {
      log.info('replacing the payload server');
      await running.server.stop(p.terminationGracePeriodSeconds * 1000);
      running = null;
    }
    const { env, secretValues } = buildPayloadEnv({
      parentEnv: opts.parentEnv,
      payload: { ...p, env: { ...p.env, STOKER_POOL: pool, STOKER_WORKER_ID: workerId } },
      identity: {
        runId: task.status.runId,
        taskId: workerId,
        stage: task.status.stage,
        attempt: 0,
      },
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
    running = { key, server };
    return server;
  };

  const processShard = async (
    job: Job<{ taskId: string; runId: string }>,
    token?: string,
  ): Promise<{ items: number }> => {
    const { taskId, runId } = job.data;
    const task = await store.getTask(taskId);
    if (!task?.shard) throw new UnrecoverableError(`shard task ${taskId} does not exist`);
    const shard = task.shard;
    const stage = task.status.stage;
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const slog = log.child({ taskId, attempt });
    // 1. Already done (redelivered after a crash that followed the outcome)?
    const prior = await redis.hget(keys.stageShards(runId, stage), taskId);
    if (prior && (JSON.parse(prior) as ShardOutcome).phase === 'Succeeded')
      return { items: (JSON.parse(prior) as ShardOutcome).items };
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
    // The shard's status, kept current across writes (startedAt survives to the end). A
    // shard's status does not wake the controller: its outcome does (recordShardOutcome).
    let current: TaskStatus = { ...task.status, attempt, unit: workerId };
    const writeStatus = async (patch: Partial<TaskStatus>) => {
      current = { ...current, ...patch };
      await store.writeTaskStatus(current, { wake: false });
    };
    // 2. Cancelled?
    if (await store.cancelRequestedAt(runId)) {
      await store.recordShardOutcome(
        runId,
        stage,
        outcome('Cancelled', 'CancelRequested', 'the run was cancelled'),
      );
      await writeStatus({
        phase: 'Cancelled',
        reason: 'CancelRequested',
        message: 'the run was cancelled',
        finishedAt: nowIso(),
      });
      throw new UnrecoverableError('cancelled');
    }
    await publish({ state: 'busy', shard: taskId });
    await writeStatus({
      phase: 'Running',
      startedAt: task.status.startedAt ?? nowIso(),
      reason: null,
      message: null,
    });
    const reporter = TaskReporter.forRedis(redis, keys, taskId, { log: slog });
    await reporter.beginAttempt(attempt);
    const logFile = attemptLogFile(task.runDir, taskId, attempt);
    const tmp = `${shard.output}.partial-${workerId}-a${attempt}`;
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
        server = await ensureServer(task);
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
      rmSync(tmp, { force: true });
      await publish({
        state: opts.drain.aborted ? 'draining' : 'idle',
        shard: null,
        shardsDone: state.shardsDone + 1,
      });
    }

    async function settle(r: ShardResult): Promise<{ items: number }> {
      if (r.kind === 'done') {
        if (!existsSync(tmp)) {
          return fail('MissingOutput', `the payload reported done but wrote no ${tmp}`, true);
        }
        renameSync(tmp, shard.output);
        await store.recordShardOutcome(
          runId,
          stage,
          outcome('Succeeded', 'Completed', `${r.items} items`, r.items),
        );
        const now = Date.now();
        const multi = redis.multi().zadd(keys.poolCompletions(pool), now, `${taskId}:${attempt}`);
        // Completions feed `stoker pools` (shards/s over the last minute): keep an hour.
        if (state.shardsDone % 100 === 0)
          multi.zremrangebyscore(keys.poolCompletions(pool), '-inf', now - 3600_000);
        await multi.exec();
        await writeStatus({
          phase: 'Succeeded',
          reason: 'Completed',
          message: `${r.items} items`,
          exitCode: 0,
          finishedAt: nowIso(),
        });
        slog.info({ items: r.items }, 'shard done');
        return { items: r.items };
      }
      if (r.kind === 'aborted') {
        await running?.server.kill();
        running = null;
        if (await store.cancelRequestedAt(runId)) {
          await store.recordShardOutcome(
            runId,
            stage,
            outcome('Cancelled', 'CancelRequested', 'cancelled while running'),
          );
          await writeStatus({
            phase: 'Cancelled',
            reason: 'CancelRequested',
            message: 'cancelled while running',
            finishedAt: nowIso(),
          });
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
        await store.recordShardOutcome(runId, stage, outcome('Failed', reason, why));
        await writeStatus({
          phase: 'Failed',
          reason,
          message: why,
          retryable,
          stderrTail,
          finishedAt: nowIso(),
        });
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
