/**
 * Run spec loading: YAML text -> `NormalizedSpec`, or a SpecError listing every problem.
 *
 *   loadSpecFile(path, {sets, maxBytes})   size-checked read, then parseSpec
 *   parseSpec(text, {file, sets})          parse -> --set overrides -> schema -> graph -> normalise
 *
 * Every problem is reported at once, each with its YAML path (`spec.stages[1].dependsOn[0]`)
 * and, where the value came from the file, its line and column. Values introduced by a
 * `--set` have no line. The steps:
 *
 *   1. YAML: one document, a mapping at the top, unique keys, aliases capped at
 *      MAX_ALIAS_COUNT expansions (a "billion laughs" bomb fails in microseconds). Merge
 *      keys (`<<: *base`) are allowed.
 *   2. `--set path=value` overrides on the plain value (see applySets).
 *   3. The zod schema (schema.ts), its issues rewritten to say what is expected.
 *   4. Graph checks, on the raw value so that they run even when the schema failed
 *      elsewhere: stage names, dependsOn, cycles, ${...} references, CPU step resources,
 *      and shapes the kubernetes backend cannot run (checkKubernetes).
 *   5. Normalisation: one list of stages, defaults merged in (see normalizeStage).
 */
import { open } from 'node:fs/promises';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node as YamlNode, Pair, ParsedNode } from 'yaml';
import type { z } from 'zod';
import { SpecError } from '../errors.js';
import type { SpecIssue } from '../errors.js';
import { findReferences } from './interpolate.js';
import {
  API_VERSION,
  CPU_STEP_KINDS,
  PULLED_KINDS,
  DEFAULT_BACKOFF,
  DEFAULT_GRACE_SECONDS,
  DEFAULT_RETRY_ATTEMPTS,
  DEFAULT_STALL_TIMEOUT_SECONDS,
  DEFAULT_GPUS_PER_NODE_MAX,
  Defaults,
  KubernetesRequest,
  Metadata,
  Payload,
  PipelineSpec,
  PvcMount,
  ResourceRequest,
  RetryRequest,
  RUN_ID_SUFFIX_LENGTH,
  RunSpecDocument,
  SecretRef,
  SingleStageSpec,
  Stage,
  Toleration,
  defaultKubernetes,
  isDnsLabel,
  isLabelKey,
  isLabelValue,
  isReservedLabelKey,
  isReservedPodEnv,
  jobNameFor,
} from './schema.js';
import type {
  NormalizedKubernetes,
  NormalizedSpec,
  NormalizedStage,
  Resources,
  StageKind,
} from './schema.js';

/** Outputs every pulled stage has without declaring them (controller.ts, plan.ts). */
export const PULLED_OUTPUTS = ['shards', 'dir'] as const;

/** A spec larger than this is refused before it is read. */
export const DEFAULT_MAX_SPEC_BYTES = 1024 * 1024;
/** Alias expansions allowed while converting YAML to values (yaml's own default, kept explicit). */
export const MAX_ALIAS_COUNT = 100;

/** The stage a one-stage kind becomes. */
export const SINGLE_STAGE: Record<
  'TrainingRun' | 'SelfPlay' | 'Evaluation',
  { name: string; kind: StageKind }
> = {
  TrainingRun: { name: 'train', kind: 'train' },
  SelfPlay: { name: 'generate', kind: 'generate' },
  Evaluation: { name: 'evaluate', kind: 'evaluate' },
};

export interface ParseSpecOptions {
  /** Shown in error messages. */
  file?: string;
  /** `--set path=value` overrides, applied in order. */
  sets?: string[];
}

export interface LoadSpecOptions {
  sets?: string[];
  /** Default DEFAULT_MAX_SPEC_BYTES. */
  maxBytes?: number;
}

type Segment = string | number;
type Path = Segment[];
type Json = unknown;

// ---------------------------------------------------------------------------------------
// Entry points

/** Reads a spec file (refusing a large one before reading it) and parses it. */
export async function loadSpecFile(
  file: string,
  opts: LoadSpecOptions = {},
): Promise<NormalizedSpec> {
  const text = await readBounded(file, opts.maxBytes ?? DEFAULT_MAX_SPEC_BYTES);
  return parseSpec(text, { file, ...(opts.sets ? { sets: opts.sets } : {}) });
}

/** Parses, overrides, validates and normalises a spec. Throws SpecError with every problem. */
export function parseSpec(text: string, opts: ParseSpecOptions = {}): NormalizedSpec {
  const fail = (message: string, line?: number, column?: number): never => {
    throw new SpecError(
      [{ path: '', message, ...(line === undefined ? {} : { line, column }) }],
      opts.file,
    );
  };
  if (text.trim() === '') fail('the file is empty');

  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    merge: true,
    uniqueKeys: true,
  });
  const issues = new IssueList(doc, lineCounter);
  for (const err of [...doc.errors, ...doc.warnings]) {
    const { line, col } = lineCounter.linePos(err.pos[0]);
    // Only a duplicate key has a path worth naming; a syntax error has a line, not a path.
    const path = err.code === 'DUPLICATE_KEY' ? pathAtOffset(doc, err.pos[0]) : [];
    issues.addAt(path, yamlMessage(err.code, err.message), line, col);
  }
  if (issues.length) throw new SpecError(issues.sorted(), opts.file);
  if (doc.contents === null) fail('the file is empty (it holds only comments)');

  let raw: Json;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    fail(
      /excessive alias count/i.test(message)
        ? `aliases expand to too many values (more than ${MAX_ALIAS_COUNT}): this looks like a YAML bomb ("billion laughs"), refused`
        : message,
    );
  }
  if (!isPlainObject(raw)) {
    fail(
      `the top level must be a mapping with apiVersion, kind, metadata and spec, not ${describeValue(raw)}`,
      1,
      1,
    );
  }
  const unsafeKeys: Path[] = [];
  const root = cloneJson(raw, [], unsafeKeys) as Record<string, Json>;
  for (const path of unsafeKeys)
    issues.add(path, `"${String(path[path.length - 1])}" is not allowed as a key`, { atKey: true });

  for (const set of opts.sets ?? []) {
    const problem = applySet(root, set);
    if (typeof problem === 'string') issues.add([], `--set ${set}: ${problem}`, { noLine: true });
    else if (problem.error)
      issues.add(problem.path, `--set ${set}: ${problem.error}`, { noLine: true });
    else issues.markSet(problem.path);
  }

  const parsed = RunSpecDocument.safeParse(root);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) addSchemaIssue(issues, issue, root);
    if (parsed.error.issues.some((i) => i.path.length === 1 && i.path[0] === 'kind')) {
      // An unknown kind stops the union before anything else is checked: check the header alone.
      const header = HeaderOnly.safeParse({
        apiVersion: root['apiVersion'],
        metadata: root['metadata'],
      });
      if (!header.success)
        for (const issue of header.error.issues) addSchemaIssue(issues, issue, root);
    }
  }
  checkGraph(root, issues);

  if (issues.length || !parsed.success) throw new SpecError(issues.sorted(), opts.file);
  return normalize(parsed.data);
}

