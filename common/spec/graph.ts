/**
 * Graph checks: what no one field's schema can see, because it takes more of the
 * document. document.ts runs them as a refinement of the document schema that runs even
 * when other parts failed, so that every problem is reported at once; they read the
 * document's parts as typed.ts types them, field by field with the same schema.
 *
 *   graphIssues(doc) -> GraphIssue[]     doc: the document as zod left it (parsed where
 *                                        it passed, as written where it failed)
 *
 * The checks, each reported at the path of the value it is about:
 *   - metadata.labels are Kubernetes labels, and none that stoker sets (they go onto pods)
 *   - stage names are unique; dependsOn names other, existing stages; no cycles
 *   - `${...}` references (references.ts): syntax, parameters, env, upstream outputs
 *   - a secretEnv name is not also a plain env variable
 *   - pulled stages: an input and a pool together, only on generate and evaluate stages,
 *     file (with shardSize) or shards, replicas within [minReplicas, maxReplicas], and
 *     no replicas beside autoscale
 *   - CPU steps (prepare, merge, report) ask for no GPUs and one node
 *
 * What is skipped when a field was written but fails its own schema (typed.ts):
 *   - a stage's name: the stage takes no part in the name checks, and while any stage's
 *     name is unknown no name in dependsOn or `${stages.*}` is said not to exist
 *   - a stage's dependsOn: its edges; while any is unknown, "not upstream" is not said
 *   - a stage's kind: that stage's pulled-kind and CPU-step checks
 *   - a stage's outputs, pool or input: "declares no output" about references to it
 *   - payload.command, payload.env values, payload.workingDir, outputs, input.file,
 *     input.shards: the references in that field
 *   - payload.env, payload.secretEnv (or, in a pipeline, spec.defaults.env): the stage's
 *     `${env.*}` checks; secretEnv also the plain-and-secret check
 *   - spec.params: the `${params.*}` checks
 *   - metadata.labels: the label checks
 *   - resources.gpus or nodes (CPU steps), pool.minReplicas, maxReplicas or replicas:
 *     the bounds that compare it
 * A stage that is not a mapping is skipped whole (its type error says enough).
 */
import {
  CPU_STEP_KINDS,
  isLabelKey,
  isLabelValue,
  isReservedLabelKey,
  PULLED_KINDS,
} from './schema.js';
import { checkDefaultEnv, checkStageReferences, envOf } from './references.js';
import type { GraphIssue, StageGraph } from './references.js';
import { suggest } from './suggest.js';
import { typeDocument } from './typed.js';
import type { GraphDocument, GraphStage } from './typed.js';
import { formatPath } from './values.js';
import type { Json, Path } from './values.js';

export type { GraphIssue } from './references.js';

/** Every graph problem of the document. */
export function graphIssues(value: Json): GraphIssue[] {
  const doc = typeDocument(value);
  const issues = checkRunLabels(doc);
  if (!doc.stages) return issues;
  const graph = linkStages(doc.stages, issues);
  issues.push(...checkDefaultEnv(doc));
  for (const stage of doc.stages) {
    issues.push(...checkStageReferences(stage, doc, graph));
    issues.push(...checkSecrets(stage, doc));
    issues.push(...checkPulled(stage));
    issues.push(...checkCpuStep(stage));
  }
  return issues;
}

