/**
 * Desired objects of the kubernetes backend (DESIGN.md sections 2, 4 and 7): pure
 * functions from a launch request and the stage's normalised spec to the Jobs and
 * Services the backend creates. Nothing here talks to the API server; the backend
 * creates these (AlreadyExists = already launched), watches them by label, and deletes
 * them with propagationPolicy Background.
 *
 *   buildTrainJob(req)          one attempt of a dispatched task:
 *                                 nodes = 1  a Job with one pod
 *                                 nodes = N  an Indexed Job (parallelism = completions = N)
 *                                            plus a headless Service for rendezvous
 *   buildPoolWorkers(pool, ctx) one Job per pool worker (why not a Deployment: see there)
 *   buildAll(spec, runId, s)    every object a run would create (`stoker render`)
 *
 * Every pod runs `stoker worker ...` (the worker command, never a shell string) as a
 * non-root user with a restricted security context, gets the Redis URL and the spec's
 * secrets as secretKeyRef references (never values: a value in an object would be
 * readable by anyone who may read Jobs), and no service-account token (workers never
 * call the API server).
 *
 * Rank variables of a multi-node Job (what `torchrun` and torch.distributed read):
 *
 *   NNODES, PET_NNODES                  N (nodes)
 *   NPROC_PER_NODE, PET_NPROC_PER_NODE  GPUs per node (1 without GPUs: one process per node)
 *   WORLD_SIZE                          N x NPROC_PER_NODE: processes in all, as torch means
 *                                       it (torchrun sets it again for its children)
 *   NODE_RANK, PET_NODE_RANK            the pod's completion index, from the annotation
 *                                       batch.kubernetes.io/job-completion-index
 *   MASTER_ADDR, PET_MASTER_ADDR        `${job}-0.${service}`: pod 0's stable DNS name
 *                                       (the Job controller sets each pod's hostname to
 *                                       `${job}-${index}`; the pod's subdomain is the
 *                                       headless Service, which publishes not-ready pods
 *                                       so that rank 0 resolves before it is Ready)
 *   MASTER_PORT, PET_MASTER_PORT        settings.masterPort (29500)
 *
 * A one-node Job gets the same variables with NNODES=1, NODE_RANK=0 and MASTER_ADDR
 * 127.0.0.1, so one payload command serves both shapes.
 *
 * Failure policy: backoffLimit 0 (retries are the dispatcher's, with their backoff and
 * resume pointer); podFailurePolicy ignores DisruptionTarget (preemption, eviction,
 * node drain: the pod is replaced and resumes from its checkpoint, no attempt spent)
 * and fails the Job at once on the exit codes common/exit-codes.json calls
 * non-retryable (so every other pod of a gang stops too, with reason PodFailurePolicy).
 */
