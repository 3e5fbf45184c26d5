/**
 * The fence (orchestrator/fenced-redis.ts) on a real redis-server: the leader's writes go
 * through only while the lock holds its token; once another holder has the lock nothing
 * the old leader writes lands, and it gives its leadership up. The last test is the
 * paused-old-leader case end to end: a whole controller whose lock passed on while it
 * was not looking does not touch a run submitted after the takeover.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { connectRedis } from '../../common/redis.js';
import { FencedError, fencedRedis, flattenArgs } from '../../orchestrator/fenced-redis.js';
import { RunStore } from '../../orchestrator/store.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';
import { nodePayloadRun, startTestSystem, type TestSystem } from '../util/system.js';

let url: string;
let raw: Redis;
beforeAll(async () => {
  url = await testRedisUrl();
  raw = await connectRedis(url);
});
afterAll(() => raw.disconnect());

it('flattens arguments as ioredis does', () => {
  expect(flattenArgs(['k', { a: 1, b: 'x' }])).toEqual(['k', 'a', '1', 'b', 'x']);
  expect(flattenArgs(['k', ['m1', 'm2'], 3])).toEqual(['k', 'm1', 'm2', '3']);
  expect(flattenArgs([new Map([['f', 'v']])])).toEqual(['f', 'v']);
  expect(() => flattenArgs([() => 1])).toThrow(/function/);
});

it('passes writes while the lock holds the token, refuses every one after', async () => {
  const keys = makeKeys(uniquePrefix('fence'));
  const lock = keys.controllerLock();
  const k = (s: string) => `${keys.prefix}:${s}`;
  await raw.set(lock, 'me');
  const fenced: string[] = [];
  const r = fencedRedis(raw, {
    lockKey: lock,
    token: 'me',
    onFenced: (holder) => fenced.push(String(holder)),
  });

  // Single writes, in the argument forms the code uses; replies as ioredis gives them.
  expect(await r.set(k('s'), 'v', 'PX', 60_000, 'NX')).toBe('OK');
  expect(await r.set(k('s'), 'w', 'PX', 60_000, 'NX')).toBeNull();
  expect(await r.hset(k('h'), { a: '1', b: '2' })).toBe(2);
  expect(await r.sadd(k('set'), 'x', 'y')).toBe(2);
  // A MULTI with reads and writes: one fenced script, replies per command.
  const out = await r.multi().hset(k('h'), 'c', '3').hgetall(k('h')).get(k('none')).exec();
  expect(out).toEqual([
    [null, 1],
    [null, { a: '1', b: '2', c: '3' }],
    [null, null],
  ]);
  // A command error inside it is that command's, as with MULTI.
  const bad = await r.multi().incr(k('h')).sadd(k('set'), 'z').exec();
  expect(bad?.[0]?.[0]).toBeInstanceOf(Error);
  expect(bad?.[1]).toEqual([null, 1]);
  // A pipeline of reads only is sent as it is.
  expect(await r.pipeline().get(k('s')).scard(k('set')).exec()).toEqual([
    [null, 'v'],
    [null, 3],
  ]);
  await r.check();

  // Another controller takes the lock (this one was paused past the TTL).
  await raw.set(lock, 'other');
  await expect(r.hset(k('h'), 'late', '1')).rejects.toBeInstanceOf(FencedError);
  await expect(r.multi().sadd(k('set'), 'late').del(k('s')).exec()).rejects.toThrow(
    /held by other/,
  );
  await expect(r.del(k('s'))).rejects.toBeInstanceOf(FencedError);
  await expect(r.check()).rejects.toBeInstanceOf(FencedError);
  await expect(r.eval('return 1', 0)).rejects.toBeInstanceOf(FencedError);
  // Nothing landed; reads still work; the leadership was told once.
  expect(await raw.hget(k('h'), 'late')).toBeNull();
  expect(await raw.sismember(k('set'), 'late')).toBe(0);
  expect(await r.get(k('s'))).toBe('v');
  expect(fenced).toEqual(['other']);

  // With no holder at all (the lock expired), the same.
  await raw.del(lock);
  await expect(r.sadd(k('set'), 'late')).rejects.toThrow(/free/);
});

let sys: TestSystem | undefined;
afterAll(async () => {
  await sys?.cleanup();
});

it('a controller whose lock passed on writes nothing and steps down', async () => {
  sys = await startTestSystem();
  const { keys, redisUrl } = sys;
  // It works while it leads.
  const first = await sys.submit(nodePayloadRun('fence-ok', 'ok-progress.mjs'));
  await sys.waitForPhase(first, ['Succeeded']);

  // It is "paused" past its TTL and another controller takes over. The renewal timer has
  // not fired yet when the next pass writes; the fence alone must stop that write.
  const other = await connectRedis(redisUrl);
  try {
    await other.set(keys.controllerLock(), 'new-leader', 'PX', 60_000);
    const store = new RunStore(other, keys);
    const run = await store.createRun(nodePayloadRun('fence-late', 'ok-progress.mjs'), {
      home: sys.home,
    });
    const runKeys = async () => (await other.keys(`${keys.prefix}*${run.id}*`)).sort();
    const before = { stages: await store.getStages(run.id), keys: await runKeys() };
    await store.wake(run.id);
    await eventually('the old leader to step down', async () => {
      const lost = await Promise.race([
        sys?.leadership.lost.then(() => true),
        new Promise((r) => setTimeout(() => r(false), 50)),
      ]);
      return lost || null;
    });
    // The run is as submitted: the same record and stages, no task, no job, no key more.
    expect((await store.mustGetRun(run.id)).phase).toBe(run.phase);
    expect(await store.getStages(run.id)).toEqual(before.stages);
    expect(await runKeys()).toEqual(before.keys);
    expect(await other.get(keys.controllerLock())).toBe('new-leader');
  } finally {
    other.disconnect();
  }
});
