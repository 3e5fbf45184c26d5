/**
 * The embedded default (DESIGN.md section 5): with no REDIS_URL, stoker runs its own
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
import {
  accessSync,
  chmodSync,
  closeSync,
  constants as fsConstants,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisUnavailableError, StokerError, UsageError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { connectRedis, redactUrl } from '../common/redis.js';
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

interface EmbeddedState {
  pid: number;
  port: number;
  url: string;
  startedAt: string;
}

interface EmbeddedPaths {
  dir: string;
  conf: string;
  log: string;
  state: string;
  lock: string;
}

export function embeddedRedisPaths(home: string): EmbeddedPaths {
  const dir = join(resolve(home), 'redis');
  return {
    dir,
    conf: join(dir, 'redis.conf'),
    log: join(dir, 'redis.log'),
    state: join(dir, 'embedded.json'),
    lock: join(dir, 'embedded.lock'),
  };
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

function redisConfig(args: { port: number; password: string; paths: EmbeddedPaths }): string {
  return [
    '# Written by stoker (orchestrator/embedded-redis.ts) at every start: edits are lost.',
    'bind 127.0.0.1',
    'protected-mode yes',
    `port ${args.port}`,
    'daemonize no',
    `dir ${quote(args.paths.dir)}`,
    `logfile ${quote(args.paths.log)}`,
    'appendonly yes',
    'appendfsync everysec',
    'maxmemory-policy noeviction',
    'save ""',
    `requirepass ${args.password}`,
    '',
  ].join('\n');
}

/** A double-quoted redis.conf string (sdssplitargs escapes). */
function quote(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

// ---------------------------------------------------------------------------------
// Inspecting an earlier server

type Verdict = 'live' | 'stale' | 'stuck';

async function inspect(state: EmbeddedState): Promise<Verdict> {
  if (!isAlive(state.pid)) return 'stale';
  if (await answersPing(state.url, 2000)) return 'live';
  // Alive but silent: the pid now belongs to another program, or our server is busy
  // (loading a large AOF answers -LOADING, which the ready check waits out).
  const isRedis = processIsRedis(state.pid);
  if (isRedis === false) return 'stale';
  if (await answersPing(state.url, 15_000)) return 'live';
  // Without /proc (macOS) we cannot tell; treat it as someone else's process.
  return isRedis === true ? 'stuck' : 'stale';
}

function readState(path: string): EmbeddedState | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const s = raw as Record<string, unknown>;
  if (
    typeof s.pid !== 'number' ||
    !Number.isInteger(s.pid) ||
    s.pid <= 0 ||
    typeof s.port !== 'number' ||
    typeof s.url !== 'string' ||
    typeof s.startedAt !== 'string'
  ) {
    return undefined;
  }
  return { pid: s.pid, port: s.port, url: s.url, startedAt: s.startedAt };
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
  if (isAlive(state.pid)) {
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
    signal(state.pid, 'SIGTERM');
    if (!(await waitForExit(state.pid, 5000, child))) {
      log.warn({ pid: state.pid }, 'embedded redis ignored SIGTERM; killing it');
      signal(state.pid, 'SIGKILL');
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
  const gone = () => (child ? child.exitCode !== null || child.signalCode !== null : !isAlive(pid));
  const deadline = Date.now() + timeoutMs;
  while (!gone()) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

// ---------------------------------------------------------------------------------
// Small helpers

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

function findExecutable(name: string, pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Write via a fresh temp file and rename, so the mode is 0600 from the first byte. */
function writePrivateFile(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * Run `fn` holding an O_EXCL lock file that carries our pid. A lock whose holder is
 * dead is broken. (Two stokers breaking the same dead lock at once can both proceed;
 * that needs a crash during a start plus a race, and costs a second server start.)
 */
async function withLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      try {
        writeSync(fd, String(process.pid));
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = lockHolder(lockPath);
    if (holder === 'dead') {
      rmSync(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new StokerError(
        `${lockPath} is held by pid ${holder} (another stoker starting Redis); if no stoker is running, remove the file`,
      );
    }
    await sleep(100);
  }
  try {
    return await fn();
  } finally {
    rmSync(lockPath, { force: true });
  }
}

function lockHolder(lockPath: string): number | 'dead' | 'unknown' {
  try {
    const text = readFileSync(lockPath, 'utf8').trim();
    const pid = Number(text);
    if (text && Number.isInteger(pid) && pid > 0) return isAlive(pid) ? pid : 'dead';
    // Created but not yet written: give the writer a moment before calling it dead.
    return Date.now() - statSync(lockPath).mtimeMs > 5000 ? 'dead' : 'unknown';
  } catch {
    return 'unknown'; // vanished between open and read: retry
  }
}
