/**
 * The HTTP server beside a running system (`stoker up`, `stoker serve`): its settings,
 * its tokens, its metrics, listening.
 *
 * Settings (flags of up and serve win over the environment):
 *   --port, STOKER_HTTP_PORT        default 8080; 0 takes any free port
 *   --host, STOKER_HTTP_HOST        default 127.0.0.1 (in a cluster: 0.0.0.0, k8s/base)
 *   STOKER_METRICS_TOKEN            /metrics needs it (or an API token) when set; open
 *                                   otherwise, as Prometheus scrapes usually are
 *   STOKER_HTTP_BODY_LIMIT          largest request body in bytes (default 1 MiB)
 *   STOKER_ADMIN_TOKEN, STOKER_READ_TOKEN   the API tokens (tokens.ts), else the home's
 */
import type { FastifyInstance } from 'fastify';
import { UsageError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { bounded } from '../../common/timers.js';
import { QueueReader } from '../queue-counts.js';
import type { System } from '../system.js';
import { StokerMetrics } from './metrics.js';
import { buildHttpServer, DEFAULT_BODY_LIMIT } from './server.js';
import { loadOrCreateTokens, TokenAuth, type LoadedTokens } from './tokens.js';

/** How long each step of closing the server may take before it is left behind. */
const CLOSE_STEP_MS = 5000;

export interface HttpSettings {
  port: number;
  host: string;
  metricsToken: string | null;
  bodyLimit: number;
}

export function httpSettings(
  flags: { port?: number | undefined; host?: string | undefined },
  env: NodeJS.ProcessEnv,
): HttpSettings {
  const port = flags.port ?? (env.STOKER_HTTP_PORT ? Number(env.STOKER_HTTP_PORT) : 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(
      `the HTTP port must be a whole number from 0 to 65535, not ${flags.port ?? env.STOKER_HTTP_PORT}`,
    );
  const limit = env.STOKER_HTTP_BODY_LIMIT
    ? Number(env.STOKER_HTTP_BODY_LIMIT)
    : DEFAULT_BODY_LIMIT;
  if (!Number.isInteger(limit) || limit < 1024)
    throw new UsageError(
      `STOKER_HTTP_BODY_LIMIT must be a whole number of bytes >= 1024, not ${env.STOKER_HTTP_BODY_LIMIT}`,
    );
  const metricsToken = env.STOKER_METRICS_TOKEN || null;
  if (metricsToken !== null && metricsToken.length < 16)
    throw new UsageError('STOKER_METRICS_TOKEN must be at least 16 characters');
  return {
    port,
    host: flags.host ?? env.STOKER_HTTP_HOST ?? '127.0.0.1',
    metricsToken,
    bodyLimit: limit,
  };
}

export interface RunningHttp {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  tokens: LoadedTokens;
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function startHttp(opts: {
  sys: System;
  redisUrl: string;
  home: string;
  env: NodeJS.ProcessEnv;
  settings: HttpSettings;
  log: Logger;
}): Promise<RunningHttp> {
  const { sys, settings } = opts;
  const tokens = loadOrCreateTokens(opts.home, opts.env);
  let leader = true;
  void sys.leadership.lost.then(() => (leader = false));
  const queues = new QueueReader(sys.redis, sys.keys, opts.redisUrl);
  const source = {
    redis: sys.redis,
    keys: sys.keys,
    store: sys.store,
    queues,
    home: opts.home,
    isLeader: () => leader,
  };
  const metrics = new StokerMetrics(source);
  sys.controller.onPass = (s) => metrics.reconcile.observe(s);
  sys.dispatcher.onAttempt = (e) => metrics.attemptEnded(e);
  const app = buildHttpServer({
    ...source,
    auth: new TokenAuth(tokens.tokens),
    metrics,
    metricsToken: settings.metricsToken,
    log: opts.log,
    bodyLimit: settings.bodyLimit,
  });
  try {
    await app.listen({ port: settings.port, host: settings.host });
  } catch (err) {
    await queues.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
      throw new UsageError(
        `port ${settings.port} on ${settings.host} is in use: choose another with --port or STOKER_HTTP_PORT`,
      );
    throw err;
  }
  const addr = app.server.address();
  const port = addr && typeof addr === 'object' ? addr.port : settings.port;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  return {
    url: `http://${host}:${port}`,
    tokens,
    app,
    close: async () => {
      sys.controller.onPass = null;
      sys.dispatcher.onAttempt = null;
      // Bounded: the server closes when its controller lost its lock, often because
      // Redis is out of reach, and the close's Redis steps (QUIT) would wait for it.
      const late = (step: string) => () =>
        opts.log.warn({ step }, 'closing the HTTP server took too long; going on');
      await bounded(app.close(), CLOSE_STEP_MS, late('server'));
      await bounded(queues.close(), CLOSE_STEP_MS, late('queue readers'));
    },
  };
}
