/**
 * The embedded default (README, "The embedded Redis"): with no REDIS_URL, stoker runs its own
 * redis-server, so that `stoker up` and `stoker demo` need nothing but the package.
 *
 * Files, all under `${home}/redis/` (directory mode 0700):
 *   redis.conf      written at each start, mode 0600 (it holds the password)
 *   redis.log       redis-server's log; its stdout/stderr go there too
 *   appendonlydir/  the AOF (appendonly yes, appendfsync everysec): at most ~1 s of writes
 *                   is lost on a crash, nothing on SHUTDOWN
 *   embedded.json   {pid, port, url, startedAt}, mode 0600: how later stokers find it
 *   embedded.lock   held (O_EXCL, holder's pid inside) while one stoker starts or
 *                   inspects the server, so that two do not both start one on one AOF
 *
 * Process: redis-server is spawned detached (its own process group, stdio to the log,
 * unref'd) by orchestrator/redis-server.ts, the launcher the tests and the bench use too. A `kill -9` of stoker, or a Ctrl-C sent to its terminal's foreground
 * process group, leaves Redis running with the workers' connections intact; the next
 * stoker finds it through embedded.json, checks it answers PING, and reuses it. Who
 * stops it is the caller's decision (`stop()` works on a reused server too).
 *
 * Password: yes. 127.0.0.1 is shared by every user and every container in the host's
 * network namespace, and the queues carry job payloads (model paths, env). A random
 * password costs nothing (it rides in the URL the workers already receive) and is kept
 * out of argv (world-readable in /proc) by putting it in redis.conf. It is kept across
 * restarts, and so is the port when it is still free, so that a worker holding the old
 * URL reconnects to the restarted server.
 *
 * Errors: UsageError when redis-server is not on PATH (the message says how to install
 * it); RedisUnavailableError when it does not come up (the message carries the last
 * lines of its log) or when a previous one is alive but does not answer.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisUnavailableError, UsageError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { killPid, pidExists } from '../common/proc.js';
import { connectRedis, redactUrl } from '../common/redis.js';
import {
  embeddedRedisPaths,
  findExecutable,
  readState,
  redisConfig,
  withLock,
  writePrivateFile,
  type EmbeddedPaths,
  type EmbeddedState,
} from './embedded-redis-files.js';
import { answersPing, readLogTail, startRedisServer } from './redis-server.js';

export const REDIS_INSTALL_HINT = [
  'redis-server was not found on PATH. With no REDIS_URL, stoker starts an embedded Redis and needs it installed:',
  '  Debian/Ubuntu:  sudo apt-get install -y redis-server',
  '  macOS:          brew install redis',
  'or set REDIS_URL to an existing server (e.g. REDIS_URL=redis://127.0.0.1:6379).',
].join('\n');

export interface EmbeddedRedis {
  /** `redis://:<password>@127.0.0.1:<port>`; redact it (redactUrl) before printing. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** True when an already running server from an earlier stoker was adopted. */
  readonly reused: boolean;
  readonly dataDir: string;
  /** SHUTDOWN (fsyncs the AOF), escalating to SIGTERM then SIGKILL; removes the state file. */
  stop(): Promise<void>;
}

export interface EmbeddedRedisOptions {
  /** stoker's home, usually defaultStokerHome() (common/paths.ts): data goes to `${home}/redis`. */
  home: string;
  log: Logger;
  /** Adopt a live server named by the state file (default). When false and one is live, throw. */
  reuse?: boolean;
  /** PATH for finding redis-server, and the child's environment. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long a fresh server has to answer PING. Default 15 s. */
  startTimeoutMs?: number;
}

export interface ResolvedRedis {
  url: string;
  /** Set when stoker started (or adopted) the embedded server. */
  embedded?: EmbeddedRedis;
}

/**
 * The Redis stoker should use: STOKER_REDIS_URL, else REDIS_URL (the more specific name
 * wins when both are set; empty counts as unset), else the embedded server.
 */
export async function resolveRedis(opts: {
  env: NodeJS.ProcessEnv;
  home: string;
  log: Logger;
  reuse?: boolean;
}): Promise<ResolvedRedis> {
  const configured = opts.env.STOKER_REDIS_URL || opts.env.REDIS_URL;
  if (configured) {
    opts.log.debug({ redis: redactUrl(configured) }, 'using configured redis');
    return { url: configured };
  }
  const embedded = await startEmbeddedRedis({
    home: opts.home,
    log: opts.log,
    reuse: opts.reuse,
    env: opts.env,
  });
  return { url: embedded.url, embedded };
}

export async function startEmbeddedRedis(opts: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const { log, reuse = true, env = process.env, startTimeoutMs = 15_000 } = opts;
  const paths = embeddedRedisPaths(opts.home);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  chmodSync(paths.dir, 0o700);

  return withLock(paths.lock, async () => {
    // 1. A server left by an earlier stoker: adopt it, or clear its stale state.
    const previous = readState(paths.state);
    if (previous) {
      const verdict = await inspect(previous);
      if (verdict === 'live') {
        if (!reuse) {
          throw new UsageError(
            `an embedded redis-server (pid ${previous.pid}, port ${previous.port}) already serves ${paths.dir}; stop it first or allow reuse`,
          );
        }
        log.info(
          { pid: previous.pid, port: previous.port, dataDir: paths.dir },
          'reusing embedded redis',
        );
        return makeHandle(previous, true, paths, log);
      }
      if (verdict === 'stuck') {
        throw new RedisUnavailableError(
          `the embedded redis-server from an earlier run (pid ${previous.pid}, port ${previous.port}) is alive but does not answer; ` +
            `stop it (kill ${previous.pid}) and retry. Last lines of ${paths.log}:\n${readLogTail(paths.log, 0)}`,
        );
      }
      log.warn({ pid: previous.pid, port: previous.port }, 'replacing stale embedded redis state');
      rmSync(paths.state, { force: true });
    }

    // 2. Start a new one, keeping the earlier password and port where possible.
    const bin = findExecutable('redis-server', env.PATH);
    if (!bin) throw new UsageError(REDIS_INSTALL_HINT);
    const password = reusablePassword(previous?.url) ?? randomBytes(24).toString('hex');
    const { child, port } = await launch({
      bin,
      paths,
      password,
      preferredPort: previous?.port,
      env,
      startTimeoutMs,
    });

    // 3. Record it for later stokers.
    const state: EmbeddedState = {
      pid: child.pid ?? 0,
      port,
      url: `redis://:${password}@127.0.0.1:${port}`,
      startedAt: new Date().toISOString(),
    };
    writePrivateFile(paths.state, `${JSON.stringify(state, null, 2)}\n`);
    log.info({ pid: state.pid, port, dataDir: paths.dir }, 'embedded redis started');
    return makeHandle(state, false, paths, log, child);
  });
}

