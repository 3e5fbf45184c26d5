/**
 * A reflector: one list, then a watch from the list's resourceVersion, kept in a local
 * cache (what client-go's Reflector + Indexer do). The kubernetes backend reads Jobs,
 * pods and events from these caches, so reading an unchanged object costs no request.
 *
 * Why not client-node's ListWatch (makeInformer), which stoker used first: in 1.4.0 it
 * asks for no bookmarks and sets no watch timeout, so a watch whose TCP connection died
 * without a FIN (an idle load balancer, a restarted API server behind one) hangs for
 * ever with nothing to notice it; its start() resolves even when the list failed; and
 * after an error it stops until the caller restarts it. This one:
 *
 * - watches with allowWatchBookmarks and a jittered timeoutSeconds (5-10 min, like
 *   client-go), so a healthy watch hears something at least every minute (the API
 *   server's bookmark interval) and is renewed from its resourceVersion now and then;
 * - presumes a watch dead when it heard nothing (no event, no bookmark) for quietMs,
 *   aborts it and lists again (one list per quiet period, however many objects: the
 *   fallback for a watch that stalls);
 * - lists again on 410 Gone (an ERROR event or an HTTP 410: history compacted, or an
 *   API server that restarted with a fresh watch cache);
 * - reconnects with exponential backoff (500 ms to 30 s, with jitter) while the API
 *   server is unreachable, and resumes from its resourceVersion;
 * - reports every change as onChange(type, object, previous), a relist included (the
 *   difference between cache and list), so indexes and wake-ups stay consistent.
 *
 * Lists go through the caller's list function (the backend passes them through its
 * ApiGate: rate limit, Retry-After, retries).
 */
import type { KubernetesObject } from '@kubernetes/client-node';

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** The part of client-node's Watch a reflector uses (tests may pass their own). */
export interface WatchLike {
  watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController>;
}

export interface ListResult<T> {
  items: T[];
  metadata?: { resourceVersion?: string | undefined } | undefined;
}

export interface ReflectorOptions<T extends KubernetesObject> {
  /** For logs and stats: `jobs`, `pods`, `events`. */
  name: string;
  /** The collection's path, e.g. `/apis/batch/v1/namespaces/NS/jobs`. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  list(): Promise<ListResult<T>>;
  watch: WatchLike;
  /** A watch that heard nothing for this long is presumed dead (default 90 s). */
  quietMs?: number;
  /** Server-side watch timeout, drawn in [min, max] seconds per watch (default [300, 600]). */
  watchTimeoutSeconds?: [number, number];
  /** Secondary index: objects by key (a pod's Job); undefined: not indexed. */
  indexBy?(obj: T): string | undefined;
  onChange?(type: ChangeType, obj: T, previous: T | undefined): void;
  /** After a relist: the cache was replaced (changes were reported one by one before). */
  onRelist?(): void;
  onWarning?(message: string, fields: Record<string, unknown>): void;
  now?(): number;
}

export interface ReflectorStats {
  lists: number;
  watches: number;
  /** Watches that ended with an error (connection refused or reset, HTTP errors). */
  watchErrors: number;
  /** 410 Gone answers (each followed by a relist). */
  gone: number;
  /** Watches aborted because they heard nothing for quietMs. */
  quietAborts: number;
}

