/**
 * The autoscaler's pure parts over recorded sequences: the decision (orchestrator/
 * autoscale/decide.ts) pass after pass with its memory carried forward, the service-time
 * estimate (service-time.ts), and the order in which a pool gives up workers
 * (drain-order.ts). Each sequence is a list of observations at times in seconds: what a
 * leader would read from Redis at that pass.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseSpec } from '../../common/spec/load.js';
import {
  decide,
  fixedDecision,
  type ActivePin,
  type Backlog,
  type Decision,
} from '../../orchestrator/autoscale/decide.js';
import { drainOrder, type DrainCandidate } from '../../orchestrator/autoscale/drain-order.js';
import { emptyMemory, type AutoscalerMemory } from '../../orchestrator/autoscale/records.js';
import { ALPHA, observeCompletions } from '../../orchestrator/autoscale/service-time.js';
import {
  DEFAULT_STARTUP_SECONDS,
  medianOf,
  startupOfWorkers,
} from '../../orchestrator/autoscale/startup.js';

/** An autoscaled pool's settings through the real loader, as a spec would write them. */
function pool(autoscale: Record<string, unknown>, bounds = { minReplicas: 0, maxReplicas: 8 }) {
  const spec = parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'SelfPlay',
      metadata: { name: 'as' },
      spec: {
        payload: { command: ['python3', 'gen.py'] },
        input: { file: 'in.jsonl', shardSize: 1 },
        pool: { name: 'gen', ...bounds, autoscale },
      },
    }),
  );
  const p = spec.stages[0]?.pool;
  if (!p?.autoscale) throw new Error('no autoscale block');
  return { ...p, autoscale: p.autoscale };
}

/** One pass as observed: the time (s), the queue, the workers, shard durations finished since. */
interface Step {
  t: number;
  queued: number;
  active?: number;
  /** Durations (s) of the shards completed since the last pass. */
  done?: number[];
  workers?: Partial<{ ready: number; starting: number; busy: number; draining: number }>;
  pin?: ActivePin | null;
  /** The start-to-ready time measured over the workers up (s; absent: none up). */
  startup?: number | null;
}

type Pool = ReturnType<typeof pool>;

/** Replay the steps through decide(), the memory carried forward as the leader keeps it. */
function replay(p: Pool, steps: Step[], start: AutoscalerMemory = emptyMemory(0)): Decision[] {
  let memory = start;
  let seq = 0;
  return steps.map((s) => {
    const now = s.t * 1000;
    memory = {
      ...memory,
      service: observeCompletions(
        memory.service,
        (s.done ?? []).map((d) => [`r.gen.s${seq++}:1:${Math.round(d * 1000)}`, now] as const),
      ),
    };
    const backlog: Backlog = {
      waiting: s.queued,
      prioritized: 0,
      delayed: 0,
      active: s.active ?? 0,
    };
    const d = decide({
      nowMs: now,
      minReplicas: p.minReplicas,
      maxReplicas: p.maxReplicas,
      autoscale: p.autoscale,
      backlog,
      workers: { ready: 0, starting: 0, busy: 0, draining: 0, ...s.workers },
      memory,
      pin: s.pin ?? null,
      startupSeconds: s.startup ?? null,
    });
    memory = d.memory;
    return d;
  });
}

const desired = (ds: Decision[]) => ds.map((d) => d.desired);
const conditionOf = (d: Decision | undefined, type: string) =>
  d?.conditions.find((c) => c.type === type);
/** Passes every `every` s from `from` to `to` (inclusive), each `step(t)`. */
const passes = (from: number, to: number, every: number, step: (t: number) => Omit<Step, 't'>) =>
  Array.from({ length: Math.floor((to - from) / every) + 1 }, (_, i) => {
    const t = from + i * every;
    return { t, ...step(t) };
  });
/** How often the size changed direction (up after down, or down after up). */
function directionChanges(values: number[]): number {
  let last = 0;
  let changes = 0;
  for (let i = 1; i < values.length; i++) {
    const d = Math.sign((values[i] as number) - (values[i - 1] as number));
    if (d !== 0 && last !== 0 && d !== last) changes++;
    if (d !== 0) last = d;
  }
  return changes;
}