// ---------------------------------------------------------------------------------------
// Reading

async function readBounded(file: string, maxBytes: number): Promise<string> {
  const refuse = (message: string): never => {
    throw new SpecError([{ path: '', message }], file);
  };
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return refuse('no such file');
    if (code === 'EACCES' || code === 'EPERM') return refuse('permission denied');
    return refuse(`cannot open the file: ${(err as Error).message}`);
  }
  try {
    // fstat on the open handle: the size of the file we will read, not of one swapped in.
    const stat = await handle.stat();
    if (stat.isDirectory()) refuse('is a directory, not a spec file');
    if (stat.isFile() && stat.size > maxBytes) {
      refuse(
        `the file is ${formatBytes(stat.size)}, larger than the ${formatBytes(maxBytes)} a spec may be`,
      );
    }
    // Read at most maxBytes + 1 even so: a pipe has no size, and a file can grow.
    const chunks: Buffer[] = [];
    let total = 0;
    const chunk = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(
        chunk,
        0,
        Math.min(chunk.length, maxBytes + 1 - total),
        null,
      );
      if (bytesRead === 0) break;
      chunks.push(Buffer.from(chunk.subarray(0, bytesRead)));
      total += bytesRead;
      if (total > maxBytes)
        refuse(`the file is larger than the ${formatBytes(maxBytes)} a spec may be`);
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await handle.close();
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

function yamlMessage(code: string, message: string): string {
  switch (code) {
    case 'MULTIPLE_DOCS':
      return 'the file holds more than one YAML document (a second "---"): a spec is exactly one';
    case 'DUPLICATE_KEY':
      return 'duplicate key: each key may appear once in a mapping';
    case 'TAG_RESOLVE_FAILED':
      return `${message} (specs use plain YAML values, no custom tags)`;
    default:
      return `not valid YAML: ${message}`;
  }
}

// ---------------------------------------------------------------------------------------
// Paths and lines

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;
/** A key that, assigned, would replace an object's prototype. */
const UNSAFE_KEYS: ReadonlySet<string> = new Set(['__proto__']);

/** `['spec', 'stages', 1, 'dependsOn', 0]` -> `spec.stages[1].dependsOn[0]`. */
export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

const startsWith = (path: Path, prefix: Path): boolean =>
  prefix.length <= path.length && prefix.every((seg, i) => String(seg) === String(path[i]));

/** Collects issues, finds their lines in the YAML source, drops duplicates. */
class IssueList {
  private readonly issues: SpecIssue[] = [];
  private readonly seen = new Set<string>();
  private readonly setPaths: Path[] = [];

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lineCounter: LineCounter,
  ) {}

  get length(): number {
    return this.issues.length;
  }

  /** Values at or under `path` came from a --set: they have no line. */
  markSet(path: Path): void {
    this.setPaths.push(path);
  }

  /**
   * `atKey`: point at the key (an unknown field, a bad key) rather than its value. A path
   * not found in the source points at its nearest ancestor (the mapping that lacks a
   * required field), unless a --set made it.
   */
  add(path: Path, message: string, opts: { atKey?: boolean; noLine?: boolean } = {}): void {
    let line: number | undefined;
    let column: number | undefined;
    const fromSet = this.setPaths.some((p) => startsWith(path, p) || startsWith(p, path));
    const found = opts.noLine ? undefined : nodeAt(this.doc, path, opts.atKey ?? false);
    const overridden = this.setPaths.some((p) => startsWith(path, p));
    if (found && !overridden && (found.exact || !fromSet)) {
      const offset = found.node.range?.[0];
      if (offset !== undefined) {
        const pos = this.lineCounter.linePos(offset);
        line = pos.line;
        column = pos.col;
      }
    }
    this.addAt(path, message, line, column);
  }

  addAt(path: Path, message: string, line?: number, column?: number): void {
    const formatted = formatPath(path);
    const key = `${formatted}\u0000${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.issues.push({ path: formatted, message, ...(line === undefined ? {} : { line, column }) });
  }

  /** By position in the file; problems without a line (from --set) last, in order found. */
  sorted(): SpecIssue[] {
    const pos = (i: SpecIssue): number =>
      i.line === undefined ? Infinity : i.line * 1e6 + (i.column ?? 0);
    return [...this.issues].sort((a, b) => pos(a) - pos(b));
  }
}

function scalarKey(node: unknown): string | undefined {
  return isScalar(node) ? String(node.value) : undefined;
}

/** The YAML node at `path`, or its nearest ancestor (exact: false). */
function nodeAt(
  doc: Document.Parsed,
  path: Path,
  atKey: boolean,
): { node: YamlNode; exact: boolean } | undefined {
  let node: YamlNode | null = doc.contents;
  if (!node) return undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i] as Segment;
    const last = i === path.length - 1;
    let next: YamlNode | null | undefined;
    let target: unknown = node;
    for (let hops = 0; isAlias(target) && hops < 10; hops++) target = target.resolve(doc);
    if (isMap(target)) {
      const pair = findPair(doc, target, String(seg), 0);
      if (pair)
        next =
          last && atKey
            ? (pair.key as YamlNode)
            : ((pair.value as YamlNode | null) ?? (pair.key as YamlNode));
    } else if (isSeq(target) && typeof seg === 'number') {
      next = target.items[seg] as YamlNode | undefined;
    }
    if (!next) return { node, exact: false };
    node = next;
  }
  return { node, exact: true };
}

/** A key's pair in a mapping, looking through merge keys (`<<: *base`). */
function findPair(
  doc: Document.Parsed,
  map: unknown,
  key: string,
  depth: number,
): Pair<unknown, unknown> | undefined {
  if (!isMap(map) || depth > 5) return undefined;
  const own = map.items.find((p) => scalarKey(p.key) === key);
  if (own) return own;
  for (const pair of map.items) {
    if (scalarKey(pair.key) !== '<<') continue;
    const sources = isSeq(pair.value) ? pair.value.items : [pair.value];
    for (const source of sources) {
      const resolved = isAlias(source) ? source.resolve(doc) : source;
      const found: Pair<unknown, unknown> | undefined = findPair(doc, resolved, key, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/** The path of the innermost node holding `offset`: where a duplicate key is. */
function pathAtOffset(doc: Document.Parsed, offset: number): Path {
  const path: Path = [];
  let node: unknown = doc.contents;
  const holds = (n: unknown): boolean => {
    const range = (n as ParsedNode | null)?.range;
    return !!range && range[0] <= offset && offset < Math.max(range[2], range[0] + 1);
  };
  for (let depth = 0; depth < 100; depth++) {
    if (isMap(node)) {
      const pair = node.items.find((p) => holds(p.key) || holds(p.value));
      const key = pair && scalarKey(pair.key);
      if (!pair || key === undefined) break;
      path.push(key);
      if (holds(pair.key)) break;
      node = pair.value;
    } else if (isSeq(node)) {
      const index = node.items.findIndex((item) => holds(item));
      if (index < 0) break;
      path.push(index);
      node = node.items[index];
    } else break;
  }
  return path;
}

// ---------------------------------------------------------------------------------------
// --set overrides

type SetToken = { key: string } | { index: number } | { numeric: string };

/**
 * `spec.stages[0].payload.env.SEED=3`: a dotted path whose segments may be numeric
 * (`spec.stages.0`: an index into a list, a key in a mapping), with `[i]` indices and
 * `["quoted.key"]` for keys holding dots. The value is YAML: `100` is a number, `[a, b]` a
 * list, `"100"` a string, nothing at all an empty string.
 */
export function parseSetExpression(
  expression: string,
): { tokens: SetToken[]; value: Json } | string {
  const eq = expression.indexOf('=');
  if (eq < 0) return 'expected path=value (e.g. spec.params.steps=100)';
  const pathText = expression.slice(0, eq).trim();
  const valueText = expression.slice(eq + 1);
  const tokens: SetToken[] = [];
  let i = 0;
  let expectSegment = true;
  while (i < pathText.length) {
    const ch = pathText[i];
    if (ch === '[') {
      const close = pathText.indexOf(']', i);
      if (close < 0) return `"${pathText}": "[" without "]"`;
      const inner = pathText.slice(i + 1, close);
      if (/^\d+$/.test(inner)) tokens.push({ index: Number(inner) });
      else if (/^"(?:[^"\\]|\\.)*"$/.test(inner)) tokens.push({ key: JSON.parse(inner) as string });
      else return `"${pathText}": [${inner}] is neither an index nor a quoted key`;
      i = close + 1;
      expectSegment = false;
    } else if (ch === '.') {
      if (expectSegment) return `"${pathText}": empty path segment`;
      expectSegment = true;
      i += 1;
    } else {
      if (!expectSegment) return `"${pathText}": expected "." or "[" before "${pathText.slice(i)}"`;
      const m = /^[^.[\]]+/.exec(pathText.slice(i));
      const seg = m?.[0] ?? '';
      tokens.push(/^\d+$/.test(seg) ? { numeric: seg } : { key: seg });
      i += seg.length;
      expectSegment = false;
    }
  }
  if (tokens.length === 0) return 'the path before "=" is empty';
  if (expectSegment) return `"${pathText}": ends with "."`;
  const unsafe = tokens.find((t) => 'key' in t && UNSAFE_KEYS.has(t.key));
  if (unsafe) return `"${pathText}": "${(unsafe as { key: string }).key}" is not a spec field`;

  let value: Json = '';
  if (valueText.trim() !== '') {
    const doc = parseDocument(valueText, { prettyErrors: false, uniqueKeys: true });
    const err = doc.errors[0];
    if (err) return `the value is not valid YAML: ${err.message}`;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      return `the value is not valid YAML: ${(e as Error).message}`;
    }
  }
  return { tokens, value };
}

/**
 * Applies one --set to `root` in place. Returns the path it wrote, or an error: a
 * string when the expression itself is malformed, `{path, error}` when the path cannot
 * be followed. Missing (or null) intermediate mappings are created; an index must name
 * an existing list item.
 */
function applySet(
  root: Record<string, Json>,
  expression: string,
): string | { path: Path; error?: string } {
  const parsed = parseSetExpression(expression);
  if (typeof parsed === 'string') return parsed;
  const path: Path = [];
  let container: Json = root;
  for (let t = 0; t < parsed.tokens.length; t++) {
    const token = parsed.tokens[t] as SetToken;
    const last = t === parsed.tokens.length - 1;
    const where = formatPath(path) || 'the top level';
    let seg: Segment;
    if (Array.isArray(container)) {
      if ('key' in token) return { path, error: `${where} is a list: index it with a number` };
      const index = 'index' in token ? token.index : Number(token.numeric);
      if (index >= container.length) {
        return {
          path: [...path, index],
          error: `${where} has ${container.length} item(s): index ${index} is beyond its end`,
        };
      }
      seg = index;
    } else if (isPlainObject(container)) {
      if ('index' in token)
        return {
          path,
          error: `${where} is a mapping, not a list: [${token.index}] cannot index it`,
        };
      seg = 'key' in token ? token.key : token.numeric;
    } else {
      return { path, error: `${where} is ${describeValue(container)}, which cannot be indexed` };
    }
    path.push(seg);
    const holder = container as Record<string | number, Json>;
    if (last) {
      holder[seg] = parsed.value;
      break;
    }
    const next = Object.hasOwn(holder, seg) ? holder[seg] : undefined;
    if (next === undefined || next === null) {
      const following = parsed.tokens[t + 1] as SetToken;
      if ('index' in following)
        return { path, error: `${formatPath(path)} does not exist, so it cannot be indexed` };
      holder[seg] = {};
    }
    container = holder[seg];
  }
  return { path };
}

// ---------------------------------------------------------------------------------------
// Schema issues

/** Kind unknown: the header is still worth checking. */
const HeaderOnly = RunSpecDocument.options[0].pick({ apiVersion: true, metadata: true });

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

const KINDS = ['Pipeline', 'TrainingRun', 'SelfPlay', 'Evaluation'];

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

function fieldHint(key: string, parent: Path): string {
  if (key === 'stages' || key === 'defaults') return ' (only kind: Pipeline has it)';
  const home = Object.hasOwn(BELONGS_UNDER, key) ? BELONGS_UNDER[key] : undefined;
  if (home !== undefined && parent[parent.length - 1] !== home)
    return ` (it belongs under ${home})`;
  const close = suggest(key, KNOWN_FIELDS);
  return close ? ` (did you mean "${close}"?)` : '';
}

function addSchemaIssue(issues: IssueList, issue: z.core.$ZodIssue, root: Json): void {
  const path = issue.path.filter((s): s is Segment => typeof s !== 'symbol');
  const value = valueAt(root, path);
  switch (issue.code) {
    case 'unrecognized_keys':
      for (const key of issue.keys) {
        issues.add([...path, key], `unknown field "${key}"${fieldHint(key, path)}`, {
          atKey: true,
        });
      }
      return;
    case 'invalid_key': {
      const why = issue.issues.map((i) => i.message).join('; ');
      issues.add(path, `"${String(path[path.length - 1])}" is not a valid key: ${why}`, {
        atKey: true,
      });
      return;
    }
    case 'invalid_union': {
      if (path.length === 1 && path[0] === 'kind') {
        const hint = typeof value === 'string' ? suggest(value, KINDS) : undefined;
        const got = value === undefined ? 'it is missing' : `got ${JSON.stringify(value)}`;
        issues.add(
          path,
          `must be one of ${KINDS.join(', ')} (${got})${hint ? `; did you mean "${hint}"?` : ''}`,
        );
        return;
      }
      // A branch that accepted the type but not the value says the most ("10 minutes" is not a duration).
      const refined = issue.errors.flat().filter((i) => i.code !== 'invalid_type');
      if (
        refined.length &&
        issue.errors.some((branch) => branch.every((i) => i.code !== 'invalid_type'))
      ) {
        for (const inner of refined)
          issues.add(
            [...path, ...inner.path.filter((s): s is Segment => typeof s !== 'symbol')],
            inner.message,
          );
        return;
      }
      const expected = issue.errors
        .flat()
        .filter((i) => i.code === 'invalid_type' && i.path.length === 0)
        .map((i) => typeName((i as { expected: string }).expected));
      issues.add(path, expectation([...new Set(expected)].join(' or ') || 'another value', value));
      return;
    }
    case 'invalid_type':
      if (issue.message.startsWith('Invalid input')) {
        issues.add(path, expectation(typeName(issue.expected), value));
        return;
      }
      break;
    case 'invalid_value':
      if (issue.message.startsWith('Invalid option') || issue.message.startsWith('Invalid input')) {
        const options = issue.values.map((v) => String(v));
        const hint = typeof value === 'string' ? suggest(value, options) : undefined;
        issues.add(
          path,
          `${expectation(`one of ${options.join(', ')}`, value)}${hint ? `; did you mean "${hint}"?` : ''}`,
        );
        return;
      }
      break;
    case 'invalid_format':
      if (typeof value === 'string') {
        issues.add(path, `${issue.message} (got ${JSON.stringify(value)})`);
        return;
      }
      break;
    case 'too_small':
    case 'too_big':
      if (/^Too (small|big)/.test(issue.message)) {
        const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
        const word = issue.code === 'too_small' ? 'at least' : 'at most';
        const what =
          issue.origin === 'array' ? ' item(s)' : issue.origin === 'string' ? ' character(s)' : '';
        issues.add(path, `must be ${word} ${String(bound)}${what} (got ${JSON.stringify(value)})`);
        return;
      }
      break;
    default:
      break;
  }
  issues.add(path, issue.message);
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

function describeValue(value: Json): string {
  if (value === null) return 'nothing (null)';
  if (Array.isArray(value)) return 'a list';
  if (isPlainObject(value)) return 'a mapping';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean')
    return `${typeof value} ${String(value)}`;
  return typeof value;
}

function valueAt(root: Json, path: Path): Json {
  let node: Json = root;
  for (const seg of path) {
    if (Array.isArray(node) && typeof seg === 'number') node = node[seg];
    else if (isPlainObject(node) && Object.hasOwn(node, String(seg))) node = node[String(seg)];
    else return undefined;
  }
  return node;
}

/** The closest candidate within a small edit distance, for "did you mean". */
function suggest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.min(3, Math.ceil(word.length / 3)));
  for (const c of candidates) {
    if (c === word) continue;
    const d = c.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, c);
    if (d <= bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Edit distance counting a swap of neighbours as one edit ("trian" -> "train"). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  const rows: number[][] = [Array.from({ length: b.length + 1 }, (_, j) => j)];
  for (let i = 1; i <= a.length; i++) {
    const prev = rows[i - 1] as number[];
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, (rows[i - 2]?.[j - 2] ?? 0) + 1);
      cur[j] = d;
    }
    rows.push(cur);
  }
  return rows[a.length]?.[b.length] ?? 99;
}

// ---------------------------------------------------------------------------------------
// Graph checks, on the raw value (lenient: whatever is ill-typed the schema reports)

interface StageView {
  base: Path;
  name: string | undefined;
  kind: string | undefined;
  dependsOn: { name: string; path: Path }[];
  outputs: Set<string>;
  templates: {
    path: Path;
    text: string;
    field: 'command' | 'env' | 'outputs' | 'workingDir' | 'input';
  }[];
  envKeys: Set<string>;
  envPaths: Map<string, Path>;
  secretNames: Map<string, Path>;
  resources: Record<string, Json>;
  raw: Record<string, Json>;
}

function checkGraph(root: Record<string, Json>, issues: IssueList): void {
  checkRunLabels(root, issues);
  const spec = root['spec'];
  if (!isPlainObject(spec)) return;
  const kind = root['kind'];
  const single =
    typeof kind === 'string' && Object.hasOwn(SINGLE_STAGE, kind)
      ? SINGLE_STAGE[kind as keyof typeof SINGLE_STAGE]
      : undefined;
  const defaults = isPlainObject(spec['defaults']) ? spec['defaults'] : {};
  const defaultEnv = isPlainObject(defaults['env']) ? defaults['env'] : {};

  let stages: StageView[];
  if (single) stages = [viewStage(spec, ['spec'], single.name, single.kind, {})];
  else if (Array.isArray(spec['stages'])) {
    stages = spec['stages'].flatMap((s, i) =>
      isPlainObject(s)
        ? [viewStage(s, ['spec', 'stages', i], s['name'], s['kind'], defaultEnv)]
        : [],
    );
  } else return;
  const params = isPlainObject(spec['params']) ? spec['params'] : {};

  // Names: the first stage with a name owns it.
  const byName = new Map<string, StageView>();
  for (const stage of stages) {
    if (stage.name === undefined) continue;
    const first = byName.get(stage.name);
    if (first)
      issues.add(
        [...stage.base, 'name'],
        `stage name "${stage.name}" is already used by ${formatPath(first.base)}`,
      );
    else byName.set(stage.name, stage);
  }

  // dependsOn: known, not self; the graph keeps only valid edges.
  const edges = new Map<string, string[]>();
  for (const stage of stages) {
    if (stage.name === undefined || byName.get(stage.name) !== stage) continue;
    const deps: string[] = [];
    for (const dep of stage.dependsOn) {
      if (dep.name === stage.name) issues.add(dep.path, `stage "${stage.name}" depends on itself`);
      else if (!byName.has(dep.name)) {
        const hint = suggest(dep.name, byName.keys());
        issues.add(
          dep.path,
          `dependsOn names stage "${dep.name}", which does not exist${hint ? ` (did you mean "${hint}"?)` : ''}`,
        );
      } else deps.push(dep.name);
    }
    edges.set(stage.name, deps);
  }
  for (const cycle of findCycles(edges)) {
    const first = byName.get(cycle[0] as string);
    if (first)
      issues.add([...first.base, 'dependsOn'], `dependsOn forms a cycle: ${cycle.join(' -> ')}`);
  }

  // Defaults apply to every stage: they cannot name one stage's upstream outputs.
  for (const [key, text] of Object.entries(defaultEnv)) {
    if (typeof text !== 'string') continue;
    const path = ['spec', 'defaults', 'env', key];
    for (const e of findReferences(text).errors) issues.add(path, e.message);
    for (const ref of findReferences(text).references) {
      if (ref.kind === 'stageOutput') {
        issues.add(
          path,
          `${ref.text}: spec.defaults.env applies to every stage, so it cannot read one stage's outputs; set it in the stages that need it`,
        );
      } else if (ref.kind === 'env') {
        issues.add(
          path,
          `${ref.text}: env values cannot use \${env.*} (use it in command, workingDir or outputs)`,
        );
      } else if (ref.kind === 'param' && !Object.hasOwn(params, ref.name)) {
        issues.add(path, unknownParam(ref.text, ref.name, params));
      }
    }
  }

  for (const stage of stages) {
    const upstream = stage.name === undefined ? new Set<string>() : closure(stage.name, edges);
    for (const t of stage.templates) {
      const found = findReferences(t.text);
      for (const e of found.errors) issues.add(t.path, e.message);
      for (const ref of found.references) {
        const problem = checkReference(ref, t.field, stage, upstream, byName, params);
        if (problem) issues.add(t.path, problem);
      }
    }
    for (const [name, path] of stage.secretNames) {
      if (stage.envPaths.has(name))
        issues.add(
          path,
          `"${name}" is set in payload.env too: a variable is either plain env or a secret`,
        );
    }
    checkPulled(stage, issues);
    checkKubernetes(stage, defaults, root['metadata'], issues);
    if (stage.kind !== undefined && CPU_STEP_KINDS.has(stage.kind as StageKind)) {
      const { gpus, nodes } = stage.resources;
      if (typeof gpus === 'number' && gpus > 0) {
        issues.add(
          [...stage.base, 'resources', 'gpus'],
          `a ${stage.kind} stage cannot request GPUs: CPU steps run on one node without GPUs`,
        );
      }
      if (typeof nodes === 'number' && nodes > 1) {
        issues.add(
          [...stage.base, 'resources', 'nodes'],
          `a ${stage.kind} stage cannot span nodes: CPU steps run on one node without GPUs`,
        );
      }
    }
  }
}

