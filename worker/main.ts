/**
 * The entry point of `stoker worker`, kept apart from the CLI so that a worker process
 * loads only what it needs: a worker starts for every task attempt, and every module the
 * controller's CLI pulls in (BullMQ for dispatched tasks, the spec loader, the views)
 * would be start-up time added to each one. bin/stoker.js routes `stoker worker` here.
 *
 *   stoker worker --task ID --unit NAME --attempt N     one dispatched task attempt
 *   stoker worker --pool NAME [--worker-id ID]          a pool worker (pulled execution)
 *
 * Configuration comes from the environment the backend sets: STOKER_REDIS_URL (or
 * REDIS_URL), STOKER_PREFIX, STOKER_HOME, STOKER_LOG_LEVEL, STOKER_LOCK_DURATION_MS,
 * STOKER_STALLED_INTERVAL_MS. Secrets (the Redis URL, what a spec's secretEnv copies)
 * should come on the descriptor STOKER_SECRETS_FD names, read and closed first of all
 * (worker/secrets-fd.ts): what the worker was exec'd with stays readable by its payload
 * in /proc/<worker>/environ. The local backend starts workers so; in a container,
 * worker/bin/stoker-env-fd does. A secret-looking variable in the worker's own
 * environment gets one warning. Exit code: the payload's (dispatched), 0 after a drain
 * (pool), 2 for bad arguments or a malformed STOKER_SECRETS_FD.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import { makeKeys, type Keys } from '../common/keys.js';
import { createLogger, type Logger } from '../common/logger.js';
import { connectRedis } from '../common/redis.js';
import { EXPOSED_WARNING, SecretsFdError, workerEnvironment } from './secrets-fd.js';

const USAGE =
  'usage: stoker worker (--task ID --unit NAME --attempt N | --pool NAME [--worker-id ID])';

type Args = Record<string, string | boolean | undefined>;

/** What both kinds of worker read from the environment. */
interface WorkerEnv {
  env: Record<string, string | undefined>;
  url: string;
  keys: Keys;
  log: Logger;
  /** A positive number of milliseconds from the environment, or undefined. */
  ms: (name: string) => number | undefined;
}

export async function workerMain(
  argv: string[],
  realEnv: NodeJS.ProcessEnv = process.env,
  readFd?: (fd: number) => Buffer,
): Promise<number> {
  // 1. The secrets on STOKER_SECRETS_FD, read and the descriptor closed before anything
  // else, merged over the environment the worker was exec'd with.
  let env: WorkerEnv['env'];
  let exposed: string[];
  try {
    ({ env, exposed } = workerEnvironment(realEnv, readFd));
  } catch (err) {
    if (!(err instanceof SecretsFdError)) throw err;
    process.stderr.write(`stoker worker: ${err.message}\n`);
    return 2;
  }
  // 2. The arguments.
  let values: Args;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        task: { type: 'string' },
        unit: { type: 'string' },
        attempt: { type: 'string' },
        pool: { type: 'string' },
        'worker-id': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`stoker worker: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(
      `${USAGE}\n\nRuns one task attempt (started by a backend), or serves a pool until SIGTERM (drains: the current shard finishes; a second SIGTERM aborts it).\n`,
    );
    return 0;
  }
  // 3. The environment the backend set.
  const url = env.STOKER_REDIS_URL || env.REDIS_URL;
  if (!url) {
    process.stderr.write(
      'stoker worker: needs STOKER_REDIS_URL (set by the backend that starts it)\n',
    );
    return 2;
  }
  const we: WorkerEnv = {
    env,
    url,
    keys: makeKeys(env.STOKER_PREFIX || undefined),
    log: createLogger({ level: env.STOKER_LOG_LEVEL ?? 'info' }),
    ms: (name) => {
      const n = Number(env[name]);
      return env[name] && Number.isFinite(n) && n > 0 ? n : undefined;
    },
  };
  if (exposed.length > 0) we.log.warn({ names: exposed }, EXPOSED_WARNING);
  // 4. A pool worker, or one task attempt.
  if (typeof values.pool === 'string') return poolWorker(values.pool, values, we);
  return taskWorker(values, we);
}

async function poolWorker(pool: string, values: Args, we: WorkerEnv): Promise<number> {
  const { env, url, keys, log, ms } = we;
  // Default id: the host name too, since in containers every worker may be pid 1.
  const workerId =
    typeof values['worker-id'] === 'string'
      ? values['worker-id']
      : `${pool}-${hostname()}-${process.pid}`;
  const [{ runPoolWorker }, { bullConnection }] = await Promise.all([
    import('./pool/worker.js'),
    import('../common/redis.js'),
  ]);
  const redis = await connectRedis(url, { name: `stoker-pool-${workerId}` });
  const drain = new AbortController();
  const force = new AbortController();
  // First SIGTERM/SIGINT: finish the current shard, then exit. Second: abort it.
  const stop = () => (drain.signal.aborted ? force.abort() : drain.abort());
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    const lockDurationMs = ms('STOKER_LOCK_DURATION_MS');
    const stalledIntervalMs = ms('STOKER_STALLED_INTERVAL_MS');
    return await runPoolWorker({
      redis,
      keys,
      connection: bullConnection(url),
      pool,
      workerId,
      parentEnv: env,
      log,
      logDir: join(resolve(env.STOKER_HOME || '.stoker'), 'pools', pool),
      drain: drain.signal,
      force: force.signal,
      ...(lockDurationMs ? { lockDurationMs } : {}),
      ...(stalledIntervalMs ? { stalledIntervalMs } : {}),
    });
  } finally {
    redis.disconnect();
  }
}

async function taskWorker(values: Args, we: WorkerEnv): Promise<number> {
  const attempt = Number(values.attempt);
  if (
    typeof values.task !== 'string' ||
    typeof values.unit !== 'string' ||
    !Number.isInteger(attempt) ||
    attempt < 1
  ) {
    process.stderr.write(
      `stoker worker: needs --task, --unit and --attempt N (dispatched) or --pool (pulled)\n${USAGE}\n`,
    );
    return 2;
  }
  const { runTaskWorker } = await import('./task-worker.js');
  const redis = await connectRedis(we.url, { name: `stoker-worker-${values.unit}` });
  const abort = new AbortController();
  // SIGTERM/SIGINT: forward to the payload (it checkpoints), SIGKILL after the grace period.
  const stop = () => abort.abort();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    return await runTaskWorker({
      redis,
      keys: we.keys,
      taskId: values.task,
      unitName: values.unit,
      attempt,
      parentEnv: we.env,
      log: we.log,
      signal: abort.signal,
    });
  } finally {
    redis.disconnect();
  }
}