describe('a spike', () => {
  it('asks for workers at the first pass that sees it, as fast as the scale-up policies allow, up to maxReplicas', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 10 }, assumeShardDuration: '2s' });
    const ds = replay(p, [
      { t: 0, queued: 0 },
      { t: 1, queued: 400 }, // 800 s of work: 80 workers wanted
      { t: 3, queued: 400, workers: { starting: 4 } },
      { t: 16.5, queued: 390, active: 4, workers: { ready: 4, busy: 4, starting: 0 } },
      { t: 32, queued: 380, active: 8, workers: { ready: 8, busy: 8 } },
    ]);
    expect(desired(ds)).toEqual([0, 4, 4, 8, 8]);
    // From 0 the Percent policy allows nothing; the Workers policy (4 per 15 s) does.
    expect(ds[1]?.reason).toBe('ScaleUpLimit');
    expect(conditionOf(ds[1], 'ScalingLimited')).toMatchObject({
      status: 'True',
      reason: 'ScaleUpLimit',
    });
    expect(ds[1]?.recommendation).toBe(80);
    expect(ds[1]?.inputs).toMatchObject({ backlog: 400, shardSecondsSource: 'assumed' });
    // The period is over: 4 + 4 workers, or 100% more: 8 (also maxReplicas; the policy
    // is named, as the HPA does when both limit alike). Then 16 allowed, 8 the bound.
    expect(ds[3]?.reason).toBe('ScaleUpLimit');
    expect(ds[4]?.reason).toBe('TooManyReplicas');
    expect(ds[4]?.message).toMatch(/more than maxReplicas 8/);
  });

  it('with no shard measured and no assumption, asks one worker per shard (up to the bounds)', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 10 } });
    const [d] = replay(p, [{ t: 0, queued: 3 }]);
    expect(d?.desired).toBe(3);
    expect(d?.inputs.shardSecondsSource).toBe('none');
    expect(d?.message).toMatch(/one worker per shard/);
  });

  it('sizes by shards per worker without any service time', () => {
    const p = pool({ target: { shardsPerWorker: 10 } });
    expect(desired(replay(p, [{ t: 0, queued: 21, active: 4 }]))).toEqual([3]);
  });

  it('never asks more workers than there are shards, nor fewer than one while there is one', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 1 }, assumeShardDuration: '30s' });
    expect(desired(replay(p, [{ t: 0, queued: 2 }]))).toEqual([2]);
    const q = pool({ target: { backlogSecondsPerWorker: 3600 }, assumeShardDuration: '1s' });
    expect(desired(replay(q, [{ t: 0, queued: 1 }]))).toEqual([1]);
  });
});

describe('the service time', () => {
  it('is the EWMA of shard durations, right from the first shard', () => {
    let e = observeCompletions({ seconds: null, samples: 0, cursorMs: 0 }, [['a:1:2000', 10]]);
    expect(e).toEqual({ seconds: 2, samples: 1, cursorMs: 10 });
    e = observeCompletions(e, [
      ['b:1:1000', 20],
      ['c:1', 30], // an older worker's member: no duration, only the cursor moves
    ]);
    expect(e.seconds).toBeCloseTo(2 + ALPHA * (1 - 2));
    expect(e.samples).toBe(2);
    expect(e.cursorMs).toBe(30);
  });

  it('stays right just after a scale-up, where completions per minute over the pool are 4x off', () => {
    // One worker at 1 s a shard for a minute, then four workers at 1 s each.
    const completions: Array<[string, number]> = [];
    for (let t = 1; t <= 60; t++) completions.push([`s${t}:1:1000`, t * 1000]);
    for (let t = 61; t <= 70; t++)
      for (let w = 0; w < 4; w++) completions.push([`s${t}-${w}:1:1000`, t * 1000]);
    const e = observeCompletions({ seconds: null, samples: 0, cursorMs: 0 }, completions);
    expect(e.seconds).toBeCloseTo(1);
    // The one-minute rate per worker 10 s after the scale-up: (50 + 40) / 60 / 4 = 0.375
    // shards/s, i.e. 2.7 s a shard, where each worker does 1.
    const lastMinute = completions.filter(([, at]) => at > 10_000).length;
    expect(60 / (lastMinute / 4)).toBeGreaterThan(2.5);
  });

  it('follows a change of shard cost within a few shards (a heavier stage, CPU contention)', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 10 } });
    const ds = replay(p, [
      { t: 0, queued: 100, done: [0.1, 0.1, 0.1] },
      { t: 1, queued: 100, done: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1] },
    ]);
    expect(ds[0]?.inputs.shardSeconds).toBeCloseTo(0.1);
    expect(ds[1]?.inputs.shardSeconds).toBeGreaterThan(0.85);
  });
});

