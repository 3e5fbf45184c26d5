/**
 * The HTTP server of a running stoker (`stoker up`, `stoker serve`), on fastify.
 *
 *   GET  /, /assets/NAME                   the dashboard's page and files (dashboard.ts);
 *                                          open: the page asks the API for everything
 *   GET  /healthz, /readyz                 open (ready: Redis answers, leadership held)
 *   GET  /metrics                          Prometheus text (metrics.ts); open, or its own
 *                                          token when STOKER_METRICS_TOKEN is set
 *   /api/v1/...                            a bearer token (tokens.ts): routes.ts
 *   /queues                                Bull Board (board.ts)
 *   GET  /login?token=T[&next=/path]       a browser's login: sets an HttpOnly cookie
 *                                          holding the token, then goes to `next`
 *
 * Authentication: `Authorization: Bearer TOKEN`, or the login cookie. A read-only token
 * may call every GET; writes (submit, cancel, resume, scale, the queues' actions, the
 * board's actions) need the admin token. Every refusal and every error is JSON,
 * {"error": {"code", "message"}} (plus `issues` for an invalid spec), with the status
 * that says what went wrong: 400 a malformed request, 401 no or an unknown token, 403 a
 * read-only token on a write, 404 no such run or pool, 409 a conflict (a cancel of a run
 * that has ended, a resume of one that cannot be resumed), 413 a body over the limit,
 * 415 a content type not taken, 422 an invalid spec or value, 503 Redis unreachable.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { RedisUnavailableError, SpecError, UsageError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { RunNotResumableError } from '../resume.js';
import { RunNotFoundError } from '../store.js';
import { BOARD_PATH, mountBoard } from './board.js';
import { mountDashboard } from './dashboard.js';
import { digestOf, type Role, type TokenAuth } from './tokens.js';
import type { StokerMetrics } from './metrics.js';
import { apiRoutes } from './routes.js';
import { NotFoundError, type ApiSource } from './source.js';

/** Who may call a route. */
export type Access = 'open' | 'metrics' | Role;

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** The caller's role, once its token is checked (null on open routes). */
    role: Role | null;
  }
}

export interface HttpServerOptions extends ApiSource {
  auth: TokenAuth;
  metrics: StokerMetrics;
  /** When set, /metrics needs this token (or the admin or read token). */
  metricsToken: string | null;
  log: Logger;
  /** Largest request body, bytes. */
  bodyLimit: number;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export function buildHttpServer(opts: HttpServerOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: opts.bodyLimit });
  // A spec may be sent as YAML (the CLI's files) as well as JSON.
  app.addContentTypeParser(
    ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'],
    { parseAs: 'string' },
    (_req, body, done) => done(null, body),
  );
  const metricsDigest = opts.metricsToken ? digestOf(opts.metricsToken) : null;
  app.decorateRequest('role', null);

  app.addHook('onRequest', async (req, reply) => {
    const access = accessOf(req.routeOptions.config.access, req.method, req.url, req.is404);
    if (access === 'open') return;
    const token = bearer(req.headers.authorization) ?? cookieToken(req.headers.cookie);
    if (access === 'metrics') {
      if (!metricsDigest) return;
      if (token && (opts.auth.matches(token, metricsDigest) || opts.auth.roleOf(token))) return;
      return refuse(reply, 401, 'Unauthorized', '/metrics needs its bearer token');
    }
    const role = opts.auth.roleOf(token);
    req.role = role;
    if (!role) {
      return refuse(
        reply,
        401,
        'Unauthorized',
        token
          ? 'unknown token'
          : 'a bearer token is needed: Authorization: Bearer TOKEN (stoker up prints where the tokens are)',
      );
    }
    if (access === 'admin' && role !== 'admin') {
      return refuse(
        reply,
        403,
        'Forbidden',
        'this needs the admin token; a read-only token may only read',
      );
    }
  });

  app.setErrorHandler((err: FastifyError, _req, reply) =>
    sendError(reply, err, opts.log, opts.bodyLimit),
  );
  app.setNotFoundHandler((req, reply) =>
    refuse(reply, 404, 'NotFound', `no route ${req.method} ${req.url.split('?')[0]}`),
  );

  app.get('/healthz', { config: { access: 'open' } }, () => ({ ok: true }));
  app.get('/readyz', { config: { access: 'open' } }, async (_req, reply) => {
    const leader = opts.isLeader();
    const redis = await opts.redis
      .ping()
      .then(() => 'ok')
      .catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
    const ready = redis === 'ok' && leader;
    return reply.code(ready ? 200 : 503).send({ ready, redis, leader });
  });
  app.get('/metrics', { config: { access: 'metrics' } }, async (_req, reply) => {
    const text = await opts.metrics.scrape();
    return reply.type(opts.metrics.contentType).send(text);
  });
  loginRoute(app, opts.auth);
  app.register(apiRoutes(opts), { prefix: '/api/v1' });
  mountBoard(app, opts.queues);
  mountDashboard(app);
  return app;
}

