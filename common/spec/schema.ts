/**
 * Run specs, `apiVersion: stoker/v1`.
 *
 *   kind: TrainingRun | SelfPlay | Evaluation   one stage, given inline under `spec`
 *   kind: Pipeline                              `spec.stages`: a list of named stages
 *
 * A stage:
 *   name        DNS-1123 label (it becomes part of Kubernetes object names)
 *   kind        train | generate | evaluate | prepare | merge | report
 *   dependsOn   names of other stages (any order in the list; no cycles)
 *   payload     {command: argv array, env: {K: V}, secretEnv: [...], workingDir}
 *               never a shell string; values may hold ${...} references (interpolate.ts)
 *   outputs     {name: path}: relative paths are under the stage's output directory;
 *               a payload's `artifact` event with the same name overrides the value
 *   resources   {gpus, nodes, gpuType, cpu, memory}
 *   image, retry {attempts, backoff}, budget {activeDeadline}, stallTimeout,
 *   terminationGracePeriod
 *   kubernetes  how the kubernetes backend runs it (namespace, nodeSelector, tolerations,
 *               volumes, Kueue queue...; see KubernetesRequest); ignored by `local`
 *
 * `spec.files` (any kind): configuration files the payloads read by relative paths,
 * relative to the spec file's directory; they travel with the run and the payloads run
 * in a directory that holds them (files.ts).
 *
 * A Pipeline's `spec.defaults` (resources, image, retry, env, stallTimeout,
 * terminationGracePeriod, kubernetes) merge into every stage, the stage winning field by
 * field (env and kubernetes.nodeSelector key by key, kubernetes.volumes.pvc mount path by
 * mount path). CPU steps (prepare, merge, report) take only cpu and memory from the
 * default resources: they run on one node without GPUs. See normalize.ts; load.ts is the
 * pipeline from YAML text to the normalised form (normalized.ts).
 *
 * Durations are strings like "90s", "10m", "2h" or numbers of seconds. Bounds (SPEC_LIMITS,
 * normalized.ts): stallTimeout and terminationGracePeriod at most 7 days (they become
 * timers), retry.backoff.delay 1 day, other durations 366 days; pool replicas and nodes at
 * most 10,000, gpus at most 64 per node; cpu, memory and shmSize more than 0.
 */
import { z } from 'zod';
import { RANK_ENV } from '../rank-env.js';
import { isDnsLabel, isDnsSubdomain, isLabelKey, isLabelValue } from './k8s-names.js';
import { atMost, BackoffDelay, Duration, Quantity, Replicas, TimerDuration } from './bounded.js';
import { AutoscaleRequest } from './autoscale.js';
import { SpecFilePaths } from './files.js';
import { API_VERSION, SPEC_KINDS, SPEC_LIMITS, STAGE_KINDS } from './normalized.js';

// The normalised form (what a run stores) and the constants both forms share.
export * from './normalized.js';
// Durations, quantities and counts, with their bounds.
export { Duration, TimerDuration } from './bounded.js';
// Kubernetes names and labels, which the spec checks and the object builders share.
export * from './k8s-names.js';
// A pool's autoscale block.
export * from './autoscale.js';

export const Name = z
  .string()
  .max(40, 'at most 40 characters (it becomes part of Kubernetes object names)')
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
    'a name of lower-case letters, digits and "-", starting and ending with a letter or digit',
  );

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

/**
 * Resources as written in a spec: every field optional, so that `spec.defaults.resources`
 * merges into a stage's resources field by field (defaults `gpuType: h100` plus a stage's
 * `gpus: 8`). The built-in defaults (0 GPUs, 1 node) are applied at normalisation.
 */
export const ResourceRequest = z
  .object({
    gpus: z
      .number()
      .int()
      .nonnegative()
      .max(SPEC_LIMITS.gpusPerNode, atMost(SPEC_LIMITS.gpusPerNode, 'GPUs per node'))
      .optional(),
    nodes: z
      .number()
      .int()
      .positive()
      .max(SPEC_LIMITS.nodes, atMost(SPEC_LIMITS.nodes, 'nodes'))
      .optional(),
    gpuType: z.string().optional(),
    cpu: Quantity.optional(),
    memory: Quantity.optional(),
  })
  .strict();
export type ResourceRequest = z.infer<typeof ResourceRequest>;

export const SecretRef = z
  .object({
    /** The variable the payload sees. */
    name: EnvName,
    /** Local backend: taken from this variable of the worker's environment. */
    fromEnv: EnvName.optional(),
    /** Kubernetes backend: a Secret and key (names only, never values). */
    secret: z.string().optional(),
    key: z.string().optional(),
  })
  .strict();

const ARGV_EXAMPLE = '["python3", "train.py", "--steps", "100"]';

