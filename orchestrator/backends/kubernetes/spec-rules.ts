/**
 * What the kubernetes backend cannot run, as rules on a spec (common/spec/rules.ts):
 * refused at submit (the CLI passes `kubernetesSpecRules` to the spec loader, so `stoker
 * validate`, `run`, `submit` and `render` report them with their YAML path and line) and
 * again by the backend's checkSpec for a stored run (it fails InvalidSpec, naming the
 * field), rather than found when a pod never schedules. Each issue is at the path its
 * value came from: the stage's own, else spec.defaults'.
 *
 *   - `nodes` > 1 without GPUs: refused unless `kubernetes.cpuDistributed: true` (CPU
 *     training over gloo, one process per node); a forgotten `gpus` is the likelier cause.
 *     `cpuDistributed` written on a stage with GPUs is refused as a contradiction (only
 *     where the stage wrote it: inherited from spec.defaults it means nothing there).
 *   - `gpus` (per node) above `kubernetes.gpusPerNodeMax` (default 8), for the stage and
 *     for its pool's workers: such a pod never schedules. A `gpuType` that cannot be a
 *     node label value cannot select nodes.
 *   - names over Kubernetes' limits, computed with the builders' own functions
 *     (common/spec/schema.ts) for the longest case the spec allows: the run id's full
 *     suffix, the last attempt, the last node's index. Job names are cut to fit with a
 *     hash (jobNameFor), so what can still overflow is a gang's pod hostnames
 *     `${job}-${index}` (10,000 nodes or more) or a run id used as a label value.
 *   - secretEnv variables that would shadow what the backend sets in the pod (STOKER_*,
 *     PET_*, the rank variables, REDIS_URL).
 *   - a PVC mounted at /dev/shm, or two at the same path in one list.
 *   - namespaceRule(ns): a stage namespace other than the controller's (checkSpec only:
 *     the namespace is the controller's setting, unknown to `stoker validate`).
 *
 * Imports nothing heavy (no client-node): the CLI loads it for every spec it reads.
 */
import {
  CPU_STEP_KINDS,
  isDnsLabel,
  isLabelValue,
  isReservedPodEnv,
  jobNameFor,
  mountPathKey,
  RUN_ID_SUFFIX_LENGTH,
} from '../../../common/spec/schema.js';
import type { NormalizedSpec, NormalizedStage } from '../../../common/spec/schema.js';
import type { SpecPaths, SpecRule, SpecRuleIssue } from '../../../common/spec/rules.js';
import { accessRule, BUILT_IN_ACCESS } from './access-rules.js';

/** Every rule of the kubernetes backend that does not depend on its settings. */
export const kubernetesSpecRules: SpecRule = (spec, paths) => [
  ...checkRunId(spec),
  ...spec.stages.flatMap((stage, i) => [
    ...checkResources(stage, i, paths),
    ...checkHostnames(spec, stage, i, paths),
    ...checkSecretEnv(stage, i, paths),
    ...checkMounts(stage, i, paths),
  ]),
  // Stoker's own Secrets, PVCs and service account (access-rules.ts).
  ...accessRule(BUILT_IN_ACCESS)(spec, paths),
];

/**
 * A stage's kubernetes.namespace must be the controller's `namespace`: its Role and its
 * watches cover that namespace only (see KubernetesBackend.checkSpec).
 */
export const namespaceRule =
  (namespace: string): SpecRule =>
  (spec, paths) =>
    spec.stages.flatMap((stage, i) => {
      const wanted = stage.kubernetes.namespace;
      if (wanted === undefined || wanted === namespace) return [];
      return [
        {
          path: [...paths.stage(i), 'kubernetes', 'namespace'],
          message: `stage ${stage.name} asks for namespace "${wanted}", but this controller creates Jobs in "${namespace}" only (its Role and watches cover that namespace); leave it out or set it to "${namespace}" (set on the stage or in spec.defaults.kubernetes)`,
        },
      ];
    });

/** The longest id makeRunId can give this name (same length as any other). */
const longestRunId = (name: string): string => `${name}-99991231-235959-ffffff`;

function checkRunId(spec: NormalizedSpec): SpecRuleIssue[] {
  const runId = longestRunId(spec.name);
  if (runId.length === spec.name.length + RUN_ID_SUFFIX_LENGTH && isLabelValue(runId)) return [];
  return [
    {
      path: ['metadata', 'name'],
      message: `run ids ("${runId}") must be Kubernetes label values of at most 63 characters: shorten the name`,
    },
  ];
}

const tooManyGpus = (count: number, max: number): string => {
  const n = Math.ceil(count / max);
  return `gpus is per node: ${count} GPUs on one node is more than kubernetes.gpusPerNodeMax (${max}), so the pod would never schedule; for ${count} GPUs in all use nodes: ${n} with gpus: ${Math.ceil(count / n)}`;
};

const isPulled = (stage: NormalizedStage): boolean =>
  stage.input !== undefined || stage.pool !== undefined;

