/**
 * Step 4 of loading a spec (load.ts): a parsed document -> the normalised spec that runs
 * are stored in (normalized.ts). One list of stages, the spec's defaults and the built-in
 * ones merged into each:
 *
 *   - resources and retry field by field, env key by key, the rest whole; CPU steps
 *     (prepare, merge, report) take only cpu and memory from the default resources, so
 *     that `defaults.resources.gpus: 8` for the GPU stages does not put a merge step on
 *     eight GPUs (or fail it for asking)
 *   - the kubernetes block field by field, nodeSelector key by key, PVC mounts by mount
 *     path (the stage's wins; `/data/` and `/data` are one path), tolerations whole; a
 *     memory-backed /dev/shm on by default for GPU pods, off for CPU pods
 *   - a pool's replicas within [minReplicas, maxReplicas], its resources the stage's
 *     with the pool's own over them, on one node
 *
 *   normalize(doc) -> NormalizedSpec
 *   documentPaths(doc) -> SpecPaths     where each merged setting was written (rules.ts)
 */
import type { z } from 'zod';
import type { RunSpecDocument } from './document.js';
import {
  API_VERSION,
  CPU_STEP_DEFAULT_RESOURCES,
  CPU_STEP_KINDS,
  DEFAULT_AUTOSCALE,
  DEFAULT_GPU_AUTOSCALE,
  DEFAULT_BACKOFF,
  DEFAULT_GRACE_SECONDS,
  DEFAULT_RETRY_ATTEMPTS,
  DEFAULT_STALL_TIMEOUT_SECONDS,
  Defaults,
  defaultKubernetes,
  mountPathKey,
  SINGLE_STAGE,
} from './schema.js';
import type {
  AutoscaleRequest,
  KubernetesRequest,
  NormalizedAutoscale,
  NormalizedKubernetes,
  NormalizedPool,
  NormalizedScalingRules,
  NormalizedSpec,
  NormalizedStage,
  Resources,
  Stage,
  StageKind,
} from './schema.js';
import { stagePath } from './rules.js';
import type { SpecPaths } from './rules.js';
import { valueAt } from './values.js';
import type { Path } from './values.js';

type ParsedDefaults = z.output<typeof Defaults>;

/** A document's stages as Stage values: a one-stage kind's inline spec becomes one. */
function stagesOf(doc: RunSpecDocument): { stages: Stage[]; defaults: ParsedDefaults } {
  return doc.kind === 'Pipeline'
    ? { stages: doc.spec.stages, defaults: doc.spec.defaults }
    : { stages: [{ ...doc.spec, ...SINGLE_STAGE[doc.kind], dependsOn: [] }], defaults: {} };
}

export function normalize(doc: RunSpecDocument): NormalizedSpec {
  const { stages, defaults } = stagesOf(doc);
  return {
    apiVersion: API_VERSION,
    kind: doc.kind,
    name: doc.metadata.name,
    labels: doc.metadata.labels ?? {},
    description: doc.metadata.description,
    params: doc.spec.params,
    stages: stages.map((s) => normalizeStage(s, defaults)),
  };
}

/** The default resources a stage of this kind inherits. */
function inheritedResources(kind: StageKind, d: ParsedDefaults['resources'] = {}) {
  if (!CPU_STEP_KINDS.has(kind)) return d;
  return Object.fromEntries(
    CPU_STEP_DEFAULT_RESOURCES.filter((k) => d[k] !== undefined).map((k) => [k, d[k]]),
  ) as typeof d;
}

function normalizeStage(s: Stage, defaults: ParsedDefaults): NormalizedStage {
  const inherited = inheritedResources(s.kind, defaults.resources);
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

  const pool = s.pool ? normalizePool(s.pool, resources) : undefined;
  const gpuPods = resources.gpus > 0 || (pool?.resources.gpus ?? 0) > 0;
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
    ...(pool ? { pool } : {}),
    maxFailedShards: s.failurePolicy?.maxFailedShards ?? 0,
    shardParams: s.shardParams ?? {},
    kubernetes: normalizeKubernetes(s.kubernetes, defaults.kubernetes, gpuPods),
  };
}

