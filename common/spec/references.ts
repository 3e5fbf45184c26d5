/**
 * The `${...}` references of a spec, checked against the spec (graph.ts runs these): the
 * syntax, roots and fields are interpolate.ts's (findReferences); what needs the spec is
 * here: a parameter that exists, an `${env.*}` the stage sets (and not a secret), an
 * upstream stage's declared output.
 *
 *   checkStageReferences(stage, doc, graph) -> GraphIssue[]   command, env, outputs,
 *                                                            workingDir, input of a stage
 *   checkDefaultEnv(doc) -> GraphIssue[]                      spec.defaults.env
 *
 * Works on typed parts (typed.ts); what it skips for a part that is not typed is listed
 * in graph.ts's header.
 */
import { findReferences } from './interpolate.js';
import type { Reference } from './interpolate.js';
import { PULLED_OUTPUTS } from './schema.js';
import { suggest } from './suggest.js';
import type { GraphDocument, GraphStage } from './typed.js';
import type { Path } from './values.js';

export interface GraphIssue {
  path: Path;
  message: string;
  /** Point at the key rather than its value. */
  atKey?: boolean;
}

/** What the reference checks need to know of every stage (graph.ts's linkStages). */
export interface StageGraph {
  /** Each name's first stage. */
  byName: Map<string, GraphStage>;
  /** name -> names it depends on (existing stages only). */
  edges: Map<string, string[]>;
  /** Every stage's name is typed: a name not in byName is no stage's. */
  namesKnown: boolean;
  /** Every stage's dependsOn is typed too: closure() gives the whole upstream. */
  edgesKnown: boolean;
}

type Field = 'command' | 'env' | 'outputs' | 'workingDir' | 'input';

interface Template {
  path: Path;
  text: string;
  field: Field;
}

/** What a stage's references are checked against; undefined: not known (not typed). */
interface Scope {
  stage: GraphStage;
  name: string | undefined;
  params: Record<string, unknown> | undefined;
  envKeys: ReadonlySet<string> | undefined;
  secretNames: ReadonlySet<string> | undefined;
  upstream: ReadonlySet<string> | undefined;
  graph: StageGraph;
}

const ENV_IN_ENV = (text: string): string =>
  `${text}: env values cannot use \${env.*} (use it in command, workingDir or outputs)`;

/** Every `${...}` in the stage's command, env, outputs, workingDir and input. */
export function checkStageReferences(
  stage: GraphStage,
  doc: GraphDocument,
  graph: StageGraph,
): GraphIssue[] {
  const name = stage.stage.fields.name;
  const env = envOf(stage, doc);
  const scope: Scope = {
    stage,
    name,
    params: doc.spec.known('params') ? doc.spec.fields.params : undefined,
    envKeys: env.known ? new Set(env.paths.keys()) : undefined,
    secretNames: stage.payload.known('secretEnv')
      ? new Set((stage.payload.fields.secretEnv ?? []).map((s) => s.name))
      : undefined,
    upstream: name !== undefined && graph.edgesKnown ? closure(name, graph.edges) : undefined,
    graph,
  };
  const issues: GraphIssue[] = [];
  for (const t of templatesOf(stage)) {
    const found = findReferences(t.text);
    for (const e of found.errors) issues.push({ path: t.path, message: e.message });
    for (const ref of found.references) {
      const problem = checkReference(ref, t.field, scope);
      if (problem) issues.push({ path: t.path, message: problem });
    }
  }
  return issues;
}

/** Defaults apply to every stage: they cannot name one stage's upstream outputs. */
export function checkDefaultEnv(doc: GraphDocument): GraphIssue[] {
  const params = doc.spec.known('params') ? doc.spec.fields.params : undefined;
  const issues: GraphIssue[] = [];
  for (const [key, text] of Object.entries(doc.defaults.fields.env ?? {})) {
    const path = ['spec', 'defaults', 'env', key];
    const found = findReferences(text);
    for (const e of found.errors) issues.push({ path, message: e.message });
    for (const ref of found.references) {
      if (ref.kind === 'stageOutput') {
        const message = `${ref.text}: spec.defaults.env applies to every stage, so it cannot read one stage's outputs; set it in the stages that need it`;
        issues.push({ path, message });
      } else if (ref.kind === 'env') {
        issues.push({ path, message: ENV_IN_ENV(ref.text) });
      } else if (ref.kind === 'param' && params && !Object.hasOwn(params, ref.name)) {
        issues.push({ path, message: unknownParam(ref.text, ref.name, params) });
      }
    }
  }
  return issues;
}