/** A browser's login: the token into an HttpOnly cookie, then a page of this server. */
function loginRoute(app: FastifyInstance, auth: TokenAuth): void {
  app.get<{ Querystring: { token?: string; next?: string } }>(
    '/login',
    { config: { access: 'open' } },
    (req, reply) => {
      const token = typeof req.query.token === 'string' ? req.query.token : '';
      if (!auth.roleOf(token))
        return refuse(reply, 401, 'Unauthorized', 'unknown token: use the one stoker up printed');
      // Only a path of this server: never a redirect elsewhere.
      const next =
        typeof req.query.next === 'string' && /^\/(?!\/)[\w\-./]*$/.test(req.query.next)
          ? req.query.next
          : '/';
      return reply
        .header(
          'set-cookie',
          `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${30 * 24 * 3600}`,
        )
        .redirect(next, 303);
    },
  );
}

/** The browser's login cookie (set by /login; SameSite=Strict: no cross-site request carries it). */
const COOKIE = 'stoker_token';

function cookieToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=') || undefined;
  }
  return undefined;
}

/**
 * Who may call: the route's own setting; Bull Board's routes (no setting of ours): GETs
 * with the read token, its actions with the admin token; no route at all: any valid
 * token learns that (404); else admin.
 */
function accessOf(own: Access | undefined, method: string, url: string, is404: boolean): Access {
  if (own) return own;
  if (url === BOARD_PATH || url.startsWith(`${BOARD_PATH}/`) || url.startsWith(`${BOARD_PATH}?`))
    return method === 'GET' || method === 'HEAD' ? 'read' : 'admin';
  return is404 ? 'read' : 'admin';
}

function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

function refuse(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } });
}

function sendError(reply: FastifyReply, err: FastifyError, log: Logger, bodyLimit: number) {
  if (err instanceof SpecError) {
    return reply.code(422).send({
      error: { code: 'InvalidSpec', message: err.message, issues: err.issues },
    });
  }
  if (err instanceof RunNotFoundError || err instanceof NotFoundError)
    return refuse(reply, 404, 'NotFound', err.message);
  if (err instanceof RunNotResumableError) return refuse(reply, 409, 'Conflict', err.message);
  if (err instanceof UsageError) return refuse(reply, 422, 'Invalid', err.message);
  if (err instanceof RedisUnavailableError) return refuse(reply, 503, 'Unavailable', err.message);
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return refuse(reply, 413, 'BodyTooLarge', `the body is larger than ${bodyLimit} bytes`);
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return refuse(reply, 415, 'UnsupportedMediaType', err.message);
  if (err.validation) return refuse(reply, 400, 'BadRequest', err.message);
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500)
    return refuse(reply, err.statusCode, 'BadRequest', err.message);
  log.error({ err }, 'HTTP request failed');
  return refuse(reply, 500, 'Internal', 'internal error; see the controller log');
}
