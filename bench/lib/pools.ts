/**
 * Pulled execution on the bench's Redis: a whole stoker (as bench/lib/stoker.ts starts
 * one, default timings) whose local backend keeps pool worker logs in the benchmark's
 * own home, a Pipeline with one `generate` stage over a pool, Redis command counters,
 * and the bookkeeping that makes sure no pool worker or payload server outlives a
 * benchmark.
 *
 * Pool workers (`node dist/worker/entry.js worker --pool NAME`) get this process's
 * environment without STOKER_LOCK_DURATION_MS, STOKER_STALLED_INTERVAL_MS and
 * STOKER_LOG_LEVEL, so they run with the product's defaults whatever the shell sets.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { silentLogger } from '../../common/logger.js';
import { parseSpec } from '../../common/spec/load.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { isRunning, killGroup, killPid } from '../../common/proc.js';
import { startSystem, type System } from '../../orchestrator/system.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import {
  type BenchContext,
  type Cleanup,
  nowMs,
  procCpuSeconds,
  sleep,
  waitFor,
} from './harness.js';
import { benchSystemHandle, type BenchSystem } from './stoker.js';

/** A system started for a pool benchmark: the same handle as bench/lib/stoker.ts's. */
export type PoolBench = BenchSystem;

/** The bench process's environment, less the settings that would change the product's timings. */
export function workerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.STOKER_LOCK_DURATION_MS;
  delete env.STOKER_STALLED_INTERVAL_MS;
  delete env.STOKER_LOG_LEVEL;
  return env;
}