describe('a sawtooth backlog', () => {
  // 200 shards every 60 s, drained in 30 s, then empty for 30 s.
  const tooth = (t: number): Omit<Step, 't'> => {
    const phase = t % 60;
    return phase < 30
      ? { queued: Math.max(0, 200 - Math.round(phase * 6.7)), active: 4, done: [0.5, 0.5] }
      : { queued: 0 };
  };

  it('holds its size through the teeth with the idle timeout and the scale-down window', () => {
    const p = pool({
      target: { backlogSecondsPerWorker: 20 },
      idleTimeout: '2m',
      behavior: { scaleDown: { stabilizationWindow: '1m' } },
    });
    const ds = replay(p, passes(0, 600, 2, tooth));
    expect(directionChanges(desired(ds))).toBe(0);
    expect(Math.max(...desired(ds))).toBeGreaterThan(1);
  });

  it('flaps without them: the comparison that shows what the windows buy', () => {
    const p = pool({
      target: { backlogSecondsPerWorker: 20 },
      idleTimeout: 0,
      behavior: { scaleDown: { stabilizationWindow: 0 } },
    });
    const ds = replay(p, passes(0, 600, 2, tooth));
    expect(directionChanges(desired(ds))).toBeGreaterThan(10);
  });
});

describe('slow start and workers that are not there', () => {
  it('does not ask for more while its workers load their model and nothing has finished', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 50 }, assumeShardDuration: '5s' });
    // 40 shards x 5 s / 50 s = 4 workers; they start (from the pass after the one that
    // asked for them), then load for a minute, no completion.
    const ds = replay(
      p,
      passes(0, 60, 2, (t) => ({
        queued: t < 4 ? 40 : 36,
        active: t < 4 ? 0 : 4,
        workers: t === 0 ? {} : t < 4 ? { starting: 4 } : { ready: 4, busy: 4 },
      })),
    );
    expect(new Set(desired(ds))).toEqual(new Set([4]));
    // Then the first shards finish at 20 s each: the measured time replaces the assumption.
    const after = replay(
      p,
      [{ t: 62, queued: 32, active: 4, done: [20, 20, 20, 20], workers: { ready: 4, busy: 4 } }],
      ds[ds.length - 1]?.memory,
    );
    expect(after[0]?.inputs).toMatchObject({ shardSeconds: 20, shardSecondsSource: 'measured' });
    // 36 x 20 s / 50 s = 15, less what the 4 busy workers finish before a new one could be
    // ready (the default 30 s start-up, nothing measured): 4 x (0.5 + 30 / 20) = 8 shards.
    expect(after[0]?.inputs).toMatchObject({ startupSeconds: 30, startupSource: 'default' });
    expect(after[0]?.recommendation).toBe(Math.ceil(((36 - 8) * 20) / 50));
  });

  it('keeps its size when workers die: the backend replaces them; the rate is not dragged down', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 10 } });
    const ds = replay(
      p,
      passes(0, 40, 2, (t) => ({
        queued: 76 - t,
        active: t < 20 ? 4 : 1,
        done: [0.5],
        workers: t < 20 ? { ready: 4, busy: 4 } : { ready: 1, busy: 1 },
      })),
      { ...emptyMemory(4), service: { seconds: 0.5, samples: 50, cursorMs: 0 } },
    );
    expect(new Set(desired(ds))).toEqual(new Set([4]));
    expect(ds[ds.length - 1]?.inputs.shardSeconds).toBeCloseTo(0.5);
    expect(ds[ds.length - 1]?.message).toMatch(/1 of 4 ready/);
  });

  it('counts pending workers as capacity on the way: no more asked while they stay pending', () => {
    const p = pool({ target: { backlogSecondsPerWorker: 10 }, assumeShardDuration: '1s' });
    // The pool asked for 3 (30 shards x 1 s / 10 s); they stay pending.
    const ds = replay(
      p,
      passes(0, 120, 5, () => ({ queued: 30, workers: { starting: 3 } })),
      emptyMemory(3),
    );
    expect(new Set(desired(ds))).toEqual(new Set([3]));
    expect(ds[ds.length - 1]?.message).toMatch(/0 of 3 ready, 3 starting/);
  });
});

