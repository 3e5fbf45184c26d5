/**
 * Every request the kubernetes backend makes to the API server goes through one gate:
 *
 * - a token bucket (qps, burst), like client-go's default client-side rate limiter, so a
 *   burst of launches or a degraded watch can never flood the API server;
 * - 429 Too Many Requests: the whole gate pauses for the Retry-After the server asked
 *   for (not only the request that got it: the server is saying it is overloaded), then
 *   the request is tried again;
 * - transient failures (connection refused or reset while the API server restarts, 500,
 *   502, 503, 504) are retried with exponential backoff and jitter, up to retryForMs;
 * - a request with no answer after requestTimeoutMs is aborted (its connection closed)
 *   and retried as a transient failure: an API server that hangs, or a network that
 *   drops packets, answers nothing and closes nothing, and a launch waiting on it would
 *   wait forever (a create that did happen is answered 409 on the retry: re-attach);
 * - anything else (400, 403, 404, 409, 422...) is the caller's to handle, at once.
 *
 * Only requests that are safe to repeat go through call(): gets, lists, deletes, and
 * creates whose AlreadyExists the caller treats as success (launch is idempotent).
 *
 * Time comes in (GateClock), so tests can check the spacing without waiting on a real
 * clock; the default is the real one.
 */

export interface GateClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realGateClock: GateClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms))),
};

export interface ApiGateOptions {
  /** Sustained requests per second (default 20). */
  qps?: number;
  /** Requests allowed at once after a quiet spell (default 40). */
  burst?: number;
  /** Give up on a transient failure after retrying this long (default 120 s). */
  retryForMs?: number;
  /** First backoff after a transient failure, doubled per retry (default 250 ms, at most 10 s). */
  backoffMs?: number;
  /** A request unanswered this long is aborted and retried (default 30 s). */
  requestTimeoutMs?: number;
  clock?: GateClock;
  /** Told about each retry (the backend logs it). */
  onRetry?(info: { what: string; attempt: number; delayMs: number; err: unknown }): void;
}

/** The HTTP status of a client error (ApiException.code, or a watch's statusCode). */
export function httpStatusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

export const isHttpStatus = (err: unknown, code: number): boolean => httpStatusOf(err) === code;

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

/** A failure that another try may not have: the network, an overloaded or restarting server. */
export function isTransient(err: unknown): boolean {
  const status = httpStatusOf(err);
  if (status !== undefined) return status === 429 || (status >= 500 && status !== 501);
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; errno?: unknown; type?: unknown; name?: unknown };
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
  if (typeof e.errno === 'string' && NETWORK_CODES.has(e.errno)) return true;
  // node-fetch: a request that failed below HTTP (socket hang up, premature close).
  return e.name === 'FetchError' && e.type === 'system';
}

/** Milliseconds a 429 (or 503) asks the client to wait: Retry-After in seconds or as a date. */
export function retryAfterMs(err: unknown, now: number): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const headers = (err as { headers?: unknown }).headers;
  if (typeof headers !== 'object' || headers === null) return undefined;
  const raw = (headers as Record<string, unknown>)['retry-after'];
  if (typeof raw !== 'string' || raw.trim() === '') return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A request the gate aborted for want of an answer: transient (ETIMEDOUT). */
export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(what: string, ms: number) {
    super(`${what}: no answer from the API server within ${ms} ms`);
  }
}

export class GateClosedError extends Error {
  override name = 'GateClosedError';
  constructor(what: string) {
    super(`${what}: the kubernetes backend is closed`);
  }
}

export class ApiGate {
  private readonly qps: number;
  private readonly burst: number;
  private readonly retryForMs: number;
  private readonly backoffMs: number;
  private readonly requestTimeoutMs: number;
  private readonly clock: GateClock;
  private tokens: number;
  private refilledAt: number;
  /** No request leaves before this time (a Retry-After). */
  private pausedUntil = 0;
  /** Requests are granted tokens in arrival order. */
  private queue: Promise<void> = Promise.resolve();
  /** What went out, by `what` (e.g. `create jobs`), retries included. */
  readonly sent = new Map<string, number>();
  retries = 0;
  private closed = false;

  constructor(private readonly opts: ApiGateOptions = {}) {
    this.qps = opts.qps ?? 20;
    this.burst = opts.burst ?? 40;
    this.retryForMs = opts.retryForMs ?? 120_000;
    this.backoffMs = opts.backoffMs ?? 250;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.clock = opts.clock ?? realGateClock;
    this.tokens = this.burst;
    this.refilledAt = this.clock.now();
  }

  /** Requests sent so far (all kinds, retries included). */
  get total(): number {
    let n = 0;
    for (const v of this.sent.values()) n += v;
    return n;
  }

  /** Wait for a token (and for any Retry-After pause). */
  private take(): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        const now = this.clock.now();
        if (now < this.pausedUntil) {
          await this.clock.sleep(this.pausedUntil - now);
          continue;
        }
        this.tokens = Math.min(
          this.burst,
          this.tokens + ((now - this.refilledAt) * this.qps) / 1000,
        );
        this.refilledAt = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          return;
        }
        await this.clock.sleep(((1 - this.tokens) * 1000) / this.qps);
      }
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** No request leaves after this (the backend closed: a stopped controller sends nothing). */
  close(): void {
    this.closed = true;
  }

  /**
   * Run one request through the gate, retrying transient failures; other errors are
   * thrown. `fn` gets the signal that aborts its try when it has had no answer in time.
   */
  async call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const started = this.clock.now();
    let delay = this.backoffMs;
    for (let attempt = 1; ; attempt++) {
      await this.take();
      if (this.closed) throw new GateClosedError(what);
      this.sent.set(what, (this.sent.get(what) ?? 0) + 1);
      try {
        return await this.withTimeout(what, fn);
      } catch (err) {
        if (!isTransient(err)) throw err;
        const now = this.clock.now();
        const asked = retryAfterMs(err, now);
        if (asked !== undefined && httpStatusOf(err) === 429) {
          this.pausedUntil = Math.max(this.pausedUntil, now + asked);
        }
        const wait = asked ?? delay * (0.75 + Math.random() * 0.5);
        if (now + wait - started > this.retryForMs) throw err;
        this.retries += 1;
        this.opts.onRetry?.({ what, attempt, delayMs: Math.round(wait), err });
        await this.clock.sleep(wait);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  /**
   * One try, aborted after requestTimeoutMs. The abort closes its connection (the client
   * passes the signal to fetch); the race makes the try end even where a transport does
   * not listen to the signal.
   */
  private async withTimeout<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new RequestTimeoutError(what, this.requestTimeoutMs);
        reject(err);
        ac.abort(err);
      }, this.requestTimeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([fn(ac.signal), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}
