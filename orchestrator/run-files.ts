/**
 * A run's files directory, `<runDir>/files`: a copy of the files its spec lists
 * (`spec.files`, common/spec/files.ts), each at its path relative to the spec file, read
 * only. A run whose spec lists files works there (its workDir): relative paths in its
 * payloads resolve as they did beside the spec file, and only the listed files are
 * there, as in a pod of the kubernetes backend (which mounts them from a ConfigMap).
 *
 * Written once, when the run is created (store.ts), before the controller hears of it.
 * The paths were checked when the spec was loaded (no absolute path, no ".."); they are
 * checked again here, since a stored spec is data read back.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { specFileBytes, specFilePathProblem, type SpecFile } from '../common/spec/files.js';

/** Where a run's files are: `<runDir>/files`. */
export function runFilesDir(runDir: string): string {
  return join(runDir, 'files');
}

/**
 * Writes the files into the run's files directory, which must not exist yet, read-only;
 * that directory (the run's workDir), undefined for a spec that lists none, or false
 * when it exists already (another run's folder: a colliding id).
 */
export function writeRunFiles(
  runDir: string,
  files: readonly SpecFile[],
): string | undefined | false {
  if (!files.length) return undefined;
  const dir = runFilesDir(runDir);
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  for (const f of files) {
    const problem = specFilePathProblem(f.path);
    const at = join(dir, ...f.path.split('/'));
    if (problem || relative(dir, at).startsWith(`..${sep}`))
      throw new Error(`spec file "${f.path}": expected ${problem ?? 'a path inside the run'}`);
    mkdirSync(dirname(at), { recursive: true, mode: 0o755 });
    writeFileSync(at, specFileBytes(f), { mode: 0o444, flag: 'wx' });
  }
  return dir;
}
