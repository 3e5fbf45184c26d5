/**
 * Fencing: the controller's writes are refused by Redis itself once this controller no
 * longer holds the lock (README, "What Stoker promises").
 *
 * The lock's value is the holder's instance id, new at every acquisition (leader.ts): it
 * is the fencing token. Every write the leader makes through the client fencedRedis()
 * returns runs inside one Lua script that first compares the lock's value with the token
 * and, only if they are equal, runs the write (or the whole MULTI) — atomically, since
 * Redis runs a script alone. A controller that was paused (SIGSTOP, a long GC, a VM
 * migration) past its lock's TTL while another took over wakes up, tries to write, and
 * gets STOKER_FENCED: nothing is written, FencedError is thrown, and `onFenced` tells the
 * leadership that it is lost (the system stops and goes back to waiting for the lock).
 * Checking the token in the store is what makes this a fence; a check in the controller
 * before writing ("am I still leader?") would leave the pause between check and write.
 *
 * What goes through the fence:
 *   - the write commands of WRITES, called on the client;
 *   - multi() and pipeline(): recorded, then run as one fenced script when they hold a
 *     write (reads only: sent as they are);
 *   - eval/evalsha (the store's Lua scripts): the fence is checked just before, in a
 *     separate round trip. Those scripts are the workers' (begin and finish a shard) and
 *     guard themselves against stale callers; the controller barely uses them.
 * Not fenced: reads, PUBLISH (a wake-up, no state), duplicate() (the subscriber). BullMQ
 * queues use their own connections; what the controller adds to them carries a job id
 * derived from the run, so a job an old leader adds again is the same job, and the
 * controller checks the fence (check()) before it adds or launches.
 *
 * Hand-written rather than a library: no Redis client offers a conditional MULTI, and
 * WATCH needs a connection of its own per transaction (a shared connection's WATCH is
 * undone by any other EXEC on it).
 */
import type { Redis } from 'ioredis';
import { StokerError } from '../common/errors.js';

/** A write refused because the lock has another holder (or none). */
export class FencedError extends StokerError {
  constructor(readonly holder: string | null) {
    super(
      `this controller no longer holds the lock (${holder ? `held by ${holder}` : 'free'}): write refused`,
    );
    this.name = 'FencedError';
  }
}

export function isFenced(err: unknown): boolean {
  return err instanceof FencedError || (err instanceof Error && err.name === 'FencedError');
}

/** Commands that change data; only these go through the fence. */
export const WRITES: ReadonlySet<string> = new Set([
  'set',
  'setnx',
  'setex',
  'psetex',
  'getset',
  'getdel',
  'del',
  'unlink',
  'expire',
  'pexpire',
  'persist',
  'incr',
  'incrby',
  'decr',
  'hset',
  'hmset',
  'hsetnx',
  'hdel',
  'hincrby',
  'sadd',
  'srem',
  'smove',
  'zadd',
  'zrem',
  'zincrby',
  'zremrangebyscore',
  'zremrangebyrank',
  'lpush',
  'rpush',
  'lpop',
  'rpop',
  'lrem',
  'ltrim',
  'lset',
  'xadd',
  'xtrim',
  'xdel',
  'rename',
  'copy',
]);

const FENCED_EXEC = `
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return redis.error_reply('STOKER_FENCED ' .. (holder or '')) end
local cmds = cjson.decode(ARGV[2])
local out = {}
for i = 1, #cmds do
  local r = redis.pcall(unpack(cmds[i]))
  if r == nil then r = false end
  out[i] = r
end
return out
`;

const CHECK = `
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return redis.error_reply('STOKER_FENCED ' .. (holder or '')) end
return 1
`;

/** Arguments as ioredis sends them: arrays, objects and Maps flattened; numbers as text. */
export function flattenArgs(args: readonly unknown[]): string[] {
  const out: string[] = [];
  const add = (a: unknown): void => {
    if (a === null || a === undefined) out.push('');
    else if (typeof a === 'string') out.push(a);
    else if (typeof a === 'number' || typeof a === 'bigint' || typeof a === 'boolean')
      out.push(String(a));
    else if (Array.isArray(a)) a.forEach(add);
    else if (a instanceof Map) for (const [k, v] of a) add([k, v]);
    else if (Buffer.isBuffer(a)) out.push(a.toString('utf8'));
    else if (typeof a === 'object') for (const [k, v] of Object.entries(a)) add([k, v]);
    else throw new TypeError(`cannot send a ${typeof a} to Redis`);
  };
  args.forEach(add);
  return out;
}