/**
 * The stage's env variables (spec.defaults.env's too, for pipelines) and where each is set;
 * `known` is false when one of the two maps is not typed.
 */
export function envOf(
  stage: GraphStage,
  doc: GraphDocument,
): { paths: Map<string, Path>; known: boolean } {
  const paths = new Map<string, Path>();
  let known = stage.payload.known('env');
  if (doc.inheritsDefaultEnv) {
    known &&= doc.defaults.known('env');
    for (const key of Object.keys(doc.defaults.fields.env ?? {}))
      paths.set(key, ['spec', 'defaults', 'env', key]);
  }
  for (const key of Object.keys(stage.payload.fields.env ?? {}))
    paths.set(key, [...stage.path, 'payload', 'env', key]);
  return { paths, known };
}

function templatesOf(s: GraphStage): Template[] {
  const base = s.path;
  const out: Template[] = [];
  const { command, env, workingDir } = s.payload.fields;
  (command ?? []).forEach((text, i) =>
    out.push({ path: [...base, 'payload', 'command', i], text, field: 'command' }),
  );
  for (const [key, text] of Object.entries(env ?? {}))
    out.push({ path: [...base, 'payload', 'env', key], text, field: 'env' });
  for (const [key, text] of Object.entries(s.stage.fields.outputs ?? {}))
    out.push({ path: [...base, 'outputs', key], text, field: 'outputs' });
  if (workingDir !== undefined)
    out.push({ path: [...base, 'payload', 'workingDir'], text: workingDir, field: 'workingDir' });
  const { file, shards } = s.input.fields;
  if (file !== undefined)
    out.push({ path: [...base, 'input', 'file'], text: file, field: 'input' });
  (shards ?? []).forEach((text, i) =>
    out.push({ path: [...base, 'input', 'shards', i], text, field: 'input' }),
  );
  return out;
}

function checkReference(ref: Reference, field: Field, scope: Scope): string | undefined {
  switch (ref.kind) {
    case 'run':
    case 'stage':
      return undefined;
    case 'param':
      return !scope.params || Object.hasOwn(scope.params, ref.name)
        ? undefined
        : unknownParam(ref.text, ref.name, scope.params);
    case 'env':
      if (field === 'env') return ENV_IN_ENV(ref.text);
      if (scope.secretNames?.has(ref.name)) {
        return `${ref.text}: "${ref.name}" is a secret; secrets reach the payload only as environment variables, never in arguments or paths`;
      }
      if (scope.envKeys && !scope.envKeys.has(ref.name) && scope.secretNames)
        return `${ref.text}: "${ref.name}" is not in this stage's payload.env (nor spec.defaults.env)`;
      return undefined;
    case 'stageOutput':
      return checkOutputReference(ref, scope);
  }
}

function checkOutputReference(
  ref: Extract<Reference, { kind: 'stageOutput' }>,
  { name, upstream, graph }: Scope,
): string | undefined {
  const target = graph.byName.get(ref.stage);
  if (!target) {
    if (!graph.namesKnown) return undefined;
    const hint = suggest(ref.stage, graph.byName.keys());
    return `${ref.text}: stage "${ref.stage}" does not exist${hint ? ` (did you mean "${hint}"?)` : ''}`;
  }
  if (ref.stage === name) {
    return `${ref.text}: a stage cannot read its own outputs (use \${stage.outputDir} or the path itself)`;
  }
  if (upstream && !upstream.has(ref.stage)) {
    return `${ref.text}: stage "${ref.stage}" is not upstream of "${name ?? '?'}": add ${ref.stage} to dependsOn`;
  }
  const outputs = outputsOf(target);
  if (outputs && !outputs.has(ref.output)) {
    const declared = [...outputs];
    return `${ref.text}: dangling reference: stage "${ref.stage}" declares no output "${ref.output}" (it declares ${declared.length ? declared.join(', ') : 'none'})`;
  }
  return undefined;
}

/**
 * The outputs a stage has: those it declares, and for a pulled stage (a pool and an
 * input) the ones the controller writes (PULLED_OUTPUTS). Undefined: not known (its
 * outputs, pool or input not typed).
 */
function outputsOf(s: GraphStage): Set<string> | undefined {
  if (!s.stage.known('outputs') || !s.stage.known('pool') || !s.stage.known('input'))
    return undefined;
  const pulled = s.pool.mapping && s.input.mapping;
  return new Set([...Object.keys(s.stage.fields.outputs ?? {}), ...(pulled ? PULLED_OUTPUTS : [])]);
}

function unknownParam(text: string, name: string, params: Record<string, unknown>): string {
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
