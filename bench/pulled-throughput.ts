/**
 * pulled-throughput: no-op shards per second through a pool of 4 warm workers.
 *
 * Measured   a Pipeline with one `generate` stage: an input JSONL of N lines (5,000,
 *            quick: 300), shardSize 1 (N shards, one attempt each), pool of 4 workers
 *            (`node dist/worker/entry.js worker --pool`, product lock/stall settings),
 *            payload bench/payloads/noop-server.mjs (server mode: copies the one-line
 *            input to the output, answers done). Clocks:
 *              shardsPerSec            N / (last shard completion - first shard start)
 *              shardsPerSecFromSubmit  N / (last shard completion - submit)
 *            first shard start: the earliest first entry of a shard's event stream (the
 *            `attempt` event the worker writes as the shard starts); last completion: the
 *            newest score of the pool's completions zset (the worker's clock at its ZADD).
 *            Also the shard's time in the worker (attempt event -> outcome finishedAt),
 *            the controller's reconcile passes and this process's CPU, CPU per shard of the
 *            pool workers, payload servers and this process (controller, dispatcher, the
 *            bench's polling) once every worker has finished a shard, and Redis work per
 *            shard on the bench's own redis-server (INFO deltas from submit to the last
 *            outcome: commands, commands run inside Lua scripts included; reads =
 *            total_reads_processed, about one per request round trip; redis-server CPU;
 *            the bench's own polling is subtracted from commands and reads). Every shard is checked: outcome Succeeded, output there.
 * Baseline   4 raw BullMQ Workers in 4 separate node processes (bench/payloads/
 *            raw-bull-worker.mjs: concurrency 1 each, the pool worker's lock settings),
 *            no-op processor, N jobs added with addBulk in chunks of 1,000 and the job
 *            options stoker uses: N / (last processor end - first processor start), and
 *            from the first addBulk call; Redis work and worker process CPU per job measured
 *            the same way (CPU from ready to the last job).
 * Floor      the same raw workers, each handing every job to a resident no-op server
 *            (noop-server.mjs) over its stdin/stdout and renaming the output: what the
 *            resident-payload design itself costs, before any of stoker's bookkeeping.
 *            Reported as floor.ratioToRaw (the best a pool could do here) and
 *            floor.stokerToFloor (what stoker's bookkeeping keeps of it).
 * Ratio      stoker shards/s / raw BullMQ jobs/s (first start -> last end); target >= 0.7.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Queue } from 'bullmq';
import { poolQueueName, shardTaskId } from '../common/keys.js';
import { bullConnection } from '../common/redis.js';
import { deleteKeysWithPrefix } from '../testing/redis-keys.js';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  sleep,
  stopPhase,
  waitFor,
} from './lib/harness.js';
import {
  benchConnection,
  countersPer,
  cpuDelta,
  cpuOf,
  livePoolProcs,
  generatePipeline,
  killStrayServers,
  payloadScript,
  readLoads,
  redisCounters,
  shardStartTimes,
  startPoolSystem,
  stateDir,
  waitPoolGone,
  writeItems,
} from './lib/pools.js';

const WORKERS = 4;
const TARGET_RATIO = 0.7;
const SCRIPT = 'noop-server.mjs';

async function throughStoker(ctx: BenchContext, cleanup: Cleanup, n: number, timeoutMs: number) {
  const dir = stateDir(ctx, 'pulled-tp');
  cleanup.defer('kill stray no-op servers', () => void killStrayServers(dir, SCRIPT));
  const b = await startPoolSystem(ctx, cleanup, 'pulled-tp');
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  const input = join(dir, 'items.jsonl');
  writeItems(input, n);
  const pool = `bench-tp-${Math.random().toString(36).slice(2, 8)}`;
  const spec = generatePipeline({
    name: 'bench-pulled-tp',
    inputFile: input,
    shardSize: 1,
    pool: { name: pool, replicas: WORKERS, maxReplicas: WORKERS },
    command: [process.execPath, payloadScript(ctx, SCRIPT)],
    env: { STATE_DIR: dir },
    attempts: 1,
  });
  const doneKey = (runId: string) => b.sys.keys.stageShardsDone(runId, 'gen');
  const failedKey = (runId: string) => b.sys.keys.stageShardsFailed(runId, 'gen');
  let ownCommands = 3; // the INFO calls of the first snapshot
  const passesBefore = b.sys.controller.stats.passes;
  const before = await redisCounters(probe);
  const cpu0 = process.cpuUsage();
  const { runId, submittedAt } = await b.submit(spec);
  const deadline = Date.now() + timeoutMs;
  let lastNote = Date.now();
  let finished = 0;
  const lastCpu = new Map<number, number>();
  const latestCpu = (pids: number[]) => {
    for (const [pid, v] of cpuOf(pids)) if (v !== null) lastCpu.set(pid, v);
    return new Map(pids.map((pid) => [pid, lastCpu.get(pid) ?? null] as const));
  };
  let cpuFrom: {
    spawned: [number, number] | null;
    at: number;
    done: number;
    workers: Map<number, number | null>;
    servers: Map<number, number | null>;
    controller: NodeJS.CpuUsage;
  } | null = null;
  for (;;) {
    const res = await probe.multi().scard(doneKey(runId)).scard(failedKey(runId)).exec();
    ownCommands += 4;
    const succeeded = Number(res?.[0]?.[1] ?? 0);
    const failed = Number(res?.[1]?.[1] ?? 0);
    finished = succeeded + failed;
    if (failed > 0) {
      const run = await b.waitTerminal(runId, 60_000, 100).catch(() => null);
      throw new Error(
        `${failed} shard(s) failed (${succeeded} succeeded); run ${run?.phase ?? '?'}: ${run?.message ?? ''}`,
      );
    }
    // The pool is scaled to 0 (servers stopped) within ms of the last outcome: keep the
    // last CPU reading of every sampled process.
    if (cpuFrom) latestCpu([...cpuFrom.workers.keys(), ...cpuFrom.servers.keys()]);
    if (finished >= n) break;
    // CPU of the pool's processes from the moment all 4 workers have finished a shard
    // (their start-up is behind them) to the last shard.
    if (cpuFrom === null && succeeded >= WORKERS) {
      const procs = await livePoolProcs(b.sys, pool);
      ownCommands += 1;
      const servers = readLoads(dir);
      const active = await probe.hvals(b.sys.keys.poolWorkers(pool));
      ownCommands += 1;
      const shardsDone = active
        .map((w) => (JSON.parse(w) as { shardsDone?: number }).shardsDone ?? 0)
        .filter((d) => d > 0).length;
      if (procs.length === WORKERS && servers.length === WORKERS && shardsDone === WORKERS) {
        const spawned = procs.map((p) => Date.parse(p.startedAt)).filter(Number.isFinite);
        cpuFrom = {
          spawned: spawned.length > 0 ? [Math.min(...spawned), Math.max(...spawned)] : null,
          at: Date.now(),
          done: succeeded,
          workers: cpuOf(procs.map((p) => p.pid)),
          servers: cpuOf(servers),
          controller: process.cpuUsage(),
        };
      }
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms: ${finished} of ${n} shards finished`);
    if (Date.now() - lastNote > 15_000) {
      ctx.note(`pulled-throughput: ${finished}/${n} shards done`);
      lastNote = Date.now();
    }
    await sleep(50);
  }
  // At once: the controller scales the pool to 0 as soon as it sees the stage done.
  let cpuPerShard: Record<string, unknown> | null = null;
  if (cpuFrom) {
    const w = cpuDelta(cpuFrom.workers, latestCpu([...cpuFrom.workers.keys()]));
    const sv = cpuDelta(cpuFrom.servers, latestCpu([...cpuFrom.servers.keys()]));
    const c = process.cpuUsage(cpuFrom.controller);
    const shards = n - cpuFrom.done;
    const ms = (v: number) => round((v * 1000) / shards, 3);
    cpuPerShard = {
      shards,
      poolWorkerMs: ms(w.cpuS),
      payloadServerMs: ms(sv.cpuS),
      controllerProcessMs: ms((c.user + c.system) / 1e6),
      processesSampled: { workers: w.processes, servers: sv.processes },
    };
  }
  // The completion ZADD follows the outcome by a round trip or two.
  const completionsKey = b.sys.keys.poolCompletions(pool);
  await waitFor(
    'the last completions',
    async () => ((await probe.zcard(completionsKey)) >= n ? true : null),
    10_000,
    5,
  );
  const after = await redisCounters(probe);
  const cpu = process.cpuUsage(cpu0);
  const passes = b.sys.controller.stats.passes - passesBefore;
  const run = await b.waitTerminal(runId, 60_000, 20);
  const runSeenMs = nowMs() - submittedAt;
  if (run.phase !== 'Succeeded') throw new Error(`run ${runId} ended ${run.phase}: ${run.message}`);

  // Times and checks, after the fact.
  const completions = await probe.zrange(completionsKey, '0', '-1', 'WITHSCORES');
  const scores: number[] = [];
  const members: string[] = [];
  for (let i = 0; i < completions.length; i += 2) {
    members.push(completions[i] as string);
    scores.push(Number(completions[i + 1]));
  }
  const lastDone = Math.max(...scores);
  const ids = Array.from({ length: n }, (_, i) => shardTaskId(runId, 'gen', i));
  const statuses = await b.sys.store.getTaskStatuses(ids);
  const startedAt = await shardStartTimes(probe, b.sys, ids);
  if (startedAt.size !== n) throw new Error(`only ${startedAt.size} of ${n} shards have a start`);
  const firstStart = Math.min(...startedAt.values());
  const outcomes = await b.sys.store.shardOutcomes(runId, 'gen');
  const shardMs = outcomes.flatMap((o) => {
    const s = startedAt.get(o.taskId);
    return s === undefined ? [] : [Date.parse(o.finishedAt) - s];
  });
  const succeeded = outcomes.filter((o) => o.phase === 'Succeeded');
  const missing = succeeded.filter((o) => !o.output || !existsSync(o.output)).length;
  const repeated = members.filter((m) => !m.endsWith(':1')).length;
  if (succeeded.length !== n || missing > 0)
    throw new Error(
      `${succeeded.length} of ${n} shards succeeded, ${missing} outputs missing (run ${run.phase})`,
    );
  // Where the time before the first shard goes: the controller splits the input, creates
  // the tasks and enqueues them all (the last job's BullMQ timestamp), then sizes the pool.
  const lastJob = await probe.hget(
    `${b.sys.keys.bullPrefix}:${poolQueueName(pool)}:${ids[n - 1] as string}`,
    'timestamp',
  );
  const wallMs = lastDone - firstStart;
  const fromSubmitMs = lastDone - submittedAt;
  const loads = readLoads(dir).length;
  const stopMs = await waitPoolGone(b.sys, pool, 60_000);
  return {
    shardsPerSec: round((n * 1000) / wallMs, 1),
    shardsPerSecFromSubmit: round((n * 1000) / fromSubmitMs, 1),
    // From the moment all 4 workers had finished a shard (no start-up left) to the end.
    steadyShardsPerSec: cpuFrom
      ? round(((n - cpuFrom.done) * 1000) / (lastDone - cpuFrom.at), 1)
      : null,
    wallMs: round(wallMs, 0),
    fromSubmitMs: round(fromSubmitMs, 0),
    firstShardStartMs: round(firstStart - submittedAt, 0),
    beforeFirstShard: {
      allShardsQueuedMs: lastJob ? round(Number(lastJob) - submittedAt, 0) : null,
      workersSpawnedMs: cpuFrom?.spawned
        ? cpuFrom.spawned.map((t) => round(t - submittedAt, 0))
        : null,
      firstShardStartMs: round(firstStart - submittedAt, 0),
    },
    runSucceededMs: run.finishedAt ? round(Date.parse(run.finishedAt) - submittedAt, 0) : null,
    runSucceededSeenMs: round(runSeenMs, 0),
    shardInWorkerMsP50: shardMs.length > 0 ? round(median(shardMs), 0) : null,
    shardInWorkerMsMax: shardMs.length > 0 ? Math.max(...shardMs) : null,
    // Evidence for the notes: final shard statuses that lost the startedAt of their Running write.
    finalStatusesWithoutStartedAt: Object.values(statuses).filter(
      (s) => s.finishedAt && !s.startedAt,
    ).length,
    redisPerShard: countersPer(before, after, n, { commands: ownCommands, reads: ownCommands }),
    cpuPerShard,
    controllerPasses: passes,
    controllerProcessCpuS: round((cpu.user + cpu.system) / 1e6, 2),
    serverLoads: loads,
    completionsNotFirstAttempt: repeated,
    poolScaledToZeroMs: round(stopMs, 0),
  };
}

interface RawChild {
  child: ChildProcess;
  lines: string[];
  next(): Promise<string>;
}

function spawnRawWorker(
  ctx: BenchContext,
  cleanup: Cleanup,
  args: string[],
  label: string,
): RawChild {
  const child = spawn(
    process.execPath,
    [payloadScript(ctx, 'raw-bull-worker.mjs'), ctx.redisUrl, ...args],
    { stdio: ['pipe', 'pipe', 'pipe'] },
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
    lines,
    next: () => {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(l);
      return Promise.race([new Promise<string>((r) => waiters.push(r)), exited]);
    },
  };
}

async function rawBull(
  ctx: BenchContext,
  cleanup: Cleanup,
  n: number,
  timeoutMs: number,
  feed = false,
) {
  const prefix = `bench-raw-pulled-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  // feed: each worker hands its jobs to a resident no-op server (raw-bull-worker.mjs).
  const feedDir = feed ? stateDir(ctx, 'pulled-tp-floor') : null;
  const queueName = 'pool.raw';
  cleanup.defer(`delete keys ${prefix}*`, () => deleteKeysWithPrefix(ctx.redisUrl, prefix));
  const queue = new Queue(queueName, { connection: bullConnection(ctx.redisUrl), prefix });
  cleanup.defer('close the raw queue', () => queue.close());
  await queue.waitUntilReady();
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  const children = Array.from({ length: WORKERS }, (_, i) =>
    spawnRawWorker(
      ctx,
      cleanup,
      [prefix, queueName, `raw-${i}`, ...(feedDir ? [feedDir] : [])],
      `raw-${i}`,
    ),
  );
  const withTimeout = <T>(p: Promise<T>, what: string, ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  };
  await withTimeout(
    Promise.all(children.map((c) => c.next())),
    'the raw BullMQ workers to start',
    30_000,
  );
  let ownCommands = 3;
  const pids = children.map((c) => c.child.pid as number);
  const cpuBefore = cpuOf(pids);
  const before = await redisCounters(probe);
  const t0 = nowMs();
  for (let i = 0; i < n; i += 1000) {
    await queue.addBulk(
      Array.from({ length: Math.min(1000, n - i) }, (_, k) => ({
        name: 'generate',
        data: { taskId: `raw.gen.s${String(i + k).padStart(5, '0')}`, runId: 'raw' },
        opts: {
          jobId: `raw.gen.s${String(i + k).padStart(5, '0')}`,
          attempts: 1,
          removeOnComplete: { age: 7 * 24 * 3600, count: 100_000 },
          removeOnFail: { age: 30 * 24 * 3600, count: 100_000 },
        },
      })),
    );
  }
  const completedKey = `${prefix}:${queueName}:completed`;
  const failedKey = `${prefix}:${queueName}:failed`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [done, failed] = await Promise.all([probe.zcard(completedKey), probe.zcard(failedKey)]);
    ownCommands += 2;
    if (failed > 0) throw new Error(`raw BullMQ: ${failed} jobs failed`);
    if (done >= n) break;
    if (Date.now() > deadline)
      throw new Error(`raw BullMQ: timed out with ${done} of ${n} jobs done`);
    await sleep(50);
  }
  const after = await redisCounters(probe);
  const workersCpu = cpuDelta(cpuBefore, cpuOf(pids));
  const reports = await withTimeout(
    Promise.all(
      children.map(async (c) => {
        c.child.stdin?.write('report\n');
        return JSON.parse(await c.next()) as {
          processed: number;
          firstStartMs: number | null;
          lastEndMs: number | null;
        };
      }),
    ),
    'the raw BullMQ workers to report',
    30_000,
  );
  const processed = reports.reduce((a, r) => a + r.processed, 0);
  const firstStart = Math.min(...reports.flatMap((r) => (r.firstStartMs ? [r.firstStartMs] : [])));
  const lastEnd = Math.max(...reports.flatMap((r) => (r.lastEndMs ? [r.lastEndMs] : [])));
  if (processed !== n) throw new Error(`raw BullMQ: ${processed} of ${n} jobs processed`);
  await queue.obliterate({ force: true }).catch(() => undefined);
  return {
    jobsPerSec: round((n * 1000) / (lastEnd - firstStart), 1),
    jobsPerSecFromAdd: round((n * 1000) / (lastEnd - t0), 1),
    wallMs: round(lastEnd - firstStart, 0),
    fromAddMs: round(lastEnd - t0, 0),
    firstJobStartMs: round(firstStart - t0, 0),
    jobsPerWorker: reports.map((r) => r.processed),
    redisPerJob: countersPer(before, after, n, { commands: ownCommands, reads: ownCommands }),
    cpuPerJob: {
      workerProcessMs: round((workersCpu.cpuS * 1000) / n, 3),
      processesSampled: workersCpu.processes,
    },
    workers: `${WORKERS} separate node processes (bench/payloads/raw-bull-worker.mjs), concurrency 1 each${feedDir ? ', each feeding a resident no-op server (noop-server.mjs) and renaming its output' : ''}`,
  };
}

export const pulledThroughput: Benchmark = {
  name: 'pulled-throughput',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 300 : 5000;
    ctx.note(`pulled-throughput: ${n} no-op shards through a pool of ${WORKERS} workers`);
    // Stoker is stopped (its pool workers gone) before the baseline runs.
    const phase = cleanup.child('stoker phase');
    const stoker = await throughStoker(ctx, phase, n, ctx.quick ? 180_000 : 1_200_000);
    await stopPhase(phase);
    ctx.note(`pulled-throughput: ${n} raw BullMQ jobs over ${WORKERS} worker processes`);
    const raw = cleanup.child('raw phase');
    const baseline = await rawBull(ctx, raw, n, ctx.quick ? 120_000 : 600_000);
    await stopPhase(raw);
    ctx.note(`pulled-throughput: the floor: raw BullMQ workers feeding resident no-op servers`);
    const floorPhase = cleanup.child('floor phase');
    const floor = await rawBull(ctx, floorPhase, n, ctx.quick ? 120_000 : 600_000, true);
    await stopPhase(floorPhase);
    const ratio = round(stoker.shardsPerSec / baseline.jobsPerSec, 3);
    return {
      unit: 'shards/s',
      shards: n,
      workers: WORKERS,
      payload: 'bench/payloads/noop-server.mjs (server mode)',
      shardsPerSec: stoker.shardsPerSec,
      stoker,
      baseline,
      ratio,
      ratioOf:
        'stoker shards/s (first shard start -> last completion) / raw BullMQ jobs/s (first processor start -> last end), 4 worker processes each',
      ratioFromSubmit: round(stoker.shardsPerSecFromSubmit / baseline.jobsPerSecFromAdd, 3),
      // What the resident-payload design allows here before any of stoker's bookkeeping.
      floor: {
        ...floor,
        ratioToRaw: round(floor.jobsPerSec / baseline.jobsPerSec, 3),
        stokerToFloor: round(stoker.shardsPerSec / floor.jobsPerSec, 3),
      },
      target: TARGET_RATIO,
      met: ratio >= TARGET_RATIO,
    };
  },
};
