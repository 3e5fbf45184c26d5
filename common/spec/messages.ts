/**
 * Step 3 of loading a spec (load.ts): zod's issues rewritten to say what is expected, in
 * the spec's words: `expected a number, got the string "eight"`, `unknown field "gpus" (it
 * belongs under resources)`, `must be one of train, generate, ... ; did you mean "train"?`.
 *
 *   schemaProblems(issues, root) -> Problem[]
 *
 * `root` is the value that was parsed, to quote what was written. An unknown `kind` stops
 * zod's union before anything else is looked at, so then the header (apiVersion,
 * metadata) is checked on its own. Custom issues (the graph checks, a bad duration) keep
 * their message; a graph check asks to point at the key with `params.atKey`.
 */
import type { z } from 'zod';
import {
  Defaults,
  KubernetesRequest,
  Metadata,
  Payload,
  PipelineSpec,
  PvcMount,
  ResourceRequest,
  RetryRequest,
  RunSpecShape,
  SecretRef,
  SingleStageSpec,
  SPEC_KINDS,
  Stage,
  Toleration,
} from './schema.js';
import { suggest } from './suggest.js';
import { describeValue, valueAt } from './values.js';
import type { Json, Path, Segment } from './values.js';

/** One problem, before its line is looked up. */
export interface Problem {
  path: Path;
  message: string;
  /** Point at the key rather than its value. */
  atKey?: boolean;
}

/** Kind unknown: the header is still worth checking. */
const HeaderOnly = RunSpecShape.options[0].pick({ apiVersion: true, metadata: true });

const KNOWN_FIELDS = new Set<string>([
  'apiVersion',
  'kind',
  'metadata',
  'spec',
  'type',
  'delay',
  'activeDeadline',
  ...[
    Stage,
    Payload,
    ResourceRequest,
    RetryRequest,
    Defaults,
    Metadata,
    PipelineSpec,
    SingleStageSpec,
    SecretRef,
    KubernetesRequest,
    Toleration,
    PvcMount,
  ].flatMap((s) => Object.keys(s.shape)),
  'pvc',
  'shmSize',
]);

/** Fields people put one level too high. */
const BELONGS_UNDER: Record<string, string> = {
  command: 'payload',
  env: 'payload',
  secretEnv: 'payload',
  workingDir: 'payload',
  gpus: 'resources',
  nodes: 'resources',
  gpuType: 'resources',
  cpu: 'resources',
  memory: 'resources',
  attempts: 'retry',
  backoff: 'retry',
  activeDeadline: 'budget',
  namespace: 'kubernetes',
  nodeSelector: 'kubernetes',
  tolerations: 'kubernetes',
  priorityClassName: 'kubernetes',
  serviceAccountName: 'kubernetes',
  queueName: 'kubernetes',
  imagePullPolicy: 'kubernetes',
  volumes: 'kubernetes',
  pvc: 'volumes',
  shmSize: 'volumes',
};

const segments = (path: readonly PropertyKey[]): Path =>
  path.filter((s): s is Segment => typeof s !== 'symbol');

/** Every issue of a failed parse of `root`, in the spec's words. */
export function schemaProblems(issues: readonly z.core.$ZodIssue[], root: Json): Problem[] {
  const problems = issues.flatMap((issue) => describeIssue(issue, root));
  if (issues.some((i) => i.path.length === 1 && i.path[0] === 'kind')) {
    // An unknown kind stops the union before anything else is checked: check the header alone.
    const header = HeaderOnly.safeParse({
      apiVersion: valueAt(root, ['apiVersion']),
      metadata: valueAt(root, ['metadata']),
    });
    if (!header.success)
      problems.push(...header.error.issues.flatMap((issue) => describeIssue(issue, root)));
  }
  return problems;
}

function describeIssue(issue: z.core.$ZodIssue, root: Json): Problem[] {
  const path = segments(issue.path);
  const value = valueAt(root, path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        path: [...path, key],
        message: `unknown field "${key}"${fieldHint(key, path)}`,
        atKey: true,
      }));
    case 'invalid_key': {
      const why = issue.issues.map((i) => i.message).join('; ');
      const message = `"${String(path[path.length - 1])}" is not a valid key: ${why}`;
      return [{ path, message, atKey: true }];
    }
    case 'invalid_union':
      return unionProblems(issue, path, value);
    case 'custom':
      return [
        { path, message: issue.message, ...(issue.params?.['atKey'] ? { atKey: true } : {}) },
      ];
    default:
      return [{ path, message: plainMessage(issue, value) ?? issue.message }];
  }
}

