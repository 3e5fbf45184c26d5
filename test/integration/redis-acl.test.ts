/**
 * The Redis users the install manifests ship (k8s/base/redis-users.acl, README
 * "Kubernetes"), on a real redis-server: a whole run as a cluster runs it (the controller,
 * its HTTP API, Bull Board and the CLI as `controller`; the worker pods, a pool's
 * included, as `worker`) succeeds, and Redis refused nothing along the way (its ACL LOG
 * is empty: a refusal that the code swallowed, inside a Lua script too, would be there).
 * Then what each user must not do is refused: the admin commands, keys outside stoker's
 * prefix, and for the worker, writes to what only the controller writes (run records,
 * the controller's lock).
 *
 * The ACL file is the base's, filled with random passwords as the production overlay's
 * instructions do, plus one user of this test's own (`observer`) that reads the ACL LOG.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BASE_ACL,
  fillAcl,
  readAcl,
  runAsCluster,
  startAclRedis,
  type AclRedis,
} from '../util/redis-acl.js';

const passwords = {
  controller: randomBytes(24).toString('hex'),
  worker: randomBytes(24).toString('hex'),
};
const OBSERVER = { user: 'observer', password: randomBytes(24).toString('hex') };

let redis: AclRedis;
let observer: Redis;
let dir: string;
beforeAll(async () => {
  const acl = `${fillAcl(readAcl(BASE_ACL), passwords)}user ${OBSERVER.user} on >${OBSERVER.password} ~* &* +@all\n`;
  redis = await startAclRedis(acl, OBSERVER);
  observer = new Redis(redis.url(OBSERVER.user, OBSERVER.password));
  dir = mkdtempSync(join(tmpdir(), 'stoker-acl-'));
});
afterAll(async () => {
  observer?.disconnect();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The ACL LOG's entries: who was refused what (command or key), and where (toplevel, lua, multi). */
async function aclLog(): Promise<string[]> {
  const entries = (await observer.call('ACL', 'LOG')) as unknown[][];
  return entries.map((e) => {
    const f = new Map<string, unknown>();
    for (let i = 0; i + 1 < e.length; i += 2) f.set(String(e[i]), e[i + 1]);
    return `${String(f.get('username'))}: ${String(f.get('reason'))} ${String(f.get('object'))} (${String(f.get('context'))}) x${String(f.get('count'))}`;
  });
}

/** The error a command gets as `user` (null: it was allowed). */
async function refusal(user: 'controller' | 'worker', ...args: string[]): Promise<string | null> {
  const client = new Redis(redis.url(user, passwords[user]), { lazyConnect: true });
  try {
    await client.connect();
    await client.call(args[0] as string, ...args.slice(1));
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    client.disconnect();
  }
}

