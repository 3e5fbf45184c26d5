/**
 * An in-process fake Kubernetes API server speaking real HTTP, for the real
 * @kubernetes/client-node. It serves batch/v1 Jobs, core/v1 Pods, Services, Secrets,
 * ConfigMaps, PersistentVolumeClaims, Events, ServiceAccounts, Nodes,
 * coordination.k8s.io/v1 Leases, scheduling.k8s.io/v1 PriorityClasses (and apps/v1
 * Deployments/StatefulSets as plain storage); namespaces are implicit (every namespace
 * exists).
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
 * Faults: interceptors (answer a request with any status, headers and body, delay it,
 * drop the connection, or serve it and then drop the answer: a create that happened but
 * whose client never heard so), stallWatches(), closeWatches(), expireHistory(),
 * restart() (optionally with a fresh watch cache: every older resourceVersion is 410).
 *
 * The simulated node (kubelet, scheduler, Job controller) lives in kubelet.ts and works on
 * `server.store` in-process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from './clock.js';
import {
  type KubeObject,
  type KubeStatus,
  type ResourceType,
  KubeApiError,
  apiError,
  apiVersionOf,
  isPlainObject,
  kubeTime,
  matchesFields,
  matchesLabels,
  notFound,
  parseFieldSelector,
  parseLabelSelector,
  statusBody,
} from './kube-objects.js';
import {
  FakeKubeStore,
  type DeleteOptions,
  type PropagationPolicy,
  type StoreEvent,
} from './kube-store.js';

export { FakeKubeStore } from './kube-store.js';
export type { StoreEvent, DeleteOptions, PropagationPolicy } from './kube-store.js';
export { KubeApiError, statusBody } from './kube-objects.js';
export type { KubeObject, KubeStatus, ObjectMeta } from './kube-objects.js';

export type Verb =
  | 'get'
  | 'list'
  | 'watch'
  | 'create'
  | 'update'
  | 'patch'
  | 'delete'
  | 'deletecollection'
  | 'other';

/** What an interceptor sees of a request. */
export interface InterceptedRequest {
  seq: number;
  method: string;
  /** URL path without the query. */
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  verb: Verb;
  /** Plural resource (`jobs`), undefined for non-resource paths (`/version`). */
  resource?: string | undefined;
  namespace?: string | undefined;
  name?: string | undefined;
  subresource?: string | undefined;
  /** The parsed JSON body, when there is one. */
  body?: unknown;
}

/**
 * An interceptor's answer. With `status`, the server answers with it (body: a Status
 * for the code unless given; 429 gets `Retry-After` from retryAfterSeconds, default 1).
 * With only `delayMs`, the request is held that long and then served normally.
 * `dropConnection` destroys the socket without an answer. `dropAnswer` serves the
 * request (the write happens) and then destroys the socket instead of answering.
 */
export interface InterceptResult {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  delayMs?: number;
  retryAfterSeconds?: number;
  dropConnection?: boolean;
  dropAnswer?: boolean;
}

export type Interceptor = (
  req: InterceptedRequest,
) => InterceptResult | undefined | void | Promise<InterceptResult | undefined | void>;

/** Which requests a fault applies to: fields must all match (absent: any), or a predicate. */
export type RequestMatch =
  | Partial<
      Pick<
        InterceptedRequest,
        'verb' | 'resource' | 'namespace' | 'name' | 'subresource' | 'method'
      >
    >
  | ((req: InterceptedRequest) => boolean);

export interface RecordedRequest {
  seq: number;
  method: string;
  path: string;
  query: string;
  verb: Verb;
  resource?: string | undefined;
  namespace?: string | undefined;
  name?: string | undefined;
  subresource?: string | undefined;
  /** HTTP status answered (0: connection dropped or refused while down). */
  status: number;
  /** Answered by an interceptor. */
  intercepted: boolean;
  /** When it arrived (ms since the epoch, real time): for request-rate checks. */
  at: number;
}

/** Where pods/log reads come from (the fake kubelet registers itself). */
export interface PodLogSource {
  /** The container's log so far; throw a KubeApiError (400) when it has not started. */
  read(
    namespace: string,
    pod: string,
    container: string | undefined,
    opts: { tailLines?: number; limitBytes?: number; previous?: boolean },
  ): string;
  /** Stream new output; onEnd when the container has terminated. Returns an unsubscribe. */
  follow(
    namespace: string,
    pod: string,
    container: string | undefined,
    onData: (chunk: string) => void,
    onEnd: () => void,
  ): () => void;
}