/** zod's default wording replaced, where zod used it; a message the schema chose is kept. */
function plainMessage(issue: z.core.$ZodIssue, value: Json): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (!issue.message.startsWith('Invalid input')) return undefined;
      return expectation(typeName(issue.expected), value);
    case 'invalid_value': {
      if (!/^Invalid (option|input)/.test(issue.message)) return undefined;
      const options = issue.values.map((v) => String(v));
      const hint = typeof value === 'string' ? suggest(value, options) : undefined;
      return `${expectation(`one of ${options.join(', ')}`, value)}${hint ? `; did you mean "${hint}"?` : ''}`;
    }
    case 'invalid_format':
      return typeof value === 'string'
        ? `${issue.message} (got ${JSON.stringify(value)})`
        : undefined;
    case 'too_small':
    case 'too_big': {
      if (!/^Too (small|big)/.test(issue.message)) return undefined;
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const inclusive = issue.inclusive !== false;
      const word =
        issue.code === 'too_small'
          ? inclusive
            ? 'at least'
            : 'more than'
          : inclusive
            ? 'at most'
            : 'less than';
      const what =
        issue.origin === 'array' ? ' item(s)' : issue.origin === 'string' ? ' character(s)' : '';
      return `must be ${word} ${String(bound)}${what} (got ${JSON.stringify(value)})`;
    }
    default:
      return undefined;
  }
}

function unionProblems(issue: z.core.$ZodIssueInvalidUnion, path: Path, value: Json): Problem[] {
  if (path.length === 1 && path[0] === 'kind') {
    const hint = typeof value === 'string' ? suggest(value, SPEC_KINDS) : undefined;
    const got = value === undefined ? 'it is missing' : `got ${JSON.stringify(value)}`;
    const message = `must be one of ${SPEC_KINDS.join(', ')} (${got})${hint ? `; did you mean "${hint}"?` : ''}`;
    return [{ path, message }];
  }
  // A branch that accepted the type but not the value says the most ("10 minutes" is not a duration).
  // A literal of another type (`shmSize: false` when a quantity string was written) is a
  // type mismatch too.
  const refined = issue.errors.flat().filter((i) => !isTypeMismatch(i, value));
  if (
    refined.length &&
    issue.errors.some((branch) => branch.every((i) => !isTypeMismatch(i, value)))
  )
    return refined.map((inner) => ({
      path: [...path, ...segments(inner.path)],
      message: inner.message,
    }));
  const expected = issue.errors
    .flat()
    .filter((i) => i.code === 'invalid_type' && i.path.length === 0)
    .map((i) => typeName((i as { expected: string }).expected));
  return [
    { path, message: expectation([...new Set(expected)].join(' or ') || 'another value', value) },
  ];
}

function isTypeMismatch(issue: z.core.$ZodIssue, value: Json): boolean {
  if (issue.code === 'invalid_type') return true;
  return (
    issue.code === 'invalid_value' &&
    issue.path.length === 0 &&
    issue.values.every((v) => typeof v !== typeof value)
  );
}

function fieldHint(key: string, parent: Path): string {
  if (key === 'stages' || key === 'defaults') return ' (only kind: Pipeline has it)';
  const home = Object.hasOwn(BELONGS_UNDER, key) ? BELONGS_UNDER[key] : undefined;
  if (home !== undefined && parent[parent.length - 1] !== home)
    return ` (it belongs under ${home})`;
  const close = suggest(key, KNOWN_FIELDS);
  return close ? ` (did you mean "${close}"?)` : '';
}

function typeName(expected: string): string {
  const names: Record<string, string> = {
    object: 'a mapping',
    record: 'a mapping',
    array: 'a list',
    string: 'a string',
    number: 'a number',
    int: 'an integer',
    boolean: 'true or false',
  };
  return names[expected] ?? expected;
}

function expectation(expected: string, value: Json): string {
  return value === undefined
    ? `required: expected ${expected}`
    : `expected ${expected}, got ${describeValue(value)}`;
}