export const Payload = z
  .object(
    {
      command: z
        .array(z.union([z.string(), z.number()]).transform(String), {
          error: (iss) =>
            iss.input === undefined
              ? `required: an argv array such as ${ARGV_EXAMPLE}`
              : `an argv array such as ${ARGV_EXAMPLE}: never a shell string`,
        })
        .min(1, 'needs at least the program to run'),
      env: z
        .record(EnvName, z.union([z.string(), z.number(), z.boolean()]).transform(String))
        .default({}),
      secretEnv: z.array(SecretRef).default([]),
      workingDir: z.string().optional(),
    },
    {
      // `payload: "python train.py"` is the most likely mistake: say what to write instead.
      error: (iss) =>
        typeof iss.input === 'string'
          ? `an object whose command is an argv array such as {command: ${ARGV_EXAMPLE}}: never a shell string`
          : undefined,
    },
  )
  .strict();
export type Payload = z.infer<typeof Payload>;

/** A retry policy as written in a spec: every field optional, merged field by field with defaults. */
export const RetryRequest = z
  .object({
    attempts: z.number().int().min(1).max(100).optional(),
    backoff: z
      .object({
        type: z.enum(['exponential', 'fixed']).optional(),
        delay: BackoffDelay.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type RetryRequest = z.infer<typeof RetryRequest>;

// ---------------------------------------------------------------------------------------
// Kubernetes: the `kubernetes` block of a stage and of spec.defaults (docs/kubernetes.md)

const DnsLabelName = z
  .string()
  .refine(isDnsLabel, 'a DNS label: at most 63 lower-case letters, digits and "-"');
const DnsSubdomainName = z
  .string()
  .refine(isDnsSubdomain, 'a Kubernetes object name: lower-case letters, digits, "-" and "."');
const LabelKey = z
  .string()
  .refine(
    isLabelKey,
    'a Kubernetes label key such as nvidia.com/gpu.product (an optional DNS prefix and "/", then at most 63 letters, digits, "-", "_", ".")',
  );
const LabelValue = z
  .string()
  .refine(
    isLabelValue,
    'a Kubernetes label value: at most 63 letters, digits, "-", "_", ".", starting and ending with a letter or digit',
  );

export const Toleration = z
  .object({
    key: LabelKey.optional(),
    operator: z.enum(['Exists', 'Equal']).optional(),
    value: z.string().optional(),
    effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
    tolerationSeconds: z.number().int().optional(),
  })
  .strict();
export type Toleration = z.infer<typeof Toleration>;

export const PvcMount = z
  .object({
    /** A PersistentVolumeClaim in the stage's namespace (data sets, checkpoints). */
    claimName: DnsSubdomainName,
    mountPath: z.string().regex(/^\/[^\s:]*$/, 'an absolute path such as /data'),
    readOnly: z.boolean().optional(),
  })
  .strict();

/**
 * How the kubernetes backend runs a stage. Every field optional: `spec.defaults.kubernetes`
 * merges into a stage's block field by field (nodeSelector key by key, volumes.pvc mount
 * path by mount path; tolerations are replaced whole). Fields left out fall back to the
 * controller's settings (namespace, imagePullPolicy, serviceAccountName,
 * priorityClassName, runAsUser, fsGroup) or to the built-in defaults below.
 */
export const KubernetesRequest = z
  .object({
    /** Default: the controller's namespace (its Role must reach this one too). */
    namespace: DnsLabelName.optional(),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
    serviceAccountName: DnsSubdomainName.optional(),
    nodeSelector: z.record(LabelKey, LabelValue).optional(),
    tolerations: z.array(Toleration).optional(),
    priorityClassName: DnsSubdomainName.optional(),
    volumes: z
      .object({
        pvc: z.array(PvcMount).optional(),
        /** A memory-backed /dev/shm of this size; false: none. Default: 16Gi for GPU pods. */
        shmSize: z.union([Quantity, z.literal(false)]).optional(),
      })
      .strict()
      .optional(),
    /** Kueue's LocalQueue: the Job is created suspended with `kueue.x-k8s.io/queue-name`. */
    queueName: LabelValue.refine((v) => v !== '', 'a LocalQueue name').optional(),
    /** How long a finished Job (and its pods) stays for inspection. Default 24h. */
    ttlSecondsAfterFinished: Duration.optional(),
    /** Pods run as non-root: default the controller's setting (1000, the image's user). */
    runAsUser: z.number().int().min(1, 'pods run as non-root: a user id above 0').optional(),
    fsGroup: z.number().int().nonnegative().optional(),
    /** The GPUs one node has: `gpus` is per node, and more than this cannot be scheduled. */
    gpusPerNodeMax: z.number().int().positive().optional(),
    /**
     * A multi-node stage without GPUs is refused (a forgotten `gpus` is the likely cause);
     * true says it is meant: CPU training over gloo, one process per node.
     */
    cpuDistributed: z.boolean().optional(),
    /**
     * The worker container's root file system. Read-only by default (Pod Security
     * "restricted" plus a read-only root: /tmp and HOME are emptyDirs, caches live under
     * HOME); `writableRoot: true` is for a payload that must write elsewhere in its image.
     */
    security: z.object({ writableRoot: z.boolean().optional() }).strict().optional(),
  })
  .strict();
export type KubernetesRequest = z.infer<typeof KubernetesRequest>;

/** Fields a stage has, and a TrainingRun's spec has inline. */
const stageBody = {
  payload: Payload,
  outputs: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'an output name is a word'), z.string())
    .default({}),
  resources: ResourceRequest.optional(),
  image: z.string().optional(),
  retry: RetryRequest.optional(),
  budget: z.object({ activeDeadline: Duration.optional() }).strict().optional(),
  stallTimeout: TimerDuration.optional(),
  terminationGracePeriod: TimerDuration.optional(),
  priority: z.number().int().min(1).max(2_097_152).optional(),
  /** Pulled stages (generate, evaluate): the sharded input. */
  input: z
    .object({
      /** A JSONL file, split into shards of `shardSize` lines. */
      file: z.string().optional(),
      shardSize: z.number().int().positive().optional(),
      /** Or a list of shard files, one task each. */
      shards: z.array(z.string()).min(1).optional(),
    })
    .strict()
    .optional(),
  /** Pulled stages: the pool of warm workers that runs the shards. */
  pool: z
    .object({
      name: Name,
      minReplicas: Replicas.nonnegative().default(0),
      maxReplicas: Replicas.positive(),
      /** Workers to start with (default: maxReplicas); `stoker scale` changes it. */
      replicas: Replicas.nonnegative().optional(),
      resources: ResourceRequest.optional(),
      /** Sized by the backlog between minReplicas and maxReplicas (replicas is then refused). */
      autoscale: AutoscaleRequest.optional(),
    })
    .strict()
    .optional(),
  /** How many shards may fail (after their retries) before the stage fails. */
  failurePolicy: z
    .object({ maxFailedShards: z.number().int().nonnegative().default(0) })
    .strict()
    .optional(),
  /** Passed to the server payload with every shard request, as `params`. */
  shardParams: z.record(z.string(), z.unknown()).optional(),
  kubernetes: KubernetesRequest.optional(),
};

export const Stage = z
  .object({
    name: Name,
    kind: z.enum(STAGE_KINDS),
    dependsOn: z.array(z.string()).default([]),
    ...stageBody,
  })
  .strict();
export type Stage = z.infer<typeof Stage>;

export const Defaults = z
  .object({
    resources: ResourceRequest.optional(),
    image: z.string().optional(),
    retry: RetryRequest.optional(),
    env: z
      .record(EnvName, z.union([z.string(), z.number(), z.boolean()]).transform(String))
      .optional(),
    stallTimeout: TimerDuration.optional(),
    terminationGracePeriod: TimerDuration.optional(),
    kubernetes: KubernetesRequest.optional(),
  })
  .strict();

const Params = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
  z.union([z.string(), z.number(), z.boolean()]),
);

export const Metadata = z
  .object({
    name: Name,
    labels: z.record(z.string(), z.string()).optional(),
    description: z.string().optional(),
  })
  .strict();

export const PipelineSpec = z
  .object({
    params: Params.default({}),
    /** Files the payloads read by relative paths, relative to the spec file (files.ts). */
    files: SpecFilePaths.optional(),
    defaults: Defaults.default({}),
    stages: z.array(Stage).min(1, 'a pipeline needs at least one stage'),
  })
  .strict();

export const SingleStageSpec = z
  .object({
    params: Params.default({}),
    files: SpecFilePaths.optional(),
    ...stageBody,
  })
  .strict();

const header = {
  apiVersion: z.literal(API_VERSION, { error: `must be "${API_VERSION}"` }),
  metadata: Metadata,
};

/**
 * The document's structure, one branch per kind. document.ts adds the graph checks
 * (graph.ts) to it: that is the schema a spec is parsed with (RunSpecDocument).
 */
export const RunSpecShape = z.discriminatedUnion(
  'kind',
  [
    z.object({ ...header, kind: z.literal('Pipeline'), spec: PipelineSpec }).strict(),
    z.object({ ...header, kind: z.literal('TrainingRun'), spec: SingleStageSpec }).strict(),
    z.object({ ...header, kind: z.literal('SelfPlay'), spec: SingleStageSpec }).strict(),
    z.object({ ...header, kind: z.literal('Evaluation'), spec: SingleStageSpec }).strict(),
  ],
  { error: `kind must be one of ${SPEC_KINDS.join(', ')}` },
);

// ---------------------------------------------------------------------------------------
// Pod environment (k8s-names.ts has the names and labels)

/**
 * Variables the kubernetes backend sets in a worker pod itself: a secretEnv entry must
 * not take one of these names (`fromEnv`, or `name` when fromEnv is left out).
 */
export const isReservedPodEnv = (name: string): boolean =>
  name === 'REDIS_URL' ||
  name.startsWith('STOKER_') ||
  name.startsWith('PET_') ||
  RANK_ENV.includes(name);
