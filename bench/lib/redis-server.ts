/**
 * The bench's own redis-server: a free port on 127.0.0.1, data in a temp dir, no
 * persistence (snapshots or AOF would add disk time to every number), stopped and
 * removed by stop(). The machine's Redis on 6379 is never touched.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from './harness.js';

export interface BenchRedis {
  url: string;
  port: number;
  version: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port')),
      );
    });
  });
}

async function ping(port: number, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const c = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    c.on('error', () => undefined);
    try {
      await c.connect();
      const info = await c.info('server');
      c.disconnect();
      return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    } catch {
      c.disconnect();
      await sleep(50);
    }
  }
  return null;
}

export async function startBenchRedis(parentDir: string): Promise<BenchRedis> {
  const dir = mkdtempSync(join(parentDir, 'redis-'));
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'noeviction',
        '--daemonize',
        'no',
      ],
      { stdio: 'ignore' },
    );
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const version = await Promise.race([
      ping(port, 5000),
      spawnError.then((e) => {
        throw e;
      }),
    ]);
    if (version === null) {
      child.kill('SIGKILL');
      if (tries < 3) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error('redis-server did not answer within 5 s (is it installed?)');
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      version,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await Promise.race([exited, sleep(5000)]);
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
