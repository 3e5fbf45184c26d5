/**
 * fire-selfplay: FIRE self-play (`python3 -m stoker_fire.selfplay`, server mode) on the `tiny`
 * backend, driven directly over stdin/stdout (no worker, no Redis): what batching the
 * dialogues buys, and what a resident server buys over a process per shard.
 *
 * Models     a student and a teacher trained here for a few dozen steps (40, quick: 24;
 *            batch 16, one thread) with `stoker_fire.train --backend tiny` on the student and
 *            teacher views (stoker_fire.synth.student_view / teacher_view) of 256 scripted
 *            stoker_fire.synth dialogues. Not random `tiny-new` weights: a random teacher never
 *            writes a parseable `Score: N.`, so every dialogue is dropped (format_failure)
 *            and there are no records to compare, and a random model never writes <eot>,
 *            so every turn runs to --max-new-tokens (unlike real turns). Trained this
 *            little, the student writes FIRE-formatted answers of about 15 tokens and the
 *            teacher FIRE-formatted feedback; it costs about a minute of one core.
 * Self-play  seeds from `stoker_fire.synth --kind seeds --seed 1` (16 K of them; the first N for
 *            the batching comparison). Every server: --backend tiny, --max-new-tokens 32,
 *            --threads 1 and OMP_NUM_THREADS=1 (fair on a shared machine), and
 *            --min-rounds 1 --keep-unsatisfied, so every dialogue the rules do not drop
 *            for a broken format or a falling score is kept and the records are there to
 *            be compared (the little-trained teacher mostly scores the first answer >= 8,
 *            which the default rules would drop as first_answer_satisfied).
 * Batched    the same N seeds (128, quick: 64) as one shard through two servers loaded
 *            vs one  side by side, --batch-size 128 and --batch-size 1, requests alternating
 *            between them for R rounds (3, quick: 2; which goes first alternates too).
 *            Measured: request -> `done` as read here (load excluded), the server's own
 *            metrics {dialoguesPerSec (the dialogues alone), shardSeconds}, and the CPU
 *            seconds the server used for the shard (/proc; less sensitive to other work
 *            on the machine than the wall clock). Ratio: median batched dialogues/s /
 *            median one-at-a-time dialogues/s (wall, request -> done); target >= 5.
 *            Greedy decoding must give the same records batched and alone: both outputs
 *            (and every round's) are compared byte for byte; a difference is reported in
 *            `records`, not hidden, and does not fail the benchmark.
 * Resident   K shards of 16 seeds (K = 8, quick: 4), --batch-size 128: one resident server
 *            vs fresh takes them one after another (spawn -> last `done`, load included) vs K
 *            fresh processes in sequence, each spawn -> ready -> one shard -> done ->
 *            shutdown -> exit (first spawn -> last exit). Also per-shard seconds (steady
 *            state) and the load seconds (the server's metrics {loadSeconds}: torch import
 *            and both models, plus the process start before it). Ratio: fresh wall /
 *            resident wall; target >= 3. The two must write the same records per shard.
 * Checked    every output file: one JSON record per kept dialogue, as many as `done` says
 *            (and the server's `kept`), ids among the shard's seeds and in seed order,
 *            score/round/conversations consistent.
 *
 * The phases live in bench/fire-selfplay/: setup.ts (seeds, views, the two models),
 * batching.ts, resident.ts, checks.ts (the output checks).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Benchmark, round, stopPhase } from './lib/harness.js';
import { batchedVsSingle } from './fire-selfplay/batching.js';
import { freshPerShard, resident } from './fire-selfplay/resident.js';
import {
  BATCH,
  MAX_NEW_TOKENS,
  SHARD_SEEDS,
  TRAIN_DIALOGUES,
  setup,
} from './fire-selfplay/setup.js';

const BATCHED_TARGET = 5;
const RESIDENT_TARGET = 3;

export const fireSelfplay: Benchmark = {
  name: 'fire-selfplay',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 64 : 128;
    const k = ctx.quick ? 4 : 8;
    const rounds = ctx.quick ? 2 : 3;
    const steps = ctx.quick ? 24 : 40;
    const seeds = Math.max(n, k * SHARD_SEEDS);
    ctx.note(`fire-selfplay: ${seeds} synthetic seeds, ${TRAIN_DIALOGUES} training dialogues`);
    const prep = await setup(ctx, cleanup, seeds, steps);
    const s = prep.setup;
    mkdirSync(join(s.dir, 'out'), { recursive: true });

    ctx.note(
      `fire-selfplay: ${n} seeds as one shard, --batch-size ${BATCH} vs 1, ${rounds} rounds`,
    );
    const phaseA = cleanup.child('batching phase');
    const bvs = await batchedVsSingle(ctx, phaseA, s, n, rounds);
    await stopPhase(phaseA);

    ctx.note(`fire-selfplay: ${k} shards of ${SHARD_SEEDS} seeds through one resident server`);
    const phaseB = cleanup.child('resident phase');
    const res = await resident(ctx, phaseB, s, k);
    await stopPhase(phaseB);
    ctx.note(`fire-selfplay: ${k} shards of ${SHARD_SEEDS} seeds, a fresh process each`);
    const phaseC = cleanup.child('fresh phase');
    const fresh = await freshPerShard(ctx, phaseC, s, k);
    await stopPhase(phaseC);
    const shardsDiffering = res.texts.filter((t, i) => t !== fresh.texts[i]).length;

    const residentRatio = round(fresh.result.wallSeconds / res.result.wallSeconds, 3);
    const met = bvs.ratio >= BATCHED_TARGET;
    const residentMet = residentRatio >= RESIDENT_TARGET;
    return {
      unit: 'dialogues/s',
      backend: 'tiny',
      models: {
        choice: `trained here (${steps} steps each), not random: see bench/fire-selfplay.ts`,
        ...prep.info,
      },
      maxNewTokens: MAX_NEW_TOKENS,
      threads: 1,
      rules: '--min-rounds 1 --keep-unsatisfied',
      seeds: n,
      dialoguesPerSec: bvs.batched.dialoguesPerSec,
      batched: bvs.batched,
      baseline: { single: bvs.single, freshProcessPerShard: fresh.result },
      records: bvs.records,
      ratio: bvs.ratio,
      ratioOf: `batched (--batch-size ${BATCH}) dialogues/s / one at a time (--batch-size 1) dialogues/s, same ${n} seeds as one shard, request -> done, median of ${rounds}`,
      target: BATCHED_TARGET,
      met,
      serverRatio: bvs.serverRatio,
      cpuRatio: bvs.cpuRatio,
      batchingLoadavg1m: bvs.loadavg1m,
      residentVsFresh: {
        shards: k,
        seedsPerShard: SHARD_SEEDS,
        batchSize: BATCH,
        resident: res.result,
        baseline: fresh.result,
        recordsIdentical: shardsDiffering === 0,
        shardsDiffering,
        ratio: residentRatio,
        ratioOf: `${k} fresh processes in sequence (first spawn -> last exit) / one resident server (spawn -> last done), wall`,
        target: RESIDENT_TARGET,
        met: residentMet,
      },
      allTargetsMet: met && residentMet,
    };
  },
};
