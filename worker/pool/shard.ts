/**
 * The shard processor: what a pool worker does with one job of its queue, in five steps
 * and three Redis round trips per shard (the begin, the outcome, and BullMQ's
 * moveToFinished, which brings the next job):
 *   1. which shard and which attempt (the job's data and attempt count)
 *   2. begin, one script (TaskStore.beginShard): a shard that already Succeeded (a
 *      redelivery after a crash) is done, nothing runs; a cancel request makes it
 *      Cancelled, not retried; otherwise the Running status, the attempt's progress
 *      record and `attempt` event and the worker's state are written
 *   3. run: the resident server (started, restarted or replaced as needed: servers.ts)
 *      writes the shard to `${output}.partial-<worker>-a<attempt>`; a cancel request or
 *      the worker's forced stop aborts it
 *   4. settle the result (settle.ts): the partial file renamed to the output after
 *      `done`, so a retried shard never leaves a half file or a duplicate; the outcome
 *      recorded once, with the final status, the completion and the worker's state
 *   5. whatever happened: no partial file is left, the worker's state is published
 */
import { rmSync } from 'node:fs';
import { UnrecoverableError, type Job } from 'bullmq';
import { shardStageOf, type PoolJobData } from '../../common/keys.js';
import { nowIso } from '../../common/model.js';
import { attemptLogFile } from '../../common/paths.js';
import { newTaskStatus } from '../../common/task-store.js';
import { TaskReporter } from '../reporter.js';
import type { ShardResult } from '../server-process.js';
import { ShardAttempt, type PoolContext } from './attempt.js';
import { startFailure, type ServerSlot } from './servers.js';
import { settle } from './settle.js';

/** How often a running shard checks for a cancel request of its run. */
const CANCEL_POLL_MS = 500;

export interface ShardProcessorContext extends PoolContext {
  servers: ServerSlot;
  /** Aborted on the second SIGTERM: abort the running shard. */
  force: AbortSignal;
}

export function shardProcessor(ctx: ShardProcessorContext) {
  return (job: Job<PoolJobData>, token?: string) => processShard(ctx, job, token);
}

async function processShard(
  ctx: ShardProcessorContext,
  job: Job<PoolJobData>,
  token: string | undefined,
): Promise<{ items: number }> {
  // 1. Which shard, which attempt.
  const { taskId, runId } = job.data;
  const stage = shardStageOf(runId, taskId);
  if (!stage) throw new UnrecoverableError(`${taskId} is not a shard task of run ${runId}`);
  const running = {
    ...newTaskStatus({
      id: taskId,
      runId,
      stage,
      queue: job.queueName,
      maxAttempts: job.opts.attempts ?? 1,
    }),
    phase: 'Running' as const,
    attempt: job.attemptsMade + 1,
    unit: ctx.workerId,
    startedAt: nowIso(),
  };

  // 2. Begin.
  const log = ctx.log.child({ taskId, attempt: running.attempt });
  const reporter = TaskReporter.forRedis(ctx.store.redis, ctx.store.keys, taskId, { log });
  const busy = ctx.states.next({ state: 'busy', shard: taskId });
  const begin = await ctx.store.beginShard({
    runId,
    stage,
    taskId,
    status: running,
    progress: reporter.openAttempt(running.attempt),
    worker: { pool: ctx.pool, workerId: ctx.workerId, state: busy },
  });
  if (begin.kind === 'missing') throw new UnrecoverableError(`shard task ${taskId} does not exist`);
  if (begin.kind === 'done') return { items: begin.prior.items };
  const a = new ShardAttempt(ctx, job, token, stage, begin.task, running, log);
  if (begin.kind === 'cancelled') return cancelledBeforeStart(a, begin.status);
  ctx.states.adopt(busy);
  a.status = { ...a.status, startedAt: begin.startedAt };
  reporter.attemptOpened(begin.kept);

  try {
    // 3. Run.
    const result = await run(ctx, a, reporter);
    // 4. Settle.
    return await settle(a, result, ctx.servers);
  } finally {
    // 5. Clean up.
    if (!a.renamed) rmSync(a.tmp, { force: true });
    if (!a.published) await ctx.states.publish(a.after());
  }
}

/** The run was cancelled before the shard started: Cancelled, never retried. */
async function cancelledBeforeStart(
  a: ShardAttempt,
  stored: ShardAttempt['status'],
): Promise<never> {
  const message = 'the run was cancelled';
  await a.ctx.store.finishShard({
    runId: a.runId,
    stage: a.stage,
    outcome: a.outcome('Cancelled', 'CancelRequested', message),
    status: {
      ...stored,
      attempt: a.attempt,
      unit: a.ctx.workerId,
      phase: 'Cancelled',
      reason: 'CancelRequested',
      message,
      finishedAt: nowIso(),
    },
  });
  throw new UnrecoverableError('cancelled');
}

/** The shard through the resident server, aborted by a cancel request or a forced stop. */
async function run(
  ctx: ShardProcessorContext,
  a: ShardAttempt,
  reporter: TaskReporter,
): Promise<ShardResult> {
  const abort = new AbortController();
  const onForce = () => abort.abort();
  ctx.force.addEventListener('abort', onForce, { once: true });
  const cancelWatch = setInterval(() => {
    void ctx.store.cancelRequestedAt(a.runId).then(
      (c) => c && abort.abort(),
      () => undefined,
    );
  }, CANCEL_POLL_MS);
  try {
    const { shard, payload, runDir } = a.task;
    let server;
    try {
      server = await ctx.servers.ensure(payload, a.runId, a.stage);
    } catch (err) {
      ctx.servers.forget();
      return startFailure(err);
    }
    return await server.runShard(
      {
        type: 'shard',
        id: a.taskId,
        input: shard.input,
        output: a.tmp,
        attempt: a.attempt,
        params: shard.params,
      },
      reporter,
      attemptLogFile(runDir, a.taskId, a.attempt),
      abort.signal,
    );
  } finally {
    clearInterval(cancelWatch);
    ctx.force.removeEventListener('abort', onForce);
    await reporter.close();
  }
}
