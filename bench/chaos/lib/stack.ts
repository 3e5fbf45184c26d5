/**
 * One chaos scenario's system, all real processes: a private redis-server (restartable
 * on its port, AOF when asked), `stoker up` started as the command a user runs
 * (`node bin/stoker.js up`, which starts its pool workers and task workers as its own
 * children), and a probe connection for the scenario's reads and faults.
 *
 * Timings are shortened the way the integration tests shorten them (leader TTL 2 s, job
 * lock 3 s, stalled check 1 s, resync 0.5 s): a killed worker's job comes back after
 * seconds, not the product's 30 s. Every process goes on the scenario's cleanup stack as
 * soon as it exists; pool workers and task workers (their own process groups) are
 * killed from the backend's records at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { makeKeys, type Keys } from '../../../common/keys.js';
import { isRunning, killGroup } from '../../../common/proc.js';
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import {
  scratchArgs,
  startRedisServer,
  stopRedisServer,
  waitForExit,
} from '../../../orchestrator/redis-server.js';
import type { RunRecord } from '../../../orchestrator/run-record.js';
import { RunStore } from '../../../orchestrator/store.js';
import { type Cleanup, sleep, waitFor } from '../../lib/harness.js';

export interface ChaosContext {
  quick: boolean;
  /** The repository root. */
  root: string;
  /** A temp directory for this invocation, removed at the end. */
  tmpRoot: string;
  note(message: string): void;
}

/** The lock TTLs every scenario runs with (ms). */
export const TIMINGS = {
  STOKER_LEADER_TTL_MS: '2000',
  STOKER_LOCK_DURATION_MS: '3000',
  STOKER_STALLED_INTERVAL_MS: '1000',
  STOKER_RESYNC_MS: '500',
} as const;
export const LEADER_TTL_MS = Number(TIMINGS.STOKER_LEADER_TTL_MS);

/**
 * The product's own timings: an empty value is the default of the process that reads it
 * (leader TTL 10 s; job locks 15 s in the dispatcher, 30 s in a pool worker; stalled
 * checks 5 s and 15 s; resync 2 s). The leader TTL is named to say what the scenario
 * measures against.
 */
export const PRODUCT_TIMINGS: Timings = {
  STOKER_LEADER_TTL_MS: '10000',
  STOKER_LOCK_DURATION_MS: '',
  STOKER_STALLED_INTERVAL_MS: '',
  STOKER_RESYNC_MS: '',
};

export type Timings = Record<keyof typeof TIMINGS, string>;

const TERMINAL = new Set(['Succeeded', 'Failed', 'Cancelled']);

export interface UpProcess {
  child: ChildProcess;
  /** Resolves with the exit code (or the signal) once it has exited. */
  exited: Promise<number | string>;
  hasExited(): boolean;
  /** What it wrote on stderr so far. */
  stderr(): string;
}

export class ChaosStack {
  readonly keys: Keys = makeKeys('stoker:');
  readonly store: RunStore;
  private server: ChildProcess;
  private readonly ups: UpProcess[] = [];

  private constructor(
    readonly ctx: ChaosContext,
    readonly dir: string,
    readonly home: string,
    readonly port: number,
    readonly redisUrl: string,
    private readonly redisArgs: (port: number) => string[],
    server: ChildProcess,
    readonly probe: Redis,
    readonly timings: Timings,
  ) {
    this.server = server;
    this.store = new RunStore(probe, this.keys);
  }