// ---------------------------------------------------------------------------------
// Starting

async function launch(args: {
  bin: string;
  paths: EmbeddedPaths;
  password: string;
  preferredPort: number | undefined;
  env: NodeJS.ProcessEnv;
  startTimeoutMs: number;
}): Promise<{ child: ChildProcess; port: number }> {
  const { bin, paths, password } = args;
  // orchestrator/redis-server.ts picks the port, spawns and waits for PING; a try that
  // lost its port to another program (the probe and redis' own bind race) is retried.
  const { child, port } = await startRedisServer({
    bin,
    args: (port) => {
      writePrivateFile(paths.conf, redisConfig({ port, password, paths }));
      return [paths.conf];
    },
    url: (port) => `redis://:${password}@127.0.0.1:${port}`,
    preferredPort: args.preferredPort,
    cwd: paths.dir,
    env: args.env,
    detached: true,
    logFile: paths.log,
    startTimeoutMs: args.startTimeoutMs,
    retry: (failure) => /address already in use/i.test(failure.logTail),
    label: `embedded redis-server (${bin})`,
  });
  return { child, port };
}

// ---------------------------------------------------------------------------------
// Inspecting an earlier server

type Verdict = 'live' | 'stale' | 'stuck';

async function inspect(state: EmbeddedState): Promise<Verdict> {
  if (!pidExists(state.pid)) return 'stale';
  if (await answersPing(state.url, 2000)) return 'live';
  // Alive but silent: the pid now belongs to another program, or our server is busy
  // (loading a large AOF answers -LOADING, which the ready check waits out).
  const isRedis = processIsRedis(state.pid);
  if (isRedis === false) return 'stale';
  if (await answersPing(state.url, 15_000)) return 'live';
  // Without /proc (macOS) we cannot tell; treat it as someone else's process.
  return isRedis === true ? 'stuck' : 'stale';
}

function reusablePassword(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const password = new URL(url).password;
    return /^[0-9a-f]{32,}$/.test(password) ? password : undefined;
  } catch {
    return undefined;
  }
}

/** true, false, or undefined where the platform has no /proc. */
function processIsRedis(pid: number): boolean | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('redis-server');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' && isLinuxProc() ? false : undefined;
  }
}

function isLinuxProc(): boolean {
  try {
    return statSync('/proc/self').isDirectory();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------
// Stopping

function makeHandle(
  state: EmbeddedState,
  reused: boolean,
  paths: EmbeddedPaths,
  log: Logger,
  child?: ChildProcess,
): EmbeddedRedis {
  let stopping: Promise<void> | undefined;
  return {
    url: state.url,
    port: state.port,
    pid: state.pid,
    reused,
    dataDir: paths.dir,
    stop: () => (stopping ??= stopServer(state, paths, log, child)),
  };
}

async function stopServer(
  state: EmbeddedState,
  paths: EmbeddedPaths,
  log: Logger,
  child?: ChildProcess,
): Promise<void> {
  // 1. SHUTDOWN: redis fsyncs the AOF and exits. The reply is the connection closing.
  if (pidExists(state.pid)) {
    try {
      const client = await connectRedis(state.url, {
        timeoutMs: 2000,
        name: 'stoker-embedded-stop',
        extra: { retryStrategy: () => null },
      });
      try {
        await client.shutdown();
      } catch {
        // Expected: the server closes the connection as it exits.
      } finally {
        client.disconnect();
      }
    } catch (err) {
      log.warn({ err, pid: state.pid }, 'embedded redis did not take SHUTDOWN; signalling it');
    }
  }
  // 2. Wait for the exit, escalating.
  if (!(await waitForExit(state.pid, 10_000, child))) {
    killPid(state.pid, 'SIGTERM');
    if (!(await waitForExit(state.pid, 5000, child))) {
      log.warn({ pid: state.pid }, 'embedded redis ignored SIGTERM; killing it');
      killPid(state.pid, 'SIGKILL');
      await waitForExit(state.pid, 2000, child);
    }
  }
  // 3. Forget it, unless a later stoker has already recorded a newer server.
  if (readState(paths.state)?.pid === state.pid) rmSync(paths.state, { force: true });
  log.info({ pid: state.pid, port: state.port }, 'embedded redis stopped');
}

async function waitForExit(pid: number, timeoutMs: number, child?: ChildProcess): Promise<boolean> {
  // Our own child stays a zombie (kill(pid, 0) succeeds) until Node reaps it, so ask
  // the ChildProcess; an adopted server was reaped by init.
  const gone = () =>
    child ? child.exitCode !== null || child.signalCode !== null : !pidExists(pid);
  const deadline = Date.now() + timeoutMs;
  while (!gone()) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}
