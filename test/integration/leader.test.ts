/**
 * Controller leadership (orchestrator/leader.ts) on a real redis-server: one holder, a
 * waiting contender that takes over when the holder dies, and a holder that steps down
 * when it cannot renew for a whole TTL (also when Redis answers nothing at all) or finds
 * the lock taken.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { silentLogger } from '../../common/logger.js';
import { connectRedis } from '../../common/redis.js';
import { acquireLeadership } from '../../orchestrator/leader.js';
import { startTestRedis, testRedisUrl, uniquePrefix } from '../util/redis-server.js';

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

it('steps down one TTL after its last renewal while Redis answers nothing (SIGSTOP), not when Redis is back', async () => {
  // Its own server: pausing the suite's would stall every other test.
  const server = await startTestRedis();
  const a = await connectRedis(server.url);
  try {
    const keys = makeKeys(uniquePrefix('leader'));
    const held = await acquireLeadership(a, keys, { log, ttlMs: TTL, instanceId: 'a' });
    expect(held).not.toBeNull();
    // A stalled Redis fails no command: the renewals wait in ioredis's queue. The holder
    // must stop on its own clock, while the server is still paused.
    process.kill(server.pid, 'SIGSTOP');
    const t0 = Date.now();
    try {
      await Promise.race([
        held?.lost,
        new Promise((_, reject) =>
          setTimeout(
            () => reject(new Error('no step-down within 20 TTLs of a paused Redis')),
            20 * TTL,
          ),
        ),
      ]);
      // Resolved before this SIGCONT: it stepped down while nothing answered.
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
    // Not before the lock could have run out: the last renewal went at most a third of a
    // TTL before the pause.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(TTL - Math.ceil(TTL / 3) - 50);
    await held?.release();
  } finally {
    process.kill(server.pid, 'SIGCONT');
    a.disconnect();
    await server.stop();
  }
});
