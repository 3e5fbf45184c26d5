/**
 * The one redis-server launcher (orchestrator/redis-server.ts) with a real redis-server,
 * and with fake ones (shell scripts) for the failures. Every server is on a port the OS
 * hands out; 6379 is never used.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectRedis } from '../../common/redis.js';
import {
  answersPing,
  freePort,
  scratchArgs,
  startRedisServer,
  stopRedisServer,
  type RedisServerProcess,
} from '../../orchestrator/redis-server.js';

const dirs: string[] = [];
const servers: RedisServerProcess[] = [];
const blockers: Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await stopRedisServer(s.child);
  for (const b of blockers.splice(0)) await new Promise((r) => b.close(r));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'stoker-redis-launcher-'));
  dirs.push(dir);
  return dir;
}

/** A fake redis-server that counts its starts in `count` and exits 1 after a message. */
function failingServer(dir: string): { bin: string; count: string } {
  const bin = join(dir, 'fake-redis-server');
  const count = join(dir, 'starts');
  writeFileSync(
    bin,
    `#!/bin/sh\necho start >> "${count}"\necho "bind: Address already in use"\nexit 1\n`,
  );
  chmodSync(bin, 0o755);
  return { bin, count };
}

const starts = (count: string): number => readFileSync(count, 'utf8').trim().split('\n').length;

describe('startRedisServer', () => {
  it('starts a server that answers on the port it reports, and stopRedisServer ends it', async () => {
    const server = await startRedisServer({ args: scratchArgs(tempDir()) });
    servers.push(server);
    expect(server.port).not.toBe(6379);
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    const client = await connectRedis(server.url);
    expect(await client.ping()).toBe('PONG');
    client.disconnect();

    await stopRedisServer(server.child);
    expect(server.child.exitCode !== null || server.child.signalCode !== null).toBe(true);
    expect(await answersPing(server.url, 500)).toBe(false);
  });

  it('takes the preferred port when it is free, and another when it is not', async () => {
    const wanted = await freePort();
    const first = await startRedisServer({ args: scratchArgs(tempDir()), preferredPort: wanted });
    servers.push(first);
    expect(first.port).toBe(wanted);

    const blocker = createServer();
    blockers.push(blocker);
    const taken = await freePort();
    await new Promise<void>((r) => blocker.listen(taken, '127.0.0.1', () => r()));
    const second = await startRedisServer({ args: scratchArgs(tempDir()), preferredPort: taken });
    servers.push(second);
    expect(second.port).not.toBe(taken);
    expect(await answersPing(second.url, 2000)).toBe(true);
  });

  it('tries new ports while retry() says so, then names why and the log lines', async () => {
    const dir = tempDir();
    const { bin, count } = failingServer(dir);
    const logFile = join(dir, 'server.log');
    const err = await startRedisServer({ bin, args: () => [], logFile, label: 'fake' }).catch(
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe('RedisUnavailableError');
    expect((err as Error).message).toMatch(/^fake did not start: it exited with code 1/);
    expect((err as Error).message).toContain('Address already in use');
    expect(starts(count)).toBe(4); // the first try and three more

    const once = failingServer(tempDir());
    await expect(
      startRedisServer({ bin: once.bin, args: () => [], retry: () => false }),
    ).rejects.toThrow(/exited with code 1/);
    expect(starts(once.count)).toBe(1);
  });

  it('does not retry a command that cannot run', async () => {
    const missing = join(tempDir(), 'no-such-redis-server');
    await expect(startRedisServer({ bin: missing, args: () => [] })).rejects.toThrow(
      /did not start: cannot run it \(.*ENOENT/,
    );
  });
});
