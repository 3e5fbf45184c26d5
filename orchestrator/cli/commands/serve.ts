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
import { startStack } from '../stack.js';
import { httpSettings, startHttp, type RunningHttp } from '../../http/start.js';

export interface ServeOptions {
  concurrency?: number;
  backend?: string;
  simulate?: boolean;
  port?: number;
  host?: string;
}

const foreground =
  (defaultBackend: 'local' | 'kubernetes') =>
  async (o: ServeOptions, cmd: Command): Promise<void> => {
    const ctx = makeContext({ logLevel: 'info', ...globals(cmd) });
    const settings = httpSettings({ port: o.port, host: o.host }, ctx.env);
    const backend = o.backend ?? ctx.env.STOKER_BACKEND ?? defaultBackend;
    const stack = await startStack(ctx, {
      backend,
      simulate: o.simulate ?? false,
      concurrency: o.concurrency,
      waitForLeadership: true,
    });
    const { sys, redis } = stack;
    let http;
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
      },
      'stoker is up',
    );
    process.stderr.write(banner(stack.describe, redactUrl(redis.url), http));
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
    await http.close();
    await stack.stop('preempt', 'any');
  };

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
