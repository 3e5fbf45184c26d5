/**
 * The embedded Redis's files under `${home}/redis/` (embedded-redis.ts says what each
 * holds): their paths, the state file that tells later stokers where the server is,
 * redis.conf, private (0600) writes, finding redis-server on PATH, and the O_EXCL lock
 * held while one stoker starts or inspects the server.
 */
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants as fsConstants,
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
import { StokerError } from '../common/errors.js';
import { pidExists } from '../common/proc.js';

export interface EmbeddedState {
  pid: number;
  port: number;
  url: string;
  startedAt: string;
}

export interface EmbeddedPaths {
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

export function readState(path: string): EmbeddedState | undefined {
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

export function redisConfig(args: {
  port: number;
  password: string;
  paths: EmbeddedPaths;
}): string {
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

export function findExecutable(name: string, pathVar: string | undefined): string | undefined {
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
export function writePrivateFile(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * Run `fn` holding an O_EXCL lock file that carries our pid. A lock whose holder is
 * dead is broken. (Two stokers breaking the same dead lock at once can both proceed;
 * that needs a crash during a start plus a race, and costs a second server start.)
 */
export async function withLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  timeoutMs = 30_000,
): Promise<T> {
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
    if (text && Number.isInteger(pid) && pid > 0) return pidExists(pid) ? pid : 'dead';
    // Created but not yet written: give the writer a moment before calling it dead.
    return Date.now() - statSync(lockPath).mtimeMs > 5000 ? 'dead' : 'unknown';
  } catch {
    return 'unknown'; // vanished between open and read: retry
  }
}
