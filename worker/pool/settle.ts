/**
 * A shard attempt's result (worker/server-process.ts ShardResult) turned into what
 * happens to the shard and to its BullMQ job:
 *   done       the partial file becomes the output; Succeeded (with the pool's completion)
 *   aborted    a cancel request: Cancelled, not retried; a forced stop of the worker:
 *              requeued without spending an attempt
 *   failed     the payload's own answer: a non-retryable reason (BAD_DATA...) fails the
 *              shard at once, a retryable one fails the attempt
 *   crashed,   the server's state is unknown (shard.ts has killed it: the next shard
 *   malformed, starts a new one) and the attempt fails, retried; stalled: no progress
 *   stalled    for the stage's stallTimeout
 * A failed attempt that is the last one (or not retryable) records the outcome Failed;
 * otherwise only the status (Pending, retrying) and BullMQ retries the job.
 */
import { existsSync, renameSync } from 'node:fs';
import { DelayedError, UnrecoverableError } from 'bullmq';
import { ExitCode, classifyExit, type ExitCodeName } from '../../common/exit-codes.js';
import { nowIso } from '../../common/model.js';
import type { ShardResult } from '../server-process.js';
import type { ShardAttempt } from './attempt.js';

/** A preempted shard goes back to the queue after this long. */
const REQUEUE_DELAY_MS = 500;

const isExitCodeName = (s: string): s is ExitCodeName => Object.hasOwn(ExitCode, s);

export async function settle(a: ShardAttempt, r: ShardResult): Promise<{ items: number }> {
  switch (r.kind) {
    case 'done':
      return succeed(a, r.items);
    case 'aborted':
      return aborted(a, r.notStarted ?? false);
    case 'failed': {
      const retryable = isExitCodeName(r.reason)
        ? classifyExit(ExitCode[r.reason]).retryable
        : true;
      return fail(a, r.reason, r.message, retryable);
    }
    case 'malformed':
      return fail(a, 'MalformedResponse', r.message, true);
    case 'stalled':
      return fail(
        a,
        'Stalled',
        `no progress for ${r.seconds} s (last step ${r.lastStep ?? 'none'}): the payload server was killed as hung`,
        true,
      );
    case 'crashed': {
      const how = r.signal ? `killed by ${r.signal}` : `exited with code ${r.exitCode}`;
      const tail = r.stderrTail.filter((l) => l.trim()).slice(-3);
      const stderr = tail.length ? `; stderr: ${tail.join(' | ')}` : '';
      return fail(
        a,
        'PayloadCrashed',
        `the payload server ${how} during the shard${stderr}`,
        true,
        r.stderrTail,
      );
    }
  }
}

async function succeed(a: ShardAttempt, items: number): Promise<{ items: number }> {
  const { tmp, task } = a;
  try {
    renameSync(tmp, task.shard.output);
    a.renamed = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || existsSync(tmp)) throw err;
    return fail(a, 'MissingOutput', `the payload reported done but wrote no ${tmp}`, true);
  }
  const message = `${items} items`;
  await a.finish(
    a.outcome('Succeeded', 'Completed', message, items),
    { phase: 'Succeeded', reason: 'Completed', message, exitCode: 0, finishedAt: nowIso() },
    true,
  );
  // Thousands of shards a minute would drown the worker's log: debug only.
  a.log.debug({ items }, 'shard done');
  return { items };
}

async function aborted(a: ShardAttempt, notStarted: boolean): Promise<never> {
  if (await a.ctx.store.cancelRequestedAt(a.runId)) {
    const message = notStarted ? 'cancelled before it started' : 'cancelled while running';
    await a.finish(
      a.outcome('Cancelled', 'CancelRequested', message),
      { phase: 'Cancelled', reason: 'CancelRequested', message, finishedAt: nowIso() },
      false,
    );
    throw new UnrecoverableError('cancelled');
  }
  // A forced stop of this worker: requeue without spending an attempt.
  await a.writeStatus({
    phase: 'Pending',
    reason: 'Preempted',
    message: 'its worker was stopped; requeued',
  });
  await a.job.moveToDelayed(Date.now() + REQUEUE_DELAY_MS, a.token);
  throw new DelayedError();
}

async function fail(
  a: ShardAttempt,
  reason: string,
  message: string,
  retryable: boolean,
  stderrTail: string[] = [],
): Promise<never> {
  const { attempt, maxAttempts } = a;
  const last = !retryable || attempt >= maxAttempts;
  a.log.warn({ reason, retryable, last }, 'shard attempt failed');
  if (!last) {
    await a.writeStatus({
      phase: 'Pending',
      reason,
      message: `attempt ${attempt} failed: ${message}; retrying`,
      retryable,
      stderrTail,
    });
    throw new Error(`${reason}: ${message}`);
  }
  const why = retryable
    ? `${message}; gave up after ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'}`
    : `${message}; not retryable`;
  await a.finish(
    a.outcome('Failed', reason, why),
    { phase: 'Failed', reason, message: why, retryable, stderrTail, finishedAt: nowIso() },
    false,
  );
  if (!retryable) throw new UnrecoverableError(`${reason}: ${message}`);
  throw new Error(`${reason}: ${message}`);
}
