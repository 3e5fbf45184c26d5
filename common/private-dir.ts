/**
 * Stoker's home (STOKER_HOME: runs, logs, API tokens, the embedded Redis's files) is
 * private to its user whatever Redis is used: created 0700, and tightened to 0700 when
 * it exists with access for others (a home made by an older stoker, or by a payload's
 * mkdir under the umask). Files stoker writes there are 0600 (the log writers' mode).
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';

export const PRIVATE_FILE_MODE = 0o600;

/** Make `dir` (and missing parents) 0700; what was done. Never loosens a mode. */
export function ensurePrivateDir(dir: string): 'created' | 'tightened' | 'kept' {
  const made = mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  const mine = typeof process.getuid !== 'function' || st.uid === process.getuid();
  if (mine && (st.mode & 0o077) !== 0) {
    chmodSync(dir, st.mode & 0o700);
    return made ? 'created' : 'tightened';
  }
  return made ? 'created' : 'kept';
}
