/**
 * The local backend: each unit is a `stoker worker --task ID --unit NAME --attempt N`
 * process on this machine, started in its own process group and detached, so that a
 * controller that dies (kill -9) leaves its workers running and a restarted controller
 * re-attaches to them through the unit record in Redis:
 *
 *   unit:{name}  name taskId attempt backend launchedAt   (this backend, before spawn)
 *                pid pidStartTime logFile                 (this backend, after spawn)
 *                payloadPgid                              (the worker, after it spawns the payload)
 *                exitCode signal finishedAt stderrTail reason terminated (the worker, at its end;
 *                                                          this backend if the worker died)
 *
 * A worker that dies without writing its result (kill -9, OOM killer) is "WorkerLost":
 * its payload's process group is killed so nothing runs on without supervision, and the
 * attempt fails as retryable.
 *
 * A worker's environment: its environ holds only the payload allowlist, what node reads
 * at start (NODE_OPTIONS...), stoker's plain settings (STOKER_PREFIX, STOKER_HOME,
 * STOKER_LOG_LEVEL, STOKER_*_MS) and STOKER_SECRETS_FD=3, none that looks secret; the
 * Redis URL and the rest of the controller's environment (what secretEnv `fromEnv`
 * copies) go on a pipe at descriptor 3, written and closed right after the spawn. A
 * payload can read its worker's /proc/PID/environ, not that pipe. The exact list and the
 * spawn: worker-process.ts.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Keys } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { nowIso } from '../../common/model.js';
import { stokerBin } from '../../common/paths.js';
import { randomBytes } from 'node:crypto';
import {
  taskWorkerArgs,
  unitState,
  type Backend,
  type LaunchRequest,
  type PoolSpec,
  type UnitState,
} from './types.js';
import { groupAlive, isRunning, killGroup, killPid, procStartTime } from '../../common/proc.js';
import { stopWorker } from './local-terminate.js';
import { spawnWorkerProcess } from './worker-process.js';
import { WorkerState } from '../../common/worker-state.js';
import { within } from '../../common/timers.js';
import { drainOrder } from '../autoscale/drain-order.js';

export interface LocalBackendOptions {
  redis: Redis;
  keys: Keys;
  /** The Redis URL the workers connect to (passed in their environment, never to payloads). */
  redisUrl: string;
  log: Logger;
  /** Environment for worker processes (defaults to this process's). */
  env?: NodeJS.ProcessEnv;
  /** Command that starts stoker: [node, bin/stoker.js] by default. */
  stokerCommand?: string[];
  pollMs?: number;
  clock?: () => number;
  /** stoker home: pool worker logs go to `${home}/pools/NAME/`. */
  home?: string;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/** A unit recorded this long ago with no worker pid was never spawned (observe()). */
const LOST_LAUNCH_MS = 30_000;
const RECORD_READ_MS = 2000; // terminate's wait for a record, when it knows the pid itself

export class LocalBackend implements Backend {
  readonly name = 'local';
  private readonly children = new Map<string, ChildProcess>();
  private readonly pollMs: number;
  private readonly clock: () => number;
  /** Units whose spawn this process has begun and not yet recorded. */
  private readonly launching = new Set<string>();

  constructor(private readonly opts: LocalBackendOptions) {
    this.pollMs = opts.pollMs ?? 200;
    this.clock = opts.clock ?? Date.now;
  }

  async launch(req: LaunchRequest): Promise<{ attached: boolean }> {
    const key = this.opts.keys.unit(req.unitName);
    const existing = await this.opts.redis.hgetall(key);
    if (existing.pid) return { attached: true };
    // Claimed before a crash but never spawned (or new): spawn it now. Only the leader
    // dispatches, so there is no race with another controller here.
    const logDir = join(req.runDir, 'logs');
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const workerLog = join(logDir, `${req.taskId}.attempt-${req.attempt}.worker.log`);
    this.launching.add(req.unitName);
    try {
      await this.spawnUnit(key, req, workerLog);
    } finally {
      this.launching.delete(req.unitName);
    }
    return { attached: false };
  }

  /** Record the unit, spawn its worker, record the worker's pid. */
  private async spawnUnit(key: string, req: LaunchRequest, workerLog: string): Promise<void> {
    await this.opts.redis.hset(key, {
      name: req.unitName,
      taskId: req.taskId,
      attempt: String(req.attempt),
      backend: this.name,
      launchedAt: nowIso(this.clock),
    });
    const { child, pid } = await this.spawnWorker(taskWorkerArgs(req), workerLog);
    // Kept until observe() has read the exit status (Node reaps the process).
    this.children.set(req.unitName, child);
    await this.opts.redis.hset(key, {
      pid: String(pid),
      pidStartTime: procStartTime(pid) ?? '',
      workerLog,
    });
    this.opts.log.info({ unit: req.unitName, pid }, 'launched worker process');
  }

