/**
 * One run of no-op shards through a stoker pool, measured (pulled-throughput,
 * pulled-50ms): a Pipeline with one `generate` stage, an input JSONL of N lines,
 * shardSize 1 (N shards, one attempt each), a pool of W workers (product lock and stall
 * settings) running a server-mode payload (bench/payloads/noop-server.mjs).
 *
 *   1. the system, the input and the spec; submit
 *   2. poll the stage's done and failed sets until all N are in; once every worker has
 *      finished a shard (start-up behind them), sample the CPU of the pool's workers,
 *      their servers and this process (CpuWindow)
 *   3. the last completions, the Redis counters, the run's end
 *   4. after the fact: every shard Succeeded with its output there; the clocks
 *
 * Clocks: first shard start = the earliest first entry of a shard's event stream (the
 * `attempt` event the worker writes as it begins the shard; with a shard in hand that is
 * while the worker's previous shard still runs, so shardInWorkerMs then spans about two
 * shards); last completion = the newest score of
 * the pool's completions zset (the worker's clock at its ZADD). Redis work per shard is
 * counted from submit to the last outcome on the bench's own redis-server, the bench's
 * own polling subtracted.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { poolQueueName, shardTaskId } from '../../common/keys.js';
import {
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  sleep,
  waitFor,
} from './harness.js';
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
  type PoolBench,
} from './pools.js';

export interface PoolRunOptions {
  /** Names the state directory, the spec and the notes. */
  label: string;
  n: number;
  workers: number;
  /** A payload of bench/payloads/ in server mode. */
  script: string;
  env?: Record<string, string>;
  timeoutMs: number;
}

interface Setup {
  b: PoolBench;
  probe: Redis;
  dir: string;
  pool: string;
  o: PoolRunOptions;
}

export async function poolRun(ctx: BenchContext, cleanup: Cleanup, o: PoolRunOptions) {
  // 1. The system, the input and the spec.
  const dir = stateDir(ctx, o.label);
  cleanup.defer('kill stray servers', () => void killStrayServers(dir, o.script));
  const b = await startPoolSystem(ctx, cleanup, o.label);
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  const input = join(dir, 'items.jsonl');
  writeItems(input, o.n);
  const pool = `bench-${o.label}-${Math.random().toString(36).slice(2, 8)}`;
  const spec = generatePipeline({
    name: `bench-${o.label}`,
    inputFile: input,
    shardSize: 1,
    pool: { name: pool, replicas: o.workers, maxReplicas: o.workers },
    command: [process.execPath, payloadScript(ctx, o.script)],
    env: { STATE_DIR: dir, ...o.env },
    attempts: 1,
  });
  const s: Setup = { b, probe, dir, pool, o };
  const passesBefore = b.sys.controller.stats.passes;
  const before = await redisCounters(probe);
  const cpu0 = process.cpuUsage();
  const { runId, submittedAt } = await b.submit(spec);
  // 2. Until every shard has an outcome.
  const followed = await follow(ctx, s, runId);
  const cpuPerShard = followed.window?.perShard(o.n) ?? null;
  // 3. The last completions (the ZADD follows the outcome by a round trip or two).
  const completionsKey = b.sys.keys.poolCompletions(pool);
  await waitFor(
    'the last completions',
    async () => ((await probe.zcard(completionsKey)) >= o.n ? true : null),
    10_000,
    5,
  );
  const own = followed.ownCommands;
  const redisPerShard = countersPer(before, await redisCounters(probe), o.n, {
    commands: own,
    reads: own,
  });
  const cpu = process.cpuUsage(cpu0);
  const passes = b.sys.controller.stats.passes - passesBefore;
  const run = await b.waitTerminal(runId, 60_000, 20);
  const runSeenMs = nowMs() - submittedAt;
  if (run.phase !== 'Succeeded') throw new Error(`run ${runId} ended ${run.phase}: ${run.message}`);
  // 4. After the fact.
  const facts = await afterTheFact(s, runId, submittedAt, followed.window);
  return {
    ...facts,
    runSucceededMs: run.finishedAt ? round(Date.parse(run.finishedAt) - submittedAt, 0) : null,
    runSucceededSeenMs: round(runSeenMs, 0),
    redisPerShard,
    cpuPerShard,
    controllerPasses: passes,
    controllerProcessCpuS: round((cpu.user + cpu.system) / 1e6, 2),
    serverLoads: readLoads(dir).length,
    poolScaledToZeroMs: round(await waitPoolGone(b.sys, pool, 60_000), 0),
  };
}

