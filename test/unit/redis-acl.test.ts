/**
 * The Redis users' file the manifests ship (k8s/base/redis-users.acl), read statically:
 * Redis checks every command a Lua script calls against the user that runs the script, so
 * each user must be granted every command of every script it may run, BullMQ's (which
 * either process runs: the controller's queues, the workers' Workers) and stoker's own;
 * and neither may administer Redis. test/integration/redis-acl.test.ts runs a whole run
 * under these users; this test covers the scripts and paths a run does not reach.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../common/paths.js';
import { BASE_ACL, fillAcl, readAcl } from '../util/redis-acl.js';

interface AclUser {
  on: boolean;
  commands: Set<string>;
  keys: string[];
  channels: string[];
  rules: string[];
}

/** The users of an ACL file: `user NAME rule...` per line. */
function parseAcl(text: string): Map<string, AclUser> {
  const users = new Map<string, AclUser>();
  for (const line of text.split('\n').filter((l) => l.trim() !== '')) {
    const [word, name, ...rules] = line.trim().split(/\s+/);
    expect(word).toBe('user');
    const u: AclUser = { on: false, commands: new Set(), keys: [], channels: [], rules };
    for (const r of rules) {
      if (r === 'on') u.on = true;
      else if (r.startsWith('+')) u.commands.add(r.slice(1));
      else if (/^(%RW?|%W)?~/.test(r)) u.keys.push(r);
      else if (r.startsWith('&')) u.channels.push(r);
    }
    users.set(name ?? '', u);
  }
  return users;
}

/** Files under `dir` (recursively) whose name ends with `ext`. */
function filesUnder(dir: string, ext: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'node_modules' ? [] : filesUnder(p, ext);
    return p.endsWith(ext) ? [p] : [];
  });
}

/**
 * The commands Lua sources call: `redis.call('X'` / `rcall("X"`, and the calls through a
 * variable (`rcall(pushCmd, ...)`, `rcall(command, ...)` in a helper called with
 * `scanCommand`): every command name assigned to a variable named `...cmd` or
 * `...command` in those sources. A call through any other variable is `unresolved`, so
 * that a new kind of indirection in a BullMQ upgrade fails here instead of going unseen.
 */
