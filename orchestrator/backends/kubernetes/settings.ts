/**
 * The kubernetes backend's settings: what the controller knows about its cluster. They
 * come from the ConfigMap `stoker-config` (k8s/base/controller-config.yaml) as
 * environment variables, are parsed once at startup (settingsFromEnv, every problem
 * reported at once) and are passed inward; nothing below reads process.env.
 *
 *   STOKER_K8S_NAMESPACE               the controller's namespace: worker pods go there
 *                                      unless a stage names another
 *   STOKER_K8S_WORKER_IMAGE            worker image for stages that name none
 *   STOKER_K8S_WORKER_COMMAND          JSON argv that runs stoker in that image ["stoker"]
 *   STOKER_K8S_WORKER_LAUNCHER         what runs that command: a pod runs [launcher,
 *                                      ...command, "worker", ...] with STOKER_SECRET_ENV
 *                                      naming its secretKeyRef variables, which the
 *                                      launcher moves to a descriptor (stoker-env-fd, on
 *                                      PATH in stoker's images; "" for none: the secrets
 *                                      then stay in the worker's environ, and the worker
 *                                      warns)
 *   STOKER_K8S_IMAGE_PULL_POLICY       Always | IfNotPresent | Never (IfNotPresent)
 *   STOKER_K8S_REQUIRE_IMAGE_DIGESTS   true: worker pods run only images pinned by digest
 *                                      (images.ts); the worker image too (false)
 *   STOKER_K8S_WORKER_SERVICE_ACCOUNT  worker pods' service account (stoker-worker); its
 *                                      token is not mounted: workers never call the API
 *   STOKER_K8S_PRIORITY_CLASS          worker pods' priorityClassName ("" for none)
 *   STOKER_K8S_REDIS_SECRET            Secret and key holding the workers' Redis URL
 *   STOKER_K8S_REDIS_SECRET_KEY        (stoker-redis, worker-url: the Redis
 *                                      user `worker`): pods get it as STOKER_REDIS_URL
 *   STOKER_K8S_PAYLOAD_SECRET          Secret read by a secretEnv entry that names none
 *                                      (stoker-payload-secrets; the key is the variable)
 *   STOKER_K8S_RUNS_CLAIM              PVC holding STOKER_HOME (runs: outputs, logs),
 *   STOKER_K8S_RUNS_MOUNT              mounted at the same path in controller and workers
 *                                      (stoker-runs at /var/lib/stoker; "" for none)
 *   STOKER_K8S_GPU_RESOURCE            the GPUs' extended resource (nvidia.com/gpu)
 *   STOKER_K8S_GPU_NODE_LABEL          node label a stage's gpuType selects on
 *                                      (nvidia.com/gpu.product, from GPU feature discovery)
 *   STOKER_K8S_GPU_TYPES               JSON {gpuType: label value}, merged over the
 *                                      built-in map; an unmapped gpuType is used as is
 *   STOKER_K8S_MASTER_PORT             rendezvous port of multi-node stages (29500)
 *   STOKER_K8S_RUN_AS_USER             worker pods' uid, gid and fsGroup unless a stage
 *   STOKER_K8S_FS_GROUP                sets them (1000: the images' unprivileged user)
 *   STOKER_K8S_READ_ONLY_ROOT_FS       worker containers' root file system is read-only
 *                                      (true); /tmp and STOKER_K8S_WORKER_HOME are
 *                                      emptyDirs. A stage opts out with
 *                                      kubernetes.security.writableRoot: true
 *   STOKER_K8S_WORKER_HOME             HOME in the worker image (/home/stoker; the kind
 *                                      image's is /home/node): an emptyDir there holds
 *                                      what payloads write under ~ (~/.cache: Hugging
 *                                      Face, torch, pip; ~/.triton)
 *   STOKER_K8S_DEFAULT_RESOURCES       JSON {kind: {cpu, memory}}: what a pod gets when its
 *                                      stage names no cpu or memory, per stage kind,
 *                                      over the built-in defaults (default-resources.ts)
 *   STOKER_K8S_GC_INTERVAL_SECONDS     orphans collected again this often (0: at start only)
 *   STOKER_K8S_ALLOWED_SECRETS,        what runs may use (comma-separated, a trailing `*`
 *   STOKER_K8S_ALLOWED_PVCS,           for a prefix): when set, only these Secrets, PVCs
 *   STOKER_K8S_ALLOWED_SERVICE_ACCOUNTS  and service accounts (access-rules.ts); unset:
 *                                      any but stoker's own
 *   STOKER_PREFIX, STOKER_LOG_LEVEL    passed on to workers as they are
 */
