/**
 * The GPU budget of autoscaled pools (orchestrator/autoscale/budget.ts): how decide()'s
 * asks are cut to a shared number of GPUs, pools weighed by their backlog in GPU-seconds,
 * training stages counted in the same budget, Kueue queues as budgets of their own; and
 * how a cut lands in the decision (limits.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  allocateGpus,
  backlogGpuSeconds,
  NO_BUDGET,
  type GpuBudget,
  type PoolDemand,
  type TrainingDemand,
} from '../../orchestrator/autoscale/budget.js';
import { decide } from '../../orchestrator/autoscale/decide.js';
import { applyLimits } from '../../orchestrator/autoscale/limits.js';
import { emptyMemory } from '../../orchestrator/autoscale/records.js';
import { DEFAULT_AUTOSCALE, NormalizedAutoscale } from '../../common/spec/schema.js';

/** A pool's demand: `desired` workers of `gpus` GPUs, `backlog` shards of `shardSeconds`. */
function pool(
  name: string,
  o: {
    desired: number;
    gpus?: number;
    backlog?: number;
    shardSeconds?: number;
    queue?: string;
    workers?: number;
    draining?: number;
  },
): PoolDemand {
  const gpus = o.gpus ?? 1;
  return {
    name,
    gpusPerWorker: gpus,
    desired: o.desired,
    backlogGpuSeconds: backlogGpuSeconds(o.backlog ?? o.desired, o.shardSeconds ?? 10, gpus),
    queue: o.queue,
    // By default the pool already has its pods: the shares, not the growth, are under test.
    workers: o.workers ?? o.desired,
    draining: o.draining ?? 0,
  };
}

const budget = (controller: number | null, queues: Record<string, number> = {}): GpuBudget => ({
  controller,
  queues,
});

function allocate(b: GpuBudget, pools: PoolDemand[], training: TrainingDemand[] = []) {
  const a = allocateGpus({ budget: b, pools, training });
  const replicas = Object.fromEntries(a.pools.map((p) => [p.name, p.replicas]));
  const shares = Object.fromEntries(a.pools.map((p) => [p.name, p.share]));
  const gpus = a.pools.reduce(
    (sum, p) => sum + p.share * (pools.find((x) => x.name === p.name)?.gpusPerWorker ?? 0),
    0,
  );
  return { a, replicas, shares, gpus, of: (n: string) => a.pools.find((p) => p.name === n) };
}

describe('contention between two pools', () => {
  it('splits 8 GPUs 6:2 between backlogs of 6,000 and 2,000 GPU-seconds, and says who gets what', () => {
    const r = allocate(budget(8), [
      pool('gen-a', { desired: 6, backlog: 600 }),
      pool('gen-b', { desired: 6, backlog: 200 }),
    ]);
    expect(r.replicas).toEqual({ 'gen-a': 6, 'gen-b': 2 });
    expect(r.of('gen-a')?.reason).toBeNull();
    expect(r.of('gen-b')?.reason).toBe('GpuBudget');
    expect(r.of('gen-b')?.message).toBe(
      'GPU budget: 8 of 8 GPUs in use (gen-a 6, gen-b 2); gen-b gets 2 of the 6 it asks for',
    );
  });

  it('gives the small pool its worker even when the big one has a thousand times its backlog', () => {
    const r = allocate(budget(10), [
      pool('big', { desired: 1000, backlog: 100_000 }),
      pool('small', { desired: 3, backlog: 100 }),
    ]);
    expect(r.replicas).toEqual({ big: 9, small: 1 });
  });

  it('weighs by GPU-seconds, not by shards: a 4-GPU worker costs four 1-GPU ones', () => {
    // Same shards and shard time; gen-4g's backlog is 4x the GPU-seconds.
    const r = allocate(budget(40), [
      pool('gen-1g', { desired: 40, gpus: 1, backlog: 100 }),
      pool('gen-4g', { desired: 10, gpus: 4, backlog: 100 }),
    ]);
    // Shares by GPUs 8 : 32 (1 : 4), within one worker.
    expect(r.replicas['gen-1g']).toBe(8);
    expect(r.replicas['gen-4g']).toBe(8);
    expect(r.gpus).toBe(40);
  });

  it('never gives a pool more than its own desired: what it leaves goes to the other', () => {
    const r = allocate(budget(16), [
      pool('gen-a', { desired: 2, backlog: 10_000 }),
      pool('gen-b', { desired: 20, backlog: 100 }),
    ]);
    expect(r.replicas).toEqual({ 'gen-a': 2, 'gen-b': 14 });
    expect(r.of('gen-a')?.reason).toBeNull();
  });

  it('leaves both as asked when the budget holds them', () => {
    const r = allocate(budget(16), [pool('gen-a', { desired: 6 }), pool('gen-b', { desired: 6 })]);
    expect(r.replicas).toEqual({ 'gen-a': 6, 'gen-b': 6 });
    expect(r.a.pools.every((p) => p.reason === null)).toBe(true);
  });

  it('shares what is left by GPUs, after the backlogs, among pools that hold workers on an empty queue', () => {
    const r = allocate(budget(8), [
      pool('busy', { desired: 4, backlog: 40 }),
      pool('idle-a', { desired: 4, backlog: 0 }),
      pool('idle-b', { desired: 4, backlog: 0 }),
    ]);
    expect(r.replicas).toEqual({ busy: 4, 'idle-a': 2, 'idle-b': 2 });
  });

  it('does the same with no budget at all: every pool as asked, no reason', () => {
    const r = allocate(NO_BUDGET, [pool('gen-a', { desired: 600 }), pool('gen-b', { desired: 9 })]);
    expect(r.replicas).toEqual({ 'gen-a': 600, 'gen-b': 9 });
    expect(r.a.scopes).toEqual([]);
  });
});