function checkResources(stage: NormalizedStage, i: number, paths: SpecPaths): SpecRuleIssue[] {
  const issues: SpecRuleIssue[] = [];
  const { gpus, nodes, gpuType } = stage.resources;
  const { gpusPerNodeMax: max, cpuDistributed } = stage.kubernetes;
  const at = (field: string[]) => paths.setting(i, field);
  if (!CPU_STEP_KINDS.has(stage.kind) && !isPulled(stage) && nodes > 1 && gpus === 0) {
    if (!cpuDistributed) {
      issues.push({
        path: at(['resources', 'nodes']).path,
        message: `nodes: ${nodes} with no GPUs: a multi-node stage runs its processes on each node's GPUs; give the GPUs per node (e.g. gpus: 8), or set kubernetes.cpuDistributed: true for CPU training over gloo`,
      });
    }
  }
  const distributed = at(['kubernetes', 'cpuDistributed']);
  if (cpuDistributed && gpus > 0 && distributed.own === true) {
    issues.push({
      path: distributed.path,
      message: `cpuDistributed is for multi-node stages without GPUs (this one has gpus: ${gpus})`,
    });
  }
  if (gpus > max)
    issues.push({ path: at(['resources', 'gpus']).path, message: tooManyGpus(gpus, max) });
  if (gpus > 0 && gpuType !== undefined && !isLabelValue(gpuType)) {
    issues.push({
      path: at(['resources', 'gpuType']).path,
      message: `gpuType "${gpuType}" cannot select nodes: a short name such as h100, or a node label value (letters, digits, "-", "_", ".")`,
    });
  }
  // The pool's own gpus; a pool that takes the stage's is covered by the stage's check.
  const poolGpus = at(['pool', 'resources', 'gpus']);
  if (stage.pool && stage.pool.resources.gpus > max && poolGpus.own !== false)
    issues.push({ path: poolGpus.path, message: tooManyGpus(stage.pool.resources.gpus, max) });
  return issues;
}

/** A gang's last pod's hostname, `${job}-${index}` for its last attempt, is a DNS label. */
function checkHostnames(
  spec: NormalizedSpec,
  stage: NormalizedStage,
  i: number,
  paths: SpecPaths,
): SpecRuleIssue[] {
  const { nodes } = stage.resources;
  if (isPulled(stage) || nodes <= 1) return [];
  // The task id as orchestrator/store.ts's taskIdFor makes it.
  const job = jobNameFor(`${longestRunId(spec.name)}.${stage.name}`, stage.retry.attempts);
  const host = `${job}-${nodes - 1}`;
  if (isDnsLabel(host)) return [];
  return [
    {
      path: paths.setting(i, ['resources', 'nodes']).path,
      message: `nodes: ${nodes}: the last pod's hostname "${host}" would be longer than the 63 characters Kubernetes allows`,
    },
  ];
}

function checkSecretEnv(stage: NormalizedStage, i: number, paths: SpecPaths): SpecRuleIssue[] {
  return stage.payload.secretEnv.flatMap((entry, j) =>
    (['name', 'fromEnv'] as const).flatMap((field) => {
      const v = entry[field];
      if (v === undefined || !isReservedPodEnv(v)) return [];
      return [
        {
          path: [...paths.stage(i), 'payload', 'secretEnv', j, field],
          message: `"${v}" is a variable stoker sets in the worker's environment (STOKER_*, PET_*, the rank variables, REDIS_URL): use another name`,
        },
      ];
    }),
  );
}

/** /dev/shm is the backend's own memory-backed volume; a path is mounted once. */
function checkMounts(stage: NormalizedStage, i: number, paths: SpecPaths): SpecRuleIssue[] {
  const issues: SpecRuleIssue[] = [];
  const hint = shmSizeWrittenFalse(stage, i, paths)
    ? ''
    : ' (set shmSize: false to mount something else there)';
  for (const list of paths.pvcLists(i)) {
    const seen = new Set<string>();
    list.mounts.forEach(({ mountPath }, j) => {
      const path = [...list.path, j, 'mountPath'];
      const key = mountPathKey(mountPath);
      if (seen.has(key)) issues.push({ path, message: `${mountPath} is mounted twice` });
      else if (key === '/dev/shm' || key.startsWith('/dev/shm/'))
        issues.push({
          path,
          message: `/dev/shm is the memory-backed volume of volumes.shmSize${hint}`,
        });
      seen.add(key);
    });
  }
  return issues;
}

/**
 * The spec says `shmSize: false` for this stage. A stage without GPUs has no /dev/shm
 * volume by default either, so there only a written false counts (a stored spec cannot
 * tell: it counts as not written).
 */
function shmSizeWrittenFalse(stage: NormalizedStage, i: number, paths: SpecPaths): boolean {
  if (stage.kubernetes.volumes.shmSize !== null) return false;
  const gpuPods = stage.resources.gpus > 0 || (stage.pool?.resources.gpus ?? 0) > 0;
  const where = paths.setting(i, ['kubernetes', 'volumes', 'shmSize']);
  return gpuPods || where.own === true || where.path[1] === 'defaults';
}
