/**
 * The autoscaler's decision for one pool: a pure function of what the leader observed
 * (the clock is an input). The controller calls it each pass (pool-sizing.ts), hands
 * `desired` to the backend's ensurePool and writes the decision where `stoker pools`,
 * the API and the dashboard show it; `memory` is kept for the next pass.
 *
 *   decide(input) -> Decision      an autoscaled pool
 *   fixedDecision(input)           a pool without `autoscale`: its pin, or its replicas
 *                                  while a stage uses it and its minimum otherwise
 *
 * The rule, in order:
 *   1. the backlog B = waiting + prioritized + delayed + active shards of the pool's queue
 *   2. the recommendation:
 *        B = 0            hold the current size until the queue has been empty for
 *                         idleTimeout, then minReplicas (0 included)
 *        shardsPerWorker  ceil(B / shardsPerWorker)
 *        backlogSecondsPerWorker
 *                         ceil(B x s / target), s the seconds a shard takes on one worker
 *                         (service-time.ts: measured; before the first shard finished, the
 *                         spec's assumeShardDuration; without one, one worker per shard)
 *      at least 1 and at most B while B > 0 (a worker with no shard to take is idle);
 *      above the current size (s known), only what the rest needs after what the
 *      workers up or on the way finish before a new one could be ready (startup.ts):
 *      no worker that would arrive to an empty queue; a spike still scales at once.
 *      Within 10% of the current size it stays the current size (the HPA's tolerance)
 *   3. a pin (`stoker scale POOL --replicas N`) replaces all that until it ends
 *   4. stabilisation (the HPA's): a scale up goes to the lowest recommendation of the
 *      scale-up window, a scale down to the highest of the scale-down window; the idle
 *      timeout is a window of its own and skips the scale-down window
 *   5. rate limits (the HPA's policies): the change within each policy's period is at
 *      most `value` workers or percent of the size at the period's start; selectPolicy
 *      Max takes the policy that allows the largest change, Min the smallest, Disabled
 *      allows none
 *   6. the bounds minReplicas..maxReplicas
 *
 * Pending or loading workers are capacity on the way, not a reason to ask for more
 * (KEDA's over-creation, kedacore/keda #7329), and a dead worker is replaced by the
 * backend at the same `desired`. The workers' states enter only the scale-up of step 2
 * (what they take before a new worker is ready) and the conditions' messages.
 */
import type { NormalizedAutoscale } from '../../common/spec/schema.js';
import { rateLimit, remember, stabilize, type Limited } from './behavior.js';
import type { AutoscalerMemory, PoolDecision, ScalingCondition, ServiceSource } from './records.js';
import { beforeReady, startupOf, type Startup } from './startup.js';

export interface Backlog {
  waiting: number;
  prioritized: number;
  delayed: number;
  active: number;
}

/** A pin as decide() takes it: the replicas, and when it ends (null: never). */
export interface ActivePin {
  replicas: number;
  untilMs: number | null;
}

export interface DecideInput {
  nowMs: number;
  minReplicas: number;
  maxReplicas: number;
  autoscale: NormalizedAutoscale;
  backlog: Backlog;
  /** Workers up by state (step 2's scale-up and the messages; see the header). */
  workers: { ready: number; starting: number; busy: number; draining: number };
  memory: AutoscalerMemory;
  /** A pin that has ended is ignored. */
  pin: ActivePin | null;
  /**
   * Seconds from asking for a worker to its being ready (pod start and model load),
   * measured now over the pool's workers up (the median of each one's own); null or
   * absent: none up to measure, the memory's last figure, else DEFAULT_STARTUP_SECONDS.
   */
  startupSeconds?: number | null;
}

export interface Decision extends Omit<PoolDecision, 'at'> {
  memory: AutoscalerMemory;
}

/** Recommendations within this fraction of the current size keep it (the HPA's 0.1). */
export const TOLERANCE = 0.1;

