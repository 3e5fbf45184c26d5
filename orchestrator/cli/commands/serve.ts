/**
 * `stoker up` and `stoker serve`: a whole stoker in the foreground (stack.ts) until
 * Ctrl-C or SIGTERM. The first signal drains (local: running payloads checkpoint and
 * their tasks are requeued; kubernetes: Jobs keep running for the next controller), the
 * second forces. A controller that loses leadership stops too. The embedded Redis is
 * this process's to stop, also one it adopted after a crash.
 *
 * Beside the controller it serves HTTP (orchestrator/http/): the API v1 under /api/v1,
 * /metrics, /healthz and /readyz; the banner says where, and where the API tokens are.
 *
 *   up      backend: --backend, else STOKER_BACKEND, else local
 *   serve   the same, with kubernetes as the default (the controller in a cluster)
 */
import type { Command } from 'commander';
import { redactUrl } from '../../../common/redis.js';
import { makeContext } from '../context.js';
import { onInterrupt } from '../follow.js';
import { globals } from '../options.js';
import { startStack, type Stack } from '../stack.js';
import { httpSettings, startHttp, type RunningHttp } from '../../http/start.js';

export interface ServeOptions {
  concurrency?: number;
  backend?: string;
  simulate?: boolean;
  port?: number;
  host?: string;
}

type Ended = 'interrupt' | 'lost';

/**
 * A controller that loses its lock (Redis out of reach for longer than the lock's TTL,
 * or the lock taken) stops its work (bounded: system.ts) and waits to lead again, as a
 * standby would: it never exits by itself while runs may be active, and never acts
 * without the lock. Only a signal ends it: the first drains, the second forces, and a
 * signal while it waits for the lock (or for Redis) ends it at once.
 */
const foreground =
  (defaultBackend: 'local' | 'kubernetes') =>
  async (o: ServeOptions, cmd: Command): Promise<void> => {
    const ctx = makeContext({ logLevel: 'info', ...globals(cmd) });
    const settings = httpSettings({ port: o.port, host: o.host }, ctx.env);
    const backend = o.backend ?? ctx.env.STOKER_BACKEND ?? defaultBackend;
    let current: Stack | null = null;
    let interrupted = false;
    let onInterrupted: () => void = () => undefined;
    const interrupt = new Promise<Ended>((r) => (onInterrupted = () => r('interrupt')));
    onInterrupt(
      () => {
        interrupted = true;
        if (current)
          process.stderr.write(
            current.sys.backend.unitsOutliveController
              ? 'stopping: Kubernetes Jobs keep running; the next controller re-attaches (Ctrl-C again to force)\n'
              : 'draining: running payloads checkpoint and are requeued (Ctrl-C again to force)\n',
          );
        onInterrupted();
      },
      () => {
        process.stderr.write('forcing stop\n');
        if (current)
          void current.sys.stop('force'); // escalates the drain in progress (system.ts)
        else process.exit(130);
      },
    );
    const start = () =>
      startStack(ctx, {
        backend,
        simulate: o.simulate ?? false,
        concurrency: o.concurrency,
        waitForLeadership: true,
      });
    for (let round = 1; !interrupted; round++) {
      // The first start fails fast (a wrong setting, no Redis to start with); after a
      // lost lock, a start that fails (Redis still out of reach) is tried again.
      const started = await Promise.race([
        round === 1 ? start() : startAgain(ctx, start, () => interrupted),
        interrupt.then(() => null),
      ]);
      // A signal while waiting for the lock or for Redis: nothing of ours runs yet.
      if (!started) process.exit(0);
      current = started;
      const ended = await lead(ctx, started, settings, round, interrupt);
      current = null;
      if (ended === 'interrupt') {
        // Stopped in order. After a lost lock, what an earlier round had to leave behind
        // (clients abandoned while Redis was out of reach, still reconnecting) may hold
        // the event loop: it is nothing of ours to wait for.
        if (round > 1) process.exit(0);
        return;
      }
      process.stderr.write(
        'this controller lost its lock (Redis out of reach, or another controller took it): its work was stopped; waiting to lead again\n',
      );
    }
  };

/** Start the stack again after a lost lock, retrying (1 s, doubling to 15 s) until it starts or a signal. */
async function startAgain(
  ctx: ReturnType<typeof makeContext>,
  start: () => Promise<Stack>,
  interrupted: () => boolean,
): Promise<Stack | null> {
  for (let delay = 1000; ; delay = Math.min(delay * 2, 15_000)) {
    try {
      return await start();
    } catch (err) {
      if (interrupted()) return null;
      ctx.log.warn({ err }, 'cannot start again yet; retrying');
      process.stderr.write(
        `cannot lead again yet (${(err as Error).message}); retrying in ${delay / 1000} s\n`,
      );
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Serve HTTP beside a started stack until a signal or the lock is lost; then stop it. */
async function lead(
  ctx: ReturnType<typeof makeContext>,
  stack: Stack,
  settings: ReturnType<typeof httpSettings>,
  round: number,
  interrupt: Promise<Ended>,
): Promise<Ended> {
  const { sys, redis } = stack;
  let http: RunningHttp;
  try {
    http = await startHttp({
      sys,
      redisUrl: redis.url,
      home: ctx.home,
      env: ctx.env,
      settings,
      log: ctx.log,
    });
  } catch (err) {
    await stack.stop('preempt', 'any');
    throw err;
  }
  ctx.log.info(
    {
      redis: redactUrl(redis.url),
      home: ctx.home,
      instance: sys.leadership.instanceId,
      http: http.url,
      round,
    },
    round === 1 ? 'stoker is up' : 'leading again',
  );
  if (round === 1) process.stderr.write(banner(stack.describe, redactUrl(redis.url), http));
  else process.stderr.write(`leading again (${stack.describe}); HTTP on ${http.url}\n`);
  const ended = await Promise.race([interrupt, sys.leadership.lost.then((): Ended => 'lost')]);
  await http.close();
  await stack.stop('preempt', ended === 'interrupt' ? 'any' : 'keep');
  return ended;
}

function banner(describe: string, redisUrl: string, http: RunningHttp): string {
  const made = { env: 'from the environment', file: 'kept', created: 'made now' }[
    http.tokens.source
  ];
  const where =
    http.tokens.source === 'env'
      ? 'STOKER_ADMIN_TOKEN, STOKER_READ_TOKEN'
      : `${http.tokens.file} (admin and read; ${made})`;
  return [
    `stoker is up (${describe}). Ctrl-C to stop.`,
    `  API:       ${http.url}/api/v1  (Authorization: Bearer TOKEN; tokens: ${where})`,
    `  dashboard: ${http.url}/login?token=${http.tokens.tokens.admin}  (this link logs a browser in as admin; queues: ${http.url}/queues)`,
    `  metrics:   ${http.url}/metrics`,
    `  Redis:     ${redisUrl}`,
    '',
  ].join('\n');
}

export const upAction = foreground('local');
export const serveAction = foreground('kubernetes');
