/**
 * The embedded redis-server (orchestrator/embedded-redis.ts): each test gets a temp
 * home; every server started is stopped in afterEach, and any pid a state file still
 * names is killed, so a failing test leaks nothing. Never touches the Redis on 6379.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../common/errors.js';
import { silentLogger } from '../../common/logger.js';
import { connectRedis } from '../../common/redis.js';
import { embeddedRedisPaths } from '../../orchestrator/embedded-redis-files.js';
import {
  REDIS_INSTALL_HINT,
  resolveRedis,
  startEmbeddedRedis,
  type EmbeddedRedis,
} from '../../orchestrator/embedded-redis.js';
import { freePort } from '../../orchestrator/redis-server.js';
import { eventually } from '../util/redis-server.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const log = silentLogger();

const homes: string[] = [];
const handles: EmbeddedRedis[] = [];
const clients: Redis[] = [];
const pids = new Set<number>();

function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'stoker-embedded-'));
  homes.push(home);
  return home;
}

async function start(home: string, opts: { reuse?: boolean } = {}): Promise<EmbeddedRedis> {
  const handle = await startEmbeddedRedis({ home, log, ...opts });
  handles.push(handle);
  pids.add(handle.pid);
  return handle;
}

async function client(url: string): Promise<Redis> {
  const c = await connectRedis(url, { name: 'embedded-redis-test' });
  clients.push(c);
  return c;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  if (r.pid === undefined) throw new Error('could not spawn node');
  return r.pid;
}

function writeState(home: string, state: { pid: number; port: number; url: string }): void {
  const paths = embeddedRedisPaths(home);
  mkdirSync(paths.dir, { recursive: true });
  writeFileSync(paths.state, JSON.stringify({ ...state, startedAt: new Date().toISOString() }));
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  for (const h of handles.splice(0)) await h.stop().catch(() => {});
  // Belt and braces: anything a state file or a test still names dies now.
  for (const home of homes.splice(0)) {
    const state = embeddedRedisPaths(home).state;
    if (existsSync(state)) {
      const pid = (JSON.parse(readFileSync(state, 'utf8')) as { pid?: number }).pid;
      if (pid && pid !== process.pid) pids.add(pid);
    }
    for (const pid of pids) if (pid !== process.pid && alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
  pids.clear();
});

describe('startEmbeddedRedis', () => {
  it('starts a loopback, password-protected, AOF-backed server and records it', async () => {
    const home = tempHome();
    const redis = await start(home);
    const paths = embeddedRedisPaths(home);

    expect(redis.reused).toBe(false);
    expect(redis.url).toMatch(/^redis:\/\/:[0-9a-f]{48}@127\.0\.0\.1:\d+$/);
    expect(redis.port).not.toBe(6379);
    expect(alive(redis.pid)).toBe(true);

    const c = await client(redis.url);
    expect(await c.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await c.config('GET', 'appendfsync')).toEqual(['appendfsync', 'everysec']);
    expect(await c.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(await c.config('GET', 'save')).toEqual(['save', '']);
    expect(await c.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
    expect(await c.config('GET', 'dir')).toEqual(['dir', paths.dir]);

    // AOF on disk: Redis 7 keeps a manifest under appendonlydir/, Redis 6 one file.
    await c.set('k', 'v');
    await eventually('AOF file on disk', () => {
      const aofDir = join(paths.dir, 'appendonlydir');
      return existsSync(aofDir)
        ? readdirSync(aofDir).some((f) => f.endsWith('.aof'))
        : existsSync(join(paths.dir, 'appendonly.aof'));
    });
    expect(readFileSync(paths.log, 'utf8')).toMatch(/Ready to accept connections/);

    // The state file, private because the URL carries the password.
    const state = JSON.parse(readFileSync(paths.state, 'utf8')) as Record<string, unknown>;
    expect(state).toMatchObject({ pid: redis.pid, port: redis.port, url: redis.url });
    expect(typeof state.startedAt).toBe('string');
    expect(statSync(paths.state).mode & 0o777).toBe(0o600);
    expect(statSync(paths.conf).mode & 0o777).toBe(0o600);
    expect(statSync(paths.dir).mode & 0o777).toBe(0o700);
    expect(existsSync(paths.lock)).toBe(false);

    // Without the password, nothing.
    const anonymous = new Redis({
      host: '127.0.0.1',
      port: redis.port,
      lazyConnect: true,
      retryStrategy: () => null,
    });
    anonymous.on('error', () => {});
    clients.push(anonymous);
    await anonymous.connect().catch(() => {});
    await expect(anonymous.get('k')).rejects.toThrow(/NOAUTH|closed/);
  });

  it('reuses a live server named by the state file', async () => {
    const home = tempHome();
    const first = await start(home);
    const second = await start(home);

    expect(second.reused).toBe(true);
    expect(second).toMatchObject({ pid: first.pid, port: first.port, url: first.url });
    await (await client(second.url)).set('shared', '1');
    expect(await (await client(first.url)).get('shared')).toBe('1');
  });

  it('refuses to start a second server on the same data when reuse is off', async () => {
    const home = tempHome();
    const first = await start(home);
    const err = await start(home, { reuse: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain(`pid ${first.pid}`);
  });

  it('replaces a stale state file whose pid is dead', async () => {
    const home = tempHome();
    const stalePid = deadPid();
    const stalePort = await freePort();
    const password = 'ab'.repeat(24);
    writeState(home, {
      pid: stalePid,
      port: stalePort,
      url: `redis://:${password}@127.0.0.1:${stalePort}`,
    });

    const redis = await start(home);
    expect(redis.reused).toBe(false);
    expect(redis.pid).not.toBe(stalePid);
    // The old password and (free) port are kept, so workers holding the old URL reconnect.
    expect(redis.url).toBe(`redis://:${password}@127.0.0.1:${stalePort}`);
    const state = JSON.parse(readFileSync(embeddedRedisPaths(home).state, 'utf8')) as {
      pid: number;
    };
    expect(state.pid).toBe(redis.pid);
    expect(await (await client(redis.url)).ping()).toBe('PONG');
  });

  it('replaces a state file whose pid now belongs to another program', async () => {
    const home = tempHome();
    const port = await freePort();
    // This test's own pid: alive, but not a redis-server and not listening.
    writeState(home, {
      pid: process.pid,
      port,
      url: `redis://:${'cd'.repeat(24)}@127.0.0.1:${port}`,
    });

    const redis = await start(home);
    expect(redis.reused).toBe(false);
    expect(redis.pid).not.toBe(process.pid);
    expect(alive(process.pid)).toBe(true);
  });

  it('keeps data across stop and start (AOF)', async () => {
    const home = tempHome();
    const first = await start(home);
    const c1 = await client(first.url);
    await c1.set('survivor', 'yes');
    await c1.rpush('list', 'a', 'b', 'c');
    await first.stop();

    const second = await start(home);
    expect(second.reused).toBe(false);
    const c2 = await client(second.url);
    expect(await c2.get('survivor')).toBe('yes');
    expect(await c2.lrange('list', 0, -1)).toEqual(['a', 'b', 'c']);
  });

  it('stop() ends the process and removes the state file, also for a reused server', async () => {
    const home = tempHome();
    const first = await start(home);
    const reused = await start(home);
    expect(reused.reused).toBe(true);

    await reused.stop();
    expect(alive(first.pid)).toBe(false);
    expect(existsSync(embeddedRedisPaths(home).state)).toBe(false);
    // Stopping what is already gone is harmless.
    await first.stop();
    await reused.stop();
  });

  it('survives a kill -9 of the stoker process that started it', async () => {
    const home = tempHome();
    const script = [
      `const { startEmbeddedRedis } = await import(${JSON.stringify(join(repoRoot, 'orchestrator', 'embedded-redis.ts'))});`,
      `const { silentLogger } = await import(${JSON.stringify(join(repoRoot, 'common', 'logger.ts'))});`,
      `const r = await startEmbeddedRedis({ home: ${JSON.stringify(home)}, log: silentLogger() });`,
      `console.log(JSON.stringify({ pid: r.pid, url: r.url }));`,
      `setInterval(() => {}, 1000);`,
    ].join('\n');
    const stoker = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let errOut = '';
    stoker.stdout.on('data', (d: Buffer) => (out += d.toString()));
    stoker.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
    try {
      const line = await eventually(`child stoker reports its redis (stderr: ${errOut})`, () =>
        out.split('\n').find((l) => l.startsWith('{')),
      );
      const started = JSON.parse(line) as { pid: number; url: string };
      pids.add(started.pid);

      const exited = new Promise((r) => stoker.once('exit', r));
      stoker.kill('SIGKILL');
      await exited;

      expect(alive(started.pid)).toBe(true);
      expect(await (await client(started.url)).ping()).toBe('PONG');
      const adopted = await start(home);
      expect(adopted).toMatchObject({ reused: true, pid: started.pid, url: started.url });
    } finally {
      if (stoker.exitCode === null && stoker.signalCode === null) stoker.kill('SIGKILL');
    }
  });

  it('says how to install redis-server when it is not on PATH', async () => {
    const home = tempHome();
    const emptyDir = join(home, 'empty-bin');
    mkdirSync(emptyDir);
    const err = await startEmbeddedRedis({ home, log, env: { PATH: emptyDir } }).catch(
      (e: unknown) => e,
    );

    expect(err).toBeInstanceOf(UsageError);
    const message = (err as Error).message;
    expect(message).toBe(REDIS_INSTALL_HINT);
    expect(message).toContain('apt-get install -y redis-server');
    expect(message).toContain('brew install redis');
    expect(message).toContain('REDIS_URL');
  });

  it('puts the last lines of the log in the error when redis-server does not start', async () => {
    const home = tempHome();
    const binDir = join(home, 'fake-bin');
    mkdirSync(binDir);
    const fake = join(binDir, 'redis-server');
    writeFileSync(
      fake,
      '#!/bin/sh\necho "*** FATAL CONFIG FILE ERROR (fake redis-server) ***"\nexit 1\n',
    );
    chmodSync(fake, 0o755);

    const err = await startEmbeddedRedis({ home, log, env: { PATH: binDir } }).catch(
      (e: unknown) => e,
    );
    expect((err as Error).name).toBe('RedisUnavailableError');
    expect((err as Error).message).toMatch(/exited with code 1/);
    expect((err as Error).message).toContain('FATAL CONFIG FILE ERROR (fake redis-server)');
    expect(existsSync(embeddedRedisPaths(home).state)).toBe(false);
  });
});

describe('resolveRedis', () => {
  it('uses REDIS_URL or STOKER_REDIS_URL when set, starting nothing', async () => {
    const home = tempHome();
    expect(await resolveRedis({ env: { REDIS_URL: 'redis://example:6380' }, home, log })).toEqual({
      url: 'redis://example:6380',
    });
    expect(
      await resolveRedis({
        env: { REDIS_URL: 'redis://a:1', STOKER_REDIS_URL: 'redis://b:2' },
        home,
        log,
      }),
    ).toEqual({ url: 'redis://b:2' });
    expect(existsSync(embeddedRedisPaths(home).dir)).toBe(false);
  });

  it('falls back to the embedded server', async () => {
    const home = tempHome();
    const resolved = await resolveRedis({
      env: { PATH: process.env.PATH, REDIS_URL: '' },
      home,
      log,
    });
    expect(resolved.embedded).toBeDefined();
    if (resolved.embedded) {
      handles.push(resolved.embedded);
      pids.add(resolved.embedded.pid);
    }
    expect(resolved.url).toBe(resolved.embedded?.url);
    expect(await (await client(resolved.url)).ping()).toBe('PONG');
  });
});
