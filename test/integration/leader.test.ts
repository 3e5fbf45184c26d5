/**
 * Controller leadership (orchestrator/leader.ts) on a real redis-server: one holder, a
 * waiting contender that takes over when the holder dies, and a holder that steps down
 * when it cannot renew for a whole TTL or finds the lock taken.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { silentLogger } from '../../common/logger.js';
import { connectRedis } from '../../common/redis.js';
import { acquireLeadership } from '../../orchestrator/leader.js';
import { testRedisUrl, uniquePrefix } from '../util/redis-server.js';

let url: string;
const clients: Redis[] = [];
const client = async (): Promise<Redis> => {
  const c = await connectRedis(url);
  clients.push(c);
  return c;
};
const log = silentLogger();
const TTL = 600;

beforeAll(async () => {
  url = await testRedisUrl();
});
afterAll(() => {
  for (const c of clients) c.disconnect();
});

it('lets one controller lead; a waiting one takes over after the holder dies', async () => {
  const keys = makeKeys(uniquePrefix('leader'));
  const [a, b] = [await client(), await client()];
  const first = await acquireLeadership(a, keys, { log, ttlMs: TTL, instanceId: 'a' });
  expect(first?.instanceId).toBe('a');
  expect(await a.get(keys.controllerLock())).toBe('a');

  // While a renews, b gives up after waiting.
  expect(await acquireLeadership(b, keys, { log, ttlMs: TTL, waitMs: 3 * TTL })).toBeNull();

  // a "dies": its connection goes, nothing renews. b, waiting, gets the lock after the TTL.
  const t0 = Date.now();
  const second = acquireLeadership(b, keys, { log, ttlMs: TTL, instanceId: 'b', waitMs: 10_000 });
  a.disconnect();
  const aLost = await Promise.race([
    first?.lost.then(() => true),
    new Promise((r) => setTimeout(() => r(false), 5 * TTL)),
  ]);
  const taken = await second;
  expect(taken?.instanceId).toBe('b');
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(await b.get(keys.controllerLock())).toBe('b');
  // The old holder stepped down on its own: it could not renew for a whole TTL.
  expect(aLost).toBe(true);
  await taken?.release();
  expect(await b.get(keys.controllerLock())).toBeNull();
});

it('reports leadership lost when another instance holds the lock', async () => {
  const keys = makeKeys(uniquePrefix('leader'));
  const a = await client();
  const held = await acquireLeadership(a, keys, { log, ttlMs: TTL, instanceId: 'a' });
  expect(held).not.toBeNull();
  await a.set(keys.controllerLock(), 'intruder', 'PX', 10_000);
  const lost = await Promise.race([
    held?.lost.then(() => true),
    new Promise((r) => setTimeout(() => r(false), 5 * TTL)),
  ]);
  expect(lost).toBe(true);
  // release() never deletes a lock it does not hold.
  await held?.release();
  expect(await a.get(keys.controllerLock())).toBe('intruder');
});
