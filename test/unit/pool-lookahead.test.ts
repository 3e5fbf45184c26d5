/**
 * The pool worker's shard in hand (worker/pool/lookahead.ts) and its state while two
 * shards overlap (worker/pool/state.ts): who gets the server, when a held job gives up,
 * when the worker holds one, and what the worker's state says.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { silentLogger } from '../../common/logger.js';
import { Lookahead, MAX_HOLD_MS, SHORT_SHARD_MS } from '../../worker/pool/lookahead.js';
import { WorkerStatePublisher } from '../../worker/pool/state.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('the server turn', () => {
  it('is free at once, then taken in the order the jobs came, one at a time', async () => {
    const l = new Lookahead();
    const a = l.tryTake();
    expect(a).not.toBeNull();
    expect(l.tryTake()).toBeNull();
    const order: string[] = [];
    const b = l.take([]).then((t) => (order.push('b'), t));
    const c = l.take([]).then((t) => (order.push('c'), t));
    await Promise.resolve();
    expect(order).toEqual([]);
    a?.release();
    a?.release(); // idempotent: does not pass the turn twice
    const tb = await b;
    await Promise.resolve();
    expect(order).toEqual(['b']);
    tb?.release();
    const tc = await c;
    expect(order).toEqual(['b', 'c']);
    tc?.release();
    expect(l.tryTake()).not.toBeNull();
  });

  it('gives up a held job when the worker stops, or after MAX_HOLD_MS, and then holds no more', async () => {
    vi.useFakeTimers();
    const l = new Lookahead();
    const worker = { concurrency: 2 };
    l.attach(worker);
    const running = l.tryTake();
    const stop = new AbortController();
    const held = l.take([stop.signal]);
    stop.abort();
    expect(await held).toBeNull();
    expect(worker.concurrency).toBe(2);
    // An aborted stop gives up at once.
    expect(await l.take([stop.signal])).toBeNull();

    const late = l.take([]);
    await vi.advanceTimersByTimeAsync(MAX_HOLD_MS - 1);
    let settled = false;
    void late.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await late).toBeNull();
    expect(worker.concurrency).toBe(1);
    // The running shard's turn still passes on normally.
    running?.release();
    expect(l.tryTake()).not.toBeNull();
  });

  it('holds one more job only after a short shard, and not while draining', () => {
    const l = new Lookahead();
    const worker = { concurrency: 1 };
    l.attach(worker);
    l.ran(SHORT_SHARD_MS - 1, false);
    expect(worker.concurrency).toBe(2);
    l.ran(SHORT_SHARD_MS, false);
    expect(worker.concurrency).toBe(1);
    l.ran(10, true);
    expect(worker.concurrency).toBe(1);
    l.ran(10, false);
    l.stop();
    expect(worker.concurrency).toBe(1);
  });
});

describe("the worker's state with a shard in hand", () => {
  const written: string[] = [];
  const redis = {
    hset: (_key: string, _field: string, value: string) => {
      written.push(value);
      return Promise.resolve(1);
    },
  } as unknown as Redis;
  const publisher = () => new WorkerStatePublisher(redis, makeKeys('t'), 'p', 'w1', silentLogger());

  it('names the shard on the server, counts each shard once, and idles when none is left', () => {
    const s = publisher();
    expect(s.shardBegins('a')).toMatchObject({ state: 'busy', shard: 'a', shardsDone: 0 });
    // b begins in hand while a runs: the state still names a.
    expect(s.shardBegins('b')).toMatchObject({ state: 'busy', shard: 'a', shardsDone: 0 });
    expect(s.shardEnds('a', false)).toMatchObject({ state: 'busy', shard: 'b', shardsDone: 1 });
    expect(s.shardEnds('b', false)).toMatchObject({ state: 'idle', shard: null, shardsDone: 2 });
  });

  it('a shard given back is not counted, and leaves the running one named; draining at the end', () => {
    const s = publisher();
    s.shardBegins('a');
    s.shardBegins('b');
    expect(s.shardEnds('b', false, false)).toMatchObject({
      state: 'busy',
      shard: 'a',
      shardsDone: 0,
    });
    expect(s.shardEnds('a', true)).toMatchObject({ state: 'draining', shard: null, shardsDone: 1 });
  });

  it('ready() does not turn a worker that already began a shard idle', async () => {
    written.length = 0;
    const s = publisher();
    s.shardBegins('a');
    await s.ready();
    expect(s.current).toMatchObject({ state: 'busy', shard: 'a' });
    expect(written).toEqual([]);
    const idle = publisher();
    await idle.ready();
    expect(idle.current.state).toBe('idle');
    expect(JSON.parse(written[0] ?? '{}')).toMatchObject({ state: 'idle', workerId: 'w1' });
  });
});