  /** A redis-server and a probe connection; `stoker up` is started with up(). */
  static async start(
    ctx: ChaosContext,
    cleanup: Cleanup,
    label: string,
    opts: {
      appendonly?: boolean;
      /** With appendonly: when Redis fsyncs its AOF (Redis's default: everysec). */
      appendfsync?: 'always' | 'everysec';
      homeTmpfsSize?: string;
      timings?: Timings;
    } = {},
  ): Promise<ChaosStack> {
    const dir = mkdtempSync(join(ctx.tmpRoot, `${label}-`));
    cleanup.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    const home = join(dir, 'home');
    const data = join(dir, 'redis');
    mkdirSync(home);
    mkdirSync(data);
    if (opts.homeTmpfsSize) {
      // Stoker's home (every run folder: shard inputs and outputs, logs) on its own
      // small disk; unmounted once every process of the scenario is stopped.
      mountTmpfs(home, opts.homeTmpfsSize);
      cleanup.defer(`umount ${home}`, () => void spawnSync('umount', ['-l', home]));
    }
    const redisArgs = (p: number) => [
      ...scratchArgs(data, opts)(p),
      ...(opts.appendfsync ? ['--appendfsync', opts.appendfsync] : []),
    ];
    const { child, port, url } = await startRedisServer({
      args: redisArgs,
      label: 'redis-server (is it installed?)',
    });
    // Probe: commands wait through an outage (queued, retried) instead of failing.
    const probe = new Redis(url, { maxRetriesPerRequest: null });
    probe.on('error', () => undefined);
    const stack = new ChaosStack(
      ctx,
      dir,
      home,
      port,
      url,
      redisArgs,
      child,
      probe,
      opts.timings ?? TIMINGS,
    );
    cleanup.defer('stop redis-server', () => stack.stopRedis());
    cleanup.defer('kill leftover workers', () => stack.killLeftovers());
    cleanup.defer('stop stoker up', () => stack.stopUps());
    cleanup.defer('close the probe', () => probe.disconnect());
    return stack;
  }

  get redisPid(): number {
    return this.server.pid as number;
  }