describe('provisioning-aware sizing: what the workers up take before a new one is ready', () => {
  // The fleet's pool: one 45 s shard per worker, workers ready 65 s after they are asked for.
  const p = pool(
    { target: { backlogSecondsPerWorker: 45 }, assumeShardDuration: '45s' },
    { minReplicas: 0, maxReplicas: 1000 },
  );
  const start = emptyMemory(10);

  it('asks for no more when the busy workers take a small backlog before a new worker could be ready', () => {
    // 10 busy workers, 8 shards waiting: 18 x 45 s / 45 s = 18 workers by the backlog alone,
    // but in 65 s each busy one ends its shard and takes 65 / 45 more (10 x 1.94 = 19.4).
    const ds = replay(
      p,
      passes(0, 30, 2, () => ({
        queued: 8,
        active: 10,
        workers: { ready: 10, busy: 10 },
        startup: 65,
      })),
      start,
    );
    expect(new Set(desired(ds))).toEqual(new Set([10]));
    expect(ds[0]?.message).toMatch(
      /workers up or on the way take 19 of them before a new one is ready \(65s, measured\): 10 for the other 0/,
    );
    expect(ds[0]?.inputs).toMatchObject({ startupSeconds: 65, startupSource: 'measured' });
  });

  it('still asks for workers at the first pass that sees a spike: more than the workers up can take', () => {
    // 200 shards arrive: the 10 busy workers take 19.4 of them in 65 s; 181 are left.
    const ds = replay(
      p,
      [
        { t: 0, queued: 8, active: 10, workers: { ready: 10, busy: 10 }, startup: 65 },
        { t: 1, queued: 208, active: 10, workers: { ready: 10, busy: 10 }, startup: 65 },
      ],
      start,
    );
    expect(desired(ds)).toEqual([10, 20]); // the scale-up policies: 100% per 15 s
    expect(ds[1]?.recommendation).toBe(Math.ceil(218 - 10 * (0.5 + 65 / 45)));
    // From an idle pool nothing is on the way: the whole backlog counts.
    const cold = replay(p, [{ t: 0, queued: 200, startup: 65 }], emptyMemory(0));
    expect(cold[0]?.recommendation).toBe(200);
    expect(cold[0]?.desired).toBe(4);
  });

  it('counts a starting worker as half-way to ready, and never scales down for it', () => {
    // 10 asked for, 4 ready and busy, 6 starting: 4 x 1.94 + 6 x 0.72 = 12.1 shards taken.
    const ds = replay(
      p,
      [{ t: 0, queued: 20, active: 4, workers: { ready: 4, busy: 4, starting: 6 }, startup: 65 }],
      start,
    );
    expect(ds[0]?.recommendation).toBe(Math.ceil(24 - 4 * (0.5 + 65 / 45) - 6 * 0.5 * (65 / 45)));
    // All of it taken: the size is held, not lowered (a scale-down goes by the backlog alone).
    const held = replay(
      p,
      [{ t: 0, queued: 1, active: 10, workers: { ready: 10, busy: 10 }, startup: 65 }],
      start,
    );
    expect(held[0]?.recommendation).toBe(10);
  });

  it('keeps the last start-up time measured for when no worker is up, and uses the default before any', () => {
    const ds = replay(
      p,
      [
        { t: 0, queued: 8, active: 10, workers: { ready: 10, busy: 10 }, startup: 65 },
        { t: 2, queued: 0, active: 0 },
      ],
      start,
    );
    expect(ds[1]?.memory.startupSeconds).toBe(65);
    expect(ds[1]?.inputs).toMatchObject({ startupSeconds: 65, startupSource: 'measured' });
    const fresh = replay(
      p,
      [{ t: 0, queued: 8, active: 10, workers: { ready: 10, busy: 10 } }],
      start,
    );
    expect(fresh[0]?.inputs).toMatchObject({
      startupSeconds: DEFAULT_STARTUP_SECONDS,
      startupSource: 'default',
    });
    expect(fresh[0]?.memory.startupSeconds).toBeUndefined();
  });

  it('measures the start-up as the median over the workers up, a pod start added on Kubernetes', () => {
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString();
    expect(
      startupOfWorkers([
        { startedAt: at(0), loadedAt: at(40) },
        { startedAt: at(10), loadedAt: at(55) },
        { startedAt: at(0), loadedAt: at(300) }, // one slow: not the estimate
        { startedAt: at(5), loadedAt: null }, // still loading
        {}, // an older worker
      ]),
    ).toBe(45);
    expect(startupOfWorkers([{ startedAt: at(5), loadedAt: null }])).toBeNull();
    expect(medianOf([])).toBeNull();
    expect(medianOf([3, 1, 2, 10])).toBe(2.5);
  });
});

