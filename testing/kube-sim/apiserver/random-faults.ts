/**
 * Seeded random faults: an interceptor (faults.ts) that answers a share of the requests
 * with what a sick API server or network does, the same way for the same seed.
 *
 *   request faults (`rate` of the requests, watches aside; each fault the next of
 *   `kinds` in turn, so a short run meets every kind):
 *     error500     500 InternalError, nothing done
 *     throttle429  429 TooManyRequests with Retry-After (retryAfterSeconds), nothing done
 *     reset        the connection dropped before the request is served: nothing done
 *     lostAnswer   served (a create or delete happened), then the connection dropped: the
 *                  client never hears that it succeeded
 *     timeout      held holdMs, then the connection dropped: nothing done, a client that
 *                  waits on it waits that long
 *   create conflicts (`conflictRate` of the creates that got no request fault):
 *     conflict     served (the object is created), answered 409 AlreadyExists, as a
 *                  client's own retry of a create whose first answer was lost is answered
 *   watch faults (`watchRate` of the watches):
 *     watchCut     the stream served, then its connection destroyed after a time drawn
 *                  from watchCutMs: the watch ends mid-way without an ERROR event
 *
 * Deterministic, and exact in number: each class of requests (watches aside, creates for
 * conflicts, watches) gets its faults spread evenly at its rate, from a phase the seed
 * draws: the n-th request of the class gets one when floor((n + phase) * rate) steps up.
 * So a rate of 0.3 is 3 faults in every 10 requests of the class, never a run of luck
 * with none (a short run meets every kind: a test can count on it), and the same
 * sequence of requests meets the same faults under the same seed. The cut of a watch
 * lasts a time drawn from the seed and the watch's number.
 *
 *   const f = randomFaults({ seed: 7, rate: 0.1, conflictRate: 0.5, watchRate: 0.5 });
 *   server.intercept(f.interceptor);
 *   ...
 *   f.counts   // { error500: 3, conflict: 1, ... }
 *
 * parseFaultSpec('seed=7,rate=0.1,conflictRate=0.5,watchRate=0.5,kinds=error500+reset') is the same as
 * a string (`STOKER_SIMULATE_FAULTS` of `--simulate`).
 */
import { statusBody } from '../objects/meta.js';
import type { InterceptResult, InterceptedRequest } from './types.js';

export const REQUEST_FAULTS = [
  'error500',
  'throttle429',
  'reset',
  'lostAnswer',
  'timeout',
] as const;
export type RequestFault = (typeof REQUEST_FAULTS)[number];
export type FaultKind = RequestFault | 'conflict' | 'watchCut';

export interface RandomFaultOptions {
  seed: number;
  /** Share of the requests (not watches) that get a fault, 0..1. */
  rate: number;
  /** Share of the creates answered 409 after they were served, 0..1 (default 0). */
  conflictRate?: number;
  /** Share of the watches cut mid-way, 0..1 (default 0). */
  watchRate?: number;
  /** Which request faults (default all), taken in turn. */
  kinds?: readonly RequestFault[];
  /** How long a `timeout` holds its request (default 5 s). */
  holdMs?: number;
  /** A cut watch lives this long, drawn in [min, max) (default 1-10 s). */
  watchCutMs?: readonly [number, number];
  /** Retry-After of a 429 (default 1). */
  retryAfterSeconds?: number;
  /** Which requests may get a fault (default: every resource request). */
  match?: (req: InterceptedRequest) => boolean;
  /** Told about each fault as it is injected. */
  onFault?: (kind: FaultKind, req: InterceptedRequest) => void;
}

export interface RandomFaults {
  /** Synchronous: it decides at once (a `timeout` holds through its answer's delayMs). */
  interceptor: (req: InterceptedRequest) => InterceptResult | undefined;
  /** Faults injected so far, by kind. */
  readonly counts: Record<FaultKind, number>;
}

