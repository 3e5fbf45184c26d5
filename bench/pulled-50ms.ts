/**
 * pulled-50ms: shards of a known length through a pool: how much of the ideal rate the
 * pool's per-shard work (the begin and outcome scripts, the server round trip,
 * BullMQ's moveToFinished) leaves when the payload itself is not free. With shards this
 * short each worker holds one shard in hand (worker/pool/lookahead.ts), so the round
 * trips overlap the runs.
 *
 * Measured   (bench/lib/pool-run.ts) N shards (800, quick: 80), shardSize 1, a pool of
 *            4 workers, payload bench/payloads/noop-server.mjs with SHARD_MS=50 (each
 *            shard waits 50 ms on a timer, then copies its input): shards/s from the
 *            first shard start to the last completion.
 * Ideal      4 workers / 50 ms = 80 shards/s.
 * Floor      (bench/lib/raw-bull.ts) the same N jobs through 4 raw BullMQ workers, each
 *            feeding the same 50 ms server one job at a time: what a resident server
 *            fed by plain BullMQ workers reaches here, with none of stoker's
 *            bookkeeping and no job in hand.
 * Rounds     stoker and the floor alternately, 3 rounds (quick: 1); the ratios are the
 *            medians of the rounds' ratios.
 * Ratio      the pool's rate in service / ideal; target >= 0.95. In service: from the
 *            moment every worker has finished a shard to the last completion, as the
 *            floor is measured from its workers' first job, their servers already up.
 *            Also reported: ratioFromFirstShard, the rate from the first shard start,
 *            which includes starting the 4 payload servers (one-off; resident-vs-reload
 *            measures loads), and the time per shard beyond its 50 ms in service
 *            (4 / shards/s - 50 ms), i.e. the pool's overhead per shard.
 */
import { type Benchmark, median, round, stopPhase } from './lib/harness.js';
import { poolRun } from './lib/pool-run.js';
import { rawBull } from './lib/raw-bull.js';

const WORKERS = 4;
const SHARD_MS = 50;
const TARGET = 0.95;

export const pulled50ms: Benchmark = {
  name: 'pulled-50ms',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 80 : 800;
    const rounds = ctx.quick ? 1 : 3;
    const env = { SHARD_MS: String(SHARD_MS) };
    const ideal = (WORKERS * 1000) / SHARD_MS;
    const perRound: Array<{
      run: Awaited<ReturnType<typeof poolRun>>;
      floor: Awaited<ReturnType<typeof rawBull>>;
    }> = [];
    for (let r = 1; r <= rounds; r++) {
      ctx.note(
        `pulled-50ms: round ${r}/${rounds}: ${n} shards of ${SHARD_MS} ms, ${WORKERS} workers`,
      );
      const phase = cleanup.child(`stoker phase ${r}`);
      const run = await poolRun(ctx, phase, {
        label: 'pulled-50ms',
        n,
        workers: WORKERS,
        script: 'noop-server.mjs',
        env,
        timeoutMs: ctx.quick ? 120_000 : 300_000,
      });
      await stopPhase(phase);
      ctx.note(`pulled-50ms: round ${r}/${rounds}: the floor, raw BullMQ feeding the same server`);
      const floorPhase = cleanup.child(`floor phase ${r}`);
      const floor = await rawBull(ctx, floorPhase, {
        n,
        workers: WORKERS,
        timeoutMs: 300_000,
        feed: true,
        env,
      });
      await stopPhase(floorPhase);
      perRound.push({ run, floor });
    }
    const overhead = (perSec: number) => round((WORKERS * 1000) / perSec - SHARD_MS, 2);
    const steady = (p: (typeof perRound)[number]) => p.run.steadyShardsPerSec ?? p.run.shardsPerSec;
    const ratio = round(median(perRound.map((p) => steady(p) / ideal)), 3);
    const shardsPerSec = round(median(perRound.map(steady)), 1);
    const floorPerSec = round(median(perRound.map((p) => p.floor.jobsPerSec)), 1);
    return {
      unit: 'shards/s',
      shards: n,
      workers: WORKERS,
      shardMs: SHARD_MS,
      shardsPerSec,
      idealShardsPerSec: ideal,
      ratio,
      ratioOf: `shards/s in service (every worker past its first shard -> last completion) / (${WORKERS} workers / ${SHARD_MS} ms), median of the rounds`,
      ratioFromFirstShard: round(median(perRound.map((p) => p.run.shardsPerSec / ideal)), 3),
      overheadMsPerShard: overhead(shardsPerSec),
      rounds: perRound.map((p) => ({
        shardsPerSec: p.run.shardsPerSec,
        steadyShardsPerSec: p.run.steadyShardsPerSec,
        shardInWorkerMsP50: p.run.shardInWorkerMsP50,
        floorJobsPerSec: p.floor.jobsPerSec,
      })),
      floor: {
        jobsPerSec: floorPerSec,
        ratio: round(floorPerSec / ideal, 3),
        overheadMsPerJob: overhead(floorPerSec),
        stokerToFloor: round(median(perRound.map((p) => steady(p) / p.floor.jobsPerSec)), 3),
      },
      lastRound: perRound[perRound.length - 1]!.run,
      target: TARGET,
      met: ratio >= TARGET,
    };
  },
};