/** A pulled stage has both an input and a pool, and is a generate or evaluate stage. */
function checkPulled(stage: StageView, issues: IssueList): void {
  const { raw, base } = stage;
  const hasInput = raw['input'] !== undefined;
  const pool = raw['pool'];
  if (!hasInput && pool === undefined) return;
  if (stage.kind !== undefined && !PULLED_KINDS.has(stage.kind as StageKind)) {
    issues.add(
      [...base, hasInput ? 'input' : 'pool'],
      `a ${stage.kind} stage is dispatched as one task; only generate and evaluate stages can be sharded over a pool`,
    );
    return;
  }
  if (hasInput && pool === undefined) {
    issues.add(
      [...base, 'pool'],
      'a sharded input needs a pool: {name, maxReplicas} of the workers that run its shards',
    );
  }
  if (!hasInput && pool !== undefined) {
    issues.add(
      [...base, 'input'],
      'a pool needs a sharded input: {file, shardSize} or {shards: [...]}',
    );
  }
  const input = raw['input'];
  if (isPlainObject(input)) {
    const hasFile = input['file'] !== undefined;
    const hasShards = input['shards'] !== undefined;
    if (hasFile === hasShards) {
      issues.add(
        [...base, 'input'],
        'give either file (with shardSize) or shards, not both and not neither',
      );
    }
    if (hasFile && input['shardSize'] === undefined) {
      issues.add(
        [...base, 'input', 'shardSize'],
        'a JSONL input file needs shardSize: the lines per shard',
      );
    }
    if (hasShards && input['shardSize'] !== undefined) {
      issues.add(
        [...base, 'input', 'shardSize'],
        'shardSize applies to an input file, not to a list of shards',
      );
    }
  }
  if (isPlainObject(pool)) {
    const min = pool['minReplicas'];
    const max = pool['maxReplicas'];
    const replicas = pool['replicas'];
    if (typeof min === 'number' && typeof max === 'number' && min > max) {
      issues.add(
        [...base, 'pool', 'minReplicas'],
        `minReplicas (${min}) is more than maxReplicas (${max})`,
      );
    }
    if (typeof replicas === 'number' && typeof max === 'number' && replicas > max) {
      issues.add(
        [...base, 'pool', 'replicas'],
        `replicas (${replicas}) is more than maxReplicas (${max})`,
      );
    }
    if (typeof replicas === 'number' && typeof min === 'number' && replicas < min) {
      issues.add(
        [...base, 'pool', 'replicas'],
        `replicas (${replicas}) is less than minReplicas (${min})`,
      );
    }
  }
}