export interface FakeApiServerOptions {
  /** Time for timestamps, Job deadlines, grace periods (default: the real clock). */
  clock?: Clock;
  /** Watch events retained for resumption (default 5000). */
  historyLimit?: number;
  /** Validate objects against the Kubernetes OpenAPI schemas (default true). */
  validateSchemas?: boolean;
  /** Bearer token the server requires; null accepts anything (default 'fake-token'). */
  token?: string | null;
  /** BOOKMARK events on watches that allow them, every this many ms (default 1000). */
  bookmarkIntervalMs?: number;
  /** How an expired resourceVersion is answered on watch: an ERROR event in a 200 stream (default, like the real server) or HTTP 410. */
  watchGone?: 'event' | 'http';
  /** Namespace of the kubeConfig() context (default 'default'). */
  namespace?: string;
  /** Port to listen on (default: a free one). */
  port?: number;
}

interface WatchConn {
  res: ServerResponse;
  resource: string;
  stalled: boolean;
  close(mode: 'end' | 'destroy'): void;
}

export interface FakeApiServer {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** The objects, for assertions and for in-process controllers. */
  readonly store: FakeKubeStore;
  readonly clock: Clock;
  /** A KubeConfig for the real client: cluster at url (skipTLSVerify), a token user. */
  kubeConfig(opts?: { namespace?: string; token?: string }): KubeConfig;
  /** Every request so far, in order. */
  readonly requests: readonly RecordedRequest[];
  /** How many recorded requests match (all of them without a filter). */
  countRequests(filter?: Partial<Omit<RecordedRequest, 'seq' | 'path' | 'query'>>): number;
  /** Requests per verb (`{get: 3, watch: 1, ...}`). */
  verbCounts(): Record<string, number>;
  clearRequests(): void;
  /** Add an interceptor (run in order; the first answer wins). Returns its removal. */
  intercept(fn: Interceptor): () => void;
  /** Answer the next `times` matching requests with `result` (default once). */
  failNext(match: RequestMatch, result: InterceptResult, times?: number): () => void;
  /** 429 with Retry-After for the next `times` matching requests (default once). */
  throttle(match: RequestMatch, retryAfterSeconds?: number, times?: number): () => void;
  /** Watch streams, current and new, stay open and send nothing; release() ends them so clients resume. */
  stallWatches(): (mode?: 'end' | 'destroy') => void;
  /** End every open watch stream (clients resume from their last resourceVersion). */
  closeWatches(mode?: 'end' | 'destroy'): void;
  /** Send a BOOKMARK now on every watch that allows them. */
  sendBookmarks(): void;
  /** Compact the history: every resourceVersion seen so far answers 410 on watch. */
  expireHistory(): void;
  /**
   * Drop all connections and refuse new ones for downMs, keeping the objects; resolves
   * when back. freshWatchCache: the restarted server's watch cache starts empty, so a
   * watch resuming from any resourceVersion seen before gets 410 Gone (clients relist).
   */
  restart(downMs?: number, opts?: { freshWatchCache?: boolean }): Promise<void>;
  /** Requests that arrived in the busiest `windowMs` (matching filter): a rate check. */
  peakRequests(
    windowMs: number,
    filter?: Partial<Omit<RecordedRequest, 'seq' | 'path' | 'query' | 'at'>>,
  ): number;
  /** Open watch streams. */
  readonly activeWatches: number;
  setPodLogSource(src: PodLogSource | undefined): void;
  stop(): Promise<void>;
}

function matchRequest(m: RequestMatch, r: InterceptedRequest): boolean {
  if (typeof m === 'function') return m(r);
  return (Object.keys(m) as (keyof typeof m)[]).every((k) => m[k] === undefined || m[k] === r[k]);
}

interface Route {
  kind: 'resource' | 'namespaces' | 'nonresource';
  rt?: ResourceType;
  namespace?: string | undefined;
  name?: string | undefined;
  subresource?: string | undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

class FakeApiServerImpl implements FakeApiServer {
  readonly store: FakeKubeStore;
  readonly clock: Clock;
  private server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<WatchConn>();
  private readonly interceptors: Interceptor[] = [];
  private readonly log: RecordedRequest[] = [];
  private seq = 0;
  private stalled = false;
  private down = false;
  private stopped = false;
  private logSource: PodLogSource | undefined;
  /** Responses an interceptor asked to drop after serving (dropAnswer). */
  private readonly answerDropped = new WeakSet<ServerResponse>();
  private readonly token: string | null;
  private readonly bookmarkIntervalMs: number;
  private readonly watchGone: 'event' | 'http';
  private readonly namespace: string;
  private readonly explicitNamespaces = new Set<string>();
  port = 0;

