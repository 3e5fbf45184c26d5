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
 *
 * A Pipeline's `spec.defaults` (resources, image, retry, env, stallTimeout,
 * terminationGracePeriod) merge into every stage, the stage winning field by field (env
 * key by key). CPU steps (prepare, merge, report) take only cpu and memory from the
 * default resources: they run on one node without GPUs. See load.ts.
 *
 * Durations are strings like "90s", "10m", "2h" or numbers of seconds.
 */
import { z } from 'zod';

export const API_VERSION = 'stoker/v1';

export const STAGE_KINDS = ['train', 'generate', 'evaluate', 'prepare', 'merge', 'report'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];
export const CPU_STEP_KINDS: ReadonlySet<StageKind> = new Set(['prepare', 'merge', 'report']);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const Name = z
  .string()
  .max(40, 'at most 40 characters (it becomes part of Kubernetes object names)')
  .regex(
    DNS_LABEL,
    'a name of lower-case letters, digits and "-", starting and ending with a letter or digit',
  );

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** A duration as seconds: a number, or a string such as "30s", "10m", "2h". */
export const Duration = z.union([
  z.number().nonnegative(),
  z.string().transform((value, ctx) => {
    const m = DURATION.exec(value.trim());
    if (!m) {
      ctx.addIssue({
        code: 'custom',
        message: `"${value}" is not a duration (expected e.g. 30s, 10m, 2h)`,
      });
      return z.NEVER;
    }
    return Number(m[1]) * (UNIT_SECONDS[m[2] as string] ?? 1);
  }),
]);

const Quantity = z
  .union([
    z.number().positive(),
    z
      .string()
      .regex(/^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/, 'a Kubernetes quantity such as 16Gi or 500m'),
  ])
  .transform(String);

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

/**
 * Resources as written in a spec: every field optional, so that `spec.defaults.resources`
 * merges into a stage's resources field by field (defaults `gpuType: h100` plus a stage's
 * `gpus: 8`). The built-in defaults (0 GPUs, 1 node) are applied at normalisation.
 */
export const ResourceRequest = z
  .object({
    gpus: z.number().int().nonnegative().optional(),
    nodes: z.number().int().positive().optional(),
    gpuType: z.string().optional(),
    cpu: Quantity.optional(),
    memory: Quantity.optional(),
  })
  .strict();
export type ResourceRequest = z.infer<typeof ResourceRequest>;

/** Resources a stage runs with, after defaults. */
export const Resources = ResourceRequest.extend({
  gpus: z.number().int().nonnegative().default(0),
  nodes: z.number().int().positive().default(1),
}).strict();
export type Resources = z.infer<typeof Resources>;

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
        delay: Duration.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type RetryRequest = z.infer<typeof RetryRequest>;

/** A retry policy with the built-in defaults: 3 attempts, exponential backoff from 2 s. */
export const RetryPolicy = z
  .object({
    attempts: z.number().int().min(1).max(100).default(3),
    backoff: z
      .object({
        type: z.enum(['exponential', 'fixed']).default('exponential'),
        delay: Duration.default(2),
      })
      .strict()
      .default({ type: 'exponential', delay: 2 }),
  })
  .strict();
export type RetryPolicy = z.infer<typeof RetryPolicy>;

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
  stallTimeout: Duration.optional(),
  terminationGracePeriod: Duration.optional(),
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
      minReplicas: z.number().int().nonnegative().default(0),
      maxReplicas: z.number().int().positive(),
      /** Workers to start with (default: maxReplicas); `stoker scale` changes it. */
      replicas: z.number().int().nonnegative().optional(),
      resources: ResourceRequest.optional(),
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
    stallTimeout: Duration.optional(),
    terminationGracePeriod: Duration.optional(),
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
    defaults: Defaults.default({}),
    stages: z.array(Stage).min(1, 'a pipeline needs at least one stage'),
  })
  .strict();

export const SingleStageSpec = z
  .object({
    params: Params.default({}),
    ...stageBody,
  })
  .strict();

const header = {
  apiVersion: z.literal(API_VERSION, { error: `must be "${API_VERSION}"` }),
  metadata: Metadata,
};

export const RunSpecDocument = z.discriminatedUnion(
  'kind',
  [
    z.object({ ...header, kind: z.literal('Pipeline'), spec: PipelineSpec }).strict(),
    z.object({ ...header, kind: z.literal('TrainingRun'), spec: SingleStageSpec }).strict(),
    z.object({ ...header, kind: z.literal('SelfPlay'), spec: SingleStageSpec }).strict(),
    z.object({ ...header, kind: z.literal('Evaluation'), spec: SingleStageSpec }).strict(),
  ],
  { error: 'kind must be one of Pipeline, TrainingRun, SelfPlay, Evaluation' },
);
export type RunSpecDocument = z.infer<typeof RunSpecDocument>;

/**
 * The normalised form every run is stored in: always a list of stages, defaults applied.
 * A TrainingRun becomes a one-stage pipeline whose stage is named `train` (SelfPlay:
 * `generate`, Evaluation: `evaluate`).
 */
export interface NormalizedStage {
  name: string;
  kind: StageKind;
  dependsOn: string[];
  payload: Payload;
  outputs: Record<string, string>;
  resources: Resources;
  image: string | undefined;
  retry: { attempts: number; backoff: { type: 'exponential' | 'fixed'; delay: number } };
  activeDeadlineSeconds: number | undefined;
  stallTimeoutSeconds: number;
  terminationGracePeriodSeconds: number;
  priority: number | undefined;
  /** Set for pulled stages (a pool and an input): shards run on the pool's workers. */
  input?: { file?: string; shardSize?: number; shards?: string[] };
  pool?: NormalizedPool;
  maxFailedShards: number;
  shardParams: Record<string, unknown>;
}

export interface NormalizedPool {
  name: string;
  minReplicas: number;
  maxReplicas: number;
  replicas: number;
  resources: Resources;
}

/** Kinds whose stages may be pulled (sharded over a pool). */
export const PULLED_KINDS: ReadonlySet<StageKind> = new Set(['generate', 'evaluate']);

export interface NormalizedSpec {
  apiVersion: typeof API_VERSION;
  kind: RunSpecDocument['kind'];
  name: string;
  labels: Record<string, string>;
  description: string | undefined;
  params: Record<string, string | number | boolean>;
  stages: NormalizedStage[];
}

export const DEFAULT_STALL_TIMEOUT_SECONDS = 0;
export const DEFAULT_GRACE_SECONDS = 30;
export const DEFAULT_RETRY_ATTEMPTS = 3;
export const DEFAULT_BACKOFF = { type: 'exponential', delay: 2 } as const;
