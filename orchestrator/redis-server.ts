/**
 * The one launcher of redis-server: used by the embedded Redis (orchestrator/embedded-
 * redis.ts, which adds its config file, password, AOF, lock and adoption on top), the
 * tests (test/util/redis-server.ts) and the bench (bench/lib/redis-server.ts).
 *
 * startRedisServer(opts) -> { child, port, url }, one try after another:
 *   1. a port: opts.preferredPort on the first try when it is free, else a free one the
 *      OS hands out on 127.0.0.1 (never 6379 unless the OS picks it, which it does not
 *      while the machine's Redis holds it)
 *   2. spawn `bin ...opts.args(port)` (an argv, never a shell) with stdout and stderr
 *      appended to opts.logFile, or ignored; `detached`: its own process group, unref'd,
 *      so that it outlives this process
 *   3. wait until a PING on opts.url(port) answers, the process exits, or startTimeoutMs
 *      passes (then its group is SIGKILLed)
 *   4. a failed try is retried on a new port, at most RETRIES more times, when
 *      opts.retry(failure) says so (the free-port probe races other programs for the
 *      port; by default every failure but a command that cannot run is retried)
 * Errors: RedisUnavailableError naming the server (opts.label), why it did not start,
 * and, with a log file, its last lines.
 *
 * stopRedisServer(child) stops a server this process started and still holds: SIGTERM,
 * then SIGKILL after the grace period. scratchArgs(dir) are the options of a throwaway
 * server (the tests', the bench's).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisUnavailableError } from '../common/errors.js';
import { connectRedis } from '../common/redis.js';

/** More tries after the first. */
const RETRIES = 3;

export interface RedisServerOptions {
  /** The executable: a path, or a name spawn looks up on PATH. Default `redis-server`. */
  bin?: string;
  /**
   * Its arguments for `port`: options (`--port N ...`), or the path of a config file. Called
   * once per try, before the spawn: the place to write a config file for that port.
   */
  args: (port: number) => string[];
  /** How to reach it on `port` (a password goes here). Default `redis://127.0.0.1:PORT`. */
  url?: (port: number) => string;
  /** Tried first, when it is free (a restarted server keeps its address). */
  preferredPort?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Its own process group and unref'd: it outlives this process. Default false. */
  detached?: boolean;
  /** Its stdout and stderr are appended here (created mode 0600); ignored when absent. */
  logFile?: string;
  /** How long a try has to answer PING. Default 5 s. */
  startTimeoutMs?: number;
  /** Whether a failed try is worth another port. Default: all but kind 'spawn'. */
  retry?: (failure: StartFailure) => boolean;
  /** How the server is named in errors. Default `redis-server (BIN)`. */
  label?: string;
}

export interface StartFailure {
  /** spawn: the command could not run; exit: it ended; timeout: no PING answer in time. */
  kind: 'spawn' | 'exit' | 'timeout';
  /** In words: `it exited with code 1`, `no PING answer within 5000 ms`... */
  why: string;
  /** What it wrote to the log file during this try (at most its last 20 lines). */
  logTail: string;
}

export interface RedisServerProcess {
  child: ChildProcess;
  port: number;
  url: string;
}

export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServerProcess> {
  const bin = opts.bin ?? 'redis-server';
  const urlFor = opts.url ?? ((port: number) => `redis://127.0.0.1:${port}`);
  const retry = opts.retry ?? ((f: StartFailure) => f.kind !== 'spawn');
  for (let attempt = 0; ; attempt++) {
    const preferred = attempt === 0 ? opts.preferredPort : undefined;
    const port = preferred && (await portIsFree(preferred)) ? preferred : await freePort();
    const url = urlFor(port);
    const logOffset = opts.logFile ? fileSize(opts.logFile) : 0;
    const child = spawnServer(bin, opts.args(port), opts);
    const failure = await waitForStart(child, url, opts.startTimeoutMs ?? 5000);
    if (!failure) return { child, port, url };
    if (failure.kind === 'timeout') {
      killGroup(child, 'SIGKILL');
      await waitForExit(child, 2000);
    }
    const logTail = opts.logFile ? readLogTail(opts.logFile, logOffset) : '';
    const tried: StartFailure = { ...failure, logTail };
    if (attempt < RETRIES && retry(tried)) continue;
    const where = opts.logFile ? `. Last lines of ${opts.logFile}:\n${logTail || '(empty)'}` : '';
    throw new RedisUnavailableError(
      `${opts.label ?? `redis-server (${bin})`} did not start: ${failure.why}${where}`,
    );
  }
}

/** SIGTERM a server started by startRedisServer; SIGKILL its group after `graceMs`. */
export async function stopRedisServer(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (exited(child)) return;
  child.kill('SIGTERM');
  if (await waitForExit(child, graceMs)) return;
  killGroup(child, 'SIGKILL');
  await waitForExit(child, 2000);
}

/**
 * Options for a throwaway server on 127.0.0.1: data in `dir`, no snapshots, AOF only when
 * asked (it adds disk time to every write), never evicting (BullMQ needs its keys).
 */
export function scratchArgs(dir: string, opts: { appendonly?: boolean } = {}) {
  return (port: number): string[] => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    opts.appendonly ? 'yes' : 'no',
    '--maxmemory-policy',
    'noeviction',
    '--daemonize',
    'no',
  ];
}

/** A port that was free on 127.0.0.1 a moment ago (the OS's choice). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Whether a PING on `url` is answered within `timeoutMs`. */
export async function answersPing(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const client = await connectRedis(url, {
      timeoutMs,
      name: 'stoker-redis-probe',
      extra: { retryStrategy: () => null },
    });
    client.disconnect();
    return true;
  } catch {
    return false;
  }
}

/** Resolves true once `child` has exited, false after `timeoutMs`. */
export async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!exited(child)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/** The last `lines` lines written to `path` after byte `from` (at most the last 16 KiB). */
export function readLogTail(path: string, from: number, lines = 20): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(from, size - 16 * 1024);
    const buf = Buffer.alloc(Math.max(0, size - start));
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}

function spawnServer(bin: string, args: string[], opts: RedisServerOptions): ChildProcess {
  const fd = opts.logFile ? openSync(opts.logFile, 'a', 0o600) : undefined;
  try {
    const child = spawn(bin, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: opts.detached ?? false,
      stdio: ['ignore', fd ?? 'ignore', fd ?? 'ignore'],
    });
    if (opts.detached) child.unref();
    return child;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Null once PING answers; otherwise why not. */
async function waitForStart(
  child: ChildProcess,
  url: string,
  timeoutMs: number,
): Promise<Omit<StartFailure, 'logTail'> | null> {
  let spawnError: Error | undefined;
  child.on('error', (err) => {
    spawnError = err;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) return { kind: 'spawn', why: `cannot run it (${spawnError.message})` };
    if (child.exitCode !== null)
      return { kind: 'exit', why: `it exited with code ${child.exitCode}` };
    if (child.signalCode !== null)
      return { kind: 'exit', why: `it was killed by ${child.signalCode}` };
    if (await answersPing(url, 500)) return null;
    if (Date.now() > deadline)
      return { kind: 'timeout', why: `no PING answer within ${timeoutMs} ms` };
    await sleep(50);
  }
}

const exited = (child: ChildProcess): boolean =>
  child.exitCode !== null || child.signalCode !== null;

/** Signal the child's process group (it leads one when detached), else the child alone. */
function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      process.kill(child.pid, sig);
    } catch {
      // Already gone.
    }
  }
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolveFree(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolveFree(true)));
  });
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