/**
 * Shapes the kubernetes backend cannot run, refused at submit rather than found when a
 * pod never schedules. Each issue is at the path its value came from (the stage's own,
 * else spec.defaults'):
 *
 *   - `nodes` > 1 without GPUs: refused unless `kubernetes.cpuDistributed: true` (CPU
 *     training over gloo, one process per node); a forgotten `gpus` is the likelier cause.
 *   - `gpus` (per node) above `kubernetes.gpusPerNodeMax` (default 8), for the stage and
 *     for its pool's workers: such a pod never schedules.
 *   - names over Kubernetes' limits, computed with the builders' own functions
 *     (schema.ts) for the longest case the spec allows: the run id's full suffix, the
 *     last attempt, the last node's index. Job names are cut to fit with a hash
 *     (jobNameFor), so what can still overflow is a gang's pod hostnames
 *     `${job}-${index}` (10,000 nodes or more) or a run id used as a label value.
 *   - secretEnv variables that would shadow what the backend sets in the pod (STOKER_*,
 *     PET_*, the rank variables, REDIS_URL).
 *   - a PVC mounted at /dev/shm, or two at the same path.
 */
function checkKubernetes(
  stage: StageView,
  defaults: Record<string, Json>,
  metadata: Json,
  issues: IssueList,
): void {
  const { raw, base } = stage;
  const cpuStep = stage.kind !== undefined && CPU_STEP_KINDS.has(stage.kind as StageKind);
  const pulled = raw['input'] !== undefined || raw['pool'] !== undefined;
  const defaultResources = isPlainObject(defaults['resources']) ? defaults['resources'] : {};
  const mine = isPlainObject(raw['kubernetes']) ? raw['kubernetes'] : {};
  const inherited = isPlainObject(defaults['kubernetes']) ? defaults['kubernetes'] : {};
  const resource = (key: 'gpus' | 'nodes'): { value: number; path: Path } | undefined => {
    const own = stage.resources[key];
    if (typeof own === 'number') return { value: own, path: [...base, 'resources', key] };
    const d = defaultResources[key];
    if (!cpuStep && typeof d === 'number')
      return { value: d, path: ['spec', 'defaults', 'resources', key] };
    return undefined;
  };
  const setting = (key: string): Json => mine[key] ?? inherited[key];

  const gpus = resource('gpus');
  const nodes = resource('nodes');
  const gpuCount = gpus?.value ?? 0;
  const nodeCount = nodes?.value ?? 1;
  const maxSetting = setting('gpusPerNodeMax');
  const maxGpus = typeof maxSetting === 'number' ? maxSetting : DEFAULT_GPUS_PER_NODE_MAX;
  const cpuDistributed = setting('cpuDistributed') === true;

  if (!cpuStep && !pulled && nodes && nodeCount > 1 && gpuCount === 0 && !cpuDistributed) {
    issues.add(
      nodes.path,
      `nodes: ${nodeCount} with no GPUs: a multi-node stage runs its processes on each node's GPUs; give the GPUs per node (e.g. gpus: 8), or set kubernetes.cpuDistributed: true for CPU training over gloo`,
    );
  }
  if (mine['cpuDistributed'] === true && gpuCount > 0) {
    issues.add(
      [...base, 'kubernetes', 'cpuDistributed'],
      `cpuDistributed is for multi-node stages without GPUs (this one has gpus: ${gpuCount})`,
    );
  }
  const tooMany = (count: number): string => {
    const n = Math.ceil(count / maxGpus);
    return `gpus is per node: ${count} GPUs on one node is more than kubernetes.gpusPerNodeMax (${maxGpus}), so the pod would never schedule; for ${count} GPUs in all use nodes: ${n} with gpus: ${Math.ceil(count / n)}`;
  };
  if (gpus && gpuCount > maxGpus) issues.add(gpus.path, tooMany(gpuCount));
  const gpuType = stage.resources['gpuType'] ?? (cpuStep ? undefined : defaultResources['gpuType']);
  if (gpuCount > 0 && typeof gpuType === 'string' && !isLabelValue(gpuType)) {
    issues.add(
      stage.resources['gpuType'] === undefined
        ? ['spec', 'defaults', 'resources', 'gpuType']
        : [...base, 'resources', 'gpuType'],
      `gpuType "${gpuType}" cannot select nodes: a short name such as h100, or a node label value (letters, digits, "-", "_", ".")`,
    );
  }
  const pool = isPlainObject(raw['pool']) ? raw['pool'] : {};
  const poolResources = isPlainObject(pool['resources']) ? pool['resources'] : {};
  if (typeof poolResources['gpus'] === 'number' && poolResources['gpus'] > maxGpus)
    issues.add([...base, 'pool', 'resources', 'gpus'], tooMany(poolResources['gpus']));

  const runName = isPlainObject(metadata) ? metadata['name'] : undefined;
  if (typeof runName === 'string' && stage.name !== undefined) {
    // The longest id makeRunId can give this name (same length as any other).
    const runId = `${runName}-99991231-235959-ffffff`;
    if (runId.length !== runName.length + RUN_ID_SUFFIX_LENGTH || !isLabelValue(runId)) {
      issues.add(
        ['metadata', 'name'],
        `run ids ("${runId}") must be Kubernetes label values of at most 63 characters: shorten the name`,
      );
    }
    if (!pulled && nodeCount > 1 && nodes) {
      const retry = isPlainObject(raw['retry']) ? raw['retry'] : {};
      const defaultRetry = isPlainObject(defaults['retry']) ? defaults['retry'] : {};
      const attempts = retry['attempts'] ?? defaultRetry['attempts'];
      // The task id as orchestrator/store.ts's taskIdFor makes it.
      const job = jobNameFor(
        `${runId}.${stage.name}`,
        typeof attempts === 'number' ? attempts : DEFAULT_RETRY_ATTEMPTS,
      );
      const host = `${job}-${nodeCount - 1}`;
      if (!isDnsLabel(host)) {
        issues.add(
          nodes.path,
          `nodes: ${nodeCount}: the last pod's hostname "${host}" would be longer than the 63 characters Kubernetes allows`,
        );
      }
    }
  }

  const payload = isPlainObject(raw['payload']) ? raw['payload'] : {};
  if (Array.isArray(payload['secretEnv'])) {
    payload['secretEnv'].forEach((entry, i) => {
      if (!isPlainObject(entry)) return;
      for (const field of ['name', 'fromEnv']) {
        const v = entry[field];
        if (typeof v === 'string' && isReservedPodEnv(v)) {
          issues.add(
            [...base, 'payload', 'secretEnv', i, field],
            `"${v}" is a variable stoker sets in the worker's environment (STOKER_*, PET_*, the rank variables, REDIS_URL): use another name`,
          );
        }
      }
    });
  }

  const shm = setting('volumes');
  const shmSize = isPlainObject(shm) ? shm['shmSize'] : undefined;
  for (const [owner, where] of [
    [mine, [...base, 'kubernetes']],
    [inherited, ['spec', 'defaults', 'kubernetes']],
  ] as const) {
    const volumes = isPlainObject(owner['volumes']) ? owner['volumes'] : {};
    if (!Array.isArray(volumes['pvc'])) continue;
    const seen = new Set<string>();
    volumes['pvc'].forEach((m, j) => {
      const mountPath = isPlainObject(m) ? m['mountPath'] : undefined;
      if (typeof mountPath !== 'string') return;
      const path = [...where, 'volumes', 'pvc', j, 'mountPath'];
      const normalized = mountPath.replace(/\/+$/, '') || '/';
      if (seen.has(normalized)) issues.add(path, `${mountPath} is mounted twice`);
      else if (normalized === '/dev/shm' || normalized.startsWith('/dev/shm/'))
        issues.add(
          path,
          `/dev/shm is the memory-backed volume of volumes.shmSize${shmSize === false ? '' : ' (set shmSize: false to mount something else there)'}`,
        );
      seen.add(normalized);
    });
  }
}

