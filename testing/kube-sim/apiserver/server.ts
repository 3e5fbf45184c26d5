/**
 * An in-process fake Kubernetes API server speaking real HTTP, for the real
 * @kubernetes/client-node. It serves batch/v1 Jobs, core/v1 Pods, Services, Secrets,
 * ConfigMaps, PersistentVolumeClaims, Events, ServiceAccounts, Nodes,
 * coordination.k8s.io/v1 Leases, scheduling.k8s.io/v1 PriorityClasses (and apps/v1
 * Deployments/StatefulSets as plain storage); namespaces are implicit (every namespace
 * exists: namespaces.ts).
 *
 * Verbs: create (409 AlreadyExists), get (404 NotFound), list (label selectors with
 * =, ==, !=, in, notin, exists, !exists; field selectors; limit/continue), watch
 * (ADDED/MODIFIED/DELETED, BOOKMARK with allowWatchBookmarks, resumption from a
 * resourceVersion, an ERROR event with a 410 Status when that version is older than the
 * retained history, timeoutSeconds), update (409 Conflict on a stale resourceVersion),
 * patch (JSON patch, merge patch, strategic merge patch), delete (propagationPolicy,
 * gracePeriodSeconds, preconditions), deletecollection, the status subresources,
 * pods/log (with follow) and pods/eviction. Every error body is a meta/v1 Status like the
 * real server's.
 *
 * A request goes: record it (request-log.ts) -> route it (routing.ts) -> read its JSON
 * body (400 when it is not JSON) -> check the bearer token (401) -> interceptors
 * (faults.ts) -> serve it (verbs.ts, watch.ts, namespaces.ts, discovery.ts) -> a thrown
 * KubeApiError becomes its Status; any other error a 500 Status.
 *
 * Faults: interceptors (answer a request with any status, headers and body, delay it,
 * drop the connection, or serve it and then drop the answer: a create that happened but
 * whose client never heard so), stallWatches(), closeWatches(), expireHistory(),
 * restart() (optionally with a fresh watch cache: every older resourceVersion is 410),
 * and the `faults` option: seeded random faults on every request (random-faults.ts).
 *
 * The simulated node (kubelet, scheduler) and the Job controller work on `server.store`
 * in-process (kubelet/, jobs/).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { KubeApiError, apiError, statusBody } from '../objects/meta.js';
import { DEFAULT_USER, type UserInfo } from '../store/admission.js';
import { FakeKubeStore, type StoreOptions } from '../store/store.js';
import { serveNonResource } from './discovery.js';
import { Interceptors, sleep } from './faults.js';
import { randomFaults, type RandomFaults } from './random-faults.js';
import { serveNamespaces } from './namespaces.js';
import { RequestLog, type RequestFilter } from './request-log.js';
import { Responder } from './respond.js';
import { type Route, route, verbOf } from './routing.js';
import type {
  FakeApiServer,
  FakeApiServerOptions,
  InterceptResult,
  InterceptedRequest,
  Interceptor,
  PodLogSource,
  RecordedRequest,
  RequestMatch,
} from './types.js';
import { serveResource } from './verbs.js';
import { WatchStreams } from './watch.js';

class FakeApiServerImpl implements FakeApiServer {
  readonly store: FakeKubeStore;
  readonly clock: Clock;
  private server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly respond = new Responder();
  private readonly watches: WatchStreams;
  private readonly interceptors = new Interceptors();
  private readonly log = new RequestLog();
  private down = false;
  private stopped = false;
  private logSource: PodLogSource | undefined;
  private readonly token: string | null;
  private readonly users: Record<string, UserInfo>;
  private readonly namespace: string;
  private readonly createdNamespaces = new Set<string>();
  private readonly random: RandomFaults | undefined;
  port = 0;

  constructor(opts: FakeApiServerOptions) {
    const storeOpts: StoreOptions = {};
    if (opts.clock) storeOpts.clock = opts.clock;
    if (opts.historyLimit !== undefined) storeOpts.historyLimit = opts.historyLimit;
    if (opts.validateSchemas !== undefined) storeOpts.validateSchemas = opts.validateSchemas;
    this.store = new FakeKubeStore(storeOpts);
    this.clock = this.store.clock;
    this.token = opts.token === undefined ? 'fake-token' : opts.token;
    this.users = opts.users ?? {};
    this.watches = new WatchStreams(this.store, this.respond, {
      bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 1000,
      watchGone: opts.watchGone ?? 'event',
    });
    this.namespace = opts.namespace ?? 'default';
    this.server = this.makeServer();
    if (opts.faults) {
      this.random = randomFaults(opts.faults);
      this.interceptors.add(this.random.interceptor);
    }
  }

  get faultCounts() {
    return this.random?.counts;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get requests(): readonly RecordedRequest[] {
    return this.log.entries;
  }

  get activeWatches(): number {
    return this.watches.count;
  }

  private makeServer(): Server {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          this.respond.sendStatus(
            res,
            statusBody(500, `fake apiserver: ${(err as Error).stack ?? String(err)}`),
          );
        } else res.destroy();
      });
    });
    server.on('connection', (s) => {
      if (this.down) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    // Watches are long requests; the server must not cut them.
    server.requestTimeout = 0;
    server.headersTimeout = 60_000;
    server.keepAliveTimeout = 5_000;
    return server;
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', onError);
        const addr = this.server.address();
        if (addr && typeof addr === 'object') this.port = addr.port;
        resolve();
      });
    });
  }

  kubeConfig(opts: { namespace?: string; token?: string } = {}): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake-user', token: opts.token ?? this.token ?? 'fake-token' }],
      contexts: [
        {
          name: 'fake',
          cluster: 'fake',
          user: 'fake-user',
          namespace: opts.namespace ?? this.namespace,
        },
      ],
      currentContext: 'fake',
    });
    return kc;
  }

  countRequests(filter: RequestFilter = {}): number {
    return this.log.count(filter);
  }

  peakRequests(windowMs: number, filter: Omit<RequestFilter, 'at'> = {}): number {
    return this.log.peak(windowMs, filter);
  }

  verbCounts(): Record<string, number> {
    return this.log.verbCounts();
  }

  clearRequests(): void {
    this.log.clear();
  }

  intercept(fn: Interceptor): () => void {
    return this.interceptors.add(fn);
  }

  failNext(match: RequestMatch, result: InterceptResult, times = 1): () => void {
    return this.interceptors.failNext(match, result, times);
  }

  throttle(match: RequestMatch, retryAfterSeconds = 1, times = 1): () => void {
    return this.failNext(match, { status: 429, retryAfterSeconds }, times);
  }

  stallWatches(): (mode?: 'end' | 'destroy') => void {
    return this.watches.stall();
  }

  closeWatches(mode: 'end' | 'destroy' = 'end'): void {
    this.watches.closeAll(mode);
  }

  sendBookmarks(): void {
    this.watches.sendBookmarks();
  }

  expireHistory(): void {
    this.store.expireHistory();
  }

  async restart(downMs = 500, opts: { freshWatchCache?: boolean } = {}): Promise<void> {
    this.down = true;
    await this.closeConnections();
    if (opts.freshWatchCache) this.store.expireHistory();
    await sleep(downMs);
    if (this.stopped) return;
    this.server = this.makeServer();
    this.down = false;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.listen(this.port);
        return;
      } catch (err) {
        if (attempt > 50) throw err;
        await sleep(100);
      }
    }
  }

  setPodLogSource(src: PodLogSource | undefined): void {
    this.logSource = src;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.down = true;
    await this.closeConnections();
    this.store.close();
  }

  /** End every watch, stop listening and drop every open connection. */
  private async closeConnections(): Promise<void> {
    this.watches.closeAll('destroy');
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  // -------------------------------------------------------------------------------------
  // Request handling

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const q = url.searchParams;
    const routed = route(this.store.resourceTypes(), url.pathname);
    const verb = verbOf(method, routed, q);
    const rec: RecordedRequest = {
      seq: this.log.nextSeq(),
      method,
      path: url.pathname,
      query: url.search,
      verb,
      resource: routed?.kind === 'namespaces' ? 'namespaces' : routed?.rt?.resource,
      namespace: routed?.namespace,
      name: routed?.name,
      subresource: routed?.subresource,
      status: 0,
      intercepted: false,
      at: Date.now(),
    };
    this.log.add(rec);
    res.on('finish', () => {
      if (rec.status === 0) rec.status = res.statusCode;
    });
    const ctype = String(req.headers['content-type'] ?? '');
    const body = parseBody(await readBody(req), ctype);
    if (body === UNPARSABLE) {
      rec.status = 400;
      this.respond.sendStatus(
        res,
        statusBody(
          400,
          `the body of the request was in an unknown format - accepted media types include: application/json`,
        ),
      );
      return;
    }
    const bearer = /^Bearer (.*)$/.exec(req.headers.authorization ?? '')?.[1];
    const listed = bearer !== undefined && Object.hasOwn(this.users, bearer);
    if (this.token !== null && bearer !== this.token && !listed) {
      rec.status = 401;
      this.respond.sendStatus(res, statusBody(401, 'Unauthorized'));
      return;
    }
    const ireq: InterceptedRequest = {
      seq: rec.seq,
      method,
      path: url.pathname,
      query: q,
      headers: req.headers,
      verb,
      resource: rec.resource,
      namespace: rec.namespace,
      name: rec.name,
      subresource: rec.subresource,
      body,
    };
    if (await this.interceptors.apply(ireq, req, res, rec, this.respond)) return;
    const user = listed ? this.users[bearer]! : DEFAULT_USER;
    try {
      this.store.validating.asUser(user, () =>
        this.dispatch(res, method, url.pathname, q, routed, body, ctype, rec),
      );
    } catch (err) {
      if (err instanceof KubeApiError) {
        rec.status = err.code;
        this.respond.sendStatus(res, err.status);
      } else throw err;
    }
  }

  private dispatch(
    res: ServerResponse,
    method: string,
    pathname: string,
    q: URLSearchParams,
    routed: Route | undefined,
    body: unknown,
    contentType: string,
    rec: RecordedRequest,
  ): void {
    if (!routed)
      throw apiError(404, 'the server could not find the requested resource', 'NotFound');
    if (routed.kind === 'nonresource')
      return serveNonResource(this.store.resourceTypes(), this.respond, res, pathname);
    if (routed.kind === 'namespaces') {
      const ctx = {
        store: this.store,
        clock: this.clock,
        respond: this.respond,
        created: this.createdNamespaces,
      };
      return serveNamespaces(ctx, res, method, routed.name, body);
    }
    const rt = routed.rt!;
    const ctx = {
      store: this.store,
      respond: this.respond,
      watches: this.watches,
      logSource: this.logSource,
    };
    serveResource(ctx, {
      res,
      rt,
      ns: rt.namespaced ? routed.namespace : undefined,
      name: routed.name,
      subresource: routed.subresource,
      verb: rec.verb,
      q,
      body,
      contentType,
      rec,
    });
  }
}

const UNPARSABLE = Symbol('unparsable body');

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A request body as JSON: undefined when empty or YAML (apply), UNPARSABLE when not JSON. */
function parseBody(raw: string, contentType: string): unknown {
  if (raw.length === 0 || contentType.includes('yaml')) return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return UNPARSABLE;
  }
}

/** Start the fake API server on 127.0.0.1 (a free port unless opts.port). */
export async function startFakeApiServer(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = new FakeApiServerImpl(opts);
  await s.listen(opts.port ?? 0);
  return s;
}
