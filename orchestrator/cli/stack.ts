/**
 * The one composition of a whole stoker in this process, for `run`, `demo`, `up` and
 * `serve`: Redis (the configured one, or the embedded server, started or adopted now),
 * the backend (backend-choice.ts) and the system (controller, dispatcher and backend:
 * ../system.ts). The commands differ only in what they pass here:
 *
 *   run, demo   backend from --backend (default local); the controller lock must be free
 *               at once (another controller on this Redis: `run` submits to it instead)
 *   up          backend from --backend, else STOKER_BACKEND, else local; waits for the lock
 *   serve       the same with kubernetes as the default
 *
 * `--concurrency N` is the GPU budget: N dispatched tasks of the train queue at once;
 * the CPU steps' queue takes max(N, 4).
 */
import { redactUrl } from '../../common/redis.js';
import type { EmbeddedRedis } from '../embedded-redis.js';
import { DEFAULT_CONCURRENCY, startSystem, type System } from '../system.js';
import { chooseBackend, type BackendChoice } from './backend-choice.js';
import { ensureRedis } from './client.js';
import type { Context } from './context.js';

export interface StackOptions {
  backend: string;
  simulate: boolean;
  concurrency?: number | undefined;
  /** Wait for the controller lock (up, serve) rather than fail at once (run). */
  waitForLeadership: boolean;
}

export interface Stack {
  sys: System;
  redis: { url: string; embedded?: EmbeddedRedis };
  /** One line for the banner: where Redis is, the home, the backend. */
  describe: string;
  /**
   * Stop the system, then what the backend started beside it (a simulated cluster),
   * then the embedded Redis: `started` stops it only if this process started it (run:
   * a `stoker up` may own it); `any` also one this process adopted (up owns it).
   */
  stop(mode: 'preempt' | 'force', redis: 'started' | 'any' | 'keep'): Promise<void>;
}

export function concurrencyFor(n: number | undefined): { train: number; steps: number } {
  return n ? { train: n, steps: Math.max(n, DEFAULT_CONCURRENCY.steps) } : DEFAULT_CONCURRENCY;
}

export async function startStack(ctx: Context, opts: StackOptions): Promise<Stack> {
  const redis = await ensureRedis(ctx);
  let choice: BackendChoice | null = null;
  const stopRedis = async (which: 'started' | 'any' | 'keep') => {
    if (which === 'keep') return;
    if (redis.embedded && (which === 'any' || !redis.embedded.reused)) await redis.embedded.stop();
  };
  let sys: System;
  try {
    choice = await chooseBackend({
      backend: opts.backend,
      simulate: opts.simulate,
      env: ctx.env,
      prefix: ctx.prefix,
      log: ctx.log,
      home: ctx.home,
    });
    sys = await startSystem({
      ...(choice ? { backend: choice.factory } : {}),
      redisUrl: redis.url,
      prefix: ctx.prefix,
      log: ctx.log,
      home: ctx.home,
      ...ctx.timings,
      ...(opts.waitForLeadership ? {} : { leaderWaitMs: 0 }),
      concurrency: concurrencyFor(opts.concurrency),
    });
  } catch (err) {
    await choice?.stop();
    await stopRedis('started');
    throw err;
  }
  const where = redis.embedded ? `embedded on port ${redis.embedded.port}` : redactUrl(redis.url);
  let stopping: Promise<void> | undefined;
  return {
    sys,
    redis,
    describe: `Redis ${where}, home ${ctx.home}, backend ${choice?.describe ?? 'local'}`,
    stop: (mode, which) =>
      (stopping ??= (async () => {
        await sys.stop(mode);
        await choice?.stop();
        await stopRedis(which);
      })()),
  };
}