  constructor(opts: FakeApiServerOptions) {
    const storeOpts: ConstructorParameters<typeof FakeKubeStore>[0] = {};
    if (opts.clock) storeOpts.clock = opts.clock;
    if (opts.historyLimit !== undefined) storeOpts.historyLimit = opts.historyLimit;
    if (opts.validateSchemas !== undefined) storeOpts.validateSchemas = opts.validateSchemas;
    this.store = new FakeKubeStore(storeOpts);
    this.clock = this.store.clock;
    this.token = opts.token === undefined ? 'fake-token' : opts.token;
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
    this.watchGone = opts.watchGone ?? 'event';
    this.namespace = opts.namespace ?? 'default';
    this.server = this.makeServer();
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get requests(): readonly RecordedRequest[] {
    return this.log;
  }

  get activeWatches(): number {
    return this.watches.size;
  }

  private makeServer(): Server {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          this.sendStatus(
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

  countRequests(filter: Partial<Omit<RecordedRequest, 'seq' | 'path' | 'query'>> = {}): number {
    return this.log.filter((r) =>
      (Object.keys(filter) as (keyof typeof filter)[]).every(
        (k) => filter[k] === undefined || filter[k] === r[k],
      ),
    ).length;
  }

  peakRequests(
    windowMs: number,
    filter: Partial<Omit<RecordedRequest, 'seq' | 'path' | 'query' | 'at'>> = {},
  ): number {
    const times = this.log
      .filter((r) =>
        (Object.keys(filter) as (keyof typeof filter)[]).every(
          (k) => filter[k] === undefined || filter[k] === r[k],
        ),
      )
      .map((r) => r.at);
    let peak = 0;
    for (let i = 0, j = 0; j < times.length; j++) {
      while ((times[j] as number) - (times[i] as number) >= windowMs) i++;
      peak = Math.max(peak, j - i + 1);
    }
    return peak;
  }

  verbCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.log) out[r.verb] = (out[r.verb] ?? 0) + 1;
    return out;
  }

  clearRequests(): void {
    this.log.length = 0;
  }

  intercept(fn: Interceptor): () => void {
    this.interceptors.push(fn);
    return () => {
      const i = this.interceptors.indexOf(fn);
      if (i >= 0) this.interceptors.splice(i, 1);
    };
  }

  failNext(match: RequestMatch, result: InterceptResult, times = 1): () => void {
    let left = times;
    const remove = this.intercept((req) => {
      if (left <= 0 || !matchRequest(match, req)) return undefined;
      left -= 1;
      if (left <= 0) remove();
      return result;
    });
    return remove;
  }

  throttle(match: RequestMatch, retryAfterSeconds = 1, times = 1): () => void {
    return this.failNext(match, { status: 429, retryAfterSeconds }, times);
  }

  stallWatches(): (mode?: 'end' | 'destroy') => void {
    this.stalled = true;
    for (const w of this.watches) w.stalled = true;
    return (mode = 'end') => {
      this.stalled = false;
      for (const w of [...this.watches]) if (w.stalled) w.close(mode);
    };
  }

  closeWatches(mode: 'end' | 'destroy' = 'end'): void {
    for (const w of [...this.watches]) w.close(mode);
  }

  private bookmarkHandlers = new Set<() => void>();

  sendBookmarks(): void {
    for (const b of this.bookmarkHandlers) b();
  }

  expireHistory(): void {
    this.store.expireHistory();
  }

  async restart(downMs = 500, opts: { freshWatchCache?: boolean } = {}): Promise<void> {
    this.down = true;
    this.closeWatches('destroy');
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
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
    this.closeWatches('destroy');
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
    this.store.close();
  }

  // -------------------------------------------------------------------------------------
  // Request handling

  private send(
    res: ServerResponse,
    code: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    if (res.headersSent || res.destroyed) return;
    if (this.answerDropped.has(res)) {
      res.socket?.destroy();
      return;
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(code, {
      'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json',
      'Cache-Control': 'no-cache, private',
      ...headers,
    });
    res.end(text);
  }

  private sendStatus(
    res: ServerResponse,
    s: KubeStatus,
    headers: Record<string, string> = {},
  ): void {
    this.send(res, s.code, s, headers);
  }

  private route(pathname: string): Route | undefined {
    const seg = pathname
      .split('/')
      .filter((s) => s.length > 0)
      .map(decodeURIComponent);
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === 'api' && seg.length >= 2) {
      group = '';
      version = seg[1]!;
      rest = seg.slice(2);
    } else if (seg[0] === 'apis' && seg.length >= 3) {
      group = seg[1]!;
      version = seg[2]!;
      rest = seg.slice(3);
    } else return { kind: 'nonresource' };
    if (rest.length === 0) return { kind: 'nonresource' };
    let namespace: string | undefined;
    let resource: string;
    let name: string | undefined;
    let subresource: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      resource = rest[2]!;
      name = rest[3];
      subresource = rest[4];
    } else if (rest[0] === 'namespaces' && group === '') {
      return { kind: 'namespaces', name: rest[1], subresource: rest[2] };
    } else {
      resource = rest[0]!;
      name = rest[1];
      subresource = rest[2];
    }
    const rt = this.store
      .resourceTypes()
      .find((t) => t.resource === resource && t.group === group && t.version === version);
    if (!rt) return undefined;
    if (!rt.namespaced && namespace !== undefined) return undefined;
    return { kind: 'resource', rt, namespace, name, subresource };
  }

