/** Run the real `stoker` command (bin/stoker.js) as a child process. */
import { execa, type ResultPromise } from 'execa';
import { join } from 'node:path';

export const STOKER_BIN = join(import.meta.dirname, '..', '..', 'bin', 'stoker.js');

export interface CliEnv {
  redisUrl?: string;
  prefix?: string;
  home: string;
  extra?: Record<string, string>;
}

export function cliEnv(e: CliEnv): Record<string, string> {
  const env: Record<string, string> = { STOKER_HOME: e.home, ...(e.extra ?? {}) };
  if (e.redisUrl) env.REDIS_URL = e.redisUrl;
  if (e.prefix) env.STOKER_PREFIX = e.prefix;
  return env;
}

export function stoker(
  args: string[],
  e: CliEnv,
  opts: { timeoutMs?: number; detached?: boolean } = {},
): ResultPromise<{ reject: false; all: true }> {
  return execa(process.execPath, [STOKER_BIN, ...args], {
    env: { ...process.env, REDIS_URL: '', STOKER_REDIS_URL: '', ...cliEnv(e) },
    reject: false,
    all: true,
    timeout: opts.timeoutMs ?? 120_000,
    detached: opts.detached ?? false,
    cwd: join(import.meta.dirname, '..', '..'),
  }) as ResultPromise<{ reject: false; all: true }>;
}