describe('training stages count in the same budget', () => {
  it('leaves the pools the GPUs a running training stage does not hold', () => {
    const r = allocate(
      budget(8),
      [pool('gen-a', { desired: 6, backlog: 300 }), pool('gen-b', { desired: 6, backlog: 100 })],
      [{ name: 'r1/train', gpus: 2, state: 'running' }],
    );
    expect(r.replicas).toEqual({ 'gen-a': 4, 'gen-b': 2 });
    expect(r.of('gen-a')?.message).toBe(
      'GPU budget: 8 of 8 GPUs in use (training r1/train 2, gen-a 4, gen-b 2); gen-a gets 4 of the 6 it asks for',
    );
  });

  it('reserves the GPUs of a training stage that waits for them, so the pools make room', () => {
    const r = allocate(
      budget(8),
      [pool('gen', { desired: 8, backlog: 800, workers: 8 })],
      [{ name: 'r2/sft', gpus: 4, state: 'waiting' }],
    );
    expect(r.replicas).toEqual({ gen: 4 });
    expect(r.of('gen')?.message).toContain('training r2/sft 4 waiting');
  });

  it('counts a training stage larger than the budget as the whole budget, never less than nothing', () => {
    const r = allocate(
      budget(8),
      [pool('gen', { desired: 4 })],
      [{ name: 'r3/big', gpus: 16, state: 'waiting' }],
    );
    expect(r.replicas).toEqual({ gen: 0 });
    expect(r.a.scopes[0]).toMatchObject({ total: 8, training: 8, allocated: 8 });
  });
});

describe('a budget smaller than the number of pools', () => {
  it('gives one worker each to the largest backlogs and says so to the others', () => {
    const r = allocate(budget(2), [
      pool('p1', { desired: 3, backlog: 10 }),
      pool('p2', { desired: 3, backlog: 30 }),
      pool('p3', { desired: 3, backlog: 20 }),
    ]);
    expect(r.replicas).toEqual({ p1: 0, p2: 1, p3: 1 });
    expect(r.of('p1')?.message).toBe(
      'GPU budget: 2 of 2 GPUs in use (p2 1, p3 1); p1 gets 0 of the 3 it asks for',
    );
  });

  it('skips a pool whose worker does not fit and serves the next one that does', () => {
    const r = allocate(budget(3), [
      pool('big-gpu', { desired: 2, gpus: 4, backlog: 1000 }),
      pool('one-gpu', { desired: 5, gpus: 1, backlog: 10 }),
    ]);
    expect(r.replicas).toEqual({ 'big-gpu': 0, 'one-gpu': 3 });
  });
});

describe('0-GPU pools', () => {
  it('are untouched by any budget, and cost none of it', () => {
    const r = allocate(
      budget(2),
      [
        pool('cpu', { desired: 50, gpus: 0, backlog: 10_000 }),
        pool('gpu', { desired: 4, gpus: 1, backlog: 10 }),
      ],
      [{ name: 'r1/train', gpus: 1, state: 'running' }],
    );
    expect(r.replicas).toEqual({ cpu: 50, gpu: 1 });
    expect(r.of('cpu')).toMatchObject({ reason: null, message: null });
    expect(r.a.scopes[0]?.pools).toEqual({ gpu: 1 });
  });
});

describe('per-Kueue-queue budgets', () => {
  it('limits the pools of a queue to its budget, inside the controller budget', () => {
    const r = allocate(budget(16, { 'team-a': 4 }), [
      pool('a1', { desired: 6, backlog: 100, queue: 'team-a' }),
      pool('a2', { desired: 6, backlog: 100, queue: 'team-a' }),
      pool('b1', { desired: 20, backlog: 10, queue: 'team-b' }),
    ]);
    // team-a is full at 4 (2 each); team-b has no budget of its own and takes the rest.
    expect(r.replicas).toEqual({ a1: 2, a2: 2, b1: 12 });
    expect(r.of('a1')?.message).toBe(
      'GPU budget of Kueue queue team-a: 4 of 4 GPUs in use (a1 2, a2 2); a1 gets 2 of the 6 it asks for',
    );
    expect(r.of('b1')?.message).toMatch(/^GPU budget: 16 of 16 GPUs in use/);
  });

  it('counts a training stage of the queue in that queue only', () => {
    const r = allocate(
      budget(null, { 'team-a': 8, 'team-b': 8 }),
      [
        pool('a', { desired: 8, queue: 'team-a' }),
        pool('b', { desired: 8, queue: 'team-b' }),
        pool('c', { desired: 8 }),
      ],
      [{ name: 'r1/train', gpus: 6, queue: 'team-a', state: 'running' }],
    );
    // c names no queue and there is no controller budget: not limited.
    expect(r.replicas).toEqual({ a: 2, b: 8, c: 8 });
    expect(r.of('c')?.reason).toBeNull();
  });
});