  private verbOf(method: string, route: Route | undefined, q: URLSearchParams): Verb {
    if (!route || route.kind === 'nonresource') return method === 'GET' ? 'get' : 'other';
    const watch = q.get('watch') === 'true' || q.get('watch') === '1';
    switch (method) {
      case 'GET':
        return route.name ? 'get' : watch ? 'watch' : 'list';
      case 'POST':
        return route.name ? 'create' : 'create';
      case 'PUT':
        return 'update';
      case 'PATCH':
        return 'patch';
      case 'DELETE':
        return route.name ? 'delete' : 'deletecollection';
      default:
        return 'other';
    }
  }

  private async readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const q = url.searchParams;
    const route = this.route(url.pathname);
    const verb = this.verbOf(method, route, q);
    const rec: RecordedRequest = {
      seq: ++this.seq,
      method,
      path: url.pathname,
      query: url.search,
      verb,
      resource: route?.kind === 'namespaces' ? 'namespaces' : route?.rt?.resource,
      namespace: route?.namespace,
      name: route?.name,
      subresource: route?.subresource,
      status: 0,
      intercepted: false,
      at: Date.now(),
    };
    this.log.push(rec);
    res.on('finish', () => {
      if (rec.status === 0) rec.status = res.statusCode;
    });
    const raw = await this.readBody(req);
    let body: unknown;
    const ctype = String(req.headers['content-type'] ?? '');
    if (raw.length > 0 && !ctype.includes('yaml')) {
      try {
        body = JSON.parse(raw);
      } catch {
        rec.status = 400;
        this.sendStatus(
          res,
          statusBody(
            400,
            `the body of the request was in an unknown format - accepted media types include: application/json`,
          ),
        );
        return;
      }
    }
    if (this.token !== null && req.headers.authorization !== `Bearer ${this.token}`) {
      rec.status = 401;
      this.sendStatus(res, statusBody(401, 'Unauthorized'));
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
    for (const fn of [...this.interceptors]) {
      const r = await fn(ireq);
      if (!r) continue;
      if (r.delayMs) await sleep(r.delayMs);
      if (r.dropConnection) {
        rec.intercepted = true;
        req.socket.destroy();
        return;
      }
      if (r.dropAnswer) {
        rec.intercepted = true;
        this.answerDropped.add(res);
        break;
      }
      if (r.status !== undefined) {
        rec.intercepted = true;
        rec.status = r.status;
        const headers = { ...(r.headers ?? {}) };
        if (r.status === 429 && headers['Retry-After'] === undefined)
          headers['Retry-After'] = String(r.retryAfterSeconds ?? 1);
        const b =
          r.body ??
          statusBody(
            r.status,
            undefined,
            undefined,
            r.status === 429 ? { retryAfterSeconds: r.retryAfterSeconds ?? 1 } : undefined,
          );
        this.send(res, r.status, b, headers);
        return;
      }
    }
    try {
      await this.dispatch(req, res, method, q, route, verb, body, ctype, rec);
    } catch (err) {
      if (err instanceof KubeApiError) {
        rec.status = err.code;
        this.sendStatus(res, err.status);
      } else throw err;
    }
  }