/** Names (the first stage with a name owns it), dependsOn, cycles: the graph of stages. */
function linkStages(stages: GraphStage[], issues: GraphIssue[]): StageGraph {
  const byName = new Map<string, GraphStage>();
  for (const stage of stages) {
    const name = stage.stage.fields.name;
    if (name === undefined) continue;
    const first = byName.get(name);
    if (first) {
      const message = `stage name "${name}" is already used by ${formatPath(first.path)}`;
      issues.push({ path: [...stage.path, 'name'], message });
    } else byName.set(name, stage);
  }
  const namesKnown = stages.every((s) => s.stage.known('name'));
  const edges = new Map<string, string[]>();
  for (const stage of stages) {
    const name = stage.stage.fields.name;
    if (name === undefined || byName.get(name) !== stage) continue;
    const deps: string[] = [];
    (stage.stage.fields.dependsOn ?? []).forEach((dep, i) => {
      const path = [...stage.path, 'dependsOn', i];
      if (dep === name) issues.push({ path, message: `stage "${name}" depends on itself` });
      else if (byName.has(dep)) deps.push(dep);
      else if (namesKnown) {
        const hint = suggest(dep, byName.keys());
        const message = `dependsOn names stage "${dep}", which does not exist${hint ? ` (did you mean "${hint}"?)` : ''}`;
        issues.push({ path, message });
      }
    });
    edges.set(name, deps);
  }
  for (const cycle of findCycles(edges)) {
    const first = byName.get(cycle[0] as string);
    if (first) {
      const message = `dependsOn forms a cycle: ${cycle.join(' -> ')}`;
      issues.push({ path: [...first.path, 'dependsOn'], message });
    }
  }
  const edgesKnown = namesKnown && stages.every((s) => s.stage.known('dependsOn'));
  return { byName, edges, namesKnown, edgesKnown };
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

/** A variable is either plain env (the stage's, or spec.defaults') or a secret. */
function checkSecrets(stage: GraphStage, doc: GraphDocument): GraphIssue[] {
  const env = envOf(stage, doc);
  // By name: a name listed twice is reported once, at its last entry.
  const secrets = new Map<string, Path>();
  (stage.payload.fields.secretEnv ?? []).forEach(({ name }, i) =>
    secrets.set(name, [...stage.path, 'payload', 'secretEnv', i, 'name']),
  );
  return [...secrets]
    .filter(([name]) => env.paths.has(name))
    .map(([name, path]) => ({
      path,
      message: `"${name}" is set in payload.env too: a variable is either plain env or a secret`,
    }));
}

/** A pulled stage has both an input and a pool, and is a generate or evaluate stage. */
function checkPulled(stage: GraphStage): GraphIssue[] {
  const { path: base, input, pool } = stage;
  const hasInput = stage.stage.written.has('input');
  const hasPool = stage.stage.written.has('pool');
  if (!hasInput && !hasPool) return [];
  const kind = stage.stage.fields.kind;
  const issues: GraphIssue[] = [];
  const at = (path: Path, message: string) => issues.push({ path: [...base, ...path], message });
  if (kind !== undefined && !PULLED_KINDS.has(kind)) {
    at(
      [hasInput ? 'input' : 'pool'],
      `a ${kind} stage is dispatched as one task; only generate and evaluate stages can be sharded over a pool`,
    );
    return issues;
  }
  if (hasInput && !hasPool)
    at(
      ['pool'],
      'a sharded input needs a pool: {name, maxReplicas} of the workers that run its shards',
    );
  if (!hasInput && hasPool)
    at(['input'], 'a pool needs a sharded input: {file, shardSize} or {shards: [...]}');
  if (input.mapping) {
    const hasFile = input.written.has('file');
    const hasShards = input.written.has('shards');
    const hasShardSize = input.written.has('shardSize');
    if (hasFile === hasShards)
      at(['input'], 'give either file (with shardSize) or shards, not both and not neither');
    if (hasFile && !hasShardSize)
      at(['input', 'shardSize'], 'a JSONL input file needs shardSize: the lines per shard');
    if (hasShards && hasShardSize)
      at(['input', 'shardSize'], 'shardSize applies to an input file, not to a list of shards');
  }
  const { minReplicas: min, maxReplicas: max, replicas } = pool.fields;
  if (min !== undefined && max !== undefined && min > max)
    at(['pool', 'minReplicas'], `minReplicas (${min}) is more than maxReplicas (${max})`);
  if (replicas !== undefined && max !== undefined && replicas > max)
    at(['pool', 'replicas'], `replicas (${replicas}) is more than maxReplicas (${max})`);
  if (replicas !== undefined && min !== undefined && replicas < min)
    at(['pool', 'replicas'], `replicas (${replicas}) is less than minReplicas (${min})`);
  if (pool.written.has('autoscale') && pool.written.has('replicas'))
    at(
      ['pool', 'replicas'],
      'an autoscaled pool has no fixed replicas: the autoscaler sets them between minReplicas and maxReplicas (leave replicas out)',
    );
  return issues;
}

/** CPU steps run on one node without GPUs. */
function checkCpuStep(stage: GraphStage): GraphIssue[] {
  const kind = stage.stage.fields.kind;
  if (kind === undefined || !CPU_STEP_KINDS.has(kind)) return [];
  const { gpus, nodes } = stage.resources.fields;
  const issues: GraphIssue[] = [];
  if (gpus !== undefined && gpus > 0) {
    issues.push({
      path: [...stage.path, 'resources', 'gpus'],
      message: `a ${kind} stage cannot request GPUs: CPU steps run on one node without GPUs`,
    });
  }
  if (nodes !== undefined && nodes > 1) {
    issues.push({
      path: [...stage.path, 'resources', 'nodes'],
      message: `a ${kind} stage cannot span nodes: CPU steps run on one node without GPUs`,
    });
  }
  return issues;
}

/**
 * The run's metadata.labels go onto its Jobs and pods (cost allocation by team, say), so
 * they must be Kubernetes labels, and not ones stoker, Kubernetes or Kueue set.
 */
function checkRunLabels(doc: GraphDocument): GraphIssue[] {
  const issues: GraphIssue[] = [];
  for (const [key, value] of Object.entries(doc.metadata.fields.labels ?? {})) {
    const path = ['metadata', 'labels', key];
    if (!isLabelKey(key)) {
      issues.push({
        path,
        message: `"${key}" is not a Kubernetes label key (an optional DNS prefix and "/", then at most 63 letters, digits, "-", "_", "."): the run's labels go onto its pods`,
        atKey: true,
      });
    } else if (isReservedLabelKey(key)) {
      const hint = key.startsWith('kueue.x-k8s.io/')
        ? ' (for a Kueue queue use kubernetes.queueName)'
        : '';
      const message = `"${key}" is a label stoker sets on the run's objects${hint}`;
      issues.push({ path, message, atKey: true });
    }
    if (!isLabelValue(value)) {
      issues.push({
        path,
        message: `not a Kubernetes label value (at most 63 letters, digits, "-", "_", ".", starting and ending with a letter or digit): the run's labels go onto its pods`,
      });
    }
  }
  return issues;
}
