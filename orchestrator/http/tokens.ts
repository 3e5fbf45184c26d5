/**
 * The HTTP API's bearer tokens: one admin token (reads and writes: submit, cancel,
 * scale) and one read-only token.
 *
 * Where they come from, first match:
 *   1. STOKER_ADMIN_TOKEN and STOKER_READ_TOKEN (both, or neither): on Kubernetes from a
 *      Secret (k8s/base);
 *   2. `${STOKER_HOME}/api-tokens.json`, {"admin": "...", "read": "..."}, mode 0600;
 *   3. none yet: both are made now (32 random bytes each) and written to that file,
 *      created exclusively (two processes starting at once cannot both write it).
 *
 * Only SHA-256 digests of the tokens are kept in memory past start-up (the clear tokens
 * go to whoever prints the login line); a presented token is hashed and compared with
 * each digest by timingSafeEqual, so the time a check takes says nothing about how much
 * of a token matched. Tokens are never logged and never written to Redis.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { UsageError } from '../../common/errors.js';

export type Role = 'admin' | 'read';

const TokenFile = z.object({ admin: z.string().min(16), read: z.string().min(16) });
export type ApiTokens = z.infer<typeof TokenFile>;

export const tokenFilePath = (home: string): string => join(home, 'api-tokens.json');

export interface LoadedTokens {
  tokens: ApiTokens;
  /** Where they came from: the environment, the file, or made now (into the file). */
  source: 'env' | 'file' | 'created';
  file: string;
}

/** The tokens from the environment or the home's file; made and written there if none. */
export function loadOrCreateTokens(home: string, env: NodeJS.ProcessEnv): LoadedTokens {
  const file = tokenFilePath(home);
  const admin = env.STOKER_ADMIN_TOKEN;
  const read = env.STOKER_READ_TOKEN;
  if (admin || read) {
    const parsed = TokenFile.safeParse({ admin, read });
    if (!parsed.success || admin === read) {
      throw new UsageError(
        'STOKER_ADMIN_TOKEN and STOKER_READ_TOKEN must both be set, differ, and be at least 16 characters',
      );
    }
    return { tokens: parsed.data, source: 'env', file };
  }
  const existing = readTokenFile(file);
  if (existing) return { tokens: existing, source: 'file', file };
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const tokens = { admin: newToken('a'), read: newToken('r') };
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (err) {
    // Another stoker made it between our read and our create: use theirs.
    const theirs = (err as NodeJS.ErrnoException).code === 'EEXIST' ? readTokenFile(file) : null;
    if (theirs) return { tokens: theirs, source: 'file', file };
    throw err;
  }
  try {
    writeSync(fd, `${JSON.stringify(tokens, null, 2)}\n`);
  } finally {
    closeSync(fd);
  }
  chmodSync(file, 0o600);
  return { tokens, source: 'created', file };
}

function readTokenFile(file: string): ApiTokens | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`${file}: not JSON; delete it to make new API tokens`);
  }
  const parsed = TokenFile.safeParse(json);
  if (!parsed.success || parsed.data.admin === parsed.data.read) {
    throw new UsageError(
      `${file}: needs {"admin": "...", "read": "..."}, two different tokens of at least 16 characters; delete it to make new ones`,
    );
  }
  return parsed.data;
}

function newToken(kind: 'a' | 'r'): string {
  return `stk_${kind}_${randomBytes(32).toString('base64url')}`;
}

/** The SHA-256 digest a token is kept and compared as. */
export const digestOf = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Which role a presented token has, checked in constant time. */
export class TokenAuth {
  private readonly digests: Array<{ role: Role; digest: Buffer }>;

  constructor(tokens: ApiTokens) {
    this.digests = [
      { role: 'admin', digest: digestOf(tokens.admin) },
      { role: 'read', digest: digestOf(tokens.read) },
    ];
  }

  roleOf(presented: string | undefined): Role | null {
    if (!presented) return null;
    const d = digestOf(presented);
    let role: Role | null = null;
    // Every digest is compared, whichever matches.
    for (const t of this.digests) if (timingSafeEqual(d, t.digest)) role ??= t.role;
    return role;
  }

  /** Whether a presented token is the one of this digest, in constant time. */
  matches(presented: string, digest: Buffer): boolean {
    return timingSafeEqual(digestOf(presented), digest);
  }
}