describe('growth into GPUs that are free now', () => {
  it('lets a pool that was cut drain first: the other grows as its workers leave', () => {
    // gen-a holds 8 of 8 and is cut to 4; 2 of its workers are busy and drain.
    const pools = [
      pool('gen-a', { desired: 8, backlog: 400, workers: 6, draining: 2 }),
      pool('gen-b', { desired: 8, backlog: 400, workers: 0 }),
    ];
    const r = allocate(budget(8), pools);
    expect(r.shares).toEqual({ 'gen-a': 4, 'gen-b': 4 });
    expect(r.replicas).toEqual({ 'gen-a': 4, 'gen-b': 0 });
    expect(r.of('gen-b')?.reason).toBe('GpuBudget');
    expect(r.of('gen-b')?.message).toMatch(
      /gen-b gets 4 of the 8 it asks for, 0 until GPUs are free$/,
    );
    // Next pass: gen-a's 2 idle victims are gone, its 2 draining ones still hold GPUs.
    const next = allocate(budget(8), [
      pool('gen-a', { desired: 8, backlog: 400, workers: 4, draining: 2 }),
      pool('gen-b', { desired: 8, backlog: 400, workers: 0 }),
    ]);
    expect(next.replicas).toEqual({ 'gen-a': 4, 'gen-b': 2 });
  });

  it('says who holds the GPUs when a pool within its share still has to wait', () => {
    const r = allocate(budget(4), [
      pool('gen-a', { desired: 2, backlog: 100, workers: 2, draining: 2 }),
      pool('gen-b', { desired: 2, backlog: 100, workers: 0 }),
    ]);
    expect(r.replicas['gen-b']).toBe(0);
    expect(r.of('gen-b')).toMatchObject({
      reason: 'GpuBudgetInUse',
      message:
        'GPU budget: 4 of 4 GPUs held, 2 by draining workers; gen-b grows to 0 of its 2 as they are freed',
    });
  });
});

describe('a cut in the decision (limits.ts)', () => {
  const autoscale = NormalizedAutoscale.parse({
    ...DEFAULT_AUTOSCALE,
    target: { shardsPerWorker: 1 },
    assumeShardSeconds: null,
  });
  it('becomes the desired, the reason, a ScalingLimited condition and the memory of the next pass', () => {
    const d = decide({
      nowMs: 1000,
      minReplicas: 0,
      maxReplicas: 100,
      autoscale,
      backlog: { waiting: 6, prioritized: 0, delayed: 0, active: 0 },
      workers: { ready: 0, starting: 0, busy: 0, draining: 0 },
      memory: emptyMemory(0),
      pin: null,
    });
    expect(d.desired).toBe(4); // the scale-up policy's 4 workers per 15 s
    const r = allocate(budget(3), [pool('gen', { desired: d.desired, workers: 0 })]);
    const g = r.of('gen');
    const limited = applyLimits(d, 0, 1000, [
      g?.reason ? { replicas: g.replicas, reason: g.reason, message: g.message ?? '' } : null,
    ]);
    expect(limited.desired).toBe(3);
    expect(limited.reason).toBe('GpuBudget');
    expect(limited.conditions.find((c) => c.type === 'ScalingLimited')).toMatchObject({
      status: 'True',
      reason: 'GpuBudget',
      message: 'GPU budget: 3 of 3 GPUs in use (gen 3); gen gets 3 of the 4 it asks for',
    });
    expect(limited.conditions.find((c) => c.type === 'AbleToScale')?.message).toBe(
      'scaling from 0 to 3',
    );
    expect(limited.memory).toMatchObject({ desired: 3, changes: [[1000, 3]] });
  });

  it('leaves a decision the limits do not lower as it was', () => {
    const d = decide({
      nowMs: 0,
      minReplicas: 0,
      maxReplicas: 100,
      autoscale,
      backlog: { waiting: 2, prioritized: 0, delayed: 0, active: 0 },
      workers: { ready: 0, starting: 0, busy: 0, draining: 0 },
      memory: emptyMemory(0),
      pin: null,
    });
    expect(applyLimits(d, 0, 0, [{ replicas: 5, reason: 'GpuBudget', message: 'm' }, null])).toBe(
      d,
    );
  });
});
