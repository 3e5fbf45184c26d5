/**
 * Starting a `stoker worker` process for the local backend (local.ts), and what its
 * environment holds (splitWorkerEnv; README, "Untrusted specs and payloads").
 *
 * A payload runs as the same user as its worker and can read /proc/<worker>/environ, the
 * environment the worker was exec'd with. So the worker is exec'd with only what may be
 * seen, and gets the rest on a pipe at descriptor 3 (STOKER_SECRETS_FD=3), written and
 * closed right after the spawn; it reads the pipe and closes it before anything else
 * (worker/secrets-fd.ts; the format: common/secrets-fd.ts).
 *
 *   environ (seen)  the payload allowlist (common/secret-env.ts: PATH, HOME, locale,
 *                   CUDA_/NCCL_/OMP_/TORCH_... , the Hugging Face cache switches), what
 *                   node and bin/stoker.js read before the worker's code runs
 *                   (NODE_OPTIONS, NODE_PATH, NODE_EXTRA_CA_CERTS, NODE_NO_WARNINGS,
 *                   NODE_ENV, STOKER_FROM_SOURCE), stoker's plain settings (STOKER_PREFIX,
 *                   STOKER_HOME, STOKER_LOG_LEVEL, STOKER_*_MS timings) and
 *                   STOKER_SECRETS_FD=3; of these, none whose name or value looks secret
 *                   (looksSecret: ..._TOKEN, a URL with a password...)
 *   descriptor 3    everything else: STOKER_REDIS_URL, and the rest of the controller's
 *                   environment (`env`), so a spec's `secretEnv: [{fromEnv: X}]` finds X.
 *                   A variable whose name is not an identifier (an exported bash function)
 *                   is dropped: no spec can name it
 *
 * spawnWorkerProcess resolves once the kernel holds the whole pipe's content and our end
 * is closed, so a worker keeps working when the controller dies after that; a controller
 * that dies while writing leaves the worker a payload without its END line: the worker
 * exits 2, and the unit is WorkerLost (retried).
 *
 * spawnWorkerProcess: detached (its own process group: it outlives a controller that
 * dies, and its group can be killed), stdout and stderr appended to the log file (0600),
 * resolved once the process runs and the pipe is written and closed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import { isAllowlisted, looksSecret } from '../../common/secret-env.js';
import { encodeSecrets, SECRETS_FD_VAR } from '../../common/secrets-fd.js';

export interface WorkerProcessOptions {
  /** [executable, ...arguments]: `node bin/stoker.js worker ...`. */
  command: string[];
  logFile: string;
  /** The worker's whole environment, before the split (the Redis URL included). */
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
}

export async function spawnWorkerProcess(
  o: WorkerProcessOptions,
): Promise<{ child: ChildProcess; pid: number }> {
  const [cmd, ...args] = o.command;
  if (cmd === undefined) throw new Error('spawnWorkerProcess: no command');
  const { seen, secret } = splitWorkerEnv(o.env);
  const fd = openSync(o.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', fd, fd, 'pipe'],
      env: { ...seen, [SECRETS_FD_VAR]: '3' },
    });
  } finally {
    closeSync(fd);
  }
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid as number));
    child.once('error', reject);
  });
  await handOver(child.stdio[3] as Writable, encodeSecrets(secret), () =>
    o.log.warn({ pid }, 'could not hand the worker its secrets (it exited first)'),
  );
  child.unref();
  return { child, pid };
}

/**
 * Write the secrets to the worker's descriptor 3 and close our end. A worker that died
 * first (EPIPE) is reported, not thrown: the backend then finds it gone (WorkerLost).
 */
async function handOver(pipe: Writable, data: string, failed: () => void): Promise<void> {
  await new Promise<void>((resolve) => {
    pipe.once('error', () => {
      failed();
      pipe.destroy();
      resolve();
    });
    pipe.end(data, () => {
      pipe.destroy();
      resolve();
    });
  });
}

/** What node and bin/stoker.js read before the worker can read its descriptor. */
const STARTUP_ENV = [
  'NODE_OPTIONS',
  'NODE_PATH',
  'NODE_EXTRA_CA_CERTS',
  'NODE_NO_WARNINGS',
  'NODE_ENV',
  'STOKER_FROM_SOURCE',
];
/** stoker's plain settings of a worker. */
const STOKER_SETTINGS = ['STOKER_PREFIX', 'STOKER_HOME', 'STOKER_LOG_LEVEL'];
const STOKER_TIMING = /^STOKER_[A-Z0-9_]+_MS$/;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A worker's environment, split (the header): `seen` goes in its environ, `secret` on
 * descriptor 3.
 */
export function splitWorkerEnv(env: Readonly<Record<string, string | undefined>>): {
  seen: Record<string, string>;
  secret: Record<string, string>;
} {
  const seen: Record<string, string> = {};
  const secret: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !IDENTIFIER.test(name) || name === SECRETS_FD_VAR) continue;
    const plain =
      isAllowlisted(name) ||
      STARTUP_ENV.includes(name) ||
      STOKER_SETTINGS.includes(name) ||
      STOKER_TIMING.test(name);
    if (plain && !looksSecret(name, value)) seen[name] = value;
    else secret[name] = value;
  }
  return { seen, secret };
}