import { z } from 'zod';
import { STAGE_KINDS } from '../../../common/spec/schema.js';
import { nameList } from './access-rules.js';
import { unpinnedImage } from './images.js';
import { DEFAULT_QUANTITY, defaultResources, type DefaultResources } from './default-resources.js';

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export interface KubernetesSettings {
  namespace: string;
  workerImage: string;
  workerCommand: string[];
  /** Runs the worker command, taking the secrets out of its environment (undefined: none). */
  workerLauncher: string | undefined;
  imagePullPolicy: PullPolicy;
  /** Worker pods run only images pinned by digest (images.ts). */
  requireImageDigests: boolean;
  workerServiceAccountName: string;
  priorityClassName: string | undefined;
  redisUrlSecret: { name: string; key: string };
  payloadSecretName: string;
  runsVolume: { claimName: string; mountPath: string } | undefined;
  gpuResourceName: string;
  gpuNodeLabel: string;
  gpuTypes: Record<string, string>;
  masterPort: number;
  runAsUser: number;
  fsGroup: number;
  /** Worker containers' root file system is read-only unless a stage says writableRoot. */
  readOnlyRootFilesystem: boolean;
  /** HOME in the worker image: an emptyDir when the root file system is read-only. */
  workerHome: string;
  /** cpu and memory of a pod whose stage names none, by stage kind (default-resources.ts). */
  defaultResources: DefaultResources;
  /** Plain (never secret) variables every worker pod gets: STOKER_PREFIX, STOKER_LOG_LEVEL. */
  workerEnv: Record<string, string>;
  /**
   * Seconds a worker pod gets beyond its stage's terminationGracePeriod: the worker
   * gives the payload the stage's grace after SIGTERM, then records the outcome.
   */
  graceMarginSeconds: number;
  /**
   * How often the leader collects orphans again after the collection at its start (0:
   * only then): a superseded attempt's Job whose delete failed, a gang's Service left by a
   * Job deleted by hand. One list of Services per pass; the rest reads the caches.
   */
  gcIntervalSeconds: number;
  /** The operator's allowlists of what runs may use (null: any but stoker's own). */
  allowed: { secrets: string[] | null; claims: string[] | null; serviceAccounts: string[] | null };
}

/** The values of GPU feature discovery's `nvidia.com/gpu.product` for common short names. */
export const DEFAULT_GPU_TYPES: Readonly<Record<string, string>> = {
  h200: 'NVIDIA-H200',
  h100: 'NVIDIA-H100-80GB-HBM3',
  a100: 'NVIDIA-A100-SXM4-80GB',
  'a100-40gb': 'NVIDIA-A100-SXM4-40GB',
  l40s: 'NVIDIA-L40S',
  l4: 'NVIDIA-L4',
  a10g: 'NVIDIA-A10G',
  t4: 'Tesla-T4',
};

export const DEFAULT_SETTINGS: Readonly<KubernetesSettings> = {
  namespace: 'stoker',
  workerImage: 'stoker-worker-gpu:latest',
  workerCommand: ['stoker'],
  workerLauncher: 'stoker-env-fd',
  imagePullPolicy: 'IfNotPresent',
  requireImageDigests: false,
  workerServiceAccountName: 'stoker-worker',
  priorityClassName: 'stoker-training',
  redisUrlSecret: { name: 'stoker-redis', key: 'worker-url' },
  payloadSecretName: 'stoker-payload-secrets',
  runsVolume: { claimName: 'stoker-runs', mountPath: '/var/lib/stoker' },
  gpuResourceName: 'nvidia.com/gpu',
  gpuNodeLabel: 'nvidia.com/gpu.product',
  gpuTypes: { ...DEFAULT_GPU_TYPES },
  masterPort: 29500,
  runAsUser: 1000,
  fsGroup: 1000,
  readOnlyRootFilesystem: true,
  workerHome: '/home/stoker',
  defaultResources: defaultResources(),
  workerEnv: {},
  graceMarginSeconds: 15,
  allowed: { secrets: null, claims: null, serviceAccounts: null },
  gcIntervalSeconds: 600,
};