import type {
  V1Container,
  V1EnvVar,
  V1Job,
  V1ObjectMeta,
  V1PodFailurePolicy,
  V1PodSpec,
  V1ResourceRequirements,
  V1Service,
  V1Toleration,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { classifyExit } from '../../../common/exit-codes.js';
import {
  defaultKubernetes,
  isLabelKey,
  isLabelValue,
  isReservedLabelKey,
  isReservedPodEnv,
  jobNameFor,
  labelValueFor,
} from '../../../common/spec/schema.js';
import type {
  NormalizedKubernetes,
  NormalizedSpec,
  NormalizedStage,
  Resources,
} from '../../../common/spec/schema.js';
import { taskIdFor } from '../../store.js';
import { taskWorkerArgs, type LaunchRequest, type PoolSpec } from '../types.js';
import {
  ANNOTATIONS,
  COMPLETION_INDEX_ANNOTATION,
  COMPONENTS,
  LABELS,
  MANAGED_BY,
  poolWorkerIdFor,
  poolWorkerJobName,
  serviceNameFor,
} from './names.js';
import type { KubernetesSettings } from './settings.js';

export { jobNameFor } from '../../../common/spec/schema.js';

/** The container that runs `stoker worker` (podFailurePolicy rules name it). */
export const WORKER_CONTAINER = 'worker';

/** Where the memory-backed /dev/shm volume is mounted. */
const SHM_PATH = '/dev/shm';

/**
 * Exit codes after which another attempt cannot help, ascending: every code below the
 * signal range that classifyExit() (common/exit-codes.json) calls non-retryable, i.e.
 * the nonRetryableRange minus its retryable entries, plus non-retryable codes outside
 * it (USAGE). 0 is success, not a failure.
 */
export const NON_RETRYABLE_EXIT_CODES: readonly number[] = Array.from(
  { length: 127 },
  (_, i) => i + 1,
).filter((code) => !classifyExit(code).retryable);

export interface TrainJobRequest extends Omit<LaunchRequest, 'image'> {
  /** The stage's normalised spec (LaunchRequest.stage is its name). */
  stageSpec: NormalizedStage;
  /** The container image (the stage's, else settings.workerImage). */
  image: string;
  /** Where the Job goes (the stage's kubernetes.namespace, else settings.namespace). */
  namespace: string;
  /** How the image runs stoker, e.g. ["stoker"]; `worker --task ...` is appended. */
  workerCommand: string[];
  /**
   * Plain variables for the worker (STOKER_PREFIX, STOKER_LOG_LEVEL...). Never a secret:
   * the Redis URL and the spec's secretEnv come from Secrets (settings.redisUrlSecret,
   * secretEnv[].secret); a variable that looks secret is refused.
   */
  env: Record<string, string>;
  settings: KubernetesSettings;
  /** The run's metadata.labels, copied onto the Job and its pods. */
  runLabels?: Record<string, string>;
}

export interface TrainJobObjects {
  job: V1Job;
  /**
   * The headless Service of a multi-node Job. Create the Job first, then this Service
   * owned by it (ownedByJob, with the uid the API server gave the Job), so that deleting
   * the Job or its TTL removes it too; a re-attaching launch creates it again if a crash
   * came between the two (AlreadyExists = fine). The pods resolve MASTER_ADDR only after
   * being scheduled and started, and torch's rendezvous retries until it resolves.
   */
  service?: V1Service;
}

/** The Job (and for a gang, its headless Service) of one attempt of a dispatched task. */
export function buildTrainJob(req: TrainJobRequest): TrainJobObjects {
  const { settings, resources } = req;
  const k = kubernetesOf(req.stageSpec, resources.gpus > 0);
  const jobName = jobNameFor(req.taskId, req.attempt);
  const nodes = resources.nodes;
  const gang = nodes > 1;
  const serviceName = gang ? serviceNameFor(jobName) : undefined;

  const labels: Record<string, string> = {
    ...userLabels(req.runLabels),
    ...commonLabels(COMPONENTS.train),
    [LABELS.run]: labelValueFor(req.runId),
    [LABELS.task]: labelValueFor(req.taskId),
    [LABELS.stage]: labelValueFor(req.stage),
    [LABELS.attempt]: String(req.attempt),
  };
  const annotations = {
    [ANNOTATIONS.runId]: req.runId,
    [ANNOTATIONS.taskId]: req.taskId,
    [ANNOTATIONS.unit]: req.unitName,
    [ANNOTATIONS.stage]: req.stage,
    [ANNOTATIONS.attempt]: String(req.attempt),
  };

  const nproc = Math.max(resources.gpus, 1);
  const masterAddr = serviceName ? `${jobName}-0.${serviceName}` : '127.0.0.1';
  const nodeRank: V1EnvVar = gang
    ? {
        name: 'NODE_RANK',
        valueFrom: {
          fieldRef: { fieldPath: `metadata.annotations['${COMPLETION_INDEX_ANNOTATION}']` },
        },
      }
    : { name: 'NODE_RANK', value: '0' };
  const rankEnv: V1EnvVar[] = [
    { name: 'NNODES', value: String(nodes) },
    { name: 'NPROC_PER_NODE', value: String(nproc) },
    { name: 'WORLD_SIZE', value: String(nodes * nproc) },
    nodeRank,
    { name: 'MASTER_ADDR', value: masterAddr },
    { name: 'MASTER_PORT', value: String(settings.masterPort) },
    // torchrun reads PET_<OPTION> as the default of --<option>.
    { name: 'PET_NNODES', value: String(nodes) },
    { name: 'PET_NPROC_PER_NODE', value: String(nproc) },
    { ...nodeRank, name: 'PET_NODE_RANK' },
    // One process per node (CPU gloo, or a payload that starts no launcher): the process
    // is the node, so its global rank is the node rank. A launcher (torchrun) with several
    // processes per node sets RANK and LOCAL_RANK itself.
    ...(nproc === 1
      ? [
          { ...nodeRank, name: 'RANK' },
          { name: 'LOCAL_RANK', value: '0' },
        ]
      : []),
    { name: 'PET_MASTER_ADDR', value: masterAddr },
    { name: 'PET_MASTER_PORT', value: String(settings.masterPort) },
  ];

  const podSpec = buildPodSpec({
    settings,
    k,
    resources,
    image: req.image,
    command: [...req.workerCommand, 'worker', ...taskWorkerArgs(req)],
    env: req.env,
    secretEnv: req.stageSpec.payload.secretEnv,
    extraEnv: rankEnv,
    graceSeconds: req.terminationGracePeriodSeconds,
    ports: gang ? [{ name: 'rendezvous', containerPort: settings.masterPort }] : [],
  });
  if (serviceName) podSpec.subdomain = serviceName;

  const job: V1Job = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: jobMetadata(jobName, req.namespace, labels, annotations, k),
    spec: {
      ...(gang ? { completionMode: 'Indexed' } : { completionMode: 'NonIndexed' }),
      completions: nodes,
      parallelism: nodes,
      backoffLimit: 0,
      podFailurePolicy: podFailurePolicy(),
      // With a failure policy only "Failed" is allowed; it also keeps a replaced pod
      // (same index, same hostname) from overlapping the one still terminating.
      podReplacementPolicy: 'Failed',
      ...(req.activeDeadlineSeconds === undefined
        ? {}
        : { activeDeadlineSeconds: Math.max(1, Math.ceil(req.activeDeadlineSeconds)) }),
      ttlSecondsAfterFinished: k.ttlSecondsAfterFinished,
      ...(k.queueName === undefined ? {} : { suspend: true }),
      template: {
        metadata: { labels: { ...labels, [LABELS.job]: jobName }, annotations },
        spec: podSpec,
      },
    },
  };
  if (!serviceName) return { job };

  const service: V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: serviceName, namespace: req.namespace, labels, annotations },
    spec: {
      clusterIP: 'None',
      selector: { [LABELS.job]: jobName },
      // Rank 0 must resolve while the pods start, before any is Ready.
      publishNotReadyAddresses: true,
      ports: [
        {
          name: 'rendezvous',
          port: settings.masterPort,
          targetPort: settings.masterPort,
          protocol: 'TCP',
        },
      ],
    },
  };
  return { job, service };
}

