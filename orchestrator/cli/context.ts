/**
 * What every CLI command needs: where stoker's home is, which Redis to use, a logger.
 * Configuration is read here, once, from flags and the environment, and passed inward.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import { UsageError } from '../../common/errors.js';
import { makeKeys, type Keys } from '../../common/keys.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { connectRedis } from '../../common/redis.js';
import {
  defaultStokerHome,
  embeddedRedisPaths,
  resolveRedis,
  startEmbeddedRedis,
  type EmbeddedRedis,
} from '../embedded-redis.js';
import { isRunning } from '../../common/proc.js';
import { RunStore } from '../store.js';

export interface GlobalOptions {
  home?: string;
  prefix?: string;
  logLevel?: string;
}

export interface Context {
  home: string;
  /** Timing knobs (milliseconds) from the environment; tests shorten them. */
  timings: {
    leaderTtlMs?: number;
    lockDurationMs?: number;
    stalledIntervalMs?: number;
    resyncMs?: number;
  };
  prefix: string;
  keys: Keys;
  log: Logger;
  env: NodeJS.ProcessEnv;
}

export function makeContext(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Context {
  const home = resolve(opts.home ?? env.STOKER_HOME ?? defaultStokerHome());
  const prefix = opts.prefix ?? env.STOKER_PREFIX ?? 'stoker:';
  // The CLI's own log goes to stderr; quiet unless asked, so output stays readable.
  const log = createLogger({ level: opts.logLevel ?? env.STOKER_LOG_LEVEL ?? 'warn' });
  const ms = (name: string): Record<string, number> => {
    const v = env[name];
    if (v === undefined || v === '') return {};
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0)
      throw new UsageError(`${name} must be a positive number of milliseconds, not "${v}"`);
    return { [name]: n };
  };
  const t = {
    ...ms('STOKER_LEADER_TTL_MS'),
    ...ms('STOKER_LOCK_DURATION_MS'),
    ...ms('STOKER_STALLED_INTERVAL_MS'),
    ...ms('STOKER_RESYNC_MS'),
  };
  const timings: Context['timings'] = {};
  if (t.STOKER_LEADER_TTL_MS) timings.leaderTtlMs = t.STOKER_LEADER_TTL_MS;
  if (t.STOKER_LOCK_DURATION_MS) timings.lockDurationMs = t.STOKER_LOCK_DURATION_MS;
  if (t.STOKER_STALLED_INTERVAL_MS) timings.stalledIntervalMs = t.STOKER_STALLED_INTERVAL_MS;
  if (t.STOKER_RESYNC_MS) timings.resyncMs = t.STOKER_RESYNC_MS;
  return { home, prefix, keys: makeKeys(prefix), log, env, timings };
}

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
