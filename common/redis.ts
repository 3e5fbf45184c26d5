/**
 * Redis connection options and a connect that fails fast. BullMQ needs
 * `maxRetriesPerRequest: null` on the connections its Workers use; everything else
 * uses the same settings so that an unreachable server is reported within seconds
 * rather than retried forever.
 *
 * No CLIENT SETINFO on connect (disableClientInfo): stoker's Redis users (k8s/base/
 * redis-users.acl) are granted the commands stoker uses and nothing else, and ioredis
 * would send it on every connection and swallow the refusal (an ACL LOG entry each time).
 */
import { Redis, type RedisOptions } from 'ioredis';
import { RedisUnavailableError } from './errors.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 4000;

export function redisOptions(extra: RedisOptions = {}): RedisOptions {
  return {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT_MS,
    // Reconnect with capped backoff once connected; the first connection is checked by
    // connectRedis(), which gives up with a clear error.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3000),
    lazyConnect: true,
    disableClientInfo: true,
    ...extra,
  };
}

/** Describe a URL for messages without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid redis url>';
  }
}

/**
 * Connect and PING within `timeoutMs`, or throw RedisUnavailableError naming the URL
 * (without password) and what to do.
 */
export async function connectRedis(
  url: string,
  opts: { timeoutMs?: number; name?: string; extra?: RedisOptions } = {},
): Promise<Redis> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const client = new Redis(
    url,
    redisOptions({ connectionName: opts.name, connectTimeout: timeoutMs, ...opts.extra }),
  );
  // Errors surface through connect()/ping(); keep the default 'error' listener quiet.
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await client.connect();
        await client.ping();
      })(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return client;
  } catch (err) {
    client.disconnect();
    const why = lastError?.message ?? (err as Error).message;
    throw new RedisUnavailableError(
      `cannot reach Redis at ${redactUrl(url)}: ${why}. Start it (stoker up starts an embedded one when REDIS_URL is unset) or fix REDIS_URL.`,
    );
  } finally {
    clearTimeout(timer);
  }
}

/** Connection options for BullMQ Queues and Workers (BullMQ opens its own connections). */
export function bullConnection(url: string): {
  url: string;
  maxRetriesPerRequest: null;
  connectTimeout: number;
  enableOfflineQueue: boolean;
  disableClientInfo: boolean;
} {
  return {
    url,
    maxRetriesPerRequest: null,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT_MS,
    enableOfflineQueue: true,
    disableClientInfo: true,
  };
}
