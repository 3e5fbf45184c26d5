/**
 * Leadership through a Redis lock: only one controller dispatches at a time. The lock
 * (`controller:lock`, value = instance id) has a TTL and is renewed by its holder with a
 * compare-and-extend script; a controller that dies (kill -9) loses it after the TTL
 * and a waiting one takes over. A holder that cannot renew for a whole TTL (Redis out of
 * reach) steps down. `controller:alive` tells clients (stoker submit) that a controller
 * is running.
 *
 * The lock's value is also the fencing token: the leader's writes go through
 * fenced-redis.ts, which has Redis refuse them once the lock holds another value.
 *
 * The same lock serves on Kubernetes (not a coordination.k8s.io Lease): every decision a
 * controller takes starts from Redis (the run store, the queues), so the lock in that
 * same Redis is what fences it. A controller cut off from Redis can neither keep the
 * lock nor act; one cut off from the API server only, still holding the lock, waits for
 * it. A Lease would be a second lock that could disagree with the first.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface Leadership {
  readonly instanceId: string;
  /** Resolves if leadership is lost (renewal failed): the caller must stop dispatching. */
  readonly lost: Promise<void>;
  /** Gives leadership up now (a write was fenced: the lock has passed on). */
  markLost(why: string): void;
  release(): Promise<void>;
}

export function newInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export async function acquireLeadership(
  redis: Redis,
  keys: Keys,
  opts: { ttlMs?: number; waitMs?: number; log: Logger; instanceId?: string; signal?: AbortSignal },
): Promise<Leadership | null> {
  const ttlMs = opts.ttlMs ?? 10_000;
  const instanceId = opts.instanceId ?? newInstanceId();
  const deadline = Date.now() + (opts.waitMs ?? Number.POSITIVE_INFINITY);
  let announced = false;
  let acquiredAt: number;
  for (;;) {
    acquiredAt = Date.now();
    const ok = await redis.set(keys.controllerLock(), instanceId, 'PX', ttlMs, 'NX');
    if (ok === 'OK') break;
    if (Date.now() > deadline || opts.signal?.aborted) return null;
    if (!announced) {
      const holder = await redis.get(keys.controllerLock());
      opts.log.info({ holder }, 'another controller holds the lock; waiting to take over');
      announced = true;
    }
    await new Promise((r) => setTimeout(r, Math.min(1000, ttlMs / 4)));
  }
  const held = keepLock(redis, keys, { ttlMs, instanceId, log: opts.log, acquiredAt });
  await redis.set(keys.controllerAlive(), instanceId, 'PX', ttlMs);
  return {
    instanceId,
    lost: held.lost,
    markLost: held.giveUp,
    async release() {
      held.stop();
      await redis.eval(RELEASE, 1, keys.controllerLock(), instanceId).catch(() => undefined);
      await redis.del(keys.controllerAlive()).catch(() => undefined);
    },
  };
}

/**
 * Renew a held lock every third of its TTL; `lost` resolves once it can no longer be
 * known to be ours. It is ours until at most renewedAt + ttlMs (when the last successful
 * renewal was sent: Redis sets the expiry when it runs it, later). Past that point
 * another controller may hold it, so this one stops, whether the renewal failed or is
 * still waiting for an answer: a Redis that stalls (SIGSTOP, a partition that drops
 * packets) answers nothing and fails nothing, every command waiting in ioredis's queue
 * (maxRetriesPerRequest: null). The expiry timer is what notices; every successful
 * renewal re-arms it. One renewal at a time: while one waits, a tick sends nothing (a
 * stalled Redis would otherwise get a pile of them, all answered at once).
 */
function keepLock(
  redis: Redis,
  keys: Keys,
  o: { ttlMs: number; instanceId: string; log: Logger; acquiredAt: number },
): { lost: Promise<void>; stop(): void; giveUp(why: string): void } {
  const { ttlMs, instanceId, log } = o;
  let resolveLost!: () => void;
  const lost = new Promise<void>((r) => (resolveLost = r));
  let renewedAt = o.acquiredAt;
  let ended = false;
  let renewing = false;
  let expiry: NodeJS.Timeout | undefined;
  const stop = () => {
    ended = true;
    clearInterval(timer);
    clearTimeout(expiry);
  };
  const giveUp = (why: string) => {
    if (ended) return;
    stop();
    log.error({ instanceId }, why);
    resolveLost();
  };
  const armExpiry = () => {
    clearTimeout(expiry);
    expiry = setTimeout(
      () =>
        giveUp(
          `could not renew the controller lock for ${ttlMs} ms (Redis out of reach or not answering): it may have passed on`,
        ),
      Math.max(0, renewedAt + ttlMs - Date.now()),
    );
  };
  const renew = async () => {
    const attemptAt = Date.now();
    try {
      const ok = await redis.eval(RENEW, 1, keys.controllerLock(), instanceId, String(ttlMs));
      if (ended) return;
      if (ok !== 1) return giveUp('lost the controller lock');
      renewedAt = attemptAt;
      armExpiry();
      await redis.set(keys.controllerAlive(), instanceId, 'PX', ttlMs);
    } catch (err) {
      if (!ended) log.warn({ err }, 'could not renew the controller lock');
    }
  };
  const timer = setInterval(
    () => {
      if (ended || renewing) return;
      renewing = true;
      void renew().finally(() => (renewing = false));
    },
    Math.max(200, Math.floor(ttlMs / 3)),
  );
  armExpiry();
  return { lost, stop, giveUp };
}

/** Is a controller alive (for `stoker submit`'s warning)? */
export async function controllerAlive(redis: Redis, keys: Keys): Promise<string | null> {
  return redis.get(keys.controllerAlive());
}
