/**
 * Paths the controller reads on behalf of a run: a pulled stage's input file (sharding.ts)
 * and the files lineage describes (lineage.ts). A spec and a payload are untrusted, and
 * the controller holds secrets and runs every run's reconcile loop, so such a path is
 * read only when it is
 *   - inside the run's storage: the run's folder or the folder it was submitted from
 *     (its workDir), or a folder of STOKER_DATA_ROOTS (colon-separated: shared datasets),
 *     after every symlink is resolved: `../../x` and a symlink out are refused;
 *   - not under /proc, /sys or /dev, whatever the roots say (the controller's own
 *     environment, devices such as /dev/zero);
 *   - a regular file (or, where asked, a directory), checked on the opened descriptor:
 *     it is opened non-blocking, so a FIFO cannot stall the controller, and a file
 *     swapped for something else after the check is still refused.
 * Anything else is an UntrustedPathError naming the path and why.
 */
import { constants, type Stats } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { StokerError } from '../common/errors.js';

export class UntrustedPathError extends StokerError {
  override name = 'UntrustedPathError';
}

const SYSTEM = ['/proc', '/sys', '/dev'];

/** The folders a run's paths may be in: its folder, its workDir, and STOKER_DATA_ROOTS. */
export function runRoots(
  run: { runDir: string; workDir: string },
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const extra = (env.STOKER_DATA_ROOTS ?? '')
    .split(':')
    .map((p) => p.trim())
    .filter((p) => p !== '' && isAbsolute(p));
  return [run.runDir, run.workDir, ...extra];
}

const inside = (p: string, root: string): boolean => {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
};

/** The real path of `p` if it may be read (see the header); throws UntrustedPathError. */
export async function checkedRealPath(p: string, roots: readonly string[]): Promise<string> {
  let real: string;
  try {
    real = await realpath(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UntrustedPathError(
      code === 'ENOENT' ? `${p} does not exist` : `${p} cannot be resolved (${code ?? 'error'})`,
    );
  }
  if (SYSTEM.some((s) => inside(real, s)))
    throw new UntrustedPathError(`${p} is a system path (${real}): not read`);
  const realRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => resolve(r))));
  if (!realRoots.some((r) => inside(real, r)))
    throw new UntrustedPathError(
      `${p}${real !== resolve(p) ? ` (${real})` : ''} is outside the run's folders (${roots.join(', ')}; more with STOKER_DATA_ROOTS): not read`,
    );
  return real;
}

const KIND = (st: Stats): string =>
  st.isFIFO()
    ? 'a FIFO'
    : st.isCharacterDevice() || st.isBlockDevice()
      ? 'a device'
      : st.isSocket()
        ? 'a socket'
        : st.isDirectory()
          ? 'a directory'
          : 'not a regular file';

/**
 * Open `p` for reading if it may be read: a regular file (or a directory with
 * `directory`), inside `roots`. The caller closes the handle.
 */
export async function openUntrusted(
  p: string,
  roots: readonly string[],
  opts: { directory?: boolean } = {},
): Promise<{ handle: FileHandle; stats: Stats; real: string }> {
  const real = await checkedRealPath(p, roots);
  const handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (stats.isFile() || (opts.directory && stats.isDirectory())) return { handle, stats, real };
    throw new UntrustedPathError(`${p} is ${KIND(stats)}: not read`);
  } catch (err) {
    await handle.close();
    throw err;
  }
}
