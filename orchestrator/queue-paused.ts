/**
 * Whether a BullMQ queue is paused, read without a Queue object (one HEXISTS, and no
 * BullMQ import: `stoker status` shows it and must start fast). BullMQ 5 and 6 flag a
 * paused queue with the field `paused` of its meta hash; queue-counts.ts reads the same
 * through BullMQ, and the API test checks that the two agree.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../common/keys.js';

export async function queuePaused(redis: Redis, keys: Keys, queue: string): Promise<boolean> {
  return (await redis.hexists(`${keys.bullPrefix}:${queue}:meta`, 'paused')) === 1;
}