/** DEFAULT_SETTINGS with some fields replaced (tests, `stoker render`). */
export function kubernetesSettings(
  overrides: Partial<KubernetesSettings> = {},
): KubernetesSettings {
  return {
    ...DEFAULT_SETTINGS,
    ...overrides,
    gpuTypes: { ...DEFAULT_SETTINGS.gpuTypes, ...overrides.gpuTypes },
    workerEnv: { ...DEFAULT_SETTINGS.workerEnv, ...overrides.workerEnv },
  };
}

const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a DNS label (lower-case letters, digits, "-")')
  .max(63);
const objectName = z
  .string()
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'a Kubernetes object name (lower-case letters, digits, "-", ".")',
  )
  .max(253);
const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((text, ctx): z.infer<T> => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: `not JSON: ${text}` });
      return z.NEVER;
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        ctx.addIssue({ code: 'custom', message: issue.message });
      return z.NEVER;
    }
    return parsed.data as z.infer<T>;
  });
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const SettingsEnv = z.object({
  STOKER_K8S_NAMESPACE: dnsLabel.optional(),
  STOKER_K8S_WORKER_IMAGE: z.string().min(1).optional(),
  STOKER_K8S_WORKER_COMMAND: json(z.array(z.string()).min(1)).optional(),
  STOKER_K8S_WORKER_LAUNCHER: z
    .union([z.literal(''), z.string().regex(/^\S+$/, 'a command or a path, without spaces')])
    .optional(),
  STOKER_K8S_IMAGE_PULL_POLICY: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  STOKER_K8S_REQUIRE_IMAGE_DIGESTS: z.enum(['true', 'false']).optional(),
  STOKER_K8S_WORKER_SERVICE_ACCOUNT: objectName.optional(),
  STOKER_K8S_ALLOWED_SECRETS: z.string().optional(),
  STOKER_K8S_ALLOWED_PVCS: z.string().optional(),
  STOKER_K8S_ALLOWED_SERVICE_ACCOUNTS: z.string().optional(),
  STOKER_K8S_PRIORITY_CLASS: z.union([z.literal(''), objectName]).optional(),
  STOKER_K8S_REDIS_SECRET: objectName.optional(),
  STOKER_K8S_REDIS_SECRET_KEY: z
    .string()
    .regex(/^[-._a-zA-Z0-9]+$/)
    .optional(),
  STOKER_K8S_PAYLOAD_SECRET: objectName.optional(),
  STOKER_K8S_RUNS_CLAIM: z.union([z.literal(''), objectName]).optional(),
  STOKER_K8S_RUNS_MOUNT: z
    .string()
    .regex(/^\/\S*$/, 'an absolute path')
    .optional(),
  STOKER_K8S_GPU_RESOURCE: z.string().min(1).optional(),
  STOKER_K8S_GPU_NODE_LABEL: z.string().min(1).optional(),
  STOKER_K8S_GPU_TYPES: json(z.record(z.string(), z.string())).optional(),
  STOKER_K8S_MASTER_PORT: int(1, 65535).optional(),
  STOKER_K8S_RUN_AS_USER: int(1, 2 ** 31 - 1).optional(),
  STOKER_K8S_FS_GROUP: int(0, 2 ** 31 - 1).optional(),
  STOKER_K8S_READ_ONLY_ROOT_FS: z.enum(['true', 'false']).optional(),
  STOKER_K8S_WORKER_HOME: z
    .string()
    .regex(/^\/[^\s:]*[^\s:/]$/, 'an absolute path such as /home/stoker (not /)')
    .optional(),
  STOKER_K8S_DEFAULT_RESOURCES: json(
    z.partialRecord(
      z.enum(STAGE_KINDS),
      z
        .object({
          cpu: z.string().regex(DEFAULT_QUANTITY, 'cpu: a quantity such as 2 or 500m').optional(),
          memory: z.string().regex(DEFAULT_QUANTITY, 'memory: a quantity such as 16Gi').optional(),
        })
        .strict(),
    ),
  ).optional(),
  STOKER_K8S_GC_INTERVAL_SECONDS: int(0, 7 * 24 * 3600).optional(),
  STOKER_PREFIX: z.string().min(1).optional(),
  STOKER_LOG_LEVEL: z.string().min(1).optional(),
});

export class SettingsError extends Error {
  override name = 'SettingsError';
  constructor(readonly issues: { variable: string; message: string }[]) {
    super(
      `invalid kubernetes settings:\n${issues.map((i) => `  ${i.variable}: ${i.message}`).join('\n')}`,
    );
  }
}