export function decide(input: DecideInput): Decision {
  const { nowMs: now, autoscale: as, memory: prev } = input;
  const current = prev.desired;
  // 1.-2. The backlog and what it asks for.
  const rec = recommend(input);
  const recommendations = remember(prev.recommendations, now, rec.replicas, windowMs(as));
  const pin =
    input.pin && (input.pin.untilMs === null || input.pin.untilMs > now) ? input.pin : null;
  // 3. A pin holds whatever the backlog says (still recorded, for after it); else 4.-6.
  const step = pin ? pinned(input, pin, rec) : automatic(input, rec, recommendations);
  const { desired, conditions } = step;
  if (!conditions.some((c) => c.type === 'AbleToScale'))
    conditions.push(
      desired === current
        ? cond('AbleToScale', 'True', 'ReadyForNewScale', 'recommended size matches current size')
        : cond('AbleToScale', 'True', 'SucceededRescale', `scaling from ${current} to ${desired}`),
    );
  const changes = [
    ...prev.changes.filter(([at]) => at > now - periodMs(as)),
    ...(desired !== current ? [[now, desired - current] as [number, number]] : []),
  ];
  return {
    desired,
    recommendation: rec.replicas,
    reason: step.reason,
    message: `${step.message}${workersNote(input.workers, desired)}`,
    conditions: order(conditions),
    inputs: {
      backlog: rec.backlog,
      active: input.backlog.active,
      shardSeconds: rec.shardSeconds,
      shardSecondsSource: rec.source,
      samples: prev.service.samples,
      emptySince: rec.emptySinceMs === null ? null : new Date(rec.emptySinceMs).toISOString(),
      startupSeconds: rec.startup.seconds,
      startupSource: rec.startup.source,
    },
    memory: {
      desired,
      recommendations,
      changes,
      emptySinceMs: rec.emptySinceMs,
      service: prev.service,
      ...(rec.startup.source === 'measured' ? { startupSeconds: rec.startup.seconds } : {}),
    },
  };
}

interface Step {
  desired: number;
  reason: string;
  message: string;
  conditions: ScalingCondition[];
}

/** Step 3: the pinned size, within the bounds. */
function pinned(input: DecideInput, pin: ActivePin, rec: Recommendation): Step {
  const until =
    pin.untilMs === null
      ? ' (until stoker scale --auto)'
      : ` until ${new Date(pin.untilMs).toISOString()}`;
  const message = `pinned to ${pin.replicas} by stoker scale${until}; the backlog asks for ${rec.replicas}`;
  return {
    desired: clamp(pin.replicas, input.minReplicas, input.maxReplicas),
    reason: 'Pinned',
    message,
    conditions: [cond('ScalingActive', 'False', 'Pinned', message)],
  };
}

/** Steps 4-6: stabilise (the idle timeout skips it), limit the rate, bound. */
function automatic(
  input: DecideInput,
  rec: Recommendation,
  recommendations: AutoscalerMemory['recommendations'],
): Step {
  const { nowMs: now, autoscale: as, memory: prev } = input;
  const current = prev.desired;
  const stable = rec.idle
    ? { replicas: rec.replicas, held: null }
    : stabilize(current, rec.replicas, recommendations, now, as);
  const limited = rateLimit(current, stable.replicas, prev.changes, now, as);
  const bound =
    limited.replicas > input.maxReplicas
      ? 'TooManyReplicas'
      : limited.replicas < input.minReplicas
        ? 'TooFewReplicas'
        : null;
  const conditions = [cond('ScalingActive', 'True', rec.reason, rec.message)];
  if (stable.held) {
    const [which, window] =
      stable.held === 'ScaleDownStabilized'
        ? ['higher', `highest of the last ${as.scaleDown.stabilizationWindowSeconds}`]
        : ['lower', `lowest of the last ${as.scaleUp.stabilizationWindowSeconds}`];
    const message = `recent recommendations were ${which} than ${rec.replicas}: holding the ${window} s (${stable.replicas})`;
    conditions.push(cond('AbleToScale', 'True', stable.held, message));
  }
  const limit = bound ?? limited.reason;
  conditions.push(
    limit
      ? cond('ScalingLimited', 'True', limit, limitMessage(limit, input, limited))
      : cond(
          'ScalingLimited',
          'False',
          'DesiredWithinRange',
          'the desired count is within the acceptable range',
        ),
  );
  const reason = limit ?? stable.held ?? rec.reason;
  const why = conditions.find((c) => c.reason === reason)?.message ?? '';
  return {
    desired: clamp(limited.replicas, input.minReplicas, input.maxReplicas),
    reason,
    message: reason === rec.reason ? rec.message : `${rec.message}; ${why}`,
    conditions,
  };
}