/**
 * The run's metadata.labels go onto its Jobs and pods (cost allocation by team, say), so
 * they must be Kubernetes labels, and not ones stoker, Kubernetes or Kueue set.
 */
function checkRunLabels(root: Record<string, Json>, issues: IssueList): void {
  const metadata = root['metadata'];
  const labels = isPlainObject(metadata) ? metadata['labels'] : undefined;
  if (!isPlainObject(labels)) return;
  for (const [key, value] of Object.entries(labels)) {
    const path = ['metadata', 'labels', key];
    if (!isLabelKey(key)) {
      issues.add(
        path,
        `"${key}" is not a Kubernetes label key (an optional DNS prefix and "/", then at most 63 letters, digits, "-", "_", "."): the run's labels go onto its pods`,
        { atKey: true },
      );
    } else if (isReservedLabelKey(key)) {
      const hint = key.startsWith('kueue.x-k8s.io/')
        ? ' (for a Kueue queue use kubernetes.queueName)'
        : '';
      issues.add(path, `"${key}" is a label stoker sets on the run's objects${hint}`, {
        atKey: true,
      });
    }
    if (typeof value === 'string' && !isLabelValue(value)) {
      issues.add(
        path,
        `not a Kubernetes label value (at most 63 letters, digits, "-", "_", ".", starting and ending with a letter or digit): the run's labels go onto its pods`,
      );
    }
  }
}

