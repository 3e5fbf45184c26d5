/**
 * The shard processor: what a pool worker does with one job of its queue, in five steps
 * and three Redis round trips per shard (the begin, the outcome, and BullMQ's
 * moveToFinished, which brings the next job). While shards are short the worker holds
 * the next job in hand (lookahead.ts): it begins while the running shard still runs, and
 * the running shard's outcome and moveToFinished overlap the next one's run, so none of
 * the three round trips stands between two shards on the server.
 *   1. which shard and which attempt (the job's data and attempt count); the server's
 *      turn if it is free
 *   2. begin, one script (TaskStore.beginShard): a shard that already Succeeded (a
 *      redelivery after a crash) is done, nothing runs; a cancel request makes it
 *      Cancelled, not retried; otherwise the Running status, the attempt's progress
 *      record and `attempt` event and the worker's state are written. A shard in hand
 *      then waits for the server's turn, or goes back to the queue (giveBack)
 *   3. run: the resident server (started, restarted or replaced as needed: servers.ts)
 *      writes the shard to `${output}.partial-<worker>-a<attempt>`; a cancel request or
 *      the worker's forced stop aborts it; a server left in an unknown state (crashed,
 *      malformed answer, aborted) is killed; then the server's turn passes on
 *   4. settle the result (settle.ts): the partial file renamed to the output after
 *      `done`, so a retried shard never leaves a half file or a duplicate; the outcome
 *      recorded once, with the final status, the completion and the worker's state
 *   5. whatever happened: no partial file is left, the worker's state is published
 */
import { rmSync } from 'node:fs';
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import { shardStageOf, type PoolJobData } from '../../common/keys.js';
import { nowIso } from '../../common/model.js';
import { attemptLogFile } from '../../common/paths.js';
import { newTaskStatus } from '../../common/task-store.js';
import { TaskReporter } from '../reporter.js';
import type { ShardResult } from '../server-process.js';
import { ShardAttempt, type PoolContext } from './attempt.js';
import type { Lookahead, Turn } from './lookahead.js';
import { startFailure, type ServerSlot } from './servers.js';
import { settle } from './settle.js';

/** How often a begun shard checks for a cancel request of its run. */
const CANCEL_POLL_MS = 500;

export interface ShardProcessorContext extends PoolContext {
  servers: ServerSlot;
  lookahead: Lookahead;
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
  // 1. Which shard, which attempt; the server, if it is free.
  const { taskId, runId } = job.data;
  const stage = shardStageOf(runId, taskId);
  if (!stage) throw new UnrecoverableError(`${taskId} is not a shard task of run ${runId}`);
  // A job BullMQ gave back after its worker died (stalled) has not spent an attempt in
  // BullMQ's count: it is still a new attempt of the shard, with its own number and log
  // (and one more in the budget, as BullMQ does not count it either).
  const redelivered = job.stalledCounter ?? 0;
  const running = {
    ...newTaskStatus({
      id: taskId,
      runId,
      stage,
      queue: job.queueName,
      maxAttempts: (job.opts.attempts ?? 1) + redelivered,
    }),
    phase: 'Running' as const,
    attempt: job.attemptsMade + 1 + redelivered,
    unit: ctx.workerId,
    startedAt: nowIso(),
  };
  let turn = ctx.lookahead.tryTake();

  // 2. Begin; a shard in hand waits for the server.
  const log = ctx.log.child({ taskId, attempt: running.attempt });
  const reporter = TaskReporter.forRedis(ctx.store.redis, ctx.store.keys, taskId, { log });
  const begin = await ctx.store.beginShard({
    runId,
    stage,
    taskId,
    status: running,
    progress: reporter.openAttempt(running.attempt),
    worker: { pool: ctx.pool, workerId: ctx.workerId, state: ctx.states.shardBegins(taskId) },
  });
  if (begin.kind !== 'started') {
    // Nothing runs (the begin script wrote no state): the worker is as it was.
    turn?.release();
    ctx.states.shardEnds(taskId, ctx.drain.aborted, false);
    await ctx.states.publish({});
  }
  if (begin.kind === 'missing') throw new UnrecoverableError(`shard task ${taskId} does not exist`);
  if (begin.kind === 'stageEnded')
    throw new UnrecoverableError(
      `stage ${stage} of run ${runId} has ended: shard ${taskId} not run (stoker resume or stoker queues retry run it again)`,
    );
  if (begin.kind === 'done') return { items: begin.prior.items };
  const a = new ShardAttempt(ctx, job, token, stage, begin.task, running, log);
  if (begin.kind === 'cancelled') return cancelledBeforeStart(a, begin.status);
  a.status = { ...a.status, startedAt: begin.startedAt };
  // A retried shard keeps why its earlier attempts ended (the begin wrote none).
  if (begin.history.length > 0) await a.writeStatus({ history: begin.history });
  reporter.attemptOpened(begin.kept);
  const stop = watchStop(ctx, runId);