/**
 * Makes `service` owned by its Job, so that deleting the Job (or its TTL) deletes the
 * Service too. The backend calls this with the uid the API server gave the Job.
 */
export function ownedByJob(service: V1Service, job: { name: string; uid: string }): V1Service {
  return {
    ...service,
    metadata: {
      ...service.metadata,
      ownerReferences: [
        {
          apiVersion: 'batch/v1',
          kind: 'Job',
          name: job.name,
          uid: job.uid,
          controller: true,
          blockOwnerDeletion: false,
        },
      ],
    },
  };
}

export interface PoolWorkersContext {
  /** The pulled stage that declares the pool: its image, kubernetes block, secrets, grace. */
  stageSpec: NormalizedStage;
  /** One Job per id (the backend picks ids: poolWorkerIdFor(pool, randomHex)). */
  workerIds: string[];
  image: string;
  namespace: string;
  workerCommand: string[];
  env: Record<string, string>;
  settings: KubernetesSettings;
}

/**
 * The workers of a pool, one Job (of one pod) per worker, not a Deployment:
 *
 *   - Scale-down must stop idle workers first and never kill a busy one mid-shard. A
 *     Deployment's scale-down picks its victims by its own rules (pod-deletion-cost
 *     annotations can steer it, but they would have to be rewritten on every
 *     idle/busy change, and the ReplicaSet still races them); with one Job per worker the
 *     controller chooses exactly which worker stops: it asks that worker to drain (Redis),
 *     or deletes that worker's Job.
 *   - A draining worker finishes its shard and exits 0. In a Deployment (restartPolicy
 *     Always) the kubelet would start it again; a Job's pod that exits 0 is done.
 *   - A crashed worker fails its Job (backoffLimit 0); the controller's next pass sees
 *     fewer workers than desired and starts a new one: one level-triggered path for
 *     scale-up and replacement, as in the local backend.
 *   - With Kueue, each worker is admitted on its own, so a pool grows as quota allows.
 */
export function buildPoolWorkers(pool: PoolSpec, ctx: PoolWorkersContext): V1Job[] {
  return ctx.workerIds.map((id) => buildPoolWorkerJob(pool, id, ctx));
}