/** A recorded MULTI or pipeline: commands go on the list, exec() sends them. */
type Recorded = Array<{ name: string; args: unknown[] }>;
type ExecResult = Array<[Error | null, unknown]> | null;

export interface Fence {
  /** Throws FencedError (after calling onFenced) if the lock is no longer this controller's. */
  check(): Promise<void>;
}

export interface FencedOptions {
  lockKey: string;
  token: string;
  /** Called once, on the first refused write. */
  onFenced: (holder: string | null) => void;
}

/**
 * The client the leader's parts write through: `redis` itself for reads, the fence for
 * writes (see the header). `check()` is on the returned client too.
 */
export function fencedRedis(redis: Redis, opts: FencedOptions): Redis & Fence {
  let told = false;
  const refused = (err: unknown): never => {
    if (err instanceof Error && err.message.startsWith('STOKER_FENCED')) {
      const holder = err.message.slice('STOKER_FENCED'.length).trim() || null;
      if (!told) {
        told = true;
        opts.onFenced(holder);
      }
      throw new FencedError(holder);
    }
    throw err;
  };
  const runFenced = async (cmds: Recorded): Promise<unknown[]> => {
    const body = JSON.stringify(cmds.map((c) => [c.name, ...flattenArgs(c.args)]));
    const out = (await redis
      .eval(FENCED_EXEC, 1, opts.lockKey, opts.token, body)
      .catch(refused)) as unknown[];
    return out;
  };
  const check = async (): Promise<void> => {
    await redis.eval(CHECK, 1, opts.lockKey, opts.token).catch(refused);
  };
  const single =
    (name: string) =>
    async (...args: unknown[]) => {
      const [r] = await runFenced([{ name, args }]);
      if (r instanceof Error) throw r;
      return r;
    };
  const recorder = (raw: () => ReturnType<Redis['multi']>) => {
    const cmds: Recorded = [];
    const builder: Record<string | symbol, unknown> = {};
    const proxy: unknown = new Proxy(builder, {
      get(_t, prop) {
        if (prop === 'length') return cmds.length;
        if (prop === 'then') return undefined;
        if (prop === 'exec')
          return async (): Promise<ExecResult> => {
            if (!cmds.some((c) => WRITES.has(c.name))) {
              const m = raw() as unknown as Record<string, (...a: unknown[]) => unknown>;
              for (const c of cmds) (m[c.name] as (...a: unknown[]) => unknown)(...c.args);
              return (m.exec as () => Promise<ExecResult>)();
            }
            const out = await runFenced(cmds);
            return out.map((r, i) =>
              r instanceof Error ? [r, null] : [null, transformReply(cmds[i]!.name, r)],
            );
          };
        if (typeof prop !== 'string') return undefined;
        return (...args: unknown[]) => {
          cmds.push({ name: prop.toLowerCase(), args });
          return proxy;
        };
      },
    });
    return proxy;
  };
  return new Proxy(redis, {
    get(target, prop, receiver) {
      if (prop === 'check') return check;
      if (typeof prop === 'string') {
        if (WRITES.has(prop)) return single(prop);
        if (prop === 'multi') return () => recorder(() => target.multi());
        if (prop === 'pipeline') return () => recorder(() => target.pipeline());
        if (prop === 'eval' || prop === 'evalsha')
          return async (...args: unknown[]) => {
            await check();
            return (target[prop] as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Redis & Fence;
}

/** The reply shapes ioredis gives for the few commands whose raw reply it transforms. */
function transformReply(name: string, r: unknown): unknown {
  if (name === 'hgetall' && Array.isArray(r)) {
    const o: Record<string, unknown> = {};
    for (let i = 0; i + 1 < r.length; i += 2) o[String(r[i])] = r[i + 1];
    return o;
  }
  return r === false ? null : r;
}

/** Check the fence of a fenced client (no-op on a plain one: tests, the CLI). */
export async function checkFence(redis: Redis): Promise<void> {
  const f = (redis as Partial<Fence>).check;
  if (typeof f === 'function') await f();
}