  async observe(unitName: string): Promise<UnitState> {
    const key = this.opts.keys.unit(unitName);
    const u = await this.opts.redis.hgetall(key);
    if (!u.launchedAt) return unitState('NotFound');
    if (u.finishedAt) return finishedState(u);
    const pid = u.pid ? Number(u.pid) : null;
    if (pid === null) {
      // Being launched: by this process (its spawn is under way), or by a controller that
      // died between recording the unit and its pid. The worker records its own pid as
      // it starts (worker/task-worker.ts), so a unit still without one LOST_LAUNCH_MS
      // later was never spawned: NotFound, and the dispatcher launches it again.
      const since = this.clock() - Date.parse(u.launchedAt);
      if (this.launching.has(unitName) || !(since > LOST_LAUNCH_MS)) return unitState('Running');
      this.opts.log.warn(
        { unit: unitName },
        'a unit recorded but never spawned: launching it again',
      );
      return unitState('NotFound');
    }
    const child = this.children.get(unitName);
    const alive = child
      ? child.exitCode === null && child.signalCode === null && isRunning(pid)
      : isRunning(pid, u.pidStartTime || null);
    if (alive) return { ...unitState('Running'), logFile: u.logFile ?? null };
    // The worker is gone. It writes its result before exiting; read once more in case
    // we raced with that write.
    const again = await this.opts.redis.hgetall(key);
    if (again.finishedAt) return finishedState(again);
    const signal = child?.signalCode ?? null;
    const exitCode = child?.exitCode ?? null;
    // Nothing may run on unsupervised: kill the payload's group.
    const pgid = again.payloadPgid ? Number(again.payloadPgid) : null;
    if (pgid && groupAlive(pgid)) {
      killGroup(pgid, 'SIGKILL');
      this.opts.log.warn({ unit: unitName, pgid }, 'worker died; killed its payload process group');
      // Report the attempt finished only once its payload is gone, so a retry never
      // overlaps with it.
      const until = this.clock() + 10_000;
      while (isRunning(pgid) && this.clock() < until) await sleep(50);
    }
    const message = `the worker process (pid ${pid}) died without reporting a result${signal ? ` (${signal})` : exitCode !== null ? ` (exit ${exitCode})` : ''}`;
    await this.opts.redis.hset(key, {
      finishedAt: nowIso(this.clock),
      exitCode: exitCode === null ? '' : String(exitCode),
      signal: signal ?? (exitCode === null ? 'SIGKILL' : ''),
      reason: 'WorkerLost',
      message,
      stderrTail: '[]',
    });
    this.children.delete(unitName);
    return finishedState(await this.opts.redis.hgetall(key));
  }

  async wait(unitName: string, signal?: AbortSignal): Promise<UnitState> {
    // Poll, but wake at once when our own child exits (it wrote its result just before).
    // One exit listener per wait, not one per poll.
    const child = this.children.get(unitName);
    const exited =
      child && child.exitCode === null && child.signalCode === null
        ? new Promise<void>((r) => child.once('exit', () => r()))
        : null;
    for (;;) {
      const state = await this.observe(unitName);
      if (state.phase !== 'Running' || signal?.aborted) return state;
      await Promise.race([sleep(this.pollMs, signal), ...(exited ? [exited] : [])]);
    }
  }

  async terminate(
    unitName: string,
    opts: { graceSeconds: number; force?: boolean },
  ): Promise<void> {
    // Our own worker's pid is known without Redis (out of reach: why a controller stops).
    const child = this.children.get(unitName);
    const record = this.opts.redis.hgetall(this.opts.keys.unit(unitName));
    const read = child?.pid === undefined ? await record : await within(record, RECORD_READ_MS);
    const u: Record<string, string> = read ?? { pid: String(child?.pid ?? '') };
    if (!u.pid || u.finishedAt) return;
    stopWorker(
      {
        unit: unitName,
        pid: Number(u.pid),
        pidStartTime: u.pidStartTime || null,
        pgid: u.payloadPgid ? Number(u.payloadPgid) : null,
        recordRead: read !== undefined,
      },
      { ...opts, clock: this.clock, log: this.opts.log },
    );
  }

  async ensurePool(pool: PoolSpec, replicas: number): Promise<void> {
    const { redis, keys } = this.opts;
    const procs = await this.poolProcs(pool.name);
    // Forget workers that are gone (and their self-reported state).
    const dead = procs.filter((p) => !isRunning(p.pid, p.pidStartTime || null));
    if (dead.length > 0) {
      await redis
        .multi()
        .hdel(keys.poolProcs(pool.name), ...dead.map((p) => p.workerId))
        .hdel(keys.poolWorkers(pool.name), ...dead.map((p) => p.workerId))
        .exec();
    }
    const active = procs.filter((p) => !dead.includes(p) && !p.draining);
    if (active.length < replicas) {
      for (let i = active.length; i < replicas; i++) await this.startPoolWorker(pool.name);
    } else if (active.length > replicas) {
      // Which ones: autoscale/drain-order.ts (idle and cold first; a busy one last, and it
      // finishes its shard).
      const states = new Map<string, WorkerState>();
      for (const [id, raw] of Object.entries(await redis.hgetall(keys.poolWorkers(pool.name)))) {
        const parsed = WorkerState.safeParse(JSON.parse(raw));
        if (parsed.success) states.set(id, parsed.data);
      }
      const candidates = active.map((p) => {
        const w = states.get(p.workerId);
        return {
          id: p.workerId,
          proc: p,
          state: w?.state ?? null,
          shardsDone: w?.shardsDone ?? 0,
          shardSinceMs: w?.shardSince ? Date.parse(w.shardSince) : null,
          startedMs: Date.parse(p.startedAt) || 0,
        };
      });
      for (const v of drainOrder(candidates, active.length - replicas)) {
        await redis.hset(
          keys.poolProcs(pool.name),
          v.id,
          JSON.stringify({ ...v.proc, workerId: undefined, draining: true }),
        );
        killPid(v.proc.pid, 'SIGTERM'); // drain: finish the current shard, then exit
        this.opts.log.info(
          { pool: pool.name, workerId: v.id, state: v.state, shardsDone: v.shardsDone },
          'scaling down: draining worker',
        );
      }
    }
  }

