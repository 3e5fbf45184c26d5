/**
 * `stoker up` and `stoker serve`: a whole stoker in the foreground (stack.ts) until
 * Ctrl-C or SIGTERM. The first signal drains (local: running payloads checkpoint and
 * their tasks are requeued; kubernetes: Jobs keep running for the next controller), the
 * second forces. A controller that loses leadership stops too. The embedded Redis is
 * this process's to stop, also one it adopted after a crash.
 *
 *   up      backend: --backend, else STOKER_BACKEND, else local
 *   serve   the same, with kubernetes as the default (the controller in a cluster)
 */
import type { Command } from 'commander';
import { redactUrl } from '../../../common/redis.js';
import { makeContext } from '../context.js';
import { onInterrupt } from '../follow.js';
import { globals } from '../options.js';
import { startStack } from '../stack.js';

export interface ServeOptions {
  concurrency?: number;
  backend?: string;
  simulate?: boolean;
}

const foreground =
  (defaultBackend: 'local' | 'kubernetes') =>
  async (o: ServeOptions, cmd: Command): Promise<void> => {
    const ctx = makeContext({ logLevel: 'info', ...globals(cmd) });
    const backend = o.backend ?? ctx.env.STOKER_BACKEND ?? defaultBackend;
    const stack = await startStack(ctx, {
      backend,
      simulate: o.simulate ?? false,
      concurrency: o.concurrency,
      waitForLeadership: true,
    });
    const { sys, redis } = stack;
    ctx.log.info(
      { redis: redactUrl(redis.url), home: ctx.home, instance: sys.leadership.instanceId },
      'stoker is up',
    );
    process.stderr.write(`stoker is up (${stack.describe}). Ctrl-C to stop.\n`);
    const unitsOutlive = sys.backend.unitsOutliveController;
    await new Promise<void>((resolve) => {
      onInterrupt(
        () => {
          process.stderr.write(
            unitsOutlive
              ? 'stopping: Kubernetes Jobs keep running; the next controller re-attaches (Ctrl-C again to force)\n'
              : 'draining: running payloads checkpoint and are requeued (Ctrl-C again to force)\n',
          );
          resolve();
        },
        () => {
          process.stderr.write('forcing stop\n');
          void sys.stop('force'); // escalates the drain in progress (system.ts)
        },
      );
      void sys.leadership.lost.then(() => resolve());
    });
    await stack.stop('preempt', 'any');
  };

export const upAction = foreground('local');
export const serveAction = foreground('kubernetes');