function viewStage(
  raw: Record<string, Json>,
  base: Path,
  name: Json,
  kind: Json,
  defaultEnv: Record<string, Json>,
): StageView {
  const payload = isPlainObject(raw['payload']) ? raw['payload'] : {};
  const env = isPlainObject(payload['env']) ? payload['env'] : {};
  const outputs = isPlainObject(raw['outputs']) ? raw['outputs'] : {};
  const templates: StageView['templates'] = [];
  const command = payload['command'];
  if (Array.isArray(command)) {
    command.forEach((arg, i) => {
      if (typeof arg === 'string')
        templates.push({ path: [...base, 'payload', 'command', i], text: arg, field: 'command' });
    });
  }
  const envPaths = new Map<string, Path>();
  for (const key of Object.keys(defaultEnv)) envPaths.set(key, ['spec', 'defaults', 'env', key]);
  for (const [key, value] of Object.entries(env)) {
    envPaths.set(key, [...base, 'payload', 'env', key]);
    if (typeof value === 'string')
      templates.push({ path: [...base, 'payload', 'env', key], text: value, field: 'env' });
  }
  for (const [key, value] of Object.entries(outputs)) {
    if (typeof value === 'string')
      templates.push({ path: [...base, 'outputs', key], text: value, field: 'outputs' });
  }
  if (typeof payload['workingDir'] === 'string') {
    templates.push({
      path: [...base, 'payload', 'workingDir'],
      text: payload['workingDir'],
      field: 'workingDir',
    });
  }
  const input = isPlainObject(raw['input']) ? raw['input'] : {};
  if (typeof input['file'] === 'string') {
    templates.push({ path: [...base, 'input', 'file'], text: input['file'], field: 'input' });
  }
  if (Array.isArray(input['shards'])) {
    input['shards'].forEach((shard, i) => {
      if (typeof shard === 'string')
        templates.push({ path: [...base, 'input', 'shards', i], text: shard, field: 'input' });
    });
  }
  const secretNames = new Map<string, Path>();
  if (Array.isArray(payload['secretEnv'])) {
    payload['secretEnv'].forEach((s, i) => {
      if (isPlainObject(s) && typeof s['name'] === 'string')
        secretNames.set(s['name'], [...base, 'payload', 'secretEnv', i, 'name']);
    });
  }
  const dependsOn: StageView['dependsOn'] = [];
  if (Array.isArray(raw['dependsOn'])) {
    raw['dependsOn'].forEach((d, i) => {
      if (typeof d === 'string') dependsOn.push({ name: d, path: [...base, 'dependsOn', i] });
    });
  }
  return {
    base,
    name: typeof name === 'string' ? name : undefined,
    kind: typeof kind === 'string' ? kind : undefined,
    dependsOn,
    // A pulled stage (a pool and an input) also has the outputs the controller writes:
    // `shards` (the manifest of its succeeded shards) and `dir` (the shard outputs).
    outputs: new Set([
      ...Object.keys(outputs),
      ...(isPlainObject(raw['pool']) && isPlainObject(raw['input']) ? PULLED_OUTPUTS : []),
    ]),
    templates,
    envKeys: new Set(envPaths.keys()),
    envPaths,
    secretNames,
    resources: isPlainObject(raw['resources']) ? raw['resources'] : {},
    raw,
  };
}