  /**
   * Start `stoker up` (with `args` after `up`, `env` added) and wait until it leads (its
   * alive key names it).
   */
  async up(env: Record<string, string> = {}, args: string[] = []): Promise<UpProcess> {
    // A controller killed a moment ago leaves its alive key until its TTL runs out: lead
    // means the key names another instance than it did before this start.
    const before = await this.probe.get(this.keys.controllerAlive());
    const errFile = join(this.dir, `up-${this.ups.length + 1}.stderr`);
    const fd = openSync(errFile, 'a');
    const child = spawn(
      process.execPath,
      [join(this.ctx.root, 'bin', 'stoker.js'), 'up', ...args],
      {
        cwd: this.dir,
        env: {
          ...process.env,
          REDIS_URL: this.redisUrl,
          STOKER_REDIS_URL: '',
          STOKER_HOME: this.home,
          STOKER_PREFIX: 'stoker:',
          STOKER_HTTP_PORT: '0',
          STOKER_DATA_ROOTS: this.dir,
          ...this.timings,
          ...env,
        },
        stdio: ['ignore', 'ignore', fd],
      },
    );
    closeSync(fd);
    let done = false;
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => {
        done = true;
        resolve(code ?? signal ?? 'unknown');
      });
    });
    const up: UpProcess = {
      child,
      exited,
      hasExited: () => done,
      stderr: () => readFileSync(errFile, 'utf8'),
    };
    this.ups.push(up);
    await waitFor(
      'stoker up to lead',
      async () => {
        if (done)
          throw new Error(`stoker up exited (${await exited}): ${up.stderr().slice(-2000)}`);
        const alive = await this.probe.get(this.keys.controllerAlive());
        return alive !== null && alive !== before ? true : null;
      },
      60_000,
      50,
    );
    return up;
  }

  async submit(spec: NormalizedSpec): Promise<string> {
    return (await this.store.createRun(spec, { home: this.home, workDir: this.dir })).id;
  }

  waitTerminal(runId: string, timeoutMs: number): Promise<RunRecord> {
    return waitFor(
      `run ${runId} to finish`,
      async () => {
        const run = await this.store.getRun(runId);
        return run && TERMINAL.has(run.phase) ? run : null;
      },
      timeoutMs,
      100,
    );
  }

  /**
   * The run once it has ended; if it has not after `timeoutMs`, the run as it stands, its
   * phase marked (a run left hanging is counted, not only reported as a timeout).
   */
  async waitTerminalOrNow(runId: string, timeoutMs: number): Promise<RunRecord> {
    try {
      return await this.waitTerminal(runId, timeoutMs);
    } catch (err) {
      const run = await this.store.getRun(runId);
      if (!run) throw err;
      return {
        ...run,
        phase: `${run.phase}, not ended after ${timeoutMs / 1000} s` as RunRecord['phase'],
      };
    }
  }

  /** Stop the server cleanly (SIGTERM: an AOF server writes its file first). */
  async stopRedis(): Promise<void> {
    await stopRedisServer(this.server);
  }

  /** Kill the server with SIGKILL (a crash: nothing written at exit); wait until it is gone. */
  async killRedis(): Promise<void> {
    this.server.kill('SIGKILL');
    if (!(await waitForExit(this.server, 10_000)))
      throw new Error(`redis-server ${this.redisPid} did not die of SIGKILL`);
  }

  /** Start it again on the same port, from the same data directory (options and all). */
  async restartRedis(): Promise<void> {
    const { child, port } = await startRedisServer({
      args: this.redisArgs,
      preferredPort: this.port,
      label: 'redis-server (restart)',
    });
    this.server = child;
    if (port !== this.port) {
      await stopRedisServer(child);
      throw new Error(`port ${this.port} was taken while Redis was down; restarted on ${port}`);
    }
  }

  /** Pause the server for `ms` (SIGSTOP, then SIGCONT): Redis stalled, connections open. */
  async pauseRedis(ms: number): Promise<void> {
    process.kill(this.redisPid, 'SIGSTOP');
    try {
      await sleep(ms);
    } finally {
      process.kill(this.redisPid, 'SIGCONT');
    }
  }

  private async stopUps(): Promise<void> {
    for (const up of this.ups) {
      if (up.hasExited()) continue;
      up.child.kill('SIGTERM');
      const gone = await Promise.race([up.exited.then(() => true), sleep(20_000)]);
      if (!gone) up.child.kill('SIGKILL');
      await waitForExit(up.child, 5000);
    }
  }

  /** Pool workers and task workers (detached process groups) still alive. */
  private async killLeftovers(): Promise<void> {
    const r = new Redis(this.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
    r.on('error', () => undefined);
    try {
      await r.connect();
      const pids: Array<{ pid: number; start: string | null }> = [];
      for (const name of await r.smembers(this.keys.pools())) {
        for (const v of Object.values(await r.hgetall(this.keys.poolProcs(name)))) {
          const p = JSON.parse(v) as { pid: number; pidStartTime?: string };
          pids.push({ pid: p.pid, start: p.pidStartTime ?? null });
        }
      }
      for (const unitKey of await r.keys(this.keys.unit('*'))) {
        const [pid, start, pgid] = await r.hmget(unitKey, 'pid', 'pidStartTime', 'payloadPgid');
        if (pid) pids.push({ pid: Number(pid), start: start || null });
        if (pgid && Number(pgid) > 0) killGroup(Number(pgid), 'SIGKILL');
      }
      for (const p of pids) if (isRunning(p.pid, p.start)) killGroup(p.pid, 'SIGKILL');
    } finally {
      r.disconnect();
    }
  }
}

/** Mount a tmpfs of `size` (e.g. `16m`) at `dir`; throws with mount's message when refused. */
export function mountTmpfs(dir: string, size: string): void {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], {
    encoding: 'utf8',
  });
  if (r.status !== 0)
    throw new Error(`mount -t tmpfs refused: ${(r.stderr || r.error?.message || '').trim()}`);
}

/** Why a tmpfs cannot be mounted here (tried on a scratch folder), or null when it can. */
export function tmpfsRefused(parent: string): string | null {
  const dir = mkdtempSync(join(parent, 'mount-probe-'));
  try {
    mountTmpfs(dir, '1m');
    spawnSync('umount', [dir]);
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
