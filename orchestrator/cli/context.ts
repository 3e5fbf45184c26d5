/**
 * What every CLI command that talks to a stoker needs: where stoker's home is, the key
 * prefix, a logger, the timing knobs. Configuration is read here, once, from flags and
 * the environment, and passed inward. Which Redis to use is client.ts's.
 */
import { resolve } from 'node:path';
import { UsageError } from '../../common/errors.js';
import { makeKeys, type Keys } from '../../common/keys.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { defaultStokerHome } from '../../common/paths.js';
import type { GlobalOptions } from './options.js';

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