  private async dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    q: URLSearchParams,
    route: Route | undefined,
    verb: Verb,
    body: unknown,
    ctype: string,
    rec: RecordedRequest,
  ): Promise<void> {
    if (!route) throw apiError(404, 'the server could not find the requested resource', 'NotFound');
    if (route.kind === 'nonresource')
      return this.nonResource(res, new URL(req.url ?? '/', 'http://fake').pathname);
    if (route.kind === 'namespaces') return this.namespaces(res, method, route, body);
    const rt = route.rt!;
    const store = this.store;
    const ns = rt.namespaced ? route.namespace : undefined;
    const sub = route.subresource;
    if (
      sub !== undefined &&
      !(sub === 'status' && rt.hasStatus) &&
      !(rt.resource === 'pods' && (sub === 'log' || sub === 'eviction'))
    )
      throw apiError(404, 'the server could not find the requested resource', 'NotFound');
    switch (verb) {
      case 'get': {
        if (sub === 'log') return this.podLog(res, ns ?? 'default', route.name!, q);
        this.send(res, 200, store.getOrThrow(rt.resource, ns, route.name!));
        return;
      }
      case 'list':
        return this.list(res, rt, ns, q);
      case 'watch':
        return this.watch(res, rt, ns, q, rec);
      case 'create': {
        if (sub === 'eviction') {
          const opts =
            isPlainObject(body) && isPlainObject(body['deleteOptions'])
              ? body['deleteOptions']
              : {};
          const evictOpts: { gracePeriodSeconds?: number } = {};
          if (typeof opts['gracePeriodSeconds'] === 'number')
            evictOpts.gracePeriodSeconds = opts['gracePeriodSeconds'];
          store.evictPod(ns ?? 'default', route.name!, evictOpts);
          this.send(res, 201, statusBody(201, undefined, undefined));
          return;
        }
        if (route.name)
          throw apiError(
            405,
            'the server does not allow this method on the requested resource',
            'MethodNotAllowed',
          );
        const created = store.create(rt.resource, body, ns ? { namespace: ns } : {});
        this.send(res, 201, created);
        return;
      }
      case 'update': {
        const opts: { subresource?: 'status'; namespace?: string } = {};
        if (sub === 'status') opts.subresource = 'status';
        if (ns) opts.namespace = ns;
        if (
          isPlainObject(body) &&
          isPlainObject(body['metadata']) &&
          body['metadata']['name'] !== route.name
        )
          throw apiError(400, 'the name of the object does not match the name on the URL');
        this.send(res, 200, store.update(rt.resource, body, opts));
        return;
      }
      case 'patch': {
        const opts: { subresource?: 'status' } = {};
        if (sub === 'status') opts.subresource = 'status';
        this.send(res, 200, store.patch(rt.resource, ns, route.name!, body, ctype, opts));
        return;
      }
      case 'delete': {
        const opts = this.deleteOptions(q, body);
        const { object, removed } = store.delete(rt.resource, ns, route.name!, opts);
        if (rt.resource === 'pods' || !removed) this.send(res, 200, object);
        else
          this.send(res, 200, {
            ...statusBody(200),
            details: {
              name: route.name,
              group: rt.group,
              kind: rt.resource,
              uid: object.metadata.uid,
            },
          });
        return;
      }
      case 'deletecollection': {
        const opts = {
          ...this.deleteOptions(q, body),
          namespace: ns,
          labelSelector: q.get('labelSelector') ?? undefined,
          fieldSelector: q.get('fieldSelector') ?? undefined,
        };
        const items = store.deleteCollection(rt.resource, opts);
        this.send(res, 200, {
          apiVersion: apiVersionOf(rt),
          kind: `${rt.kind}List`,
          metadata: { resourceVersion: String(store.resourceVersion) },
          items,
        });
        return;
      }
      default:
        throw apiError(
          405,
          'the server does not allow this method on the requested resource',
          'MethodNotAllowed',
        );
    }
  }

