/**
 * The worker's environment, as workerMain (worker/main.ts) uses it: the one it was
 * exec'd with, minus STOKER_SECRETS_FD, plus the variables read from that descriptor
 * (common/secrets-fd.ts has the format). It runs first, before any payload exists, and
 * leaves the descriptor closed, so a payload inherits neither the descriptor nor, in
 * /proc/<worker>/environ, the secrets: those live in this process's memory only.
 *
 *   workerEnvironment(real, readFd?) -> { env, fromFd, exposed }
 *     env      the environment the worker uses: the Redis URL (STOKER_REDIS_URL or
 *              REDIS_URL), the source of a spec's secretEnv `fromEnv` copies, the payload
 *              allowlist (worker/env.ts)
 *     fromFd   the names read from the descriptor
 *     exposed  secret-looking names (common/secret-env.ts, looksSecret) in the real
 *              environment: a payload of the same user can read them in
 *              /proc/<worker>/environ, and the worker warns once (EXPOSED_WARNING)
 *   Errors     SecretsFdError: STOKER_SECRETS_FD is not a descriptor number, the
 *              descriptor cannot be read, or what it holds is malformed (the line and
 *              what is wrong, never a value). The worker exits 2 with it.
 *
 * readFdToEnd is the real reader (blocking reads to end of file, then close); tests pass
 * their own.
 */
import { closeSync, readSync } from 'node:fs';
import { StokerError } from '../common/errors.js';
import { looksSecret, URL_WITH_PASSWORD } from '../common/secret-env.js';
import {
  MAX_SECRETS_BYTES,
  parseSecrets,
  SECRETS_FD_VAR,
  SecretsFormatError,
} from '../common/secrets-fd.js';
import type { EnvSource } from './env.js';

function passwordlessRedisUrl(name: string, value: string | undefined): boolean {
  return name.endsWith('REDIS_URL') && !URL_WITH_PASSWORD.test(value ?? '');
}

export class SecretsFdError extends StokerError {
  override name = 'SecretsFdError';
}

export interface WorkerEnvironment {
  env: Record<string, string | undefined>;
  fromFd: string[];
  exposed: string[];
}

/** What the worker logs, once, when `exposed` is not empty (the names go in a field). */
export const EXPOSED_WARNING =
  "secret-looking variables in the worker's own environment: a payload running as this user can read them in /proc/<worker pid>/environ. Start the worker through stoker-env-fd (STOKER_SECRET_ENV lists the names to move) or hand them over on STOKER_SECRETS_FD";

export function workerEnvironment(
  real: EnvSource,
  readFd: (fd: number) => Buffer = readFdToEnd,
): WorkerEnvironment {
  const exposed = Object.keys(real)
    // A Redis URL without a password holds nothing secret (an address only).
    .filter((name) => looksSecret(name, real[name]) && !passwordlessRedisUrl(name, real[name]))
    .sort();
  const env: Record<string, string | undefined> = { ...real };
  const given = env[SECRETS_FD_VAR];
  delete env[SECRETS_FD_VAR];
  if (given === undefined || given === '') return { env, fromFd: [], exposed };
  const where = `${SECRETS_FD_VAR}=${given}`;
  if (!/^\d{1,9}$/.test(given)) throw new SecretsFdError(`${where}: not a file descriptor number`);
  let data: Buffer;
  try {
    data = readFd(Number(given));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EBADF'
        ? 'the descriptor is not open'
        : code === 'EAGAIN'
          ? 'the descriptor is non-blocking (give a blocking pipe or a file)'
          : (err as Error).message;
    throw new SecretsFdError(`${where}: cannot read it: ${why}`);
  }
  let vars: Record<string, string>;
  try {
    vars = parseSecrets(data);
  } catch (err) {
    if (err instanceof SecretsFormatError) throw new SecretsFdError(`${where}: ${err.message}`);
    throw err;
  }
  return { env: { ...env, ...vars }, fromFd: Object.keys(vars), exposed };
}

/**
 * Read descriptor `fd` to its end and close it (closed on an error too). Stops early past
 * MAX_SECRETS_BYTES, which parseSecrets then refuses.
 */
export function readFdToEnd(fd: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      total += n;
      if (total > MAX_SECRETS_BYTES) break;
    }
  } finally {
    try {
      closeSync(fd);
    } catch {
      // not open: the read has already said so
    }
  }
  return Buffer.concat(chunks);
}
