/**
 * Request faults: interceptors see each request after authentication and before it is
 * served, in the order they were added; the first that answers decides. An answer may
 * be a status (with headers and body; a Status for the code when no body is given; 429
 * gets Retry-After), a delay before the request is served normally, a dropped connection
 * (no answer at all), a dropped answer (served, then the socket destroyed), a replaced
 * answer (served, answered with another Status), or a cut (served, the connection
 * destroyed a while later: a watch ended mid-stream). failNext()
 * answers the next N requests that match; throttle() is failNext with 429.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { statusBody } from '../objects/meta.js';
import type { Responder } from './respond.js';
import type {
  InterceptResult,
  InterceptedRequest,
  Interceptor,
  RecordedRequest,
  RequestMatch,
} from './types.js';

function matchRequest(m: RequestMatch, r: InterceptedRequest): boolean {
  if (typeof m === 'function') return m(r);
  return (Object.keys(m) as (keyof typeof m)[]).every((k) => m[k] === undefined || m[k] === r[k]);
}

/** The Status a replaced answer gets: 409 AlreadyExists for a create, else the code's. */
function replacementStatus(code: number, req: InterceptedRequest) {
  if (code === 409 && req.verb === 'create') {
    const name = (req.body as { metadata?: { name?: string } } | undefined)?.metadata?.name;
    return statusBody(
      409,
      `${req.resource ?? 'object'} "${name ?? ''}" already exists`,
      'AlreadyExists',
      { name, kind: req.resource },
    );
  }
  return statusBody(code);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Interceptors {
  private readonly list: Interceptor[] = [];

  /** Add an interceptor; returns its removal. */
  add(fn: Interceptor): () => void {
    this.list.push(fn);
    return () => {
      const i = this.list.indexOf(fn);
      if (i >= 0) this.list.splice(i, 1);
    };
  }

  /** Answer the next `times` requests that match with `result`. */
  failNext(match: RequestMatch, result: InterceptResult, times: number): () => void {
    let left = times;
    const remove = this.add((req) => {
      if (left <= 0 || !matchRequest(match, req)) return undefined;
      left -= 1;
      if (left <= 0) remove();
      return result;
    });
    return remove;
  }

  /**
   * Run the interceptors on a request. True when one answered it or dropped its
   * connection (the server has nothing more to do); false when it is to be served (a
   * dropped answer is marked on `respond`, so serving it ends in a destroyed socket).
   */
  async apply(
    ireq: InterceptedRequest,
    req: IncomingMessage,
    res: ServerResponse,
    rec: RecordedRequest,
    respond: Responder,
  ): Promise<boolean> {
    for (const fn of [...this.list]) {
      const r = await fn(ireq);
      if (!r) continue;
      if (r.delayMs) await sleep(r.delayMs);
      if (r.dropConnection) {
        rec.intercepted = true;
        req.socket.destroy();
        return true;
      }
      if (r.dropAnswer) {
        rec.intercepted = true;
        respond.dropAnswer(res);
        return false;
      }
      if (r.replaceAnswer !== undefined) {
        rec.intercepted = true;
        respond.replaceAnswer(res, replacementStatus(r.replaceAnswer, ireq));
        return false;
      }
      if (r.cutAfterMs !== undefined) {
        rec.intercepted = true;
        const socket = req.socket;
        setTimeout(() => socket.destroy(), r.cutAfterMs).unref();
        return false;
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
        respond.send(res, r.status, b, headers);
        return true;
      }
    }
    return false;
  }
}