  private deleteOptions(q: URLSearchParams, body: unknown): DeleteOptions {
    const b = isPlainObject(body) ? body : {};
    const opts: DeleteOptions = {};
    const g =
      q.get('gracePeriodSeconds') ??
      (typeof b['gracePeriodSeconds'] === 'number' ? String(b['gracePeriodSeconds']) : null);
    if (g !== null && g !== '') opts.gracePeriodSeconds = Number(g);
    const p =
      q.get('propagationPolicy') ??
      (typeof b['propagationPolicy'] === 'string' ? b['propagationPolicy'] : null);
    if (p !== null) {
      if (p !== 'Background' && p !== 'Foreground' && p !== 'Orphan')
        throw apiError(
          422,
          `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${p}": supported values: "Foreground", "Background", "Orphan", "nil"`,
          'Invalid',
        );
      opts.propagationPolicy = p as PropagationPolicy;
    } else if (b['orphanDependents'] === true || q.get('orphanDependents') === 'true')
      opts.propagationPolicy = 'Orphan';
    else if (b['orphanDependents'] === false || q.get('orphanDependents') === 'false')
      opts.propagationPolicy = 'Background';
    if (isPlainObject(b['preconditions'])) {
      const pre = b['preconditions'];
      opts.preconditions = {};
      if (typeof pre['uid'] === 'string') opts.preconditions.uid = pre['uid'];
      if (typeof pre['resourceVersion'] === 'string')
        opts.preconditions.resourceVersion = pre['resourceVersion'];
    }
    return opts;
  }

  private list(
    res: ServerResponse,
    rt: ResourceType,
    ns: string | undefined,
    q: URLSearchParams,
  ): void {
    const items = this.store.list(rt.resource, {
      namespace: ns,
      labelSelector: q.get('labelSelector') ?? undefined,
      fieldSelector: q.get('fieldSelector') ?? undefined,
    });
    const metadata: Record<string, unknown> = {
      resourceVersion: String(this.store.resourceVersion),
    };
    let page = items;
    const limit = Number(q.get('limit') ?? 0);
    const cont = q.get('continue');
    let offset = 0;
    if (cont) {
      try {
        const parsed = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as {
          rv: number;
          offset: number;
        };
        if (parsed.rv < this.store.oldestWatchableVersion)
          throw apiError(
            410,
            'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
            'Expired',
          );
        offset = parsed.offset;
        metadata['resourceVersion'] = String(parsed.rv);
      } catch (err) {
        if (err instanceof KubeApiError) throw err;
        throw apiError(400, 'continue key is not valid: illegal base64 data');
      }
    }
    if (limit > 0 || offset > 0) {
      page = items.slice(offset, limit > 0 ? offset + limit : undefined);
      const next = offset + page.length;
      if (limit > 0 && next < items.length) {
        metadata['continue'] = Buffer.from(
          JSON.stringify({ rv: this.store.resourceVersion, offset: next }),
        ).toString('base64url');
        metadata['remainingItemCount'] = items.length - next;
      }
    }
    this.send(res, 200, {
      apiVersion: apiVersionOf(rt),
      kind: `${rt.kind}List`,
      metadata,
      items: page,
    });
  }