/** Settings from the environment (the ConfigMap); a SettingsError lists every bad variable. */
export function settingsFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): KubernetesSettings {
  const present = Object.fromEntries(
    Object.keys(SettingsEnv.shape).flatMap((k) => (env[k] === undefined ? [] : [[k, env[k]]])),
  );
  const parsed = SettingsEnv.safeParse(present);
  if (!parsed.success) {
    throw new SettingsError(
      parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? ''), message: i.message })),
    );
  }
  const e = parsed.data;
  const d = DEFAULT_SETTINGS;
  const requireImageDigests = e.STOKER_K8S_REQUIRE_IMAGE_DIGESTS === 'true';
  const workerImage = e.STOKER_K8S_WORKER_IMAGE ?? d.workerImage;
  const unpinned = requireImageDigests ? unpinnedImage(workerImage) : null;
  if (unpinned)
    throw new SettingsError([{ variable: 'STOKER_K8S_WORKER_IMAGE', message: unpinned }]);
  const claim = e.STOKER_K8S_RUNS_CLAIM ?? d.runsVolume?.claimName ?? '';
  const workerEnv: Record<string, string> = {};
  if (e.STOKER_PREFIX !== undefined) workerEnv['STOKER_PREFIX'] = e.STOKER_PREFIX;
  if (e.STOKER_LOG_LEVEL !== undefined) workerEnv['STOKER_LOG_LEVEL'] = e.STOKER_LOG_LEVEL;
  return kubernetesSettings({
    namespace: e.STOKER_K8S_NAMESPACE ?? d.namespace,
    workerImage,
    requireImageDigests,
    workerCommand: e.STOKER_K8S_WORKER_COMMAND ?? d.workerCommand,
    workerLauncher:
      e.STOKER_K8S_WORKER_LAUNCHER === undefined
        ? d.workerLauncher
        : e.STOKER_K8S_WORKER_LAUNCHER || undefined,
    imagePullPolicy: e.STOKER_K8S_IMAGE_PULL_POLICY ?? d.imagePullPolicy,
    workerServiceAccountName: e.STOKER_K8S_WORKER_SERVICE_ACCOUNT ?? d.workerServiceAccountName,
    priorityClassName:
      e.STOKER_K8S_PRIORITY_CLASS === undefined
        ? d.priorityClassName
        : e.STOKER_K8S_PRIORITY_CLASS || undefined,
    redisUrlSecret: {
      name: e.STOKER_K8S_REDIS_SECRET ?? d.redisUrlSecret.name,
      key: e.STOKER_K8S_REDIS_SECRET_KEY ?? d.redisUrlSecret.key,
    },
    payloadSecretName: e.STOKER_K8S_PAYLOAD_SECRET ?? d.payloadSecretName,
    runsVolume: claim
      ? {
          claimName: claim,
          mountPath: e.STOKER_K8S_RUNS_MOUNT ?? d.runsVolume?.mountPath ?? '/var/lib/stoker',
        }
      : undefined,
    gpuResourceName: e.STOKER_K8S_GPU_RESOURCE ?? d.gpuResourceName,
    gpuNodeLabel: e.STOKER_K8S_GPU_NODE_LABEL ?? d.gpuNodeLabel,
    gpuTypes: e.STOKER_K8S_GPU_TYPES ?? {},
    masterPort: e.STOKER_K8S_MASTER_PORT ?? d.masterPort,
    runAsUser: e.STOKER_K8S_RUN_AS_USER ?? d.runAsUser,
    fsGroup: e.STOKER_K8S_FS_GROUP ?? d.fsGroup,
    readOnlyRootFilesystem:
      e.STOKER_K8S_READ_ONLY_ROOT_FS === undefined
        ? d.readOnlyRootFilesystem
        : e.STOKER_K8S_READ_ONLY_ROOT_FS === 'true',
    workerHome: e.STOKER_K8S_WORKER_HOME ?? d.workerHome,
    defaultResources: defaultResources(e.STOKER_K8S_DEFAULT_RESOURCES ?? {}),
    gcIntervalSeconds: e.STOKER_K8S_GC_INTERVAL_SECONDS ?? d.gcIntervalSeconds,
    workerEnv,
    allowed: {
      secrets: nameList(e.STOKER_K8S_ALLOWED_SECRETS),
      claims: nameList(e.STOKER_K8S_ALLOWED_PVCS),
      serviceAccounts: nameList(e.STOKER_K8S_ALLOWED_SERVICE_ACCOUNTS),
    },
  });
}