function normalizePool(p: NonNullable<Stage['pool']>, stage: Resources): NormalizedPool {
  // An autoscaled pool starts at its minimum and grows with its backlog.
  const start = p.autoscale ? p.minReplicas : (p.replicas ?? p.maxReplicas);
  const gpus = p.resources?.gpus ?? stage.gpus;
  return {
    name: p.name,
    minReplicas: p.minReplicas,
    maxReplicas: p.maxReplicas,
    replicas: Math.min(p.maxReplicas, Math.max(p.minReplicas, start)),
    ...(p.autoscale ? { autoscale: normalizeAutoscale(p.autoscale, gpus > 0) } : {}),
    resources: {
      ...stage,
      gpus,
      nodes: 1,
      ...(p.resources?.gpuType ? { gpuType: p.resources.gpuType } : {}),
      ...(p.resources?.cpu ? { cpu: p.resources.cpu } : {}),
      ...(p.resources?.memory ? { memory: p.resources.memory } : {}),
    },
  };
}

/**
 * The autoscale block with the defaults where left out: the HPA's (DEFAULT_AUTOSCALE), with
 * a shorter scale-down window and idleTimeout for a pool of GPU workers (DEFAULT_GPU_AUTOSCALE).
 */
function normalizeAutoscale(a: AutoscaleRequest, gpuWorkers: boolean): NormalizedAutoscale {
  const rules = (
    mine: NonNullable<AutoscaleRequest['behavior']>['scaleUp'],
    base: {
      stabilizationWindowSeconds: number;
      selectPolicy: NormalizedScalingRules['selectPolicy'];
      policies: ReadonlyArray<NormalizedScalingRules['policies'][number]>;
    },
  ): NormalizedScalingRules => ({
    stabilizationWindowSeconds: mine?.stabilizationWindow ?? base.stabilizationWindowSeconds,
    selectPolicy: mine?.selectPolicy ?? base.selectPolicy,
    policies: mine?.policies
      ? mine.policies.map((q) => ({ type: q.type, value: q.value, periodSeconds: q.period }))
      : base.policies.map((q) => ({ ...q })),
  });
  return {
    target: { ...a.target },
    assumeShardSeconds: a.assumeShardDuration ?? null,
    idleTimeoutSeconds:
      a.idleTimeout ??
      (gpuWorkers
        ? DEFAULT_GPU_AUTOSCALE.idleTimeoutSeconds
        : DEFAULT_AUTOSCALE.idleTimeoutSeconds),
    scaleUp: rules(a.behavior?.scaleUp, DEFAULT_AUTOSCALE.scaleUp),
    scaleDown: rules(
      a.behavior?.scaleDown,
      gpuWorkers
        ? {
            ...DEFAULT_AUTOSCALE.scaleDown,
            stabilizationWindowSeconds: DEFAULT_GPU_AUTOSCALE.scaleDownStabilizationWindowSeconds,
          }
        : DEFAULT_AUTOSCALE.scaleDown,
    ),
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
    mounts.set(mountPathKey(m.mountPath), {
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
    writableRoot:
      mine.security?.writableRoot ?? base.security?.writableRoot ?? builtIn.writableRoot,
  };
}

/**
 * Where each setting of the normalised stages was written in `doc`: the stage's own
 * field, else spec.defaults' where the stage inherits it (as normalizeStage merges: CPU
 * steps inherit only cpu and memory of the resources; `payload.env` is `env` there).
 */
export function documentPaths(doc: RunSpecDocument): SpecPaths {
  const { stages, defaults } = stagesOf(doc);
  const stage = (i: number): Path => stagePath(doc.kind, i);
  const defaultsPath = (s: Stage, field: Path): Path | undefined => {
    const [head, key] = field;
    if (head === 'payload' && key === 'env') return ['env', ...field.slice(2)];
    if (typeof head !== 'string' || !Object.hasOwn(Defaults.shape, head)) return undefined;
    if (head === 'resources' && CPU_STEP_KINDS.has(s.kind))
      return (CPU_STEP_DEFAULT_RESOURCES as readonly unknown[]).includes(key) ? field : undefined;
    return field;
  };
  return {
    stage,
    setting(i, field) {
      const own: Path = [...stage(i), ...field];
      const s = stages[i];
      if (!s || valueAt(s, field) !== undefined) return { path: own, own: true };
      const inDefaults = defaultsPath(s, field);
      if (inDefaults && valueAt(defaults, inDefaults) !== undefined)
        return { path: ['spec', 'defaults', ...inDefaults], own: false };
      return { path: own, own: false };
    },
    pvcLists(i) {
      const lists = [
        {
          path: [...stage(i), 'kubernetes', 'volumes', 'pvc'],
          mounts: stages[i]?.kubernetes?.volumes?.pvc,
        },
        {
          path: ['spec', 'defaults', 'kubernetes', 'volumes', 'pvc'],
          mounts: defaults.kubernetes?.volumes?.pvc,
        },
      ];
      return lists.flatMap(({ path, mounts }) => (mounts ? [{ path, mounts }] : []));
    },
  };
}