export async function startPoolSystem(
  ctx: BenchContext,
  cleanup: Cleanup,
  label: string,
): Promise<PoolBench> {
  const prefix = `bench-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
  const home = mkdtempSync(join(ctx.tmpRoot, `${label}-home-`));
  cleanup.defer(`remove ${home}`, () => rmSync(home, { recursive: true, force: true }));
  cleanup.defer(`delete keys ${prefix}*`, () => deleteKeysWithPrefix(ctx.redisUrl, prefix));
  const sys = await startSystem({
    redisUrl: ctx.redisUrl,
    prefix,
    log: silentLogger(),
    stokerCommand: ctx.stokerCommand,
    workerEnv: workerEnv(),
    home,
  });
  // After the stop: whatever pool worker is still alive (a drain that hangs) is killed.
  cleanup.defer(`kill leftover pool workers ${label}`, () => killPoolWorkers(sys));
  cleanup.defer(`stop stoker ${label}`, () => sys.stop('force'));
  return benchSystemHandle(sys, prefix, home);
}

/** `count` JSONL items {"id": "item-NNNNNN"} written to `file`; returns their ids in order. */
export function writeItems(file: string, count: number): string[] {
  const ids = Array.from({ length: count }, (_, i) => `item-${String(i).padStart(6, '0')}`);
  writeFileSync(file, ids.map((id) => `${JSON.stringify({ id })}\n`).join(''));
  return ids;
}

export interface GenerateSpec {
  name: string;
  inputFile: string;
  shardSize: number;
  pool: { name: string; replicas: number; maxReplicas: number; minReplicas?: number };
  command: string[];
  env?: Record<string, string>;
  /** Attempts per shard; the stage's default when left out. */
  attempts?: number;
}

/** A Pipeline with one `generate` stage over a pool, through the real spec loader. */
export function generatePipeline(g: GenerateSpec): NormalizedSpec {
  return parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: g.name },
      spec: {
        stages: [
          {
            name: 'gen',
            kind: 'generate',
            input: { file: g.inputFile, shardSize: g.shardSize },
            pool: { minReplicas: 0, ...g.pool },
            failurePolicy: { maxFailedShards: 0 },
            ...(g.attempts === undefined ? {} : { retry: { attempts: g.attempts } }),
            terminationGracePeriod: '5s',
            payload: { command: g.command, env: g.env ?? {} },
          },
        ],
      },
    }),
  );
}

export const payloadScript = (ctx: BenchContext, name: string): string =>
  join(ctx.root, 'bench', 'payloads', name);

/** A state directory for a payload server fixture (its loads.jsonl). */
export function stateDir(ctx: BenchContext, label: string): string {
  return mkdtempSync(join(ctx.tmpRoot, `${label}-state-`));
}

/** The pids of the payload servers that loaded (one line each in loads.jsonl). */
export function readLoads(dir: string): number[] {
  let text: string;
  try {
    text = readFileSync(join(dir, 'loads.jsonl'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { pid: number }).pid);
}

/**
 * Kill the payload servers listed in `dir`/loads.jsonl that still run `script` (a
 * server whose worker died gets EOF and exits by itself; this covers one that does not).
 */
export function killStrayServers(dir: string, script: string): number {
  let killed = 0;
  for (const pid of readLoads(dir)) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.includes(script) || !isRunning(pid)) continue;
    if (killPid(pid, 'SIGKILL')) killed++;
  }
  return killed;
}

interface PoolProc {
  workerId: string;
  pid: number;
  pidStartTime: string;
  /** When the backend spawned it (ISO). */
  startedAt: string;
  draining: boolean;
}

/** The pool's worker processes as the local backend recorded them. */
export async function poolProcs(sys: System, pool: string): Promise<PoolProc[]> {
  const raw = await sys.redis.hgetall(sys.keys.poolProcs(pool));
  return Object.entries(raw).map(([workerId, v]) => {
    const p = JSON.parse(v) as {
      pid: number;
      pidStartTime?: string;
      startedAt?: string;
      draining?: boolean;
    };
    return {
      workerId,
      pid: p.pid,
      pidStartTime: p.pidStartTime ?? '',
      startedAt: p.startedAt ?? '',
      draining: p.draining === true,
    };
  });
}

/** Live (not zombie) worker processes of the pool. */
export async function livePoolProcs(sys: System, pool: string): Promise<PoolProc[]> {
  return (await poolProcs(sys, pool)).filter((p) => isRunning(p.pid, p.pidStartTime || null));
}

/** Wait until no worker process of the pool is alive (the controller scales an unused pool to 0). */
export async function waitPoolGone(sys: System, pool: string, timeoutMs: number): Promise<number> {
  const t0 = nowMs();
  await waitFor(
    `the workers of pool ${pool} to exit`,
    async () => ((await livePoolProcs(sys, pool)).length === 0 ? true : null),
    timeoutMs,
    50,
  );
  return nowMs() - t0;
}

async function killPoolWorkers(sys: System): Promise<void> {
  const r = new Redis(sys.redis.options);
  r.on('error', () => undefined);
  try {
    for (const name of await r.smembers(sys.keys.pools())) {
      const raw = await r.hgetall(sys.keys.poolProcs(name));
      for (const v of Object.values(raw)) {
        const p = JSON.parse(v) as { pid: number; pidStartTime?: string };
        if (isRunning(p.pid, p.pidStartTime || null)) killGroup(p.pid, 'SIGKILL');
      }
    }
  } finally {
    r.disconnect();
  }
  await sleep(0);
}

// ---------------------------------------------------------------------------------------
// Redis counters

export interface RedisCounters {
  /** Calls per command (INFO commandstats), commands run inside Lua scripts included. */
  calls: Record<string, number>;
  /** total_commands_processed. */
  commands: number;
  /** total_reads_processed: read events on client sockets, about one per request round trip. */
  reads: number;
  /** used_cpu_user + used_cpu_sys of the redis-server, seconds. */
  cpuS: number;
}

export async function redisCounters(redis: Redis): Promise<RedisCounters> {
  const [cmdstats, stats, cpu] = await Promise.all([
    redis.info('commandstats'),
    redis.info('stats'),
    redis.info('cpu'),
  ]);
  const calls: Record<string, number> = {};
  for (const m of cmdstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    calls[m[1] as string] = Number(m[2]);
  const stat = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
  const cpuStat = (name: string) =>
    Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  return {
    calls,
    commands: stat('total_commands_processed'),
    reads: stat('total_reads_processed'),
    cpuS: cpuStat('used_cpu_user') + cpuStat('used_cpu_sys'),
  };
}

/**
 * Per unit of work between two snapshots: commands, reads and the top commands, less
 * `own` commands (and as many reads) the bench itself sent meanwhile (its polling, the
 * two INFO calls).
 */
export function countersPer(
  before: RedisCounters,
  after: RedisCounters,
  units: number,
  own: { commands: number; reads: number },
  top = 12,
): {
  commandsPerUnit: number;
  readsPerUnit: number;
  redisCpuMsPerUnit: number;
  topCommandsPerUnit: Record<string, number>;
} {
  const r = (v: number) => Math.round(v * 100) / 100;
  const deltas = Object.entries(after.calls)
    .map(([cmd, n]) => [cmd, n - (before.calls[cmd] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, top);
  return {
    commandsPerUnit: r((after.commands - before.commands - own.commands) / units),
    readsPerUnit: r((after.reads - before.reads - own.reads) / units),
    redisCpuMsPerUnit: Math.round(((after.cpuS - before.cpuS) * 1e6) / units) / 1000,
    topCommandsPerUnit: Object.fromEntries(deltas.map(([c, n]) => [c, r(n / units)])),
  };
}

/** A dedicated connection for the bench's own reads (its commands are counted by the caller). */
export async function benchConnection(cleanup: Cleanup, url: string): Promise<Redis> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  await r.connect();
  cleanup.defer('close the bench connection', () => r.disconnect());
  return r;
}

/**
 * When each shard's attempt began, in ms (Redis server clock): the id of the first entry
 * of the task's event stream, the `attempt` event the worker's reporter writes as the
 * shard starts (right after its Running status). The task status cannot tell: the
 * worker's final status write drops startedAt (see the bench notes).
 */
export async function shardStartTimes(
  redis: Redis,
  sys: System,
  taskIds: readonly string[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let i = 0; i < taskIds.length; i += 1000) {
    const chunk = taskIds.slice(i, i + 1000);
    const pipe = redis.pipeline();
    for (const id of chunk) pipe.xrange(sys.keys.taskEvents(id), '-', '+', 'COUNT', 1);
    const res = (await pipe.exec()) ?? [];
    res.forEach(([, v], k) => {
      const first = (v as Array<[string, string[]]> | null)?.[0]?.[0];
      if (first) out.set(chunk[k] as string, Number(first.split('-')[0]));
    });
  }
  return out;
}

/** CPU seconds of each of these processes now (null: gone). */
export function cpuOf(pids: readonly number[]): Map<number, number | null> {
  return new Map(pids.map((pid) => [pid, procCpuSeconds(pid)] as const));
}

/** CPU seconds used between two samples by the processes alive at both. */
export function cpuDelta(
  before: Map<number, number | null>,
  after: Map<number, number | null>,
): { cpuS: number; processes: number } {
  let cpuS = 0;
  let processes = 0;
  for (const [pid, a] of after) {
    const b = before.get(pid);
    if (a === null || b === null || b === undefined) continue;
    cpuS += a - b;
    processes++;
  }
  return { cpuS, processes };
}
