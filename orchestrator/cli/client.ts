/**
 * Which Redis a CLI command uses: the configured one (REDIS_URL / STOKER_REDIS_URL), or
 * the embedded server of this stoker home; a connection for client commands (status,
 * submit, cancel...) and the Redis for the commands that run a whole stoker.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { UsageError } from '../../common/errors.js';
import { isRunning } from '../../common/proc.js';
import { connectRedis } from '../../common/redis.js';
import { embeddedRedisPaths } from '../embedded-redis-files.js';
import { resolveRedis, startEmbeddedRedis, type EmbeddedRedis } from '../embedded-redis.js';
import { RunStore } from '../store.js';
import type { Context } from './context.js';

/** The URL of a running stoker's Redis: configured, or the live embedded server of this home. */
export function findRedisUrl(ctx: Context): string | null {
  const configured = ctx.env.STOKER_REDIS_URL || ctx.env.REDIS_URL;
  if (configured) return configured;
  const state = embeddedRedisPaths(ctx.home).state;
  if (!existsSync(state)) return null;
  try {
    const s = JSON.parse(readFileSync(state, 'utf8')) as { url?: string; pid?: number };
    if (s.url && s.pid && isRunning(s.pid)) return s.url;
  } catch {
    return null;
  }
  return null;
}

export interface ClientConnection {
  redis: Redis;
  store: RunStore;
  url: string;
  /** Disconnect; stop a temporarily started embedded Redis. */
  close(): Promise<void>;
}

/** Connect to a running stoker's Redis, for client commands (status, submit, cancel...). */
export async function connectClient(ctx: Context): Promise<ClientConnection> {
  const url = findRedisUrl(ctx);
  if (url) {
    const redis = await connectRedis(url, { name: 'stoker-cli' });
    return {
      redis,
      url,
      store: new RunStore(redis, ctx.keys),
      close: async () => {
        redis.disconnect();
      },
    };
  }
  // Nothing running, but this home has the data of an earlier embedded Redis (after a
  // `stoker run`, or a stopped `stoker up`): start it for this command, stop it after.
  if (existsSync(join(embeddedRedisPaths(ctx.home).dir, 'appendonlydir'))) {
    const embedded = await startEmbeddedRedis({ home: ctx.home, log: ctx.log });
    const redis = await connectRedis(embedded.url, { name: 'stoker-cli' });
    return {
      redis,
      url: embedded.url,
      store: new RunStore(redis, ctx.keys),
      close: async () => {
        redis.disconnect();
        if (!embedded.reused) await embedded.stop();
      },
    };
  }
  throw new UsageError(
    `no stoker is running for ${ctx.home}: start one with \`stoker up\` (or set REDIS_URL to the Redis of a running stoker)`,
    1,
  );
}

/** Redis for commands that run a system: configured, or an embedded server started (or adopted) now. */
export async function ensureRedis(
  ctx: Context,
): Promise<{ url: string; embedded?: EmbeddedRedis }> {
  return resolveRedis({ env: ctx.env, home: ctx.home, log: ctx.log });
}
