/**
 * The bench's own redis-server, through the product's launcher (orchestrator/redis-
 * server.ts): a free port on 127.0.0.1, data in a temp dir, no persistence (snapshots
 * or AOF would add disk time to every number), stopped and removed by stop(). The
 * machine's Redis on 6379 is never touched.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connectRedis } from '../../common/redis.js';
import {
  scratchArgs,
  startRedisServer,
  stopRedisServer,
  type RedisServerProcess,
} from '../../orchestrator/redis-server.js';

export interface BenchRedis {
  url: string;
  port: number;
  version: string;
  stop(): Promise<void>;
}

export async function startBenchRedis(parentDir: string): Promise<BenchRedis> {
  const dir = mkdtempSync(join(parentDir, 'redis-'));
  let server: RedisServerProcess | undefined;
  const stop = async (): Promise<void> => {
    if (server) await stopRedisServer(server.child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    server = await startRedisServer({
      args: scratchArgs(dir),
      label: 'redis-server (is it installed?)',
    });
    const client = await connectRedis(server.url, { name: 'stoker-bench-info' });
    const info = await client.info('server').finally(() => client.disconnect());
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    return { url: server.url, port: server.port, version, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
