/** deleteKeysWithPrefix (testing/redis-keys.ts), the cleanup of tests and bench runs, on the suite's Redis. */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import { testRedisUrl, uniquePrefix } from '../util/redis-server.js';

let url: string;
let redis: Redis;

beforeAll(async () => {
  url = await testRedisUrl();
  redis = new Redis(url);
});

afterAll(async () => {
  await redis.quit();
});

describe('deleteKeysWithPrefix', () => {
  it('deletes every key under the prefix, across many SCAN batches, and nothing else', async () => {
    const mine = uniquePrefix('keys');
    const neighbour = `${mine.slice(0, -1)}x:`; // shares all but the last character
    const many = Array.from({ length: 2500 }, (_, i) => [`${mine}k${i}`, String(i)]).flat();
    await redis.mset(...many);
    await redis.hset(`${mine}hash`, 'f', 'v');
    await redis.set(`${neighbour}keep`, '1');

    await deleteKeysWithPrefix(url, mine);

    expect(await redis.keys(`${mine}*`)).toEqual([]);
    expect(await redis.get(`${neighbour}keep`)).toBe('1');
    await redis.del(`${neighbour}keep`);
  });

  it('takes glob characters in the prefix literally', async () => {
    const base = uniquePrefix('glob');
    const globbed = `${base}a*:`;
    await redis.set(`${globbed}k`, '1');
    await redis.set(`${base}abc:k`, '1'); // would match the unescaped pattern `a*:*`

    await deleteKeysWithPrefix(url, globbed);

    expect(await redis.exists(`${globbed}k`)).toBe(0);
    expect(await redis.exists(`${base}abc:k`)).toBe(1);
    await deleteKeysWithPrefix(url, base);
    expect(await redis.exists(`${base}abc:k`)).toBe(0);
  });
});