function checkReference(
  ref: ReturnType<typeof findReferences>['references'][number],
  field: StageView['templates'][number]['field'],
  stage: StageView,
  upstream: Set<string>,
  byName: Map<string, StageView>,
  params: Record<string, Json>,
): string | undefined {
  switch (ref.kind) {
    case 'run':
    case 'stage':
      return undefined;
    case 'param':
      return Object.hasOwn(params, ref.name) ? undefined : unknownParam(ref.text, ref.name, params);
    case 'env':
      if (field === 'env')
        return `${ref.text}: env values cannot use \${env.*} (use it in command, workingDir or outputs)`;
      if (stage.secretNames.has(ref.name)) {
        return `${ref.text}: "${ref.name}" is a secret; secrets reach the payload only as environment variables, never in arguments or paths`;
      }
      if (!stage.envKeys.has(ref.name))
        return `${ref.text}: "${ref.name}" is not in this stage's payload.env (nor spec.defaults.env)`;
      return undefined;
    case 'stageOutput': {
      const target = byName.get(ref.stage);
      if (!target) {
        const hint = suggest(ref.stage, byName.keys());
        return `${ref.text}: stage "${ref.stage}" does not exist${hint ? ` (did you mean "${hint}"?)` : ''}`;
      }
      if (ref.stage === stage.name) {
        return `${ref.text}: a stage cannot read its own outputs (use \${stage.outputDir} or the path itself)`;
      }
      if (!upstream.has(ref.stage)) {
        return `${ref.text}: stage "${ref.stage}" is not upstream of "${stage.name ?? '?'}": add ${ref.stage} to dependsOn`;
      }
      if (!target.outputs.has(ref.output)) {
        const declared = [...target.outputs];
        return `${ref.text}: dangling reference: stage "${ref.stage}" declares no output "${ref.output}" (it declares ${declared.length ? declared.join(', ') : 'none'})`;
      }
      return undefined;
    }
  }
}

function unknownParam(text: string, name: string, params: Record<string, Json>): string {
  const known = Object.keys(params);
  return `${text}: no parameter "${name}" in spec.params (it has ${known.length ? known.join(', ') : 'none'})`;
}

/** Every stage reachable through dependsOn from `name` (not `name` itself, unless in a cycle). */
function closure(name: string, edges: Map<string, string[]>): Set<string> {
  const seen = new Set<string>();
  const stack = [...(edges.get(name) ?? [])];
  while (stack.length) {
    const next = stack.pop() as string;
    if (seen.has(next)) continue;
    seen.add(next);
    stack.push(...(edges.get(next) ?? []));
  }
  return seen;
}

/**
 * Cycles in the dependsOn graph, each as `[a, b, c, a]` (a depends on b ...), one per back
 * edge found by a depth-first search, each reported once whatever stage it was entered by.
 */
function findCycles(edges: Map<string, string[]>): string[][] {
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const visit = (node: string): void => {
    state.set(node, 'active');
    stack.push(node);
    for (const dep of edges.get(node) ?? []) {
      const s = state.get(dep);
      if (s === 'active') {
        const cycle = stack.slice(stack.indexOf(dep));
        const key = [...cycle].sort().join('\u0000');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...cycle, dep]);
        }
      } else if (s === undefined) visit(dep);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of edges.keys()) if (!state.has(node)) visit(node);
  return cycles;
}

// ---------------------------------------------------------------------------------------
// Normalisation

type Doc = RunSpecDocument;
type ParsedStage = z.infer<typeof Stage>;
type ParsedDefaults = z.infer<typeof Defaults>;

function normalize(doc: Doc): NormalizedSpec {
  const stages =
    doc.kind === 'Pipeline'
      ? doc.spec.stages.map((s) => normalizeStage(s, doc.spec.defaults))
      : [normalizeStage({ ...doc.spec, ...SINGLE_STAGE[doc.kind], dependsOn: [] }, {})];
  return {
    apiVersion: API_VERSION,
    kind: doc.kind,
    name: doc.metadata.name,
    labels: doc.metadata.labels ?? {},
    description: doc.metadata.description,
    params: doc.spec.params,
    stages,
  };
}