export function buildPoolWorkerJob(
  pool: PoolSpec,
  workerId: string,
  ctx: Omit<PoolWorkersContext, 'workerIds'>,
): V1Job {
  const resources: Resources = { ...pool.resources, nodes: 1 };
  const k = kubernetesOf(ctx.stageSpec, resources.gpus > 0);
  const name = poolWorkerJobName(workerId);
  const labels: Record<string, string> = {
    ...commonLabels(COMPONENTS.pool),
    [LABELS.pool]: labelValueFor(pool.name),
    [LABELS.workerId]: labelValueFor(workerId),
  };
  const annotations = { [ANNOTATIONS.pool]: pool.name, [ANNOTATIONS.workerId]: workerId };
  const podSpec = buildPodSpec({
    settings: ctx.settings,
    k,
    resources,
    image: ctx.image,
    command: [...ctx.workerCommand, 'worker', '--pool', pool.name, '--worker-id', workerId],
    env: ctx.env,
    secretEnv: ctx.stageSpec.payload.secretEnv,
    extraEnv: [],
    graceSeconds: ctx.stageSpec.terminationGracePeriodSeconds,
    ports: [],
  });
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: jobMetadata(name, ctx.namespace, labels, annotations, k),
    spec: {
      completionMode: 'NonIndexed',
      completions: 1,
      parallelism: 1,
      backoffLimit: 0,
      podFailurePolicy: podFailurePolicy(),
      podReplacementPolicy: 'Failed',
      ttlSecondsAfterFinished: k.ttlSecondsAfterFinished,
      ...(k.queueName === undefined ? {} : { suspend: true }),
      template: {
        metadata: { labels: { ...labels, [LABELS.job]: name }, annotations },
        spec: podSpec,
      },
    },
  };
}

/**
 * Every object a run would create, in creation order, as the backend would build them
 * with these settings: the first attempt of each dispatched stage (a gang's Job, then
 * its Service), and each pool's workers at the replicas the spec starts it with
 * (worker ids `${pool}-0`, `${pool}-1`...; the backend uses random ones). For
 * `stoker render`.
 */
export function buildAll(
  spec: NormalizedSpec,
  runId: string,
  settings: KubernetesSettings,
): Array<V1Job | V1Service> {
  const objects: Array<V1Job | V1Service> = [];
  const pools = new Set<string>();
  const home = settings.runsVolume?.mountPath ?? '/var/lib/stoker';
  for (const stage of spec.stages) {
    const image = stage.image ?? settings.workerImage;
    const namespace = kubernetesOf(stage, false).namespace ?? settings.namespace;
    if (stage.pool && stage.input) {
      if (pools.has(stage.pool.name)) continue;
      pools.add(stage.pool.name);
      objects.push(
        ...buildPoolWorkers(
          { name: stage.pool.name, resources: stage.pool.resources },
          {
            stageSpec: stage,
            workerIds: Array.from({ length: stage.pool.replicas }, (_, i) =>
              poolWorkerIdFor(stage.pool?.name ?? '', i),
            ),
            image,
            namespace,
            workerCommand: settings.workerCommand,
            env: {},
            settings,
          },
        ),
      );
      continue;
    }
    const taskId = taskIdFor(runId, stage.name);
    const attempt = 1;
    const { job, service } = buildTrainJob({
      // The unit name as orchestrator/dispatcher.ts's unitNameFor makes it.
      unitName: `${taskId}-a${attempt}`,
      taskId,
      runId,
      stage: stage.name,
      attempt,
      runDir: `${home}/runs/${runId}`,
      resources: stage.resources,
      activeDeadlineSeconds: stage.activeDeadlineSeconds,
      terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
      stageSpec: stage,
      image,
      namespace,
      workerCommand: settings.workerCommand,
      env: {},
      settings,
      runLabels: spec.labels,
    });
    objects.push(job);
    if (service) objects.push(service);
  }
  return objects;
}

// ---------------------------------------------------------------------------------------
// Pieces

/** The stage's kubernetes block; runs stored before it existed get the defaults. */
function kubernetesOf(stage: NormalizedStage, gpuPods: boolean): NormalizedKubernetes {
  return (stage.kubernetes as NormalizedKubernetes | undefined) ?? defaultKubernetes(gpuPods);
}

function commonLabels(component: string): Record<string, string> {
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.name]: 'stoker',
    [LABELS.component]: component,
  };
}

