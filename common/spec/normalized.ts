/**
 * The normalised spec: the form every run is stored in (`RunRecord.spec`, orchestrator/run-record.ts)
 * and every part of the controller reads. Always a list of stages, the spec's defaults and
 * the built-in ones merged in (normalize.ts makes it from a parsed document). A TrainingRun
 * becomes a one-stage pipeline whose stage is named `train` (SelfPlay: `generate`,
 * Evaluation: `evaluate`).
 *
 * One definition, as a zod schema: the TypeScript types are inferred from it, and the run
 * store checks a record read back from Redis against it.
 *
 * What the check checks: the shape the controller, the dispatcher and the backends rely on
 * (every field present with its type, enums by value, integers where counts are), not the
 * rules a user's spec is held to at submit (name syntax, quantities, label syntax, the
 * stage graph). That is enough because only stoker writes a record, from a spec that passed
 * parseSpec (load.ts); what the check catches is a record that is not what this version
 * of stoker wrote (another version, a hand edit, a corrupt key), at the read, with the
 * path of the field, instead of a TypeError deep in a reconcile pass.
 *
 * Runs stored before the `kubernetes` block existed get the built-in block when read
 * (defaultKubernetes), as the object builders gave them before the record was typed.
 *
 * Imports only zod (as a namespace, see scripts/bundle-worker.mjs): the worker bundle
 * carries this module through common/model.ts.
 */
import * as z from 'zod';
import { SpecFile } from './files.js';

export const API_VERSION = 'stoker/v1';

export const SPEC_KINDS = ['Pipeline', 'TrainingRun', 'SelfPlay', 'Evaluation'] as const;
export type SpecKind = (typeof SPEC_KINDS)[number];

export const STAGE_KINDS = ['train', 'generate', 'evaluate', 'prepare', 'merge', 'report'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];
/** Light steps: one node, no GPUs; they take only cpu and memory from default resources. */
export const CPU_STEP_KINDS: ReadonlySet<StageKind> = new Set(['prepare', 'merge', 'report']);
/** Kinds whose stages may be pulled (sharded over a pool). */
export const PULLED_KINDS: ReadonlySet<StageKind> = new Set(['generate', 'evaluate']);

/** The stage a one-stage kind becomes. */
export const SINGLE_STAGE: Record<
  Exclude<SpecKind, 'Pipeline'>,
  { name: string; kind: StageKind }
> = {
  TrainingRun: { name: 'train', kind: 'train' },
  SelfPlay: { name: 'generate', kind: 'generate' },
  Evaluation: { name: 'evaluate', kind: 'evaluate' },
};

/**
 * Outputs every pulled stage has without declaring them, written by the controller:
 * `shards` (the manifest of its succeeded shards) and `dir` (the shard outputs).
 */
export const PULLED_OUTPUTS = ['shards', 'dir'] as const;

/** Resources a CPU step takes from spec.defaults.resources (it runs on one node, no GPUs). */
export const CPU_STEP_DEFAULT_RESOURCES = ['cpu', 'memory'] as const;

/** A mount path as a key: `/data/` and `/data` are one place. */
export const mountPathKey = (mountPath: string): string => mountPath.replace(/\/+$/, '') || '/';

export const DEFAULT_STALL_TIMEOUT_SECONDS = 0;
export const DEFAULT_GRACE_SECONDS = 30;
export const DEFAULT_RETRY_ATTEMPTS = 3;
export const DEFAULT_BACKOFF = { type: 'exponential', delay: 2 } as const;
export const DEFAULT_SHM_SIZE = '16Gi';
export const DEFAULT_GPUS_PER_NODE_MAX = 8;
export const DEFAULT_TTL_SECONDS_AFTER_FINISHED = 24 * 3600;

/**
 * An autoscaled pool's defaults: the HPA's behavior (scale up at once, by 4 workers or
 * 100% per 15 s, whichever is more; scale down after a 5-minute window, by up to 100% per
 * 15 s), and KEDA's cooldown (5 minutes of an empty queue before going to minReplicas).
 * A pool whose workers ask for GPUs lets them go sooner: DEFAULT_GPU_AUTOSCALE.
 */
export const DEFAULT_AUTOSCALE = {
  idleTimeoutSeconds: 300,
  scaleUp: {
    stabilizationWindowSeconds: 0,
    selectPolicy: 'Max',
    policies: [
      { type: 'Workers', value: 4, periodSeconds: 15 },
      { type: 'Percent', value: 100, periodSeconds: 15 },
    ],
  },
  scaleDown: {
    stabilizationWindowSeconds: 300,
    selectPolicy: 'Max',
    policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
  },
} as const;