/**
 * A pool without autoscale: its pin whether a stage uses it or not (a pin is the
 * operator's size for the pool, as for an autoscaled one); else its replicas while a stage
 * uses it, its minimum otherwise.
 */
export function fixedDecision(input: {
  nowMs: number;
  minReplicas: number;
  maxReplicas: number;
  replicas: number;
  users: number;
  backlog: Backlog;
  pin: ActivePin | null;
}): Omit<PoolDecision, 'at'> {
  const { pin, users } = input;
  const active = pin && (pin.untilMs === null || pin.untilMs > input.nowMs) ? pin : null;
  const backlog = total(input.backlog);
  const until = active?.untilMs ? ` until ${new Date(active.untilMs).toISOString()}` : '';
  const [desired, reason, message] = active
    ? [active.replicas, 'Pinned', `pinned to ${active.replicas} by stoker scale${until}`]
    : users > 0
      ? [
          input.replicas,
          'InUse',
          `used by ${users} stage${users === 1 ? '' : 's'}: its replicas (${input.replicas})`,
        ]
      : [input.minReplicas, 'Unused', `idle: no stage uses it (minReplicas ${input.minReplicas})`];
  const bounded = clamp(desired, input.minReplicas, input.maxReplicas);
  return {
    desired: bounded,
    recommendation: bounded,
    reason,
    message,
    conditions: [
      cond('AbleToScale', 'True', 'ReadyForNewScale', 'a fixed pool'),
      cond('ScalingActive', 'False', reason === 'Pinned' ? 'Pinned' : 'FixedSize', message),
    ],
    inputs: {
      backlog,
      active: input.backlog.active,
      shardSeconds: null,
      shardSecondsSource: 'none',
      samples: 0,
      emptySince: null,
    },
  };
}

interface Recommendation {
  replicas: number;
  startup: Startup;
  backlog: number;
  shardSeconds: number | null;
  source: ServiceSource;
  emptySinceMs: number | null;
  /** The idle timeout has passed: minReplicas, past the scale-down window. */
  idle: boolean;
  reason: string;
  message: string;
}

const total = (b: Backlog) => b.waiting + b.prioritized + b.delayed + b.active;

/** Step 2: the replicas the backlog asks for, and why. */
function recommend(input: DecideInput): Recommendation {
  const { nowMs: now, autoscale: as, memory } = input;
  const backlog = total(input.backlog);
  const current = memory.desired;
  const service = shardSeconds(input);
  const startup = startupOf(input.startupSeconds, input.memory.startupSeconds);
  const base = { backlog, shardSeconds: service.seconds, source: service.source, startup };
  if (backlog === 0) {
    const since = memory.emptySinceMs ?? now;
    const emptyFor = (now - since) / 1000;
    if (emptyFor >= as.idleTimeoutSeconds)
      return {
        ...base,
        replicas: input.minReplicas,
        emptySinceMs: since,
        idle: true,
        reason: 'IdleTimeout',
        // No elapsed time in it: a pool idle for hours keeps one message (written once).
        message: `queue empty since ${new Date(since).toISOString()}, past idleTimeout ${secs(as.idleTimeoutSeconds)}: minReplicas ${input.minReplicas}`,
      };
    return {
      ...base,
      replicas: current,
      emptySinceMs: since,
      idle: false,
      reason: 'QueueEmpty',
      message: `queue empty for ${secs(emptyFor)}: holding ${current} until idleTimeout ${secs(as.idleTimeoutSeconds)}`,
    };
  }
  let want: number;
  let why: string;
  const queued = `backlog ${backlog} shard${backlog === 1 ? '' : 's'} (${input.backlog.active} running)`;
  if (as.target.shardsPerWorker !== undefined) {
    want = Math.ceil(backlog / as.target.shardsPerWorker);
    why = `${queued}, target ${as.target.shardsPerWorker} per worker`;
  } else if (service.seconds === null) {
    want = backlog;
    why = `${queued}, no shard measured yet and no assumeShardDuration: one worker per shard`;
  } else {
    const target = as.target.backlogSecondsPerWorker as number;
    const work = backlog * service.seconds;
    want = Math.ceil(work / target - 1e-9);
    why = `${queued} x ${secs(service.seconds)} a shard (${service.source === 'measured' ? `EWMA of ${memory.service.samples}` : 'assumed'}) = ${secs(work)} of work, target ${secs(target)} per worker`;
  }
  want = Math.max(1, Math.min(want, backlog));
  if (want > current && service.seconds !== null) {
    const [workers, target, shardSeconds] = [input.workers, as.target, service.seconds];
    const aware = beforeReady({ backlog, want, current, workers, shardSeconds, startup, target });
    if (aware) {
      why += `; ${aware.note}`;
      want = aware.replicas;
    }
  }
  if (current > 0 && want !== current && Math.abs(want / current - 1) <= TOLERANCE) {
    why += ` (${want} is within ${TOLERANCE * 100}% of ${current}: kept)`;
    want = current;
  }
  return {
    ...base,
    replicas: want,
    emptySinceMs: null,
    idle: false,
    reason: 'ValidBacklog',
    message: `${why}: ${want} worker${want === 1 ? '' : 's'}`,
  };
}