  try {
    turn ??= await ctx.lookahead.take([ctx.drain, ctx.force]);
    if (!turn) return await giveBack(a, reporter);
    // 3. Run.
    const result = await run(ctx, a, reporter, turn, stop.signal);
    // 4. Settle.
    return await settle(a, result);
  } finally {
    // 5. Clean up.
    turn?.release();
    stop.close();
    if (!a.renamed) rmSync(a.tmp, { force: true });
    if (!a.ended) a.end();
    if (!a.published) await ctx.states.publish({});
  }
}

/** Aborted by the worker's forced stop, or by a cancel request of the run (polled). */
function watchStop(ctx: ShardProcessorContext, runId: string) {
  const abort = new AbortController();
  const onForce = () => abort.abort();
  ctx.force.addEventListener('abort', onForce, { once: true });
  const poll = setInterval(() => {
    void ctx.store.cancelRequestedAt(runId).then(
      (c) => c && abort.abort(),
      () => undefined,
    );
  }, CANCEL_POLL_MS);
  return {
    signal: abort.signal,
    close() {
      clearInterval(poll);
      ctx.force.removeEventListener('abort', onForce);
    },
  };
}

/**
 * A shard in hand gives up its place: Pending again, back to the queue, no attempt spent.
 * Its run may have been cancelled meanwhile: the controller's sweep of the queued shards
 * skipped this one (it was active then), so it is taken off the queue and recorded
 * Cancelled here, by whichever of the two removes it (a queue removal is atomic).
 */
async function giveBack(a: ShardAttempt, reporter: TaskReporter): Promise<never> {
  const { ctx, job } = a;
  await reporter.close();
  a.ended = true;
  ctx.states.shardEnds(a.taskId, ctx.drain.aborted, false);
  await a.writeStatus({
    phase: 'Pending',
    reason: 'Requeued',
    message: `held by ${ctx.workerId} while its previous shard ran; back to the queue`,
    startedAt: null,
  });
  await job.moveToWait(a.token);
  if (await ctx.store.cancelRequestedAt(a.runId)) {
    const removed = await job.remove().then(
      () => true,
      () => false,
    );
    if (removed) {
      await ctx.store.finishShard({
        runId: a.runId,
        stage: a.stage,
        outcome: {
          ...a.outcome('Cancelled', 'CancelRequested', 'cancelled while queued'),
          attempt: 0,
          worker: '',
        },
      });
    }
  }
  throw new WaitingError();
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

/**
 * The shard through the resident server, unless it was stopped while in hand. The
 * server's turn passes on as soon as its result is in (a server in an unknown state
 * killed first), before the result is settled.
 */
async function run(
  ctx: ShardProcessorContext,
  a: ShardAttempt,
  reporter: TaskReporter,
  turn: Turn,
  stop: AbortSignal,
): Promise<ShardResult> {
  try {
    if (stop.aborted) return { kind: 'aborted', notStarted: true };
    const { shard, payload, runDir } = a.task;
    let server;
    try {
      server = await ctx.servers.ensure(payload, a.runId, a.stage);
    } catch (err) {
      ctx.servers.forget();
      return startFailure(err);
    }
    const started = performance.now();
    const result = await server.runShard(
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
      stop,
      payload.stallTimeoutSeconds * 1000,
    );
    if (result.kind === 'done' || result.kind === 'failed') {
      a.serviceMs = performance.now() - started;
      ctx.lookahead.ran(a.serviceMs, ctx.drain.aborted);
    } else {
      await ctx.servers.discard();
    }
    return result;
  } finally {
    turn.release();
    await reporter.close();
  }
}