/** The run's own labels, minus any a spec check would have refused (keys stoker sets). */
function userLabels(labels: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(labels ?? {}).filter(
      ([key, value]) => isLabelKey(key) && !isReservedLabelKey(key) && isLabelValue(value),
    ),
  );
}

function jobMetadata(
  name: string,
  namespace: string,
  labels: Record<string, string>,
  annotations: Record<string, string>,
  k: NormalizedKubernetes,
): V1ObjectMeta {
  return {
    name,
    namespace,
    labels: k.queueName === undefined ? labels : { ...labels, [LABELS.kueueQueue]: k.queueName },
    annotations,
  };
}

function podFailurePolicy(): V1PodFailurePolicy {
  return {
    rules: [
      {
        action: 'Ignore',
        onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }],
      },
      {
        action: 'FailJob',
        onExitCodes: {
          containerName: WORKER_CONTAINER,
          operator: 'In',
          values: [...NON_RETRYABLE_EXIT_CODES],
        },
      },
    ],
  };
}

interface PodInput {
  settings: KubernetesSettings;
  k: NormalizedKubernetes;
  resources: Resources;
  image: string;
  command: string[];
  env: Record<string, string>;
  secretEnv: NormalizedStage['payload']['secretEnv'];
  extraEnv: V1EnvVar[];
  graceSeconds: number;
  ports: { name: string; containerPort: number }[];
}

function buildPodSpec(input: PodInput): V1PodSpec {
  const { settings, k, resources } = input;
  const gpus = resources.gpus;
  const { volumes, mounts } = buildVolumes(settings, k);

  const nodeSelector: Record<string, string> = { ...k.nodeSelector };
  if (gpus > 0 && resources.gpuType !== undefined) {
    const value = settings.gpuTypes[resources.gpuType] ?? resources.gpuType;
    if (!isLabelValue(value))
      throw new Error(
        `gpuType "${resources.gpuType}" maps to "${value}", which is not a node label value`,
      );
    nodeSelector[settings.gpuNodeLabel] = value;
  }

  const tolerations: V1Toleration[] = k.tolerations.map((t) => ({ ...t }));
  // GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule so that only GPU pods land there.
  const gpuToleration = { key: settings.gpuResourceName, operator: 'Exists', effect: 'NoSchedule' };
  if (gpus > 0 && !tolerations.some((t) => t.key === gpuToleration.key && t.effect !== 'NoExecute'))
    tolerations.push(gpuToleration);

  const runAsUser = k.runAsUser ?? settings.runAsUser;
  const container: V1Container = {
    name: WORKER_CONTAINER,
    image: input.image,
    imagePullPolicy: k.imagePullPolicy ?? settings.imagePullPolicy,
    command: input.command,
    env: buildEnv(input),
    resources: buildResources(settings, resources),
    ...(input.ports.length ? { ports: input.ports.map((p) => ({ ...p, protocol: 'TCP' })) } : {}),
    volumeMounts: mounts,
    securityContext: {
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      readOnlyRootFilesystem: settings.readOnlyRootFilesystem,
    },
  };

  const priorityClassName = k.priorityClassName ?? settings.priorityClassName;
  return {
    restartPolicy: 'Never',
    serviceAccountName: k.serviceAccountName ?? settings.workerServiceAccountName,
    // Workers talk to Redis only; no API token in the pod.
    automountServiceAccountToken: false,
    // No Docker-link variables for every Service in the namespace in the worker's env.
    enableServiceLinks: false,
    ...(priorityClassName === undefined ? {} : { priorityClassName }),
    // The worker gives the payload the stage's grace after SIGTERM, then records the
    // outcome; the kubelet's SIGKILL must come after both.
    terminationGracePeriodSeconds: Math.ceil(input.graceSeconds) + settings.graceMarginSeconds,
    securityContext: {
      runAsNonRoot: true,
      runAsUser,
      runAsGroup: k.fsGroup ?? settings.fsGroup,
      fsGroup: k.fsGroup ?? settings.fsGroup,
      // A data set PVC of millions of files must not be chowned on every mount.
      fsGroupChangePolicy: 'OnRootMismatch',
      seccompProfile: { type: 'RuntimeDefault' },
    },
    ...(Object.keys(nodeSelector).length ? { nodeSelector } : {}),
    ...(tolerations.length ? { tolerations } : {}),
    containers: [container],
    ...(volumes.length ? { volumes } : {}),
  };
}

/**
 * Requests equal limits: a pod with cpu and memory given is Guaranteed, which is what
 * the kubelet's CPU and topology managers need to give it whole cores on the GPUs' NUMA
 * node; GPUs (an extended resource) must have requests equal to limits anyway.
 */