const keyOf = (o: KubernetesObject): string =>
  `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

class QuietWatch extends Error {
  override name = 'QuietWatch';
}

export class Reflector<T extends KubernetesObject> {
  private readonly cache = new Map<string, T>();
  private readonly index = new Map<string, Map<string, T>>();
  private resourceVersion = '';
  private stopped = false;
  private current: AbortController | undefined;
  private wakeLoop: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private readonly now: () => number;
  private readonly quietMs: number;
  /** When the watch (or a list) last told us anything. */
  lastHeard = 0;
  /** Whether the cache holds a complete list (false until the first list succeeded). */
  synced = false;
  readonly stats: ReflectorStats = {
    lists: 0,
    watches: 0,
    watchErrors: 0,
    gone: 0,
    quietAborts: 0,
  };

  constructor(private readonly opts: ReflectorOptions<T>) {
    this.now = opts.now ?? Date.now;
    this.quietMs = opts.quietMs ?? 90_000;
  }

  /** List (throws if that fails), then keep watching in the background until stop(). */
  async start(): Promise<void> {
    await this.relist();
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.abort();
    this.wakeLoop?.();
    await this.loopDone;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.cache.get(`${namespace ?? ''}/${name}`);
  }

  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  /** Objects whose indexBy key is `key`. */
  byIndex(key: string): T[] {
    const m = this.index.get(key);
    return m ? [...m.values()] : [];
  }

  get size(): number {
    return this.cache.size;
  }

  // -------------------------------------------------------------------------------------

  private put(obj: T): void {
    const k = keyOf(obj);
    const prev = this.cache.get(k);
    if (prev && prev.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
    this.unindex(k, prev);
    this.cache.set(k, obj);
    const ik = this.opts.indexBy?.(obj);
    if (ik !== undefined) {
      let m = this.index.get(ik);
      if (!m) this.index.set(ik, (m = new Map()));
      m.set(k, obj);
    }
    this.opts.onChange?.(prev ? 'MODIFIED' : 'ADDED', obj, prev);
  }

  private remove(obj: T): void {
    const k = keyOf(obj);
    const prev = this.cache.get(k);
    if (!prev) return;
    this.unindex(k, prev);
    this.cache.delete(k);
    this.opts.onChange?.('DELETED', obj, prev);
  }

  private unindex(k: string, prev: T | undefined): void {
    if (!prev) return;
    const ik = this.opts.indexBy?.(prev);
    if (ik === undefined) return;
    const m = this.index.get(ik);
    m?.delete(k);
    if (m && m.size === 0) this.index.delete(ik);
  }

  /** Replace the cache with a fresh list, reporting the differences. */
  private async relist(): Promise<void> {
    this.stats.lists += 1;
    const res = await this.opts.list();
    const seen = new Set<string>();
    for (const item of res.items ?? []) {
      seen.add(keyOf(item));
      this.put(item);
    }
    for (const [k, obj] of [...this.cache]) if (!seen.has(k)) this.remove(obj);
    this.resourceVersion = res.metadata?.resourceVersion ?? '';
    this.lastHeard = this.now();
    this.synced = true;
    this.opts.onRelist?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wakeLoop = done;
    });
  }

  private async loop(): Promise<void> {
    let backoff = 500;
    while (!this.stopped) {
      if (!this.resourceVersion) {
        try {
          await this.relist();
        } catch (err) {
          this.opts.onWarning?.('list failed; retrying', {
            resource: this.opts.name,
            err: (err as Error)?.message ?? String(err),
            backoffMs: backoff,
          });
          await this.sleep(backoff * (0.75 + Math.random() * 0.5));
          backoff = Math.min(backoff * 2, 30_000);
          continue;
        }
      }
      const ended = await this.watchOnce();
      if (this.stopped) return;
      if (ended.gone) {
        this.stats.gone += 1;
        this.resourceVersion = '';
        continue;
      }
      if (ended.quiet) {
        // Heard nothing, not even a bookmark: the watch may be dead or may have missed
        // events. A relist is the one request that makes the cache right again.
        this.stats.quietAborts += 1;
        this.opts.onWarning?.('watch heard nothing; listing again', {
          resource: this.opts.name,
          quietMs: this.quietMs,
        });
        this.resourceVersion = '';
        continue;
      }
      if (ended.err) {
        this.stats.watchErrors += 1;
        if (ended.heard) backoff = 500;
        this.opts.onWarning?.('watch failed; reconnecting', {
          resource: this.opts.name,
          err: (ended.err as Error)?.message ?? String(ended.err),
          backoffMs: backoff,
        });
        await this.sleep(backoff * (0.75 + Math.random() * 0.5));
        backoff = Math.min(backoff * 2, 30_000);
      } else backoff = 500;
    }
  }

  /** One watch from resourceVersion, until it ends; what ended it. */
  private async watchOnce(): Promise<{
    err?: unknown;
    gone?: boolean;
    quiet?: boolean;
    heard: boolean;
  }> {
    this.stats.watches += 1;
    const query = this.watchQuery();
    let heard = false;
    let gone = false;
    let quiet = false;
    let errorEvent: unknown;
    const startedAt = this.now();
    return new Promise((resolve) => {
      let settled = false;
      const finish = (err: unknown): void => {
        if (settled) return;
        settled = true;
        clearInterval(liveness);
        this.current = undefined;
        const status = (err as { statusCode?: unknown } | null)?.statusCode;
        if (status === 410) gone = true;
        // A watch that ended at once with nothing to say counts as failed (backoff), so an
        // API server that keeps closing watches is not hammered.
        const empty = !heard && this.now() - startedAt < 1000;
        const failure =
          err ?? errorEvent ?? (empty ? new Error('the watch ended at once') : undefined);
        resolve({ err: quiet || gone ? undefined : failure, gone, quiet, heard });
      };
      const liveness = this.whenQuiet(startedAt, () => {
        quiet = true;
        this.current?.abort(new QuietWatch('no event or bookmark'));
        finish(undefined);
      });
      const onEvent = (phase: string, raw: unknown): void => {
        if (settled) return;
        const obj = raw as T & { code?: number };
        heard = true;
        this.lastHeard = this.now();
        switch (phase) {
          case 'ERROR':
            if (obj.code === 410) {
              gone = true;
              this.current?.abort();
              finish(undefined);
            } else errorEvent = Object.assign(new Error('watch ERROR event'), { status: obj });
            return;
          case 'ADDED':
          case 'MODIFIED':
            this.put(obj);
            break;
          case 'DELETED':
            this.remove(obj);
            break;
          default:
            break; // BOOKMARK: only its resourceVersion
        }
        const rv = obj.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
      };
      this.opts.watch
        .watch(this.opts.path, query, onEvent, (err) => finish(err))
        .then((ctl) => {
          if (settled || this.stopped) ctl.abort();
          else this.current = ctl;
        })
        .catch((err: unknown) => finish(err));
    });
  }

  /** From the last resourceVersion, with bookmarks and a jittered server-side timeout. */
  private watchQuery(): Record<string, string | number | boolean | undefined> {
    const [lo, hi] = this.opts.watchTimeoutSeconds ?? [300, 600];
    return {
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.round(lo + Math.random() * (hi - lo)),
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
    };
  }

  /** Calls `onQuiet` once nothing was heard for quietMs since `startedAt` (clear the timer it returns). */
  private whenQuiet(startedAt: number, onQuiet: () => void): NodeJS.Timeout {
    const timer = setInterval(
      () => {
        const last = Math.max(this.lastHeard, startedAt);
        if (this.now() - last >= this.quietMs) onQuiet();
      },
      Math.max(50, Math.min(this.quietMs / 4, 5000)),
    );
    timer.unref();
    return timer;
  }
}
