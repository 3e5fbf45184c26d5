/**
 * disk-full: stoker's home (the run folder: shard inputs and outputs, task logs) on a
 * 16 MiB tmpfs, filled to the last byte once shards flow. Shards fail to write while it
 * is full; once a shard has failed an attempt, the filler is removed, and the retries
 * must finish the stage with every item written exactly once. Needs root (mount); where
 * mounting is refused, the scenario is skipped with mount's message.
 */
import { closeSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { shardTaskId } from '../../common/keys.js';
import { sleep, waitFor } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import { ChaosStack, TIMINGS, tmpfsRefused } from './lib/stack.js';
import { countSharded, type Sharded, shardsDone, submitSharded } from './lib/workloads.js';

const HOLD_MS = 4 * Number(TIMINGS.STOKER_LOCK_DURATION_MS);

/** Pool workers `stoker up` has started so far (its log lines on stderr). */
const workerStarts = (stderr: string): number => stderr.split('started pool worker').length - 1;

/** Write zeros to `file` until the filesystem refuses (ENOSPC); the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(4096);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return written;
}

export const diskFull: Scenario = {
  name: 'disk-full',
  fault:
    "the run folder's 16 MiB tmpfs filled to the last byte mid-stage, kept full for 4 job-lock durations after a shard failed on it, then freed",
  skip(ctx) {
    if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs (not running as root)';
    return tmpfsRefused(ctx.tmpRoot);
  },
  async run(ctx, cleanup) {
    const s = await ChaosStack.start(ctx, cleanup, 'disk-full', { homeTmpfsSize: '16m' });
    const w: Sharded = { items: ctx.quick ? 90 : 300, shardSize: 3, itemMs: 40, workers: 2 };
    const up = await s.up();
    const r = await submitSharded(s, 'disk-full', w);
    const ids = Array.from({ length: w.items / w.shardSize }, (_, i) =>
      shardTaskId(r.runId, 'gen', i),
    );
    await waitFor(
      '3 shards done',
      async () => ((await shardsDone(s, r)) >= 3 ? true : null),
      60_000,
      10,
    );
    const filler = join(s.home, 'filler');
    const filled = fill(filler);
    const freeWhenFull = statfsSync(s.home).bavail;
    // A shard that failed an attempt on the full disk (it is retried: attempt 2 or later).
    const failedOne = await waitFor(
      'a shard attempt to fail on the full disk',
      async () => {
        const st = await s.store.getTaskStatuses(ids);
        // Pending again with the reason its attempt failed (a shard's failed attempts
        // are not in `history`; a shard in hand given back is Pending `Requeued`).
        const hit = Object.entries(st).find(
          ([, t]) => t.phase === 'Pending' && !!t.reason && t.reason !== 'Requeued',
        );
        return hit ? { taskId: hit[0], reason: hit[1].reason, message: hit[1].message } : null;
      },
      60_000,
      20,
    ).catch(async (err: Error) => {
      const st = await s.store.getTaskStatuses(ids);
      const phases = Object.values(st).map((t) => `${t.phase}/${t.attempt}/${t.reason ?? ''}`);
      const workers = await s.probe.hvals(s.keys.poolWorkers(r.pool));
      throw new Error(
        `${err.message}; done ${await shardsDone(s, r)}; shards ${phases.join(' ')}; workers ${workers.join(' ')}; stoker up: ${up.stderr().slice(-1500)}`,
      );
    });
    // The outage itself: the disk stays full for 4 job-lock durations after that failure.
    const startsBefore = workerStarts(up.stderr());
    await sleep(HOLD_MS);
    const workersStartedWhileFull = workerStarts(up.stderr()) - startsBefore;
    rmSync(filler);
    const c = await countSharded(s, r, 120_000);
    return {
      counts: c,
      checks: [
        check('the disk was full (no block left)', freeWhenFull === 0, freeWhenFull),
        check('stoker up never exited', !up.hasExited()),
      ],
      details: {
        fillerBytes: filled,
        heldFullMs: HOLD_MS,
        poolWorkersStartedWhileFull: workersStartedWhileFull,
        firstFailure: failedOne,
        shards: c.shards,
        shardsRetried: c.shardsRetried,
      },
    };
  },
};