function buildResources(
  settings: KubernetesSettings,
  resources: Resources,
): V1ResourceRequirements {
  const amounts: Record<string, string> = {};
  if (resources.cpu !== undefined) amounts['cpu'] = resources.cpu;
  if (resources.memory !== undefined) amounts['memory'] = resources.memory;
  if (resources.gpus > 0) amounts[settings.gpuResourceName] = String(resources.gpus);
  return Object.keys(amounts).length ? { requests: amounts, limits: { ...amounts } } : {};
}

function buildVolumes(
  settings: KubernetesSettings,
  k: NormalizedKubernetes,
): { volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const volumes: V1Volume[] = [];
  const mounts: V1VolumeMount[] = [];
  const taken = new Map<string, string>();
  const add = (volume: V1Volume, mount: V1VolumeMount): void => {
    const other = taken.get(mount.mountPath);
    if (other !== undefined)
      throw new Error(`${mount.mountPath} is mounted twice (${other} and ${volume.name})`);
    taken.set(mount.mountPath, volume.name);
    volumes.push(volume);
    mounts.push(mount);
  };
  if (settings.runsVolume) {
    // STOKER_HOME: run directories, outputs and full logs, at the controller's path.
    add(
      { name: 'runs', persistentVolumeClaim: { claimName: settings.runsVolume.claimName } },
      { name: 'runs', mountPath: settings.runsVolume.mountPath },
    );
  }
  k.volumes.pvc.forEach((m, i) => {
    const name = `pvc-${i}`;
    add(
      { name, persistentVolumeClaim: { claimName: m.claimName, readOnly: m.readOnly } },
      { name, mountPath: m.mountPath, readOnly: m.readOnly },
    );
  });
  if (k.volumes.shmSize !== null) {
    add(
      { name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: k.volumes.shmSize } },
      { name: 'dshm', mountPath: SHM_PATH },
    );
  }
  if (settings.readOnlyRootFilesystem)
    add({ name: 'tmp', emptyDir: {} }, { name: 'tmp', mountPath: '/tmp' });
  return { volumes, mounts };
}

/** Names that must never carry a plain value in an object anyone who reads Jobs can see. */
const SECRET_NAME =
  /(^|_)(REDIS_URL|PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|PRIVATE_KEY|CREDENTIALS?)$/;
/** A URL with a password in it (redis://:pw@host). */
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]+@/i;

function buildEnv(input: PodInput): V1EnvVar[] {
  const { settings } = input;
  const env: V1EnvVar[] = [];
  const seen = new Map<string, string>();
  const push = (v: V1EnvVar): void => {
    const ref = JSON.stringify(v.valueFrom ?? v.value);
    const before = seen.get(v.name);
    if (before === ref) return;
    if (before !== undefined)
      throw new Error(`environment variable ${v.name} is set twice, differently`);
    seen.set(v.name, ref);
    env.push(v);
  };

  const plain: Record<string, string> = { ...settings.workerEnv, ...input.env };
  if (settings.runsVolume) plain['STOKER_HOME'] = settings.runsVolume.mountPath;
  for (const [name, value] of Object.entries(plain)) {
    if (SECRET_NAME.test(name) || URL_WITH_PASSWORD.test(value))
      throw new Error(
        `environment variable ${name} looks secret: pass it as a Secret reference, never as a value in the Job`,
      );
    if (input.extraEnv.some((v) => v.name === name))
      throw new Error(`environment variable ${name} is set by the backend itself`);
    push({ name, value });
  }
  push({
    name: 'STOKER_REDIS_URL',
    valueFrom: {
      secretKeyRef: { name: settings.redisUrlSecret.name, key: settings.redisUrlSecret.key },
    },
  });
  // The worker copies each secretEnv entry's `fromEnv` variable into the payload's `name`
  // (worker/env.ts), so the pod holds it under fromEnv (default: name).
  for (const s of input.secretEnv) {
    const variable = s.fromEnv ?? s.name;
    if (isReservedPodEnv(variable))
      throw new Error(`secretEnv ${s.name}: ${variable} is a variable stoker sets itself`);
    push({
      name: variable,
      valueFrom: {
        secretKeyRef: { name: s.secret ?? settings.payloadSecretName, key: s.key ?? variable },
      },
    });
  }
  for (const v of input.extraEnv) push(v);
  return env;
}
