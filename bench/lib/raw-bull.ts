/**
 * The raw BullMQ reference for the pulled benchmarks: WORKERS separate node processes
 * (bench/payloads/raw-bull-worker.mjs, concurrency 1 each, the pool worker's lock
 * settings), a no-op processor, N jobs added with addBulk in chunks of 1,000 with the
 * job options stoker uses. With `feed`, each worker hands every job to a resident no-op
 * server (noop-server.mjs) over its stdin/stdout and renames its output: what the
 * resident-payload design itself costs, before any of stoker's bookkeeping (the floor).
 *
 * Reported: jobs/s from the first processor start to the last end (and from the first
 * addBulk), Redis work per job (INFO deltas, the bench's own polling subtracted) and the
 * worker processes' CPU per job from ready to the last job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Queue } from 'bullmq';
import { bullConnection } from '../../common/redis.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import { type BenchContext, type Cleanup, nowMs, round, sleep } from './harness.js';
import {
  benchConnection,
  countersPer,
  cpuDelta,
  cpuOf,
  payloadScript,
  redisCounters,
  stateDir,
} from './pools.js';

export interface RawBullOptions {
  n: number;
  workers: number;
  timeoutMs: number;
  /** Feed each job to a resident no-op server (the floor). */
  feed?: boolean;
  /** Added to the workers' (and so their servers') environment, e.g. SHARD_MS. */
  env?: Record<string, string>;
}

interface RawChild {
  child: ChildProcess;
  next(): Promise<string>;
}

interface RawReport {
  processed: number;
  firstStartMs: number | null;
  lastEndMs: number | null;
}

const QUEUE = 'pool.raw';

export async function rawBull(ctx: BenchContext, cleanup: Cleanup, o: RawBullOptions) {
  const prefix = `bench-raw-pulled-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const feedDir = o.feed ? stateDir(ctx, 'pulled-tp-floor') : null;
  cleanup.defer(`delete keys ${prefix}*`, () => deleteKeysWithPrefix(ctx.redisUrl, prefix));
  const queue = new Queue(QUEUE, { connection: bullConnection(ctx.redisUrl), prefix });
  cleanup.defer('close the raw queue', () => queue.close());
  await queue.waitUntilReady();
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  // 1. The workers, ready.
  const children = Array.from({ length: o.workers }, (_, i) =>
    spawnRawWorker(
      ctx,
      cleanup,
      [prefix, QUEUE, `raw-${i}`, ...(feedDir ? [feedDir] : [])],
      o.env ?? {},
    ),
  );
  await withTimeout(Promise.all(children.map((c) => c.next())), 'the raw BullMQ workers to start');
  const pids = children.map((c) => c.child.pid as number);
  const cpuBefore = cpuOf(pids);
  const before = await redisCounters(probe);
  // 2. The jobs.
  const t0 = nowMs();
  await addJobs(queue, o.n);
  // 3. Until all are done.
  const polls = await waitDone(probe, prefix, o);
  const after = await redisCounters(probe);
  const workersCpu = cpuDelta(cpuBefore, cpuOf(pids));
  // 4. Each worker's report: its first start and last end.
  const reports = await withTimeout(
    Promise.all(
      children.map(async (c) => {
        c.child.stdin?.write('report\n');
        return JSON.parse(await c.next()) as RawReport;
      }),
    ),
    'the raw BullMQ workers to report',
  );
  const processed = reports.reduce((a, r) => a + r.processed, 0);
  const firstStart = Math.min(...reports.flatMap((r) => (r.firstStartMs ? [r.firstStartMs] : [])));
  const lastEnd = Math.max(...reports.flatMap((r) => (r.lastEndMs ? [r.lastEndMs] : [])));
  if (processed !== o.n) throw new Error(`raw BullMQ: ${processed} of ${o.n} jobs processed`);
  await queue.obliterate({ force: true }).catch(() => undefined);
  const own = 3 + polls * 2;
  return {
    jobsPerSec: round((o.n * 1000) / (lastEnd - firstStart), 1),
    jobsPerSecFromAdd: round((o.n * 1000) / (lastEnd - t0), 1),
    wallMs: round(lastEnd - firstStart, 0),
    fromAddMs: round(lastEnd - t0, 0),
    firstJobStartMs: round(firstStart - t0, 0),
    jobsPerWorker: reports.map((r) => r.processed),
    redisPerJob: countersPer(before, after, o.n, { commands: own, reads: own }),
    cpuPerJob: {
      workerProcessMs: round((workersCpu.cpuS * 1000) / o.n, 3),
      processesSampled: workersCpu.processes,
    },
    workers: `${o.workers} separate node processes (bench/payloads/raw-bull-worker.mjs), concurrency 1 each${feedDir ? ', each feeding a resident no-op server (noop-server.mjs) and renaming its output' : ''}`,
  };
}

async function addJobs(queue: Queue, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    await queue.addBulk(
      Array.from({ length: Math.min(1000, n - i) }, (_, k) => {
        const id = `raw.gen.s${String(i + k).padStart(5, '0')}`;
        return {
          name: 'generate',
          data: { taskId: id, runId: 'raw' },
          opts: {
            jobId: id,
            attempts: 1,
            removeOnComplete: { age: 7 * 24 * 3600, count: 100_000 },
            removeOnFail: { age: 30 * 24 * 3600, count: 100_000 },
          },
        };
      }),
    );
  }
}

/** Poll the queue's completed and failed sets; returns the number of polls. */
async function waitDone(
  probe: Awaited<ReturnType<typeof benchConnection>>,
  prefix: string,
  o: RawBullOptions,
): Promise<number> {
  const deadline = Date.now() + o.timeoutMs;
  for (let polls = 1; ; polls++) {
    const [done, failed] = await Promise.all([
      probe.zcard(`${prefix}:${QUEUE}:completed`),
      probe.zcard(`${prefix}:${QUEUE}:failed`),
    ]);
    if (failed > 0) throw new Error(`raw BullMQ: ${failed} jobs failed`);
    if (done >= o.n) return polls;
    if (Date.now() > deadline)
      throw new Error(`raw BullMQ: timed out with ${done} of ${o.n} jobs done`);
    await sleep(50);
  }
}

function withTimeout<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A raw worker process; next() is its next stdout line (rejects once it exited). */
function spawnRawWorker(
  ctx: BenchContext,
  cleanup: Cleanup,
  args: string[],
  env: Record<string, string>,
): RawChild {
  const label = args[2] as string;
  const child = spawn(
    process.execPath,
    [payloadScript(ctx, 'raw-bull-worker.mjs'), ctx.redisUrl, ...args],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  cleanup.defer(`stop raw worker ${label}`, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  const exited = new Promise<string>((_, reject) =>
    child.once('exit', (code, signal) =>
      reject(
        new Error(`raw worker ${label} exited ${code ?? signal}: ${stderr.trim().slice(-300)}`),
      ),
    ),
  );
  exited.catch(() => undefined);
  return {
    child,
    next: () => {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(l);
      return Promise.race([new Promise<string>((r) => waiters.push(r)), exited]);
    },
  };
}