describe('Redis ACL users (controller, worker)', () => {
  it('run a whole run with a pool stage, the API, the board and the CLI, and Redis refuses nothing', async () => {
    // Who is connected, while it runs: the controller's and the pods' own users.
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const list = String(await observer.call('CLIENT', 'LIST'));
        // (A connection is `default` until its AUTH.)
        for (const m of list.matchAll(/ user=(\S+)/g))
          if (m[1] !== 'default') seen.add(m[1] as string);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const outcome = await runAsCluster({
      controllerUrl: redis.url('controller', passwords.controller),
      workerUrl: redis.url('worker', passwords.worker),
      dir,
    }).catch(async (err: Error) => {
      watching = false;
      // What Redis refused is the likely cause: say it.
      throw new Error(`${err.message}\nACL LOG:\n${(await aclLog()).join('\n')}`);
    });
    watching = false;
    await watcher;
    expect(outcome.view.phase, JSON.stringify(outcome.view.stages, null, 1)).toBe('Succeeded');
    expect(outcome.view.stages.map((s) => [s.name, s.phase])).toEqual([
      ['train', 'Succeeded'],
      ['gen', 'Succeeded'],
    ]);
    for (const [path, status] of Object.entries(outcome.http)) expect(status, path).toBe(200);
    expect(outcome.cli.exitCode, outcome.cli.output).toBe(0);
    // The pods really connected as `worker`, the controller as `controller`; and nothing
    // anyone sent was refused, at the top level, in MULTI or inside a script.
    expect([...seen].sort()).toEqual(['controller', 'observer', 'worker']);
    expect(await aclLog()).toEqual([]);
  }, 240_000);

  it.each<[string, 'controller' | 'worker', string[], RegExp]>([
    ['FLUSHALL', 'worker', ['FLUSHALL'], /NOPERM/],
    ['CONFIG', 'worker', ['CONFIG', 'GET', 'requirepass'], /NOPERM/],
    ['KEYS', 'worker', ['KEYS', '*'], /NOPERM/],
    ['SHUTDOWN', 'worker', ['SHUTDOWN', 'NOSAVE'], /NOPERM/],
    ['DEBUG', 'worker', ['DEBUG', 'SLEEP', '0'], /NOPERM|not allowed/],
    ['MONITOR', 'worker', ['MONITOR'], /NOPERM/],
    ['ACL', 'worker', ['ACL', 'LIST'], /NOPERM/],
    ['SCRIPT FLUSH', 'worker', ['SCRIPT', 'FLUSH'], /NOPERM/],
    ['CLIENT KILL', 'worker', ['CLIENT', 'KILL', 'USER', 'controller'], /NOPERM/],
    ['CLIENT LIST', 'worker', ['CLIENT', 'LIST'], /NOPERM/],
    ['a key outside the prefix', 'worker', ['GET', 'other-app:secret'], /NOPERM.*key/],
    [
      'a run record (the controller writes them)',
      'worker',
      ['HSET', 'stoker:run:r1', 'record', '{}'],
      /NOPERM.*key/,
    ],
    ["the controller's lock", 'worker', ['SET', 'stoker:controller:lock', 'me'], /NOPERM.*key/],
    [
      "a script that writes the controller's lock",
      'worker',
      ['EVAL', "return redis.call('SET', KEYS[1], 'me')", '1', 'stoker:controller:lock'],
      /NOPERM|No permissions/,
    ],
    [
      'a channel outside the prefix',
      'worker',
      ['PUBLISH', 'other-app:events', 'x'],
      /NOPERM.*channel/,
    ],
    ['FLUSHALL', 'controller', ['FLUSHALL'], /NOPERM/],
    ['CONFIG', 'controller', ['CONFIG', 'SET', 'appendonly', 'no'], /NOPERM/],
    ['KEYS', 'controller', ['KEYS', 'stoker:*'], /NOPERM/],
    ['a key outside the prefix', 'controller', ['SET', 'other-app:x', '1'], /NOPERM.*key/],
  ])('refuses %s to %s', async (_what, user, args, message) => {
    expect(await refusal(user, ...args)).toMatch(message);
  });

  it('allows the worker what it does: its task keys, reading a run, BullMQ keys', async () => {
    expect(await refusal('worker', 'HSET', 'stoker:task:t1:progress', 'step', '1')).toBeNull();
    expect(await refusal('worker', 'HGET', 'stoker:run:r1', 'record')).toBeNull();
    expect(await refusal('worker', 'PUBLISH', 'stoker:changes', 'task:t1')).toBeNull();
  });

  it('leaves the default user off: no command without a user', async () => {
    const anonymous = new Redis(`redis://127.0.0.1:${redis.port}`, { lazyConnect: true });
    anonymous.on('error', () => undefined); // its HELLO is refused too
    try {
      await anonymous.connect().catch(() => undefined);
      await expect(anonymous.call('GET', 'stoker:x')).rejects.toThrow(/NOAUTH|NOPERM/);
    } finally {
      anonymous.disconnect();
    }
  });
});