function luaCommands(sources: string[]): { commands: Set<string>; unresolved: string[] } {
  const commands = new Set<string>();
  const unresolved: string[] = [];
  let indirect = false;
  for (const source of sources) {
    for (const m of source.matchAll(/(?:rcall|redis\.p?call)\(\s*["']([A-Za-z]+)["']/g))
      commands.add((m[1] as string).toLowerCase());
    for (const m of source.matchAll(/(?:rcall|redis\.p?call)\(\s*([A-Za-z_]\w*)\s*,/g)) {
      if (/(cmd|command)$/i.test(m[1] as string)) indirect = true;
      else unresolved.push(m[1] as string);
    }
  }
  if (indirect)
    for (const source of sources)
      for (const a of source.matchAll(/\b\w*(?:cmd|command)\s*=\s*([^\n]*)/gi))
        for (const lit of (a[1] as string).matchAll(/["']([A-Z]+)["']/g))
          commands.add((lit[1] as string).toLowerCase());
  return { commands, unresolved };
}

const require = createRequire(import.meta.url);
const BULLMQ_COMMANDS = join(
  dirname(require.resolve('bullmq/package.json')),
  'dist',
  'esm',
  'commands',
);

const users = parseAcl(fillAcl(readAcl(BASE_ACL), { controller: 'c', worker: 'w' }));
const controller = users.get('controller') as AclUser;
const worker = users.get('worker') as AclUser;

/** What no stoker process uses and no one who got a stoker URL should have. */
const ADMINISTRATION = [
  'flushall',
  'flushdb',
  'config',
  'keys',
  'scan',
  'shutdown',
  'debug',
  'acl',
  'monitor',
  'module',
  'save',
  'bgsave',
  'bgrewriteaof',
  'replicaof',
  'slaveof',
  'sync',
  'psync',
  'failover',
  'cluster',
  'migrate',
  'restore',
  'swapdb',
  'script',
  'function',
  'client|kill',
  'client|pause',
  'client|no-evict',
  'object',
  'memory',
  'latency',
  'slowlog',
];

describe('the Redis users the manifests ship', () => {
  it('has the default user off, and the controller and worker users on', () => {
    expect([...users.keys()].sort()).toEqual(['controller', 'default', 'worker']);
    expect(users.get('default')?.on).toBe(false);
    expect(users.get('default')?.commands.size).toBe(0);
    expect(controller.on && worker.on).toBe(true);
  });

  it('grants commands one by one, never a category or all keys', () => {
    for (const u of [controller, worker]) {
      expect(u.rules).toContain('-@all');
      expect(u.rules.filter((r) => r.startsWith('+@'))).toEqual([]);
      expect(u.rules).not.toContain('allkeys');
      expect(u.rules).not.toContain('allcommands');
      for (const k of u.keys) expect(k).toMatch(/~stoker:/);
      expect(u.channels).toEqual(['&stoker:*']);
    }
  });

  it.each([
    ['controller', controller],
    ['worker', worker],
  ])('grants %s nothing of administration', (_name, u) => {
    for (const c of ADMINISTRATION) expect(u.commands.has(c), c).toBe(false);
  });

  it.each([
    ['controller', controller],
    ['worker', worker],
  ])("grants %s every command BullMQ's Lua scripts call", (_name, u) => {
    const scripts = filesUnder(BULLMQ_COMMANDS, '.lua');
    expect(scripts.length).toBeGreaterThan(30);
    const { commands: needed, unresolved } = luaCommands(
      scripts.map((f) => readFileSync(f, 'utf8')),
    );
    expect(unresolved).toEqual([]);
    // The parser finds the calls through a variable too (a job pushed LIFO or FIFO).
    expect(needed).toContain('rpush');
    expect(needed).toContain('sscan');
    expect([...needed].filter((c) => !u.commands.has(c))).toEqual([]);
  });

  it("grants each user every command stoker's own Lua scripts call in its code", () => {
    const root = packageRoot();
    const scriptsIn = (dirs: string[]) => {
      const { commands, unresolved } = luaCommands(
        dirs.flatMap((d) => filesUnder(join(root, d), '.ts')).map((f) => readFileSync(f, 'utf8')),
      );
      expect(unresolved).toEqual([]);
      return commands;
    };
    // Workers run common/ and worker/; the controller common/ and orchestrator/.
    const workerNeeds = scriptsIn(['common', 'worker']);
    const controllerNeeds = scriptsIn(['common', 'orchestrator']);
    expect(workerNeeds).toContain('publish'); // task-store's scripts announce changes
    expect([...workerNeeds].filter((c) => !worker.commands.has(c))).toEqual([]);
    expect([...controllerNeeds].filter((c) => !controller.commands.has(c))).toEqual([]);
  });

  it('lets the worker write only what workers write', () => {
    const writable = worker.keys.filter((k) => k.startsWith('~') || k.startsWith('%RW~'));
    expect(worker.keys).toContain('%R~stoker:*');
    expect(writable).not.toContain('~stoker:*');
    // Run records and the controller's lock are not under any pattern it may write.
    const matches = (pattern: string, key: string) =>
      new RegExp(
        `^${pattern
          .replace(/^%RW?~|^~/, '')
          .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '.*')}$`,
      ).test(key);
    for (const key of ['stoker:run:r1', 'stoker:runs', 'stoker:controller:lock', 'stoker:pools'])
      expect(
        writable.filter((p) => matches(p, key)),
        key,
      ).toEqual([]);
    for (const key of ['stoker:task:t1:progress', 'stoker:bull:train:1', 'stoker:pool:p:workers'])
      expect(
        writable.some((p) => matches(p, key)),
        key,
      ).toBe(true);
  });
});
