/**
 * Provisioning-aware sizing (decide.ts, step 2), pure: a new worker is useful only for
 * the work the workers up or on the way have not finished by the time it is ready.
 *
 *   startupOfWorkers(workers)   the pool's start-to-ready time now: the median over its
 *                               workers up of process start to model loaded
 *                               (common/worker-state.ts startedAt, loadedAt)
 *   startupOf(now, kept)        the one decide() uses: measured now, else the last one
 *                               measured (the memory), else DEFAULT_STARTUP_SECONDS
 *   absorbed(workers, L, s)     the shards the workers take within L seconds
 *   beforeReady(...)            the replicas a scale-up asks for once those are counted
 *   medianOf(xs)                the middle of a list
 *
 * Why the median over the workers up, not an average over workers as they become ready:
 * the last of a batch to be ready are its slowest, so an estimate over arrivals reads the
 * batch's tail right after every scale-up (137 s where the fleet model's pods take 65 s).
 * The pod start before the process (image pull, container start) is added by the caller
 * where it has the pods (Kubernetes: provisioning.ts podStartSeconds).
 */

/** A new worker's start-to-ready time before the pool has measured one. */
export const DEFAULT_STARTUP_SECONDS = 30;

export interface Startup {
  seconds: number;
  source: 'measured' | 'default';
}

export function startupOf(
  now: number | null | undefined,
  kept: number | null | undefined,
): Startup {
  const s = now ?? kept ?? null;
  return s === null
    ? { seconds: DEFAULT_STARTUP_SECONDS, source: 'default' }
    : { seconds: s, source: 'measured' };
}

/**
 * The shards the workers up or on the way finish before a worker asked for now could be
 * ready (L seconds; s a shard): a ready idle worker L / s; a busy one its shard (counted
 * in the backlog as active, half done on average) and L / s more; one still starting
 * half of L / s (half-way to ready on average). Only `keep` of them count (the current
 * size): the others are to be drained, the starting first, then the idle, as
 * drain-order.ts takes them.
 */
export function absorbed(
  w: { ready: number; starting: number; busy: number },
  startup: number,
  s: number,
  keep = Number.POSITIVE_INFINITY,
): number {
  const per = startup / s;
  const busy = Math.min(w.busy, w.ready, keep);
  const idle = Math.min(w.ready - Math.min(w.busy, w.ready), keep - busy);
  const starting = Math.min(w.starting, keep - busy - idle);
  return busy * (0.5 + per) + idle * per + starting * 0.5 * per;
}

export interface BeforeReadyInput {
  /** Shards: waiting + prioritized + delayed + active. */
  backlog: number;
  /** What the backlog alone asks for (more than current). */
  want: number;
  current: number;
  workers: { ready: number; starting: number; busy: number };
  shardSeconds: number;
  startup: Startup;
  target: { shardsPerWorker?: number | undefined; backlogSecondsPerWorker?: number | undefined };
}

/**
 * The replicas for the backlog the workers up or on the way do not take before a new one
 * is ready, within the target; never below the current size, at least 1. Null when that
 * is no fewer than `want` (nothing to say).
 */
export function beforeReady(i: BeforeReadyInput): { replicas: number; note: string } | null {
  const ahead = absorbed(i.workers, i.startup.seconds, i.shardSeconds, i.current);
  if (ahead <= 0) return null;
  const rest = Math.max(0, i.backlog - ahead);
  const workers =
    i.target.shardsPerWorker !== undefined
      ? rest / i.target.shardsPerWorker
      : (rest * i.shardSeconds) / (i.target.backlogSecondsPerWorker as number);
  const replicas = Math.max(i.current, 1, Math.ceil(workers - 1e-9));
  if (replicas >= i.want) return null;
  const L = Number(i.startup.seconds.toPrecision(3));
  return {
    replicas,
    note: `the workers up or on the way take ${Math.floor(ahead)} of them before a new one is ready (${L}s, ${i.startup.source}): ${replicas} for the other ${Math.ceil(rest)}`,
  };
}

/**
 * The pool's start-to-ready time now: the median over its workers up of each one's
 * process start to its payload server's first ready (its model loaded); null when none
 * up has loaded (or all are of an older version).
 */
export function startupOfWorkers(
  workers: ReadonlyArray<{ startedAt?: string | undefined; loadedAt?: string | null | undefined }>,
): number | null {
  const samples: number[] = [];
  for (const w of workers) {
    if (!w.startedAt || !w.loadedAt) continue;
    const s = (Date.parse(w.loadedAt) - Date.parse(w.startedAt)) / 1000;
    if (Number.isFinite(s) && s >= 0) samples.push(s);
  }
  return medianOf(samples);
}

/** The middle of `xs` (the mean of the two middle ones for an even count); null when empty. */
export function medianOf(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