  /**
   * Stop every pool worker and wait for them: SIGTERM drains (the current shard
   * finishes); whatever still runs after `drainMs` is killed with its process group, so
   * no worker outlives the Redis it talks to (an embedded one is stopped next).
   */
  async stopPools(opts: { force?: boolean; drainMs?: number }): Promise<void> {
    const { redis, keys } = this.opts;
    const running: Array<{ pid: number; start: string | null }> = [];
    for (const name of await redis.smembers(keys.pools())) {
      for (const p of await this.poolProcs(name)) {
        if (!isRunning(p.pid, p.pidStartTime || null)) continue;
        running.push({ pid: p.pid, start: p.pidStartTime || null });
        if (opts.force) killGroup(p.pid, 'SIGKILL');
        else killPid(p.pid, 'SIGTERM');
      }
    }
    const deadline = this.clock() + (opts.force ? 5000 : (opts.drainMs ?? 60_000));
    while (running.some((p) => isRunning(p.pid, p.start)) && this.clock() < deadline)
      await sleep(100);
    for (const p of running) {
      if (isRunning(p.pid, p.start)) {
        this.opts.log.warn({ pid: p.pid }, 'pool worker did not drain in time; killed');
        killGroup(p.pid, 'SIGKILL');
      }
    }
  }

  private async poolProcs(name: string): Promise<
    Array<{
      workerId: string;
      pid: number;
      pidStartTime: string;
      startedAt: string;
      draining: boolean;
    }>
  > {
    const raw = await this.opts.redis.hgetall(this.opts.keys.poolProcs(name));
    return Object.entries(raw).map(([workerId, v]) => ({
      workerId,
      ...(JSON.parse(v) as {
        pid: number;
        pidStartTime: string;
        startedAt: string;
        draining: boolean;
      }),
    }));
  }

  private async startPoolWorker(pool: string): Promise<void> {
    const workerId = `${pool}-${randomBytes(3).toString('hex')}`;
    const logDir = join(this.opts.home ?? join(process.cwd(), '.stoker'), 'pools', pool);
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const { pid } = await this.spawnWorker(
      ['--pool', pool, '--worker-id', workerId],
      join(logDir, `${workerId}.log`),
      this.opts.home ? { STOKER_HOME: this.opts.home } : {},
    );
    await this.opts.redis.hset(
      this.opts.keys.poolProcs(pool),
      workerId,
      JSON.stringify({
        pid,
        pidStartTime: procStartTime(pid) ?? '',
        startedAt: nowIso(this.clock),
        draining: false,
      }),
    );
    this.opts.log.info({ pool, workerId, pid }, 'started pool worker');
  }

  /** Start `stoker worker ARGS` (worker-process.ts), `env` over the controller's. */
  private spawnWorker(
    args: string[],
    logFile: string,
    env: Record<string, string> = {},
  ): Promise<{ child: ChildProcess; pid: number }> {
    return spawnWorkerProcess({
      command: [...(this.opts.stokerCommand ?? [process.execPath, stokerBin()]), 'worker', ...args],
      logFile,
      env: {
        ...(this.opts.env ?? process.env),
        STOKER_REDIS_URL: this.opts.redisUrl,
        STOKER_PREFIX: this.opts.keys.prefix,
        ...env,
      },
      log: this.opts.log,
    });
  }

  async close(): Promise<void> {
    this.children.clear();
  }
}

function finishedState(u: Record<string, string>): UnitState {
  const exitCode = u.exitCode === undefined || u.exitCode === '' ? null : Number(u.exitCode);
  const signal = u.signal ? u.signal : null;
  let stderrTail: string[] = [];
  try {
    stderrTail = u.stderrTail ? (JSON.parse(u.stderrTail) as string[]) : [];
  } catch {
    stderrTail = [];
  }
  return {
    phase: exitCode === 0 && !signal ? 'Succeeded' : 'Failed',
    exitCode,
    signal,
    reason: u.reason && u.reason !== '' ? u.reason : null,
    message: u.message ?? null,
    stderrTail,
    logFile: u.logFile ?? null,
  };
}