async function follow(
  ctx: BenchContext,
  s: Setup,
  runId: string,
): Promise<{ window: CpuWindow | null; ownCommands: number }> {
  const { b, probe, o } = s;
  const doneKey = b.sys.keys.stageShardsDone(runId, 'gen');
  const failedKey = b.sys.keys.stageShardsFailed(runId, 'gen');
  let ownCommands = 3; // the INFO calls of the first snapshot
  const deadline = Date.now() + o.timeoutMs;
  let lastNote = Date.now();
  let window = null as CpuWindow | null;
  for (;;) {
    const res = await probe.multi().scard(doneKey).scard(failedKey).exec();
    ownCommands += 4;
    const succeeded = Number(res?.[0]?.[1] ?? 0);
    const failed = Number(res?.[1]?.[1] ?? 0);
    const finished = succeeded + failed;
    if (failed > 0) {
      const run = await b.waitTerminal(runId, 60_000, 100).catch(() => null);
      throw new Error(
        `${failed} shard(s) failed (${succeeded} succeeded); run ${run?.phase ?? '?'}: ${run?.message ?? ''}`,
      );
    }
    // The pool is scaled to 0 (servers stopped) within ms of the last outcome: keep the
    // last CPU reading of every sampled process.
    window?.sample();
    if (finished >= o.n) return { window, ownCommands };
    if (window === null && succeeded >= o.workers) {
      window = await CpuWindow.open(s, succeeded);
      ownCommands += 2; // the pool's processes and its workers' states
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${o.timeoutMs} ms: ${finished} of ${o.n} shards finished`);
    if (Date.now() - lastNote > 15_000) {
      ctx.note(`${o.label}: ${finished}/${o.n} shards done`);
      lastNote = Date.now();
    }
    await sleep(50);
  }
}

/**
 * CPU of the pool's workers, their servers and this process, from the moment every
 * worker has finished a shard (their start-up is behind them) to the last shard.
 */
class CpuWindow {
  private readonly last = new Map<number, number>();

  private constructor(
    readonly spawned: [number, number] | null,
    readonly at: number,
    readonly done: number,
    private readonly workers: Map<number, number | null>,
    private readonly servers: Map<number, number | null>,
    private readonly controller: NodeJS.CpuUsage,
  ) {}

  /** A window once every worker and server is up and has done a shard, else null. */
  static async open(s: Setup, succeeded: number): Promise<CpuWindow | null> {
    const procs = await livePoolProcs(s.b.sys, s.pool);
    const servers = readLoads(s.dir);
    const active = await s.probe.hvals(s.b.sys.keys.poolWorkers(s.pool));
    const shardsDone = active
      .map((w) => (JSON.parse(w) as { shardsDone?: number }).shardsDone ?? 0)
      .filter((d) => d > 0).length;
    const w = s.o.workers;
    if (procs.length !== w || servers.length !== w || shardsDone !== w) return null;
    const spawned = procs.map((p) => Date.parse(p.startedAt)).filter(Number.isFinite);
    return new CpuWindow(
      spawned.length > 0 ? [Math.min(...spawned), Math.max(...spawned)] : null,
      Date.now(),
      succeeded,
      cpuOf(procs.map((p) => p.pid)),
      cpuOf(servers),
      process.cpuUsage(),
    );
  }

  sample(): void {
    this.latest([...this.workers.keys(), ...this.servers.keys()]);
  }

  perShard(n: number) {
    const w = cpuDelta(this.workers, this.latest([...this.workers.keys()]));
    const sv = cpuDelta(this.servers, this.latest([...this.servers.keys()]));
    const c = process.cpuUsage(this.controller);
    const shards = n - this.done;
    const ms = (v: number) => round((v * 1000) / shards, 3);
    return {
      shards,
      poolWorkerMs: ms(w.cpuS),
      payloadServerMs: ms(sv.cpuS),
      controllerProcessMs: ms((c.user + c.system) / 1e6),
      processesSampled: { workers: w.processes, servers: sv.processes },
    };
  }

  private latest(pids: number[]): Map<number, number | null> {
    for (const [pid, v] of cpuOf(pids)) if (v !== null) this.last.set(pid, v);
    return new Map(pids.map((pid) => [pid, this.last.get(pid) ?? null] as const));
  }
}

/** Every shard checked (Succeeded, output there) and the clocks. */
async function afterTheFact(
  s: Setup,
  runId: string,
  submittedAt: number,
  window: CpuWindow | null,
) {
  const { b, probe, o } = s;
  const completions = await probe.zrange(
    b.sys.keys.poolCompletions(s.pool),
    '0',
    '-1',
    'WITHSCORES',
  );
  const scores: number[] = [];
  const members: string[] = [];
  for (let i = 0; i < completions.length; i += 2) {
    members.push(completions[i] as string);
    scores.push(Number(completions[i + 1]));
  }
  const lastDone = Math.max(...scores);
  const ids = Array.from({ length: o.n }, (_, i) => shardTaskId(runId, 'gen', i));
  const statuses = await b.sys.store.getTaskStatuses(ids);
  const startedAt = await shardStartTimes(probe, b.sys, ids);
  if (startedAt.size !== o.n)
    throw new Error(`only ${startedAt.size} of ${o.n} shards have a start`);
  const firstStart = Math.min(...startedAt.values());
  const outcomes = await b.sys.store.shardOutcomes(runId, 'gen');
  const shardMs = outcomes.flatMap((x) => {
    const t = startedAt.get(x.taskId);
    return t === undefined ? [] : [Date.parse(x.finishedAt) - t];
  });
  const succeeded = outcomes.filter((x) => x.phase === 'Succeeded');
  const missing = succeeded.filter((x) => !x.output || !existsSync(x.output)).length;
  if (succeeded.length !== o.n || missing > 0)
    throw new Error(`${succeeded.length} of ${o.n} shards succeeded, ${missing} outputs missing`);
  // Where the time before the first shard goes: the controller splits the input, creates
  // the tasks and enqueues them all (the last job's BullMQ timestamp), then sizes the pool.
  const lastJob = await probe.hget(
    `${b.sys.keys.bullPrefix}:${poolQueueName(s.pool)}:${ids[o.n - 1] as string}`,
    'timestamp',
  );
  const wallMs = lastDone - firstStart;
  const fromSubmitMs = lastDone - submittedAt;
  return {
    shardsPerSec: round((o.n * 1000) / wallMs, 1),
    shardsPerSecFromSubmit: round((o.n * 1000) / fromSubmitMs, 1),
    // From the moment every worker had finished a shard (no start-up left) to the end.
    steadyShardsPerSec: window
      ? round(((o.n - window.done) * 1000) / (lastDone - window.at), 1)
      : null,
    wallMs: round(wallMs, 0),
    fromSubmitMs: round(fromSubmitMs, 0),
    firstShardStartMs: round(firstStart - submittedAt, 0),
    beforeFirstShard: {
      allShardsQueuedMs: lastJob ? round(Number(lastJob) - submittedAt, 0) : null,
      workersSpawnedMs: window?.spawned
        ? window.spawned.map((t) => round(t - submittedAt, 0))
        : null,
      firstShardStartMs: round(firstStart - submittedAt, 0),
    },
    shardInWorkerMsP50: shardMs.length > 0 ? round(median(shardMs), 0) : null,
    shardInWorkerMsMax: shardMs.length > 0 ? Math.max(...shardMs) : null,
    // Final shard statuses that lost the startedAt of their Running write.
    finalStatusesWithoutStartedAt: Object.values(statuses).filter(
      (x) => x.finishedAt && !x.startedAt,
    ).length,
    // A member is `${taskId}:${attempt}:${serviceMs}`.
    completionsNotFirstAttempt: members.filter((m) => !/:1(:\d+)?$/.test(m)).length,
  };
}
