/**
 * Queue position and estimated start (orchestrator/queue-wait.ts): the order BullMQ
 * takes jobs in, read from its own structures on a real redis-server; the estimate from
 * the running work's ETAs and the queue's finished jobs; and the whole path through a
 * controller with one train slot, as `stoker status` and the run list show it.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { bullConnection, connectRedis } from '../../common/redis.js';
import { describeRun } from '../../orchestrator/cli/format.js';
import {
  describeWait,
  dispatchedWait,
  startEstimate,
  shardWait,
} from '../../orchestrator/queue-wait.js';
import { poolRate } from '../../orchestrator/pools.js';
import { summarizeRun } from '../../orchestrator/views.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';
import { nodePayloadRun, startTestSystem, type TestSystem } from '../util/system.js';

describe('startEstimate', () => {
  it('gives the earliest free slot to the next job, and a typical duration to each ahead', () => {
    expect(startEstimate([30, 0], 0, null)).toBe(0);
    expect(startEstimate([30, 50], 0, null)).toBe(30);
    // Two ahead on two slots freeing at 30 and 50, 100 s each: 30+100 and 50 taken, then 50.
    expect(startEstimate([30, 50], 1, 100)).toBe(50);
    expect(startEstimate([30, 50], 2, 100)).toBe(130);
    expect(startEstimate([30, 50], 3, 100)).toBe(150);
    expect(startEstimate([30, 50], 2, null)).toBeNull();
    expect(startEstimate([], 0, 10)).toBeNull();
    // A long queue: the same answer as one by one, without the loop.
    expect(startEstimate([0, 0, 0], 1_000_000, 1)).toBe(Math.floor(1_000_000 / 3));
    expect(startEstimate([0, 0, 0], 1_000_001, 1)).toBe(Math.floor(1_000_001 / 3));
    expect(startEstimate([0, 5], 1, null)).toBe(5);
  });
});

describe('positions in a real BullMQ queue', () => {
  let url: string;
  let redis: Redis;
  const keys = makeKeys(uniquePrefix('qwait'));
  let q: Queue;
  beforeAll(async () => {
    url = await testRedisUrl();
    redis = await connectRedis(url);
    q = new Queue('train', { connection: bullConnection(url), prefix: keys.bullPrefix });
  });
  afterAll(async () => {
    await q.close();
    redis.disconnect();
    await deleteKeysWithPrefix(url, keys.prefix);
  });

  it('orders plain jobs first in, then prioritized ones; a delayed one waits for its time', async () => {
    await q.add('t', {}, { jobId: 'a' });
    await q.add('t', {}, { jobId: 'b' });
    await q.add('t', {}, { jobId: 'p', priority: 5 });
    await q.add('t', {}, { jobId: 'c' });
    await q.add('t', {}, { jobId: 'd', delay: 60_000 });
    await redis.hset(keys.dispatchSlots(), 'train', '2');
    const w = async (id: string) => dispatchedWait(redis, keys, 'train', id);
    expect((await w('a'))?.position).toBe(1);
    expect((await w('b'))?.position).toBe(2);
    expect((await w('c'))?.position).toBe(3);
    expect((await w('p'))?.position).toBe(4);
    const d = await w('d');
    expect(d?.position).toBeNull();
    expect(d?.startsInSeconds).toBeGreaterThan(50);
    expect(d?.summary).toMatch(/backoff/);
    expect(await w('none')).toBeNull();

    // Two free slots: a and b start now; c needs a duration nobody has measured yet.
    const a = await w('a');
    expect(a).toMatchObject({ ahead: 0, slots: 2, running: 0, startsInSeconds: 0 });
    expect((await w('b'))?.startsInSeconds).toBe(0);
    const c = await w('c');
    expect(c?.startsInSeconds).toBeNull();
    expect(c?.summary).toBe(`2 ahead in train, 0 of 2 slots busy: no estimate (${c?.basis})`);

    // Paused: no estimate, and it says why.
    await q.pause();
    expect((await w('a'))?.basis).toBe('the queue is paused');
    await q.resume();

    // A pool's shard: shards ahead over the pool's rate.
    const s = await shardWait(redis, keys, 'train', 'c', {
      shardsPerSecond: 0.5,
      workers: 2,
      running: 2,
    });
    expect(s?.startsInSeconds).toBe(6);
    expect(s?.summary).toBe('2 ahead in train, 2 of 2 slots busy: starts in about 6 s');
  });

  it("takes a pool's rate from its shards' durations and the workers serving now", async () => {
    const now = Date.now();
    // Two completions, 2 s and 2 s of work, a moment ago: one worker does 0.5 shards/s.
    await redis.zadd(keys.poolCompletions('p'), now - 1000, 'r.g.s00000:1:2000');
    await redis.zadd(keys.poolCompletions('p'), now - 500, 'r.g.s00001:1:2000');
    // Right after a scale to 4 workers (the last minute saw 2 completions: 0.03/s).
    expect(await poolRate(redis, keys, 'p', 4, now)).toEqual({
      shardsPerSecond: 2,
      shardSeconds: 2,
    });
    // And right after a scale down to 1.
    expect((await poolRate(redis, keys, 'p', 1, now)).shardsPerSecond).toBe(0.5);
    // Members without a duration (older workers): the completions of the last minute.
    await redis.zadd(keys.poolCompletions('q'), now - 1000, 'r.g.s00000:1');
    await redis.zadd(keys.poolCompletions('q'), now - 900_000, 'r.g.s00001:1');
    expect(await poolRate(redis, keys, 'q', 4, now)).toEqual({
      shardsPerSecond: 1 / 60,
      shardSeconds: null,
    });
  });

  it('says it in words', () => {
    const base = {
      queue: 'train',
      slots: 2,
      running: 2,
      delayedUntil: null,
      basis: 'x',
    };
    expect(describeWait({ ...base, position: 3, ahead: 2, startsInSeconds: 840 })).toBe(
      '2 ahead in train, 2 of 2 slots busy: starts in about 14 min',
    );
    expect(describeWait({ ...base, position: 1, ahead: 0, startsInSeconds: 0 })).toBe(
      'next in train, 2 of 2 slots busy: starts now',
    );
    expect(
      describeWait({ ...base, queue: 'pool.gen', position: 9, ahead: 8, startsInSeconds: 7200 }),
    ).toBe('8 ahead in pool.gen, 2 of 2 workers busy: starts in about 2.0 h');
  });
});

describe('through a controller with one train slot', () => {
  let sys: TestSystem | undefined;
  afterAll(async () => {
    await sys?.cleanup();
  });

  it('shows each waiting run its place and, once the queue has timed a job, its start', async () => {
    sys = await startTestSystem({ concurrency: { train: 1, steps: 2 } });
    const s = sys;
    const run = (name: string, steps: number) =>
      s.submit(nodePayloadRun(name, 'train-sim.mjs', { STEPS: steps, STEP_MS: 40 }));
    const first = await run('qw-first', 60);
    await s.waitForPhase(first, ['Running']);
    const second = await run('qw-second', 60);
    const third = await run('qw-third', 60);

    // The second is next: it starts when the first ends (the first reports its rate).
    const w2 = await eventually('the second run to know when it starts', async () => {
      const w = (await s.view(second)).stages[0]?.queue?.wait;
      return w?.startsInSeconds !== null && w?.startsInSeconds !== undefined ? w : null;
    });
    expect(w2).toMatchObject({ queue: 'train', position: 1, ahead: 0, slots: 1, running: 1 });
    expect(w2.startsInSeconds).toBeLessThan(60 * 0.04 + 30);
    // The third is behind it; nothing finished yet to time the second by.
    const w3 = (await s.view(third)).stages[0]?.queue?.wait;
    expect(w3).toMatchObject({ position: 2, ahead: 1, startsInSeconds: null });
    // `stoker status RUN` and the run list say the same.
    expect(describeRun(await s.view(third))).toContain(`waiting: ${w3?.summary}`);
    const summary = await summarizeRun(s.store, await s.store.mustGetRun(third));
    expect(summary.waiting).toBe(w3?.summary);

    // Once the first finished, the queue has a duration to go by: the third gets a time.
    await s.waitForPhase(first, ['Succeeded']);
    const later = await eventually('the third run to get an estimate', async () => {
      const w = (await s.view(third)).stages[0]?.queue?.wait;
      return w?.startsInSeconds !== null && w?.startsInSeconds !== undefined ? w : null;
    });
    expect(later.ahead).toBe(0);
    expect(later.basis).toMatch(/ETA/);
    await s.waitForPhase(third, ['Succeeded'], 120_000);
    expect((await s.view(third)).stages[0]?.queue).toBeNull();
    expect((await summarizeRun(s.store, await s.store.mustGetRun(third))).waiting).toBeNull();
  });
});