describe('rate limits and stabilisation windows', () => {
  it('grows by one worker per period with a Workers policy of 1', () => {
    const p = pool({
      target: { shardsPerWorker: 1 },
      behavior: { scaleUp: { policies: [{ type: 'Workers', value: 1, period: '10s' }] } },
    });
    const ds = replay(
      p,
      passes(0, 40, 5, () => ({ queued: 6 })),
    );
    expect(desired(ds)).toEqual([1, 1, 2, 2, 3, 3, 4, 4, 5]);
  });

  it('takes the smallest change with selectPolicy Min, the largest with Max', () => {
    const rules = (selectPolicy: string) =>
      pool({
        target: { shardsPerWorker: 1 },
        behavior: {
          scaleDown: {
            stabilizationWindow: 0,
            selectPolicy,
            policies: [
              { type: 'Percent', value: 50, period: '10s' },
              { type: 'Workers', value: 1, period: '10s' },
            ],
          },
        },
      });
    const from8 = { ...emptyMemory(8) };
    expect(desired(replay(rules('Min'), [{ t: 0, queued: 1 }], from8))).toEqual([7]);
    expect(desired(replay(rules('Max'), [{ t: 0, queued: 1 }], from8))).toEqual([4]);
    const disabled = pool({
      target: { shardsPerWorker: 1 },
      idleTimeout: 0,
      behavior: { scaleDown: { selectPolicy: 'Disabled' } },
    });
    expect(desired(replay(disabled, [{ t: 0, queued: 0 }], from8))).toEqual([8]);
  });

  it('halves per period with a Percent policy of 50, counting what it already removed', () => {
    const p = pool({
      target: { shardsPerWorker: 1 },
      behavior: {
        scaleDown: {
          stabilizationWindow: 0,
          policies: [{ type: 'Percent', value: 50, period: '10s' }],
        },
      },
    });
    const ds = replay(
      p,
      passes(0, 30, 5, () => ({ queued: 1 })),
      emptyMemory(8),
    );
    expect(desired(ds)).toEqual([4, 4, 2, 2, 1, 1, 1]);
    expect(ds[1]?.reason).toBe('ScaleDownLimit');
  });

  it('ignores a spike shorter than the scale-up window', () => {
    const p = pool({
      target: { shardsPerWorker: 1 },
      behavior: {
        scaleUp: {
          stabilizationWindow: '30s',
          policies: [{ type: 'Workers', value: 100, period: '15s' }],
        },
      },
    });
    const ds = replay(p, [
      { t: 0, queued: 1 },
      { t: 10, queued: 6 },
      { t: 15, queued: 1 },
      { t: 20, queued: 6 },
      { t: 50, queued: 6 },
    ]);
    expect(desired(ds)).toEqual([1, 1, 1, 1, 6]);
    expect(ds[1]?.reason).toBe('ScaleUpStabilized');
  });

  it('holds the highest recommendation of the scale-down window', () => {
    const p = pool({
      target: { shardsPerWorker: 1 },
      behavior: { scaleDown: { stabilizationWindow: '1m' } },
    });
    const ds = replay(
      p,
      [
        { t: 0, queued: 6 },
        { t: 20, queued: 2 }, // 6 was recommended until now: the window holds it to t = 80
        { t: 79, queued: 2 },
        { t: 81, queued: 2 },
      ],
      emptyMemory(6),
    );
    expect(desired(ds)).toEqual([6, 6, 6, 2]);
    expect(ds[1]?.reason).toBe('ScaleDownStabilized');
    expect(conditionOf(ds[1], 'AbleToScale')?.message).toMatch(/highest of the last 60 s/);
  });

  it('keeps its size for a recommendation within 10% of it', () => {
    const p = pool({ target: { shardsPerWorker: 1 } }, { minReplicas: 0, maxReplicas: 40 });
    const ds = replay(p, [{ t: 0, queued: 21 }], emptyMemory(20));
    expect(desired(ds)).toEqual([20]);
    expect(ds[0]?.message).toMatch(/within 10% of 20/);
  });
});

