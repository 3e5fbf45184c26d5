/**
 * The fake API server's contract: what a test configures (FakeApiServerOptions), what it
 * gets back (FakeApiServer: the store, a KubeConfig for the real client, the request
 * record, the fault controls), and the shapes of requests as interceptors and the
 * request record see them. The server itself is in server.ts.
 */
import type { IncomingMessage } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import type { UserInfo } from '../store/admission.js';
import type { FakeKubeStore } from '../store/store.js';
import type { FaultKind, RandomFaultOptions } from './random-faults.js';

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
 * `replaceAnswer` serves the request (the write happens) and answers that code's Status
 * instead (409: AlreadyExists, as a retried create is answered). `cutAfterMs` serves the
 * request and destroys its connection that long after (a watch cut mid-stream).
 */
export interface InterceptResult {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  delayMs?: number;
  retryAfterSeconds?: number;
  dropConnection?: boolean;
  dropAnswer?: boolean;
  replaceAnswer?: number;
  cutAfterMs?: number;
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
  /**
   * Who each bearer token authenticates as: the userInfo validating admission sees
   * (store/admission.ts). A token not listed (the server's own included) is
   * store/admission.ts DEFAULT_USER, a cluster administrator. Listed tokens are accepted besides `token`.
   */
  users?: Record<string, UserInfo>;
  /** BOOKMARK events on watches that allow them, every this many ms (default 1000). */
  bookmarkIntervalMs?: number;
  /** How an expired resourceVersion is answered on watch: an ERROR event in a 200 stream (default, like the real server) or HTTP 410. */
  watchGone?: 'event' | 'http';
  /** Namespace of the kubeConfig() context (default 'default'). */
  namespace?: string;
  /** Port to listen on (default: a free one). */
  port?: number;
  /**
   * Seeded random faults on every request from the start (random-faults.ts): 500s, 429s,
   * dropped connections and answers, held requests, 409 on create, watches cut mid-way.
   */
  faults?: RandomFaultOptions;
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
  /** Faults injected by the `faults` option so far, by kind (undefined without it). */
  readonly faultCounts: Readonly<Record<FaultKind, number>> | undefined;
  setPodLogSource(src: PodLogSource | undefined): void;
  stop(): Promise<void>;
}
