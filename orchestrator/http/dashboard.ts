/**
 * The dashboard's files (built by scripts/bundle.mjs from dashboard/ into
 * dist/dashboard): GET / is its page, /assets/NAME its script and style. The page holds
 * no data: it is served openly and asks the API (with the login cookie) for everything,
 * showing a login form when it has none. A fixed list of files, read into memory once:
 * no path from a request reaches the file system.
 *
 * Headers: a Content-Security-Policy that allows only this server's scripts (so text a
 * run shows cannot become a script) and no framing (the admin's buttons cannot be
 * clicked through another site's page).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { packageRoot } from '../../common/paths.js';

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'app.js.map': 'application/json',
  'app.css.map': 'application/json',
};

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

export function dashboardDir(): string {
  return join(packageRoot(), 'dist', 'dashboard');
}

export function mountDashboard(app: FastifyInstance, dir: string = dashboardDir()): void {
  const cache = new Map<string, Buffer>();
  const send = (reply: FastifyReply, name: string) => {
    let body = cache.get(name);
    if (!body) {
      try {
        body = readFileSync(join(dir, name));
      } catch {
        return reply.code(503).send({
          error: {
            code: 'Unavailable',
            message: `the dashboard is not built (${join(dir, name)} is missing): npm run build`,
          },
        });
      }
      cache.set(name, body);
    }
    return reply
      .header('content-type', FILES[name])
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('x-frame-options', 'DENY')
      .header('cache-control', name === 'index.html' ? 'no-cache' : 'max-age=300')
      .send(body);
  };
  app.get('/', { config: { access: 'open' } }, (_req, reply) => send(reply, 'index.html'));
  app.get<{ Params: { file: string } }>(
    '/assets/:file',
    { config: { access: 'open' } },
    (req, reply) => {
      const name = req.params.file;
      if (name === 'index.html' || !Object.hasOwn(FILES, name))
        return reply.code(404).send({ error: { code: 'NotFound', message: `no asset ${name}` } });
      return send(reply, name);
    },
  );
}