/**
 * Defaults merged into a stage, the stage winning: resources and retry field by field,
 * env key by key, the rest whole. CPU steps (prepare, merge, report) take only cpu and
 * memory from the default resources, so that `defaults.resources.gpus: 8` for the GPU
 * stages does not put a merge step on eight GPUs (or fail it for asking).
 */
function normalizeStage(s: ParsedStage, defaults: ParsedDefaults): NormalizedStage {
  const cpuStep = CPU_STEP_KINDS.has(s.kind);
  const d = defaults.resources ?? {};
  const inherited = cpuStep ? { cpu: d.cpu, memory: d.memory } : d;
  const mine = s.resources ?? {};
  const resources: Resources = {
    gpus: mine.gpus ?? inherited.gpus ?? 0,
    nodes: mine.nodes ?? inherited.nodes ?? 1,
  };
  const gpuType = mine.gpuType ?? inherited.gpuType;
  const cpu = mine.cpu ?? inherited.cpu;
  const memory = mine.memory ?? inherited.memory;
  if (gpuType !== undefined) resources.gpuType = gpuType;
  if (cpu !== undefined) resources.cpu = cpu;
  if (memory !== undefined) resources.memory = memory;

  const poolGpus = s.pool ? (s.pool.resources?.gpus ?? resources.gpus) : 0;
  const kubernetes = normalizeKubernetes(
    s.kubernetes,
    defaults.kubernetes,
    resources.gpus > 0 || poolGpus > 0,
  );

  const payload: NormalizedStage['payload'] = {
    command: s.payload.command,
    env: { ...(defaults.env ?? {}), ...s.payload.env },
    secretEnv: s.payload.secretEnv,
  };
  if (s.payload.workingDir !== undefined) payload.workingDir = s.payload.workingDir;

  return {
    name: s.name,
    kind: s.kind,
    dependsOn: [...new Set(s.dependsOn)],
    payload,
    outputs: s.outputs,
    resources,
    image: s.image ?? defaults.image,
    retry: {
      attempts: s.retry?.attempts ?? defaults.retry?.attempts ?? DEFAULT_RETRY_ATTEMPTS,
      backoff: {
        type: s.retry?.backoff?.type ?? defaults.retry?.backoff?.type ?? DEFAULT_BACKOFF.type,
        delay: s.retry?.backoff?.delay ?? defaults.retry?.backoff?.delay ?? DEFAULT_BACKOFF.delay,
      },
    },
    activeDeadlineSeconds: s.budget?.activeDeadline,
    stallTimeoutSeconds: s.stallTimeout ?? defaults.stallTimeout ?? DEFAULT_STALL_TIMEOUT_SECONDS,
    terminationGracePeriodSeconds:
      s.terminationGracePeriod ?? defaults.terminationGracePeriod ?? DEFAULT_GRACE_SECONDS,
    priority: s.priority,
    ...(s.input ? { input: s.input } : {}),
    ...(s.pool
      ? {
          pool: {
            name: s.pool.name,
            minReplicas: s.pool.minReplicas,
            maxReplicas: s.pool.maxReplicas,
            replicas: Math.min(
              s.pool.maxReplicas,
              Math.max(s.pool.minReplicas, s.pool.replicas ?? s.pool.maxReplicas),
            ),
            resources: {
              ...resources,
              gpus: s.pool.resources?.gpus ?? resources.gpus,
              nodes: 1,
              ...(s.pool.resources?.gpuType ? { gpuType: s.pool.resources.gpuType } : {}),
              ...(s.pool.resources?.cpu ? { cpu: s.pool.resources.cpu } : {}),
              ...(s.pool.resources?.memory ? { memory: s.pool.resources.memory } : {}),
            },
          },
        }
      : {}),
    maxFailedShards: s.failurePolicy?.maxFailedShards ?? 0,
    shardParams: s.shardParams ?? {},
    kubernetes,
  };
}

/**
 * A stage's kubernetes block over spec.defaults': field by field, nodeSelector key by
 * key, PVC mounts by mount path (the stage's wins), tolerations whole. A memory-backed
 * /dev/shm is on by default for GPU pods (NCCL and DataLoader workers need more than
 * the container runtime's 64 MiB), off for CPU pods.
 */
function normalizeKubernetes(
  mine: KubernetesRequest = {},
  base: KubernetesRequest = {},
  gpuPods: boolean,
): NormalizedKubernetes {
  const builtIn = defaultKubernetes(gpuPods);
  const mounts = new Map<string, NormalizedKubernetes['volumes']['pvc'][number]>();
  for (const m of [...(base.volumes?.pvc ?? []), ...(mine.volumes?.pvc ?? [])])
    mounts.set(m.mountPath, {
      claimName: m.claimName,
      mountPath: m.mountPath,
      readOnly: m.readOnly ?? false,
    });
  const shmSize = mine.volumes?.shmSize ?? base.volumes?.shmSize;
  const ttl = mine.ttlSecondsAfterFinished ?? base.ttlSecondsAfterFinished;
  return {
    namespace: mine.namespace ?? base.namespace,
    imagePullPolicy: mine.imagePullPolicy ?? base.imagePullPolicy,
    serviceAccountName: mine.serviceAccountName ?? base.serviceAccountName,
    nodeSelector: { ...base.nodeSelector, ...mine.nodeSelector },
    tolerations: mine.tolerations ?? base.tolerations ?? builtIn.tolerations,
    priorityClassName: mine.priorityClassName ?? base.priorityClassName,
    volumes: {
      pvc: [...mounts.values()],
      shmSize: shmSize === false ? null : (shmSize ?? builtIn.volumes.shmSize),
    },
    queueName: mine.queueName ?? base.queueName,
    ttlSecondsAfterFinished: ttl === undefined ? builtIn.ttlSecondsAfterFinished : Math.ceil(ttl),
    runAsUser: mine.runAsUser ?? base.runAsUser,
    fsGroup: mine.fsGroup ?? base.fsGroup,
    gpusPerNodeMax: mine.gpusPerNodeMax ?? base.gpusPerNodeMax ?? builtIn.gpusPerNodeMax,
    cpuDistributed: mine.cpuDistributed ?? base.cpuDistributed ?? builtIn.cpuDistributed,
  };
}

// ---------------------------------------------------------------------------------------
// Values

function isPlainObject(value: unknown): value is Record<string, Json> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

/**
 * A deep copy that breaks the sharing YAML aliases create, so that a --set changes one
 * place. Keys that could reach an object's prototype are collected, not copied.
 */
function cloneJson(value: Json, path: Path = [], unsafe: Path[] = []): Json {
  if (Array.isArray(value)) return value.map((v, i) => cloneJson(v, [...path, i], unsafe));
  if (isPlainObject(value)) {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) {
      if (UNSAFE_KEYS.has(k)) unsafe.push([...path, k]);
      else out[k] = cloneJson(v, [...path, k], unsafe);
    }
    return out;
  }
  return value;
}
