/**
 * progress-ingestion: a payload printing 20,000 marker events per second for S seconds
 * (5, quick: 1) through `stoker worker`, which parses every line and coalesces progress
 * into a few Redis writes per second (README, "Benchmarks").
 *
 * Payload    bench/payloads/flood-rate.mjs: paced by the clock, so a reader that cannot
 *            keep up slows it down; ends with a progress event carrying a known last step
 *            and a result with its own wall and CPU time.
 * Measured   events emitted; whether task:{id}:progress holds the last step (and the
 *            result); XLEN of task:{id}:events; the worker process's CPU seconds (utime +
 *            stime from /proc/<pid>/stat, the pid from the unit record, sampled every
 *            100 ms until it exits, the last sample kept: up to 100 ms at the very end
 *            is missed) against its wall time (unit launchedAt -> finishedAt), and what
 *            of it was spent before the payload started (so per-event CPU excludes the
 *            worker's start-up); the
 *            payload's own wall and CPU (it reports them).
 * Baseline   the same payload spawned by the bench with stdout read by a bare line
 *            counter (no parsing, no Redis): the payload's wall and CPU, and the reader's
 *            CPU (this process's cpuUsage() across the run).
 * Ratio      payload wall through stoker / payload wall direct (1 = the worker keeps up).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTaskProgress } from '../common/progress.js';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  procCpuSeconds,
  round,
  stopPhase,
  waitFor,
  watchProcCpu,
} from './lib/harness.js';
import { benchRun, failureOf, startBenchSystem, trainUnit } from './lib/stoker.js';

const RATE = 20_000;

interface FloodStats {
  emitted: number;
  lastStep: number;
  wallMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  blockedWrites: number;
}

const floodArgv = (ctx: BenchContext, seconds: number, stats: string): string[] => [
  process.execPath,
  join(ctx.root, 'bench', 'payloads', 'flood-rate.mjs'),
  '--rate',
  String(RATE),
  '--seconds',
  String(seconds),
  '--stats',
  stats,
];

const readStats = (file: string): FloodStats =>
  JSON.parse(readFileSync(file, 'utf8')) as FloodStats;
const payloadCpuS = (s: FloodStats): number => round((s.cpuUserMs + s.cpuSystemMs) / 1000, 3);

async function throughStoker(ctx: BenchContext, cleanup: Cleanup, seconds: number, dir: string) {
  const b = await startBenchSystem(ctx, cleanup, 'ingest', { train: 1, steps: 1 });
  const statsFile = join(dir, 'stoker-stats.json');
  const { runId } = await b.submit(benchRun('bench-ingest', floodArgv(ctx, seconds, statsFile)));
  const { taskId, unit } = trainUnit(runId);
  const unitKey = b.sys.keys.unit(unit);
  const pid = await waitFor(
    `the worker of run ${runId} to start`,
    async () => {
      const p = await b.sys.redis.hget(unitKey, 'pid');
      return p ? Number(p) : null;
    },
    30_000,
    5,
  );
  const cpu = watchProcCpu(pid, 100);
  // The worker's CPU when its payload starts: what it spent starting up, not ingesting.
  const startupCpuS = await waitFor(
    `the payload of run ${runId} to start`,
    async () => {
      const pgid = await b.sys.redis.hget(unitKey, 'payloadPgid');
      return pgid ? (procCpuSeconds(pid) ?? cpu.last() ?? 0) : null;
    },
    30_000,
    5,
  );
  const run = await b
    .waitTerminal(runId, seconds * 1000 * 20 + 60_000, 50)
    .finally(() => cpu.stop());
  if (run.phase !== 'Succeeded') throw new Error(await failureOf(b, run));
  const stats = readStats(statsFile);
  const progress = await readTaskProgress(b.sys.redis, b.sys.keys, taskId);
  const u = await b.sys.redis.hgetall(unitKey);
  const workerWallS = (Date.parse(u.finishedAt ?? '') - Date.parse(u.launchedAt ?? '')) / 1000;
  const workerCpuS = cpu.last();
  const xlen = await b.sys.redis.xlen(b.sys.keys.taskEvents(taskId));
  const resultEmitted = progress.result?.emitted;
  return {
    eventsEmitted: stats.emitted,
    lastStep: stats.lastStep,
    recordedStep: progress.step,
    lastStepRecorded: progress.step === stats.lastStep,
    resultRecorded: resultEmitted === stats.emitted,
    eventsStreamXlen: xlen,
    workerPid: pid,
    workerCpuS: workerCpuS === null ? null : round(workerCpuS, 2),
    workerCpuSamples: cpu.samples(),
    workerWallS: Number.isFinite(workerWallS) ? round(workerWallS, 2) : null,
    workerCpuFraction:
      workerCpuS !== null && workerWallS > 0 ? round(workerCpuS / workerWallS, 3) : null,
    workerStartupCpuS: round(startupCpuS, 2),
    workerCpuPerEventUs:
      workerCpuS === null ? null : round(((workerCpuS - startupCpuS) * 1e6) / stats.emitted, 2),
    payloadWallS: round(stats.wallMs / 1000, 3),
    payloadCpuS: payloadCpuS(stats),
    payloadBlockedWrites: stats.blockedWrites,
    achievedRate: round(stats.emitted / (stats.wallMs / 1000), 0),
  };
}

/** The payload with its stdout read by a bare line counter in this process. */
function direct(ctx: BenchContext, seconds: number, dir: string) {
  const statsFile = join(dir, 'direct-stats.json');
  const [file, ...args] = floodArgv(ctx, seconds, statsFile);
  return new Promise<Record<string, number>>((resolve, reject) => {
    const cpu0 = process.cpuUsage();
    let lines = 0;
    const child = spawn(file as string, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (chunk: Buffer) => {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines += 1;
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const cpu = process.cpuUsage(cpu0);
      if (code !== 0) return reject(new Error(`direct flood-rate.mjs exited ${code ?? signal}`));
      const stats = readStats(statsFile);
      resolve({
        eventsEmitted: stats.emitted,
        linesRead: lines,
        payloadWallS: round(stats.wallMs / 1000, 3),
        payloadCpuS: payloadCpuS(stats),
        payloadBlockedWrites: stats.blockedWrites,
        readerCpuS: round((cpu.user + cpu.system) / 1e6, 3),
        achievedRate: round(stats.emitted / (stats.wallMs / 1000), 0),
      });
    });
  });
}

export const progressIngestion: Benchmark = {
  name: 'progress-ingestion',
  async run(ctx, cleanup) {
    const seconds = ctx.quick ? 1 : 5;
    const dir = mkdtempSync(join(ctx.tmpRoot, 'ingest-'));
    ctx.note(`progress-ingestion: ${RATE} events/s for ${seconds} s through stoker worker`);
    const phase = cleanup.child('stoker phase');
    const stoker = await throughStoker(ctx, phase, seconds, dir);
    await stopPhase(phase);
    ctx.note('progress-ingestion: the same payload read by a bare line counter');
    const baseline = await direct(ctx, seconds, dir);
    const baseWall = baseline.payloadWallS ?? NaN;
    return {
      unit: 'events/s',
      rate: RATE,
      seconds,
      ...stoker,
      baseline,
      ratio: round(stoker.payloadWallS / baseWall, 3),
      ratioOf: 'payload wall through stoker worker / payload wall with a bare line counter',
      workerCpuVsReaderCpu:
        stoker.workerCpuS === null || !baseline.readerCpuS
          ? null
          : round(stoker.workerCpuS / baseline.readerCpuS, 1),
    };
  },
};