/**
 * The defaults that differ for a pool whose worker pod asks for GPUs (README, "Autoscaled
 * pools"). The HPA's 5-minute windows are made for CPU services, where a replica is cheap
 * and a restart costs little; an idle GPU is the most expensive thing in the cluster, and
 * Stoker's scale-down is drain-safe (it removes idle workers only, a busy one finishes its
 * shard), so letting a worker go early costs a pod start and a model load on the next
 * burst, never lost work.
 *
 *   scale-down window 15 s   the shortest that keeps the recommendation of a draining
 *                            backlog from flapping (it moves with every finished shard; 0 s
 *                            gives up pods before they have loaded: in the fleet model's
 *                            ramp, 30,000 over-created pods and 600 direction changes an
 *                            hour), the HPA's sync and policy period; an idle worker is
 *                            held at most this long while shards remain
 *   idleTimeout 60 s         the queue empty: the last workers are kept about as long as
 *                            bringing one back costs (a pod start and a model load, about
 *                            a minute), the rent-or-buy rule: never more than twice the GPU
 *                            time the best choice in hindsight would have spent
 *
 * The fleet model (testing/fleet-sim, `npm run bench -- --only fleet`) measures both
 * against the HPA's windows: the GPU idle fraction falls from 0.36 / 0.52 / 0.27 to 0.08 /
 * 0.30 / 0.08 (spike, sawtooth, ramp), the drains stay within 1.3x the ideal's, and the
 * sawtooth's direction changes (21.6 an hour) stay below the KEDA-like baseline's (30.1).
 */
export const DEFAULT_GPU_AUTOSCALE = {
  idleTimeoutSeconds: 60,
  scaleDownStabilizationWindowSeconds: 15,
} as const;

/**
 * The bounds a spec is held to (schema.ts checks them; the README's "Run specs" lists
 * them). Each is far beyond any real use and well inside what the code that consumes the
 * value can hold: a grace period or a stall timeout becomes a Node timer, which holds at
 * most 2^31-1 ms (24.8 days; longer fires at once: a cancel would be an immediate SIGKILL).
 */
export const SPEC_LIMITS = {
  /** terminationGracePeriod and stallTimeout: 7 days (timers; see above). */
  timerSeconds: 7 * 24 * 3600,
  /** retry.backoff.delay: 1 day between attempts. */
  backoffSeconds: 24 * 3600,
  /** Every other duration (budget.activeDeadline, kubernetes.ttlSecondsAfterFinished): 366 days. */
  durationSeconds: 366 * 24 * 3600,
  /** A pool's minReplicas, maxReplicas and replicas. */
  replicas: 10_000,
  /** resources.nodes of a multi-node stage. */
  nodes: 10_000,
  /** resources.gpus: GPUs per node. */
  gpusPerNode: 64,
  /** pool.autoscale.behavior.*.stabilizationWindow: 1 hour (the HPA's bound). */
  stabilizationWindowSeconds: 3600,
  /** pool.autoscale.behavior.*.policies[].period: 30 minutes (the HPA's bound). */
  scalingPeriodSeconds: 1800,
  /** pool.autoscale.target.backlogSecondsPerWorker and assumeShardDuration: 1 day. */
  backlogSeconds: 24 * 3600,
  /** pool.autoscale.target.shardsPerWorker. */
  shardsPerWorker: 1_000_000,
  /** A Percent scaling policy's value (1000: ten times the workers per period). */
  scalingPercent: 1000,
} as const;

/** Resources a stage runs with, after defaults. */
export const Resources = z.object({
  gpus: z.number().int().nonnegative(),
  nodes: z.number().int().positive(),
  gpuType: z.string().optional(),
  cpu: z.string().optional(),
  memory: z.string().optional(),
});
export type Resources = z.infer<typeof Resources>;

const StoredPayload = z.object({
  command: z.array(z.string()).min(1),
  env: z.record(z.string(), z.string()),
  secretEnv: z.array(
    z.object({
      name: z.string(),
      fromEnv: z.string().optional(),
      secret: z.string().optional(),
      key: z.string().optional(),
    }),
  ),
  workingDir: z.string().optional(),
});

/**
 * A stage's `kubernetes` block with the spec's defaults and the built-in ones applied.
 * `undefined` means "the controller's setting" (known only where the objects are built).
 */
export const NormalizedKubernetes = z.object({
  namespace: z.string().optional(),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  serviceAccountName: z.string().optional(),
  nodeSelector: z.record(z.string(), z.string()),
  tolerations: z.array(
    z.object({
      key: z.string().optional(),
      operator: z.enum(['Exists', 'Equal']).optional(),
      value: z.string().optional(),
      effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
      tolerationSeconds: z.number().int().optional(),
    }),
  ),
  priorityClassName: z.string().optional(),
  volumes: z.object({
    pvc: z.array(z.object({ claimName: z.string(), mountPath: z.string(), readOnly: z.boolean() })),
    /** A memory-backed /dev/shm of this size, or null for none. */
    shmSize: z.string().nullable(),
  }),
  queueName: z.string().optional(),
  ttlSecondsAfterFinished: z.number().nonnegative(),
  runAsUser: z.number().int().optional(),
  fsGroup: z.number().int().optional(),
  gpusPerNodeMax: z.number().int().positive(),
  cpuDistributed: z.boolean(),
  /**
   * The worker container may write its root file system (`security.writableRoot`). Runs
   * stored before the field existed read as false.
   */
  writableRoot: z.boolean().default(false),
});
export type NormalizedKubernetes = z.infer<typeof NormalizedKubernetes>;

