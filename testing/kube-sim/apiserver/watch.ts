/**
 * Watch streams: `GET ...?watch=true` answered with a chunked stream of
 * `{"type","object"}` lines, one per change to the matching objects.
 *
 * - Start: without a resourceVersion (or "0") the stream opens with ADDED for every
 *   matching object; with one, it replays the retained changes after that version. A
 *   version older than the history is answered, like the real server, with a 200 stream
 *   holding one ERROR event with a 410 Expired Status (or plain HTTP 410 with watchGone
 *   'http'); a version that is not a number is 400.
 * - Changes: each store event as this watch's selectors see it (an object that starts or
 *   stops matching is ADDED or DELETED for it).
 * - BOOKMARK events with allowWatchBookmarks, every bookmarkIntervalMs and on demand;
 *   timeoutSeconds ends the stream.
 * - Faults: stall() keeps streams open but silent until released (then they end, so
 *   clients resume); closeAll() ends or destroys every stream.
 */
import type { ServerResponse } from 'node:http';
import { type KubeObject, type KubeStatus, KubeApiError, apiError } from '../objects/meta.js';
import { type ResourceType, apiVersionOf } from '../objects/resources.js';
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from '../objects/selectors.js';
import type { StoreEvent } from '../store/object-table.js';
import type { FakeKubeStore } from '../store/store.js';
import type { Responder } from './respond.js';
import type { RecordedRequest } from './types.js';

interface WatchConn {
  res: ServerResponse;
  resource: string;
  stalled: boolean;
  close(mode: 'end' | 'destroy'): void;
}

interface WatchEvent {
  type: string;
  object: KubeObject;
}

type Matcher = (o: KubeObject | undefined) => boolean;

export interface WatchOptions {
  bookmarkIntervalMs: number;
  watchGone: 'event' | 'http';
}

export class WatchStreams {
  private readonly conns = new Set<WatchConn>();
  private readonly bookmarkHandlers = new Set<() => void>();
  private stalled = false;
  private readonly store: FakeKubeStore;
  private readonly respond: Responder;
  private readonly opts: WatchOptions;

  constructor(store: FakeKubeStore, respond: Responder, opts: WatchOptions) {
    this.store = store;
    this.respond = respond;
    this.opts = opts;
  }

  /** Open watch streams. */
  get count(): number {
    return this.conns.size;
  }

  /** Streams, current and new, stay open and send nothing; the release ends them. */
  stall(): (mode?: 'end' | 'destroy') => void {
    this.stalled = true;
    for (const w of this.conns) w.stalled = true;
    return (mode = 'end') => {
      this.stalled = false;
      for (const w of [...this.conns]) if (w.stalled) w.close(mode);
    };
  }

  closeAll(mode: 'end' | 'destroy' = 'end'): void {
    for (const w of [...this.conns]) w.close(mode);
  }

  sendBookmarks(): void {
    for (const b of this.bookmarkHandlers) b();
  }

  /** Answer a watch request on rt (in namespace ns, or all) with its stream. */
  open(
    res: ServerResponse,
    rt: ResourceType,
    ns: string | undefined,
    q: URLSearchParams,
    rec: RecordedRequest,
  ): void {
    const matches = matcher(ns, q);
    const { backlog, gone } = this.start(rt, ns, q, matches);
    if (gone && this.opts.watchGone === 'http') {
      rec.status = 410;
      this.respond.sendStatus(res, gone);
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
    this.stream(res, rt, q, matches, backlog);
  }

  /** What the stream starts with: the matching objects, or the changes since a version. */
  private start(
    rt: ResourceType,
    ns: string | undefined,
    q: URLSearchParams,
    matches: Matcher,
  ): { backlog: WatchEvent[]; gone?: KubeStatus } {
    const rvParam = q.get('resourceVersion');
    if (rvParam === null || rvParam === '' || rvParam === '0') {
      const backlog = this.store
        .list(rt.resource, { namespace: ns })
        .filter(matches)
        .map((object) => ({ type: 'ADDED', object }));
      return { backlog };
    }
    const from = Number(rvParam);
    if (!Number.isInteger(from) || from < 0)
      throw apiError(
        400,
        `invalid resource version: strconv.ParseUint: parsing "${rvParam}": invalid syntax`,
      );
    try {
      const backlog = this.store
        .eventsSince(from)
        .map((ev) => translate(ev, rt, matches))
        .filter((e): e is WatchEvent => e !== undefined);
      return { backlog };
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.code !== 410) throw err;
      return { backlog: [], gone: err.status };
    }
  }

  /** Write the backlog, then every matching change, until the client or a fault ends it. */
  private stream(
    res: ServerResponse,
    rt: ResourceType,
    q: URLSearchParams,
    matches: Matcher,
    backlog: WatchEvent[],
  ): void {
    const allowBookmarks = q.get('allowWatchBookmarks') === 'true';
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? 0);
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
      const e = translate(ev, rt, matches);
      if (e) write(e.type, e.object);
    });
    const cleanup = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.conns.delete(conn);
      this.bookmarkHandlers.delete(bookmark);
    };
    this.conns.add(conn);
    this.bookmarkHandlers.add(bookmark);
    // The client going away closes the response (req 'close' fires once the body is read).
    res.on('close', cleanup);
    for (const e of backlog) write(e.type, e.object);
    if (allowBookmarks && this.opts.bookmarkIntervalMs > 0) {
      const iv = setInterval(bookmark, this.opts.bookmarkIntervalMs);
      iv.unref();
      timers.push(iv);
    }
    if (timeoutSeconds > 0) {
      const t = setTimeout(() => conn.close('end'), timeoutSeconds * 1000);
      t.unref();
      timers.push(t);
    }
  }
}

/** The watch's namespace, labelSelector and fieldSelector as one test on an object. */
function matcher(ns: string | undefined, q: URLSearchParams): Matcher {
  const labels = parseLabelSelector(q.get('labelSelector'));
  const fields = parseFieldSelector(q.get('fieldSelector'));
  return (o) =>
    !!o &&
    (!ns || o.metadata.namespace === ns) &&
    matchesLabels(labels, o.metadata.labels) &&
    matchesFields(fields, o);
}

/** A store event as a given watch sees it (label changes turn into ADDED/DELETED). */
function translate(ev: StoreEvent, rt: ResourceType, matches: Matcher): WatchEvent | undefined {
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