/** FNV-1a, 32 bits: the seed and a salt to one number. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32: a small seeded generator; `draws(n)` gives n numbers in [0, 1). */
function draws(seed: number, n: number): number[] {
  let a = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.push(((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** Requests of one class, each told whether it gets a fault: rate of them, evenly spread. */
function spacing(seed: number, salt: string, rate: number): () => { hit: boolean; n: number } {
  const phase = (draws(hash32(`${seed}|${salt}`), 1)[0] ?? 0) / Math.max(rate, 1e-9);
  let n = 0;
  return () => {
    n += 1;
    const hit = rate > 0 && Math.floor((n + phase) * rate) > Math.floor((n - 1 + phase) * rate);
    return { hit, n };
  };
}

export function randomFaults(opts: RandomFaultOptions): RandomFaults {
  const kinds = opts.kinds ?? REQUEST_FAULTS;
  const holdMs = opts.holdMs ?? 5000;
  const [cutMin, cutMax] = opts.watchCutMs ?? [1000, 10_000];
  const retryAfterSeconds = opts.retryAfterSeconds ?? 1;
  const counts = Object.fromEntries(
    [...REQUEST_FAULTS, 'conflict', 'watchCut'].map((k) => [k, 0]),
  ) as Record<FaultKind, number>;
  const next = {
    request: spacing(opts.seed, 'request', opts.rate),
    create: spacing(opts.seed, 'create', opts.conflictRate ?? 0),
    watch: spacing(opts.seed, 'watch', opts.watchRate ?? 0),
  };
  let hits = 0;
  const injected = (kind: FaultKind, req: InterceptedRequest, r: InterceptResult) => {
    counts[kind] += 1;
    opts.onFault?.(kind, req);
    return r;
  };
  const interceptor: RandomFaults['interceptor'] = (req) => {
    if (req.resource === undefined || (opts.match && !opts.match(req))) return undefined;
    if (req.verb === 'watch') {
      const w = next.watch();
      if (!w.hit) return undefined;
      const [d = 0] = draws(hash32(`${opts.seed}|cut|${w.n}`), 1);
      return injected('watchCut', req, { cutAfterMs: Math.round(cutMin + d * (cutMax - cutMin)) });
    }
    if (next.request().hit && kinds.length > 0) {
      const kind = kinds[hits++ % kinds.length] as RequestFault;
      return injected(kind, req, answerFor(kind, { holdMs, retryAfterSeconds }));
    }
    if (req.verb === 'create' && next.create().hit)
      return injected('conflict', req, { replaceAnswer: 409 });
    return undefined;
  };
  return { interceptor, counts };
}

function answerFor(
  kind: RequestFault,
  o: { holdMs: number; retryAfterSeconds: number },
): InterceptResult {
  switch (kind) {
    case 'error500':
      return { status: 500, body: statusBody(500, 'fake apiserver: injected fault') };
    case 'throttle429':
      return { status: 429, retryAfterSeconds: o.retryAfterSeconds };
    case 'reset':
      return { dropConnection: true };
    case 'lostAnswer':
      return { dropAnswer: true };
    case 'timeout':
      return { delayMs: o.holdMs, dropConnection: true };
  }
}

/**
 * `seed=7,rate=0.1,conflictRate=0.5,watchRate=0.5,holdMs=3000,kinds=error500+reset` -> options. Every
 * key but seed and rate is optional; an unknown key or kind is an error.
 */
export function parseFaultSpec(spec: string): RandomFaultOptions {
  const fields = new Map<string, string>();
  for (const part of spec.split(',').map((p) => p.trim())) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`fault spec: "${part}" is not key=value`);
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const num = (k: string, fallback?: number): number => {
    const v = fields.get(k);
    if (v === undefined) {
      if (fallback === undefined) throw new Error(`fault spec: ${k} is required`);
      return fallback;
    }
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`fault spec: ${k}=${v} is not a number`);
    return n;
  };
  const known = new Set([
    'seed',
    'rate',
    'conflictRate',
    'watchRate',
    'holdMs',
    'cutMinMs',
    'cutMaxMs',
    'kinds',
  ]);
  for (const k of fields.keys()) if (!known.has(k)) throw new Error(`fault spec: unknown ${k}`);
  const kinds = fields.get('kinds')?.split('+');
  for (const k of kinds ?? [])
    if (!(REQUEST_FAULTS as readonly string[]).includes(k))
      throw new Error(`fault spec: unknown fault ${k} (${REQUEST_FAULTS.join(', ')})`);
  return {
    seed: num('seed'),
    rate: num('rate'),
    conflictRate: num('conflictRate', 0),
    watchRate: num('watchRate', 0),
    holdMs: num('holdMs', 5000),
    watchCutMs: [num('cutMinMs', 1000), num('cutMaxMs', 10_000)],
    ...(kinds ? { kinds: kinds as RequestFault[] } : {}),
  };
}
