/**
 * Run spec loading: YAML text -> `NormalizedSpec`, or a SpecError listing every problem.
 *
 *   loadSpecFile(path, {sets, maxBytes, rules})   bounded read, then parseSpec
 *   parseSpec(text, {file, sets, rules})          the steps below
 *
 * Every problem is reported at once, each with its YAML path (`spec.stages[1].dependsOn[0]`)
 * and, where the value came from the file, its line and column. Values introduced by a
 * `--set` have no line. The steps:
 *
 *   0. read.ts: a file larger than maxBytes (1 MiB) is refused before it is read.
 *   1. source.ts: YAML -> plain value. One document, a mapping at the top, unique keys,
 *      aliases capped (a YAML bomb is refused). Problems here stop loading at once.
 *   2. overrides.ts: `--set path=value` overrides on the plain value.
 *   3. document.ts: the one schema (schema.ts) with the graph checks (graph.ts) as its
 *      refinement; messages.ts rewrites zod's issues to say what is expected.
 *   4. normalize.ts: one list of stages, defaults merged in.
 *   4b. files.ts: the files `spec.files` lists, read from the spec file's directory
 *      (`baseDir`; loadSpecFile passes it) into the normalised spec, each checked. A
 *      spec parsed from text alone (no `baseDir`) cannot list files.
 *   5. rules.ts: extra rules the caller passes (the CLI passes the kubernetes backend's),
 *      on the normalised spec, each issue at the path its setting was written at. They
 *      run when the structure passed (graph problems do not stop them): they need the
 *      normalised stages.
 *
 * Exit codes are the caller's: a SpecError is a usage error of the CLI.
 */
import { dirname } from 'node:path';
import { SpecError } from '../errors.js';
import { readSpecFiles } from './files.js';
import { isGraphIssue, RunSpecDocument } from './document.js';
import { schemaProblems } from './messages.js';
import { documentPaths, normalize } from './normalize.js';
import { applySets } from './overrides.js';
import { DEFAULT_MAX_SPEC_BYTES, readBounded } from './read.js';
import { runRules } from './rules.js';
import type { SpecRule } from './rules.js';
import { RunSpecShape } from './schema.js';
import type { NormalizedSpec } from './schema.js';
import { readSource } from './source.js';
import type { IssueList } from './issue-list.js';
import type { Json } from './values.js';

// Kept importable from here: what callers used to find in this module.
export { DEFAULT_MAX_SPEC_BYTES, formatBytes } from './read.js';
export { MAX_ALIAS_COUNT } from './source.js';
export { parseSetExpression } from './overrides.js';
export { formatPath } from './values.js';
export { PULLED_OUTPUTS, SINGLE_STAGE } from './schema.js';
export type { SpecRule } from './rules.js';

export interface ParseSpecOptions {
  /** Shown in error messages. */
  file?: string;
  /** `--set path=value` overrides, applied in order. */
  sets?: readonly string[];
  /** Extra rules (a backend's), run on the normalised spec: see rules.ts. */
  rules?: readonly SpecRule[];
  /** The spec file's directory, where `spec.files` are read (none: it may list no files). */
  baseDir?: string;
}

export interface LoadSpecOptions {
  sets?: readonly string[];
  /** Default DEFAULT_MAX_SPEC_BYTES. */
  maxBytes?: number;
  rules?: readonly SpecRule[];
}

/** Reads a spec file (refusing a large one before reading it) and parses it. */
export async function loadSpecFile(
  file: string,
  opts: LoadSpecOptions = {},
): Promise<NormalizedSpec> {
  const text = await readBounded(file, opts.maxBytes ?? DEFAULT_MAX_SPEC_BYTES);
  return parseSpec(text, {
    file,
    ...(opts.sets ? { sets: opts.sets } : {}),
    rules: opts.rules ?? [],
    baseDir: dirname(file),
  });
}

/** Parses, overrides, validates and normalises a spec. Throws SpecError with every problem. */
export function parseSpec(text: string, opts: ParseSpecOptions = {}): NormalizedSpec {
  const { root, issues } = readSource(text, opts.file);
  applySets(root, opts.sets ?? [], issues);
  const doc = validate(root, issues);
  const spec = doc && normalize(doc);
  if (doc && spec) addFiles(spec, doc.spec.files ?? [], opts.baseDir, issues);
  if (doc && spec && opts.rules?.length) {
    for (const issue of runRules(opts.rules, spec, documentPaths(doc)))
      issues.add(issue.path, issue.message);
  }
  if (issues.length || !spec) throw new SpecError(issues.sorted(), opts.file);
  return spec;
}

/** Step 4b: the listed files into the spec, or an issue for each problem. */
function addFiles(
  spec: NormalizedSpec,
  paths: readonly string[],
  baseDir: string | undefined,
  issues: IssueList,
): void {
  if (!paths.length) return;
  if (baseDir === undefined) {
    issues.add(
      ['spec', 'files'],
      "files are read from the spec file's directory: give the spec as a file " +
        '(stoker validate|run|submit|render FILE, without STOKER_URL); a spec sent as text cannot list files',
    );
    return;
  }
  const { files, problems } = readSpecFiles(paths, baseDir);
  for (const p of problems)
    issues.add(p.index === null ? ['spec', 'files'] : ['spec', 'files', p.index], p.message);
  spec.files = files;
}

/**
 * The document, typed: parsed with the schema and its graph checks, every problem added
 * to `issues`. When only graph checks failed, the structure is sound: it is returned
 * still (parsed without them), so that the rules and normalisation can run on it.
 */
function validate(root: Json, issues: IssueList): RunSpecDocument | undefined {
  const parsed = RunSpecDocument.safeParse(root);
  if (parsed.success) return parsed.data;
  for (const problem of schemaProblems(parsed.error.issues, root))
    issues.add(problem.path, problem.message, { atKey: problem.atKey ?? false });
  if (!parsed.error.issues.every(isGraphIssue)) return undefined;
  const structure = RunSpecShape.safeParse(root);
  return structure.success ? structure.data : undefined;
}