/** The block a stage without one gets (also for runs stored before the block existed). */
export function defaultKubernetes(gpuPods: boolean): NormalizedKubernetes {
  return {
    namespace: undefined,
    imagePullPolicy: undefined,
    serviceAccountName: undefined,
    nodeSelector: {},
    tolerations: [],
    priorityClassName: undefined,
    volumes: { pvc: [], shmSize: gpuPods ? DEFAULT_SHM_SIZE : null },
    queueName: undefined,
    ttlSecondsAfterFinished: DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    runAsUser: undefined,
    fsGroup: undefined,
    gpusPerNodeMax: DEFAULT_GPUS_PER_NODE_MAX,
    cpuDistributed: false,
    writableRoot: false,
  };
}

/** One direction of an autoscaled pool's `behavior` (the HPA's HPAScalingRules). */
export const NormalizedScalingRules = z.object({
  stabilizationWindowSeconds: z.number().nonnegative(),
  /** Max: the policy that allows the largest change; Min: the smallest; Disabled: none. */
  selectPolicy: z.enum(['Max', 'Min', 'Disabled']),
  policies: z.array(
    z.object({
      type: z.enum(['Workers', 'Percent']),
      value: z.number().int().positive(),
      periodSeconds: z.number().positive(),
    }),
  ),
});
export type NormalizedScalingRules = z.infer<typeof NormalizedScalingRules>;

/**
 * A pool's `autoscale` block with the defaults applied (orchestrator/autoscale/ reads it).
 * The bounds are the pool's own minReplicas and maxReplicas.
 */
export const NormalizedAutoscale = z.object({
  /** Exactly one of the two is set. */
  target: z.object({
    backlogSecondsPerWorker: z.number().positive().optional(),
    shardsPerWorker: z.number().int().positive().optional(),
  }),
  /** Seconds a shard is taken to need before one has been measured; null: none assumed. */
  assumeShardSeconds: z.number().positive().nullable(),
  /** The queue empty this long: the pool goes to its minReplicas (0 included). */
  idleTimeoutSeconds: z.number().nonnegative(),
  scaleUp: NormalizedScalingRules,
  scaleDown: NormalizedScalingRules,
});
export type NormalizedAutoscale = z.infer<typeof NormalizedAutoscale>;

export const NormalizedPool = z.object({
  name: z.string(),
  minReplicas: z.number().int().nonnegative(),
  maxReplicas: z.number().int().positive(),
  /** A pool without autoscale runs this many while a stage uses it; with it, where it starts. */
  replicas: z.number().int().nonnegative(),
  resources: Resources,
  /** Absent: a fixed pool (replicas while in use, minReplicas otherwise). */
  autoscale: NormalizedAutoscale.optional(),
});
export type NormalizedPool = z.infer<typeof NormalizedPool>;

const StageFields = z.object({
  name: z.string(),
  kind: z.enum(STAGE_KINDS),
  dependsOn: z.array(z.string()),
  payload: StoredPayload,
  outputs: z.record(z.string(), z.string()),
  resources: Resources,
  image: z.string().optional(),
  retry: z.object({
    attempts: z.number().int().positive(),
    backoff: z.object({ type: z.enum(['exponential', 'fixed']), delay: z.number().nonnegative() }),
  }),
  activeDeadlineSeconds: z.number().nonnegative().optional(),
  stallTimeoutSeconds: z.number().nonnegative(),
  terminationGracePeriodSeconds: z.number().nonnegative(),
  priority: z.number().int().optional(),
  /** Set for pulled stages (a pool and an input): shards run on the pool's workers. */
  input: z
    .object({
      file: z.string().optional(),
      shardSize: z.number().int().positive().optional(),
      shards: z.array(z.string()).optional(),
    })
    .optional(),
  pool: NormalizedPool.optional(),
  maxFailedShards: z.number().int().nonnegative(),
  shardParams: z.record(z.string(), z.unknown()),
  /** The kubernetes backend's settings for this stage, defaults merged in (see below). */
  kubernetes: NormalizedKubernetes.optional(),
});

/** Whether a stage's pods have GPUs (its own, or its pool's workers'). */
const hasGpuPods = (s: { resources: Resources; pool?: NormalizedPool | undefined }): boolean =>
  s.resources.gpus > 0 || (s.pool?.resources.gpus ?? 0) > 0;

/** A stored stage; one without a `kubernetes` block (stored before it existed) gets the built-in one. */
export const NormalizedStage = StageFields.transform((s) => ({
  ...s,
  kubernetes: s.kubernetes ?? defaultKubernetes(hasGpuPods(s)),
}));
export type NormalizedStage = z.output<typeof NormalizedStage>;

export const NormalizedSpec = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.enum(SPEC_KINDS),
  name: z.string(),
  labels: z.record(z.string(), z.string()),
  description: z.string().optional(),
  params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  /**
   * `spec.files`, read (files.ts): the run works in a directory that holds them. Absent
   * in runs stored before it existed and in specs that list none.
   */
  files: z.array(SpecFile).optional(),
  stages: z.array(NormalizedStage).min(1),
});
export type NormalizedSpec = z.output<typeof NormalizedSpec>;