  private watch(
    res: ServerResponse,
    rt: ResourceType,
    ns: string | undefined,
    q: URLSearchParams,
    rec: RecordedRequest,
  ): void {
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'));
    const matches = (o: KubeObject | undefined): boolean =>
      !!o &&
      (!ns || o.metadata.namespace === ns) &&
      matchesLabels(labels, o.metadata.labels) &&
      matchesFields(fields, o);
    const rvParam = q.get('resourceVersion');
    const allowBookmarks = q.get('allowWatchBookmarks') === 'true';
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? 0);
    let backlog: { type: string; object: KubeObject }[] = [];
    let gone: KubeStatus | undefined;
    if (rvParam === null || rvParam === '' || rvParam === '0') {
      backlog = this.store
        .list(rt.resource, { namespace: ns })
        .filter(matches)
        .map((object) => ({ type: 'ADDED', object }));
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0)
        throw apiError(
          400,
          `invalid resource version: strconv.ParseUint: parsing "${rvParam}": invalid syntax`,
        );
      try {
        backlog = this.store
          .eventsSince(from)
          .map((ev) => this.translate(ev, rt, matches))
          .filter((e): e is { type: string; object: KubeObject } => e !== undefined);
      } catch (err) {
        if (!(err instanceof KubeApiError) || err.code !== 410) throw err;
        gone = err.status;
      }
    }
    if (gone && this.watchGone === 'http') {
      rec.status = 410;
      this.sendStatus(res, gone);
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
    });
    rec.status = 200;
    res.flushHeaders();
    if (gone) {
      res.end(JSON.stringify({ type: 'ERROR', object: gone }) + '\n');
      return;
    }
    let closed = false;
    const timers: NodeJS.Timeout[] = [];
    const conn: WatchConn = {
      res,
      resource: rt.resource,
      stalled: this.stalled,
      close: (mode) => {
        if (closed) return;
        cleanup();
        if (mode === 'destroy') res.destroy();
        else res.end();
      },
    };
    const write = (type: string, object: unknown): void => {
      if (closed || conn.stalled) return;
      res.write(JSON.stringify({ type, object }) + '\n');
    };
    const bookmark = (): void => {
      if (!allowBookmarks) return;
      write('BOOKMARK', {
        kind: rt.kind,
        apiVersion: apiVersionOf(rt),
        metadata: { resourceVersion: String(this.store.resourceVersion) },
      });
    };
    const unsubscribe = this.store.subscribe((ev) => {
      const e = this.translate(ev, rt, matches);
      if (e) write(e.type, e.object);
    });
    const cleanup = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.watches.delete(conn);
      this.bookmarkHandlers.delete(bookmark);
    };
    this.watches.add(conn);
    this.bookmarkHandlers.add(bookmark);
    // The client going away closes the response (req 'close' fires once the body is read).
    res.on('close', cleanup);
    for (const e of backlog) write(e.type, e.object);
    if (allowBookmarks && this.bookmarkIntervalMs > 0) {
      const iv = setInterval(bookmark, this.bookmarkIntervalMs);
      iv.unref();
      timers.push(iv);
    }
    if (timeoutSeconds > 0) {
      const t = setTimeout(() => conn.close('end'), timeoutSeconds * 1000);
      t.unref();
      timers.push(t);
    }
  }

  /** A store event as a given watch sees it (label changes turn into ADDED/DELETED). */
  private translate(
    ev: StoreEvent,
    rt: ResourceType,
    matches: (o: KubeObject | undefined) => boolean,
  ): { type: string; object: KubeObject } | undefined {
    if (ev.resource !== rt.resource) return undefined;
    const now = matches(ev.object);
    if (ev.type === 'ADDED') return now ? { type: 'ADDED', object: ev.object } : undefined;
    if (ev.type === 'DELETED')
      return matches(ev.previous) || now ? { type: 'DELETED', object: ev.object } : undefined;
    const before = matches(ev.previous);
    if (now && before) return { type: 'MODIFIED', object: ev.object };
    if (now) return { type: 'ADDED', object: ev.object };
    if (before) return { type: 'DELETED', object: ev.object };
    return undefined;
  }

  private podLog(res: ServerResponse, ns: string, name: string, q: URLSearchParams): void {
    const pod = this.store.getOrThrow('pods', ns, name);
    const spec = isPlainObject(pod['spec']) ? pod['spec'] : {};
    const containers = Array.isArray(spec['containers'])
      ? (spec['containers'] as { name?: string }[])
      : [];
    const container = q.get('container') ?? undefined;
    if (container === undefined && containers.length > 1)
      throw apiError(
        400,
        `a container name must be specified for pod ${name}, choose one of: [${containers.map((c) => c.name).join(' ')}]`,
      );
    if (container !== undefined && !containers.some((c) => c.name === container))
      throw apiError(400, `container ${container} is not valid for pod ${name}`);
    const src = this.logSource;
    if (!src)
      throw apiError(
        400,
        `container "${containers[0]?.name ?? ''}" in pod "${name}" is waiting to start: ContainerCreating`,
      );
    const opts: { tailLines?: number; limitBytes?: number; previous?: boolean } = {};
    if (q.get('tailLines')) opts.tailLines = Number(q.get('tailLines'));
    if (q.get('limitBytes')) opts.limitBytes = Number(q.get('limitBytes'));
    if (q.get('previous') === 'true') opts.previous = true;
    const text = src.read(ns, name, container, opts);
    const follow = q.get('follow') === 'true';
    if (!follow) {
      this.send(res, 200, text);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked' });
    res.write(text);
    let done = false;
    const unsubscribe = src.follow(
      ns,
      name,
      container,
      (chunk) => {
        if (!done) res.write(chunk);
      },
      () => {
        if (done) return;
        done = true;
        res.end();
      },
    );
    res.on('close', () => {
      done = true;
      unsubscribe();
    });
  }

  private namespaces(res: ServerResponse, method: string, route: Route, body: unknown): void {
    const nsObj = (name: string): KubeObject => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels: { 'kubernetes.io/metadata.name': name } },
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    });
    if (method === 'GET' && !route.name) {
      const names = new Set([...this.store.namespaces(), ...this.explicitNamespaces]);
      this.send(res, 200, {
        apiVersion: 'v1',
        kind: 'NamespaceList',
        metadata: { resourceVersion: String(this.store.resourceVersion) },
        items: [...names].sort().map(nsObj),
      });
      return;
    }
    if (method === 'GET') {
      this.send(res, 200, nsObj(route.name!));
      return;
    }
    if (method === 'POST') {
      const name =
        isPlainObject(body) && isPlainObject(body['metadata'])
          ? String(body['metadata']['name'] ?? '')
          : '';
      if (!name)
        throw apiError(
          422,
          'Namespace "" is invalid: metadata.name: Required value: name or generateName is required',
          'Invalid',
        );
      if (this.explicitNamespaces.has(name))
        throw apiError(409, `namespaces "${name}" already exists`, 'AlreadyExists', {
          name,
          kind: 'namespaces',
        });
      this.explicitNamespaces.add(name);
      const o = nsObj(name);
      o.metadata.creationTimestamp = kubeTime(this.clock.now());
      this.send(res, 201, o);
      return;
    }
    if (method === 'DELETE' && route.name) {
      this.explicitNamespaces.delete(route.name);
      this.send(res, 200, { ...nsObj(route.name), status: { phase: 'Terminating' } });
      return;
    }
    throw apiError(
      405,
      'the server does not allow this method on the requested resource',
      'MethodNotAllowed',
    );
  }

  private nonResource(res: ServerResponse, path: string): void {
    const p = path.replace(/\/+$/, '') || '/';
    if (p === '/version') {
      this.send(res, 200, {
        major: '1',
        minor: '31',
        gitVersion: 'v1.31.0-fake',
        platform: 'linux/amd64',
      });
      return;
    }
    if (p === '/healthz' || p === '/readyz' || p === '/livez') {
      this.send(res, 200, 'ok');
      return;
    }
    const types = this.store.resourceTypes();
    if (p === '/api') {
      this.send(res, 200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [],
      });
      return;
    }
    if (p === '/apis') {
      const groups = [
        ...new Set(types.filter((t) => t.group).map((t) => `${t.group}/${t.version}`)),
      ].map((gv) => {
        const [name, version] = gv.split('/') as [string, string];
        return {
          name,
          versions: [{ groupVersion: gv, version }],
          preferredVersion: { groupVersion: gv, version },
        };
      });
      this.send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups });
      return;
    }
    const m = p.match(/^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/);
    if (m) {
      const group = m[1] ? '' : m[2]!;
      const version = m[1] ?? m[3]!;
      const resources = types
        .filter((t) => t.group === group && t.version === version)
        .flatMap((t) => {
          const verbs = [
            'create',
            'delete',
            'deletecollection',
            'get',
            'list',
            'patch',
            'update',
            'watch',
          ];
          const main = {
            name: t.resource,
            singularName: t.kind.toLowerCase(),
            namespaced: t.namespaced,
            kind: t.kind,
            verbs,
          };
          return t.hasStatus
            ? [
                main,
                {
                  name: `${t.resource}/status`,
                  singularName: '',
                  namespaced: t.namespaced,
                  kind: t.kind,
                  verbs: ['get', 'patch', 'update'],
                },
              ]
            : [main];
        });
      if (resources.length === 0)
        throw notFound(
          {
            resource: 'groups',
            group: '',
            version: 'v1',
            kind: 'APIGroup',
            namespaced: false,
            hasStatus: false,
          },
          group,
        );
      this.send(res, 200, {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: group ? `${group}/${version}` : version,
        resources,
      });
      return;
    }
    throw apiError(404, 'the server could not find the requested resource', 'NotFound');
  }
}

/** Start the fake API server on 127.0.0.1 (a free port unless opts.port). */
export async function startFakeApiServer(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = new FakeApiServerImpl(opts);
  await s.listen(opts.port ?? 0);
  return s;
}