/** The seconds a shard takes: measured, else the spec's assumption, else unknown. */
function shardSeconds(input: DecideInput): { seconds: number | null; source: ServiceSource } {
  const { service } = input.memory;
  if (service.samples > 0 && service.seconds !== null)
    return { seconds: service.seconds, source: 'measured' };
  if (input.autoscale.assumeShardSeconds !== null)
    return { seconds: input.autoscale.assumeShardSeconds, source: 'assumed' };
  return { seconds: null, source: 'none' };
}

function limitMessage(reason: string, input: DecideInput, limited: Limited): string {
  switch (reason) {
    case 'TooManyReplicas':
      return `the desired count (${limited.replicas}) is more than maxReplicas ${input.maxReplicas}`;
    case 'TooFewReplicas':
      return `the desired count (${limited.replicas}) is less than minReplicas ${input.minReplicas}`;
    case 'ScaleUpLimit':
      return `the scale-up policies allow at most ${limited.limit} now`;
    default:
      return `the scale-down policies allow at least ${limited.limit} now`;
  }
}

const windowMs = (as: NormalizedAutoscale) =>
  Math.max(as.scaleUp.stabilizationWindowSeconds, as.scaleDown.stabilizationWindowSeconds) * 1000;

const periodMs = (as: NormalizedAutoscale) =>
  Math.max(0, ...[...as.scaleUp.policies, ...as.scaleDown.policies].map((p) => p.periodSeconds)) *
  1000;

const clamp = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n));

const cond = (
  type: ScalingCondition['type'],
  status: ScalingCondition['status'],
  reason: string,
  message: string,
): ScalingCondition => ({ type, status, reason, message });

const ORDER: ScalingCondition['type'][] = ['AbleToScale', 'ScalingActive', 'ScalingLimited'];
const order = (cs: ScalingCondition[]) =>
  [...cs].sort((a, b) => ORDER.indexOf(a.type) - ORDER.indexOf(b.type));

/** `0.25` -> `0.25s`, `90` -> `90s`, `3600` -> `3600s`: short and exact enough. */
function secs(s: number): string {
  return `${Number(s.toPrecision(3))}s`;
}

/** What is on the way, missing or leaving, when that is not `desired` ready workers. */
function workersNote(w: DecideInput['workers'], desired: number): string {
  if (w.ready === desired && w.starting === 0 && w.draining === 0) return '';
  const parts = [
    w.ready > desired
      ? `${w.ready} up, ${w.ready - desired} to drain`
      : `${w.ready} of ${desired} ready`,
  ];
  if (w.starting) parts.push(`${w.starting} starting`);
  if (w.draining) parts.push(`${w.draining} draining`);
  return ` (${parts.join(', ')})`;
}
