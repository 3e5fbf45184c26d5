/**
 * pulled-50ms: shards of a known length through a pool: how much of the ideal rate the
 * pool's per-shard work (the begin and outcome scripts, the server round trip,
 * BullMQ's moveToFinished) leaves when the payload itself is not free.
 *
 * Measured   (bench/lib/pool-run.ts) N shards (800, quick: 80), shardSize 1, a pool of
 *            4 workers, payload bench/payloads/noop-server.mjs with SHARD_MS=50 (each
 *            shard waits 50 ms on a timer, then copies its input): shards/s from the
 *            first shard start to the last completion.
 * Ideal      4 workers / 50 ms = 80 shards/s.
 * Floor      (bench/lib/raw-bull.ts) the same N jobs through 4 raw BullMQ workers, each
 *            feeding the same 50 ms server: what the resident-server design itself
 *            reaches here, before any of stoker's bookkeeping.
 * Ratio      shards/s / ideal; target >= 0.95. Also reported: the time per shard beyond
 *            its 50 ms (4 / shards/s - 50 ms), i.e. the pool's overhead per shard.
 */
import { type Benchmark, round, stopPhase } from './lib/harness.js';
import { poolRun } from './lib/pool-run.js';
import { rawBull } from './lib/raw-bull.js';

const WORKERS = 4;
const SHARD_MS = 50;
const TARGET = 0.95;

export const pulled50ms: Benchmark = {
  name: 'pulled-50ms',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 80 : 800;
    ctx.note(`pulled-50ms: ${n} shards of ${SHARD_MS} ms through a pool of ${WORKERS} workers`);
    const phase = cleanup.child('stoker phase');
    const run = await poolRun(ctx, phase, {
      label: 'pulled-50ms',
      n,
      workers: WORKERS,
      script: 'noop-server.mjs',
      env: { SHARD_MS: String(SHARD_MS) },
      timeoutMs: ctx.quick ? 120_000 : 300_000,
    });
    await stopPhase(phase);
    ctx.note(`pulled-50ms: the floor: ${n} raw BullMQ jobs fed to the same server`);
    const floorPhase = cleanup.child('floor phase');
    const floor = await rawBull(ctx, floorPhase, {
      n,
      workers: WORKERS,
      timeoutMs: 300_000,
      feed: true,
      env: { SHARD_MS: String(SHARD_MS) },
    });
    await stopPhase(floorPhase);
    const ideal = (WORKERS * 1000) / SHARD_MS;
    const ratio = round(run.shardsPerSec / ideal, 3);
    return {
      unit: 'shards/s',
      shards: n,
      workers: WORKERS,
      shardMs: SHARD_MS,
      shardsPerSec: run.shardsPerSec,
      idealShardsPerSec: ideal,
      ratio,
      ratioOf: `shards/s (first shard start -> last completion) / (${WORKERS} workers / ${SHARD_MS} ms)`,
      overheadMsPerShard: round((WORKERS * 1000) / run.shardsPerSec - SHARD_MS, 2),
      run,
      floor: {
        jobsPerSec: floor.jobsPerSec,
        ratio: round(floor.jobsPerSec / ideal, 3),
        overheadMsPerJob: round((WORKERS * 1000) / floor.jobsPerSec - SHARD_MS, 2),
        stokerToFloor: round(run.shardsPerSec / floor.jobsPerSec, 3),
      },
      target: TARGET,
      met: ratio >= TARGET,
    };
  },
};
