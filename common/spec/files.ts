/**
 * A spec's files (`spec.files`): the configuration files its payloads read by relative
 * paths (training options, DeepSpeed JSONs), listed as paths relative to the spec file's
 * directory. They travel with the run, so that a payload finds them wherever it runs:
 *
 *   - loading (load.ts) reads them once, at the boundary, into the normalised spec
 *     (`files: [{path, encoding, data}]`), each checked: a relative path inside the
 *     spec's directory (no `..`, no absolute path, a symbolic link must stay inside too),
 *     a regular file, and all together at most SPEC_FILES_MAX_BYTES, the most one
 *     Kubernetes ConfigMap holds;
 *   - a run of such a spec works in its files directory, `<runDir>/files`, which holds
 *     a copy of each file at its relative path (orchestrator/run-files.ts): relative paths
 *     in the payload resolve as they did beside the spec file;
 *   - the kubernetes backend carries them in a ConfigMap mounted read-only in every pod
 *     of the run (orchestrator/backends/kubernetes/run-files.ts), where the worker runs
 *     the payload.
 *
 * Only what the spec lists travels: a file beside the spec that is not listed is not in
 * the files directory, on either backend.
 */
import { lstatSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { formatBytes } from './read.js';

/** What one ConfigMap holds at most (Kubernetes: keys and values together, 1 MiB). */
export const SPEC_FILES_MAX_BYTES = 1024 * 1024;
/**
 * Set in a kubernetes pod of a run that lists files: where its ConfigMap is mounted
 * (`dir`) and whose run it is (`run`); the worker runs that run's payloads there.
 */
export const RUN_FILES_ENV = { dir: 'STOKER_RUN_FILES_DIR', run: 'STOKER_RUN_FILES_RUN' } as const;

/** Files a spec may list. */
export const SPEC_FILES_MAX_COUNT = 256;

/** A file as a run stores it: UTF-8 text as it is, anything else in base64. */
export const SpecFile = z.object({
  /** Relative to the spec's directory, `/`-separated, normalised. */
  path: z.string(),
  encoding: z.enum(['utf8', 'base64']),
  data: z.string(),
});
export type SpecFile = z.infer<typeof SpecFile>;

/** Why a listed path is not acceptable as written, or null. */
export function specFilePathProblem(p: string): string | null {
  if (p === '') return 'an empty path';
  if (p.includes('\\')) return 'a path with "/" between folders, not "\\"';
  if (p.includes('\0')) return 'a path without NUL characters';
  if (isAbsolute(p) || p.startsWith('/'))
    return "a path relative to the spec file's directory, not an absolute path";
  const parts = p.split('/');
  if (parts.some((x) => x === '..')) return 'a path inside the spec file\'s directory (no "..")';
  if (parts.some((x) => x === '' || x === '.'))
    return 'a normalised path (no empty or "." segments, no trailing "/")';
  return null;
}

/** The `spec.files` field as a spec writes it. */
export const SpecFilePaths = z
  .array(
    z.string().superRefine((p, ctx) => {
      const problem = specFilePathProblem(p);
      if (problem) ctx.addIssue({ code: 'custom', message: `expected ${problem}` });
    }),
  )
  .max(SPEC_FILES_MAX_COUNT, `at most ${SPEC_FILES_MAX_COUNT} files`)
  .superRefine((paths, ctx) => {
    const seen = new Set<string>();
    paths.forEach((p, i) => {
      if (seen.has(p))
        ctx.addIssue({ code: 'custom', path: [i], message: `"${p}" is listed twice` });
      seen.add(p);
    });
  });

/** One problem with a listed file: its index in `spec.files` (or null: the list as a whole). */
export interface SpecFileProblem {
  index: number | null;
  message: string;
}

/**
 * Reads the listed files from `baseDir` (the spec file's directory). Every problem is
 * returned, none thrown; `files` holds what was read when there were none.
 */
export function readSpecFiles(
  paths: readonly string[],
  baseDir: string,
): { files: SpecFile[]; problems: SpecFileProblem[] } {
  const problems: SpecFileProblem[] = [];
  const files: SpecFile[] = [];
  let root: string;
  try {
    root = realpathSync(resolve(baseDir));
  } catch (err) {
    return {
      files,
      problems: [{ index: null, message: `cannot read ${baseDir}: ${(err as Error).message}` }],
    };
  }
  let total = 0;
  paths.forEach((p, index) => {
    const at = join(root, ...p.split('/'));
    const refuse = (message: string): void => {
      problems.push({ index, message: `${message} (${at})` });
    };
    try {
      lstatSync(at);
    } catch {
      return refuse("no such file in the spec file's directory");
    }
    let real: string;
    try {
      real = realpathSync(at);
    } catch {
      return refuse('a symbolic link to nothing');
    }
    const rel = relative(root, real);
    if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel))
      return refuse("a symbolic link that leads outside the spec file's directory");
    const stat = statSync(real);
    if (!stat.isFile()) return refuse('not a regular file');
    // Refused from its size before it is read: the bound is on all of them together.
    total += p.length + stat.size;
    if (total > SPEC_FILES_MAX_BYTES) return;
    const bytes = readFileSync(real);
    const text = bytes.toString('utf8');
    files.push(
      Buffer.from(text, 'utf8').equals(bytes)
        ? { path: p, encoding: 'utf8', data: text }
        : { path: p, encoding: 'base64', data: bytes.toString('base64') },
    );
  });
  if (total > SPEC_FILES_MAX_BYTES) {
    problems.push({
      index: null,
      message:
        `the files are ${formatBytes(total)} in all (paths and contents), more than the ` +
        `${formatBytes(SPEC_FILES_MAX_BYTES)} one Kubernetes ConfigMap holds, which carries ` +
        'them to the pods; put large files on a volume (kubernetes.volumes.pvc) instead',
    });
  }
  return { files: problems.length ? [] : files, problems };
}

/** The bytes of a stored file. */
export function specFileBytes(f: SpecFile): Buffer {
  return Buffer.from(f.data, f.encoding === 'utf8' ? 'utf8' : 'base64');
}