describe('idle timeout', () => {
  it('holds the pool while the queue is empty, then goes to 0 at once past the scale-down window', () => {
    const p = pool({ target: { shardsPerWorker: 1 }, idleTimeout: '30s' });
    const ds = replay(p, [
      { t: 0, queued: 4 },
      { t: 10, queued: 0 },
      { t: 39, queued: 0 },
      { t: 40, queued: 0 },
      { t: 41, queued: 0 },
    ]);
    expect(desired(ds)).toEqual([4, 4, 4, 0, 0]);
    expect(ds[2]?.reason).toBe('QueueEmpty');
    expect(ds[3]?.reason).toBe('IdleTimeout');
    expect(ds[3]?.inputs.emptySince).toBe(new Date(10_000).toISOString());
    expect(ds[3]?.message).toMatch(/queue empty since .*, past idleTimeout 30s: minReplicas 0/);
    // Written once: the message of a pool that stays idle does not change.
    expect(ds[4]?.message).toBe(ds[3]?.message);
  });

  it('stops at minReplicas, and grows from it again when shards come', () => {
    const p = pool(
      { target: { shardsPerWorker: 1 }, idleTimeout: 0 },
      { minReplicas: 1, maxReplicas: 4 },
    );
    const ds = replay(p, [
      { t: 0, queued: 3 },
      { t: 1, queued: 0 },
      { t: 2, queued: 2 },
    ]);
    expect(desired(ds)).toEqual([3, 1, 2]);
  });
});

describe('the defaults of a pool of GPU workers', () => {
  const gpuPool = (autoscale: Record<string, unknown>) => {
    const spec = parseSpec(
      stringify({
        apiVersion: 'stoker/v1',
        kind: 'SelfPlay',
        metadata: { name: 'as' },
        spec: {
          payload: { command: ['python3', 'gen.py'] },
          input: { file: 'in.jsonl', shardSize: 1 },
          pool: { name: 'gen', minReplicas: 0, maxReplicas: 8, resources: { gpus: 1 }, autoscale },
        },
      }),
    );
    const p = spec.stages[0]?.pool;
    if (!p?.autoscale) throw new Error('no autoscale block');
    return { ...p, autoscale: p.autoscale };
  };
  // 8 workers drain a burst: the backlog falls to 2 at 20 s, then to 0 at 40 s.
  const burst = (t: number): Omit<Step, 't'> =>
    t < 20 ? { queued: 8 } : t < 40 ? { queued: 0, active: 2 } : { queued: 0 };

  it('lets the idle surplus of a draining backlog go after 15 s, and the last workers 60 s after the queue emptied', () => {
    const ds = replay(gpuPool({ target: { shardsPerWorker: 1 } }), passes(0, 120, 1, burst));
    const at = (t: number) => ds[t]?.desired;
    expect([at(15), at(20), at(34), at(35), at(36)]).toEqual([8, 8, 8, 2, 2]);
    expect(ds[34]?.reason).toBe('ScaleDownStabilized');
    expect(ds[35]?.reason).toBe('ValidBacklog');
    expect([at(40), at(99), at(100)]).toEqual([2, 2, 0]);
    expect(ds[99]?.reason).toBe('QueueEmpty');
    expect(ds[100]?.message).toMatch(/past idleTimeout 60s: minReplicas 0/);
  });

  it('holds a CPU pool 300 s instead, the HPA’s window, with the same backlog', () => {
    const ds = replay(pool({ target: { shardsPerWorker: 1 } }), passes(0, 400, 1, burst));
    expect(ds[100]?.desired).toBe(8);
    expect(ds[340]?.desired).toBe(0);
    expect(ds[340]?.reason).toBe('IdleTimeout');
    expect(ds.slice(15, 340).every((d) => d.desired === 8)).toBe(true);
  });
});

