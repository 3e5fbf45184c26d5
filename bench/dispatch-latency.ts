/**
 * dispatch-latency: how long from `submit` until the payload's first statement runs.
 *
 * Measured   N runs one after the other (the next is submitted once the previous one
 *            has Succeeded), each a TrainingRun whose payload is bench/payloads/stamp.mjs:
 *            latency = the payload's own start stamp - the time just before createRun().
 *            Also a per-stage breakdown (medians): submit -> job enqueued (BullMQ job
 *            timestamp), enqueued -> picked up by the dispatcher (processedOn), picked ->
 *            unit launched (unit launchedAt), launched -> payload start (the worker
 *            process starting, connecting, loading the task, spawning the payload).
 * Baselines  on the same Redis, N jobs each: `queue.add` -> an in-process processor
 *            starts; `queue.add` -> a processor that spawns the same stamp.mjs -> its stamp.
 * Ratio      stoker p50 / spawning-processor p50 (the same process start on both sides).
 * Units      ms. p99 is nearest-rank: with N < 100 it is the slowest sample.
 */
import { readFileSync, existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  stopPhase,
  summarize,
  waitFor,
} from './lib/harness.js';
import { spawnAndWait, startRawBull } from './lib/bullmq.js';
import { benchRun, failureOf, startBenchSystem, trainUnit } from './lib/stoker.js';

const readStamp = (file: string): number | null => {
  if (!existsSync(file)) return null;
  try {
    const v = (JSON.parse(readFileSync(file, 'utf8')) as { startedAt?: unknown }).startedAt;
    return typeof v === 'number' ? v : null;
  } catch {
    return null; // being written
  }
};

async function stokerLatencies(
  ctx: BenchContext,
  cleanup: Cleanup,
  n: number,
  dir: string,
  stamp: string,
) {
  const b = await startBenchSystem(ctx, cleanup, 'latency', { train: 1, steps: 1 });
  const total: number[] = [];
  const parts = {
    enqueue: [] as number[],
    pickup: [] as number[],
    launch: [] as number[],
    workerStart: [] as number[],
    submitToSucceeded: [] as number[],
  };
  for (let i = 0; i < n; i++) {
    const file = join(dir, `stoker-${i}.json`);
    const { runId, submittedAt } = await b.submit(
      benchRun(`bench-lat-${i}`, [process.execPath, stamp, file]),
    );
    const started = await waitFor(
      `the payload of run ${runId} to start`,
      () => readStamp(file),
      30_000,
      5,
    );
    const run = await b.waitTerminal(runId, 30_000);
    if (run.phase !== 'Succeeded') throw new Error(await failureOf(b, run));
    total.push(started - submittedAt);
    const { taskId, unit } = trainUnit(runId);
    const job = await b.sys.queues.train.getJob(taskId);
    const u = await b.sys.redis.hgetall(b.sys.keys.unit(unit));
    const launchedAt = u.launchedAt ? Date.parse(u.launchedAt) : NaN;
    if (
      job?.timestamp !== undefined &&
      job.processedOn !== undefined &&
      Number.isFinite(launchedAt)
    ) {
      parts.enqueue.push(job.timestamp - submittedAt);
      parts.pickup.push(job.processedOn - job.timestamp);
      parts.launch.push(launchedAt - job.processedOn);
      parts.workerStart.push(started - launchedAt);
    }
    if (run.finishedAt) parts.submitToSucceeded.push(Date.parse(run.finishedAt) - submittedAt);
  }
  const med = (v: number[]) => (v.length > 0 ? round(median(v)) : null);
  return {
    latency: summarize(total),
    breakdownP50: {
      submitToEnqueued: med(parts.enqueue),
      enqueuedToPickedUp: med(parts.pickup),
      pickedUpToUnitLaunched: med(parts.launch),
      unitLaunchedToPayloadStart: med(parts.workerStart),
    },
    submitToSucceededP50: med(parts.submitToSucceeded),
  };
}

async function rawInProcess(ctx: BenchContext, cleanup: Cleanup, n: number) {
  let onStart: ((t: number) => void) | null = null;
  const raw = await startRawBull(ctx, cleanup, 'lat-inproc', 1, async () => {
    onStart?.(nowMs());
  });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = new Promise<number>((resolve) => {
      onStart = resolve;
    });
    const done = new Promise<void>((resolve) => raw.worker.once('completed', () => resolve()));
    const t0 = nowMs();
    await raw.queue.add('noop', { i });
    out.push((await started) - t0);
    await done;
  }
  return summarize(out);
}

async function rawSpawn(
  ctx: BenchContext,
  cleanup: Cleanup,
  n: number,
  dir: string,
  stamp: string,
) {
  const raw = await startRawBull(ctx, cleanup, 'lat-spawn', 1, async (job) => {
    await spawnAndWait([process.execPath, stamp, (job.data as { file: string }).file]);
  });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const file = join(dir, `raw-${i}.json`);
    const done = new Promise<void>((resolve, reject) => {
      const ok = () => {
        raw.worker.off('failed', bad);
        resolve();
      };
      const bad = (_job: unknown, err: Error) => {
        raw.worker.off('completed', ok);
        reject(err);
      };
      raw.worker.once('completed', ok);
      raw.worker.once('failed', bad);
    });
    const t0 = nowMs();
    await raw.queue.add('spawn', { file });
    await done;
    const started = readStamp(file);
    if (started === null) throw new Error(`raw spawn ${i}: no stamp in ${file}`);
    out.push(started - t0);
  }
  return summarize(out);
}

export const dispatchLatency: Benchmark = {
  name: 'dispatch-latency',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 5 : 30;
    const dir = mkdtempSync(join(ctx.tmpRoot, 'latency-'));
    const stamp = join(ctx.root, 'bench', 'payloads', 'stamp.mjs');
    ctx.note(`dispatch-latency: ${n} runs through stoker`);
    const phase = cleanup.child('stoker phase');
    const stoker = await stokerLatencies(ctx, phase, n, dir, stamp);
    await stopPhase(phase);
    ctx.note(`dispatch-latency: ${n} raw BullMQ jobs (in-process, then spawning)`);
    const inProcess = await rawInProcess(ctx, cleanup, n);
    const spawning = await rawSpawn(ctx, cleanup, n, dir, stamp);
    return {
      unit: 'ms',
      runs: n,
      p50: stoker.latency.p50,
      p99: stoker.latency.p99,
      stoker: stoker.latency,
      breakdownP50: stoker.breakdownP50,
      submitToSucceededP50: stoker.submitToSucceededP50,
      baseline: {
        bullmqAddToProcessor: inProcess,
        bullmqAddToSpawnedPayload: spawning,
      },
      ratio: round(stoker.latency.p50 / spawning.p50, 2),
      ratioOf: 'stoker p50 / raw BullMQ add -> spawned payload p50',
      overheadP50Ms: round(stoker.latency.p50 - spawning.p50),
    };
  },
};
