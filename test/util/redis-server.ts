/**
 * Test harness: a real redis-server on a free port, data in a temp dir, stopped after.
 * Tests never touch the machine's Redis on 6379.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scratchArgs, startRedisServer, stopRedisServer } from '../../orchestrator/redis-server.js';

export interface TestRedis {
  url: string;
  port: number;
  dir: string;
  /** The server's process (to pause it with SIGSTOP, as an outage would). */
  pid: number;
  stop(): Promise<void>;
}

/**
 * Through the product's launcher (orchestrator/redis-server.ts), on a port the OS hands
 * out; with `password`, the server requires it and `url` carries it.
 */
export async function startTestRedis(
  opts: { appendonly?: boolean; password?: string } = {},
): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'stoker-test-redis-'));
  const { password } = opts;
  try {
    const { child, port, url } = await startRedisServer({
      args: (port) => [
        ...scratchArgs(dir, opts)(port),
        ...(password ? ['--requirepass', password] : []),
      ],
      ...(password ? { url: (port: number) => `redis://:${password}@127.0.0.1:${port}` } : {}),
      label: 'test redis-server (is redis-server installed?)',
    });
    return {
      url,
      port,
      dir,
      pid: child.pid as number,
      async stop() {
        await stopRedisServer(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A unique key prefix per test, so tests can share one server. */
export function uniquePrefix(label = 't'): string {
  return `stoker-test-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
}

/** Poll `fn` until it returns a truthy value; fail with `name` after `timeoutMs`. */
export async function eventually<T>(
  name: string,
  fn: () => Promise<T> | T,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for: ${name}${last ? ` (last error: ${(last as Error).message})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The suite's shared redis-server (started by global-setup.ts). */
export async function testRedisUrl(): Promise<string> {
  const { inject } = await import('vitest');
  return inject('redisUrl');
}