describe('a pin', () => {
  it('holds the pinned size whatever the backlog, until it ends; then the policies apply from it', () => {
    const p = pool({
      target: { shardsPerWorker: 1 },
      behavior: { scaleUp: { policies: [{ type: 'Workers', value: 2, period: '15s' }] } },
    });
    const pin = { replicas: 2, untilMs: 30_000 };
    const ds = replay(p, [
      { t: 0, queued: 8, pin },
      { t: 20, queued: 8, pin },
      { t: 31, queued: 8, pin },
    ]);
    expect(desired(ds)).toEqual([2, 2, 4]);
    expect(ds[0]?.reason).toBe('Pinned');
    expect(conditionOf(ds[0], 'ScalingActive')).toMatchObject({
      status: 'False',
      reason: 'Pinned',
    });
    expect(ds[0]?.message).toMatch(/pinned to 2 by stoker scale until .*the backlog asks for 8/);
    expect(ds[2]?.reason).toBe('ScaleUpLimit');
  });

  it('holds a pin with no end, within the bounds', () => {
    const p = pool({ target: { shardsPerWorker: 1 }, idleTimeout: 0 });
    const ds = replay(p, [{ t: 0, queued: 0, pin: { replicas: 3, untilMs: null } }]);
    expect(desired(ds)).toEqual([3]);
    expect(ds[0]?.message).toMatch(/until stoker scale --auto/);
  });
});

describe('a fixed pool (no autoscale)', () => {
  const base = {
    nowMs: 0,
    minReplicas: 0,
    maxReplicas: 4,
    replicas: 2,
    backlog: { waiting: 0, prioritized: 0, delayed: 0, active: 0 },
    pin: null,
  };
  it('reads as idle when no stage uses it, not as 2 desired', () => {
    const d = fixedDecision({ ...base, users: 0 });
    expect(d).toMatchObject({ desired: 0, reason: 'Unused' });
    expect(d.message).toMatch(/idle: no stage uses it/);
  });
  it('runs its replicas while used, or its pin whether used or not, until the pin ends', () => {
    const pin = { replicas: 3, untilMs: null };
    expect(fixedDecision({ ...base, users: 1 }).desired).toBe(2);
    expect(fixedDecision({ ...base, users: 0, pin })).toMatchObject({
      desired: 3,
      reason: 'Pinned',
    });
    const ended = { replicas: 3, untilMs: 5 };
    expect(fixedDecision({ ...base, users: 1, nowMs: 10, pin: ended }).desired).toBe(2);
    expect(fixedDecision({ ...base, users: 0, nowMs: 10, pin: ended }).reason).toBe('Unused');
  });
});

describe('which workers a scale-down drains', () => {
  const w = (id: string, o: Partial<DrainCandidate>): DrainCandidate => ({
    id,
    state: 'idle',
    shardsDone: 3,
    shardSinceMs: null,
    startedMs: 0,
    ...o,
  });
  const workers = [
    w('busy-old-shard', { state: 'busy', shardSinceMs: 1000 }),
    w('busy-new-shard', { state: 'busy', shardSinceMs: 5000 }),
    w('busy-loading', { state: 'busy', shardsDone: 0, shardSinceMs: 900 }),
    w('idle-warm', {}),
    w('starting', { state: 'starting', shardsDone: 0, startedMs: 50 }),
    w('no-state', { state: null, shardsDone: 0, startedMs: 60 }),
    w('idle-cold', { shardsDone: 0 }),
    w('draining', { state: 'draining' }),
  ];

  it('takes the draining, then the cold idle and starting, then the warm idle, then the loading, then the busy by the latest shard start', () => {
    expect(drainOrder(workers, workers.length).map((c) => c.id)).toEqual([
      'draining',
      'idle-cold',
      'no-state',
      'starting',
      'idle-warm',
      'busy-loading',
      'busy-new-shard',
      'busy-old-shard',
    ]);
  });

  it('takes only as many as asked, and none for 0', () => {
    expect(drainOrder(workers, 2).map((c) => c.id)).toEqual(['draining', 'idle-cold']);
    expect(drainOrder(workers, 0)).toEqual([]);
  });
});
