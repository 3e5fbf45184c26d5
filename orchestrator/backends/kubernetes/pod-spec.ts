/**
 * The pod template every worker Job runs (train attempts and pool workers alike): one
 * container, `worker`, running the worker command (never a shell string).
 *
 *   security    Pod Security "restricted" (test/unit/pod-security.test.ts checks the
 *               rendered pods against its rules): non-root (runAsUser, fsGroup from the
 *               stage or the settings), no privilege escalation, every capability
 *               dropped, seccomp RuntimeDefault; and a read-only root file system unless
 *               settings.readOnlyRootFilesystem is off or the stage says
 *               `kubernetes.security.writableRoot: true`. Read-only, the paths a payload
 *               writes outside its run folder are emptyDirs (writablePaths): /tmp, and
 *               HOME (settings.workerHome), under which Hugging Face, torch, pip and
 *               triton keep their caches (~/.cache, ~/.triton) unless the payload points
 *               them elsewhere (HF_HOME on a PVC). A path a volume already serves (a PVC
 *               mounted at /tmp or HOME) gets no emptyDir
 *   API access  none: no service-account token, no service-link variables (workers talk
 *               to Redis only)
 *   resources   requests equal limits (see buildResources); GPUs as settings.gpuResourceName;
 *               cpu and memory the stage leaves out from settings.defaultResources, by
 *               the stage's kind (default-resources.ts)
 *   image       the stage's or the worker image; with settings.requireImageDigests only one
 *               pinned by digest (images.ts), else an Error
 *   placement   the stage's nodeSelector and tolerations; with GPUs, the node label of
 *               the gpuType and a toleration of the GPU taint
 *   volumes     the runs volume (STOKER_HOME), the stage's PVCs, /dev/shm in memory
 *   grace       the stage's grace plus settings.graceMarginSeconds: the worker gives the
 *               payload its grace after SIGTERM, then records the outcome; the kubelet's
 *               SIGKILL must come after both
 *   command     [settings.workerLauncher, ...command]: the launcher (stoker-env-fd) moves
 *               the variables that come from Secrets onto a descriptor and execs the
 *               worker, so its environ holds none of them (pod-env.ts sets the list);
 *               without a launcher, the command as it is
 *   env         pod-env.ts
 */
import type {
  V1Container,
  V1EnvVar,
  V1PodSpec,
  V1ResourceRequirements,
  V1Toleration,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { isLabelValue } from '../../../common/spec/schema.js';
import { mountPathKey } from '../../../common/spec/schema.js';
import type {
  NormalizedKubernetes,
  NormalizedStage,
  Resources,
  StageKind,
} from '../../../common/spec/schema.js';
import { defaultAmounts } from './default-resources.js';
import { unpinnedImage } from './images.js';
import { buildEnv } from './pod-env.js';
import type { KubernetesSettings } from './settings.js';

/** The container that runs `stoker worker` (podFailurePolicy rules name it). */
export const WORKER_CONTAINER = 'worker';

/** Where the memory-backed /dev/shm volume is mounted. */
const SHM_PATH = '/dev/shm';

export interface PodInput {
  settings: KubernetesSettings;
  k: NormalizedKubernetes;
  /** The stage's kind: which default cpu and memory its pods get. */
  kind: StageKind;
  resources: Resources;
  image: string;
  command: string[];
  env: Record<string, string>;
  secretEnv: NormalizedStage['payload']['secretEnv'];
  extraEnv: V1EnvVar[];
  graceSeconds: number;
  ports: { name: string; containerPort: number }[];
}

export function buildPodSpec(input: PodInput): V1PodSpec {
  const { settings, k, resources } = input;
  const gpus = resources.gpus;
  const unpinned = settings.requireImageDigests ? unpinnedImage(input.image) : null;
  if (unpinned) throw new Error(unpinned);
  const readOnlyRoot = settings.readOnlyRootFilesystem && !k.writableRoot;
  const { volumes, mounts } = buildVolumes(settings, k, readOnlyRoot);

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
    command:
      settings.workerLauncher === undefined
        ? input.command
        : [settings.workerLauncher, ...input.command],
    env: buildEnv(input),
    resources: buildResources(settings, input.kind, resources),
    ...(input.ports.length ? { ports: input.ports.map((p) => ({ ...p, protocol: 'TCP' })) } : {}),
    volumeMounts: mounts,
    securityContext: {
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      readOnlyRootFilesystem: readOnlyRoot,
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
 * node; GPUs (an extended resource) must have requests equal to limits anyway. An amount
 * the stage leaves out is its kind's default (settings.defaultResources), so no pod is
 * BestEffort.
 */
function buildResources(
  settings: KubernetesSettings,
  kind: StageKind,
  resources: Resources,
): V1ResourceRequirements {
  const fallback = defaultAmounts(settings.defaultResources, kind, resources.gpus);
  const amounts: Record<string, string> = {
    cpu: resources.cpu ?? fallback.cpu,
    memory: resources.memory ?? fallback.memory,
  };
  if (resources.gpus > 0) amounts[settings.gpuResourceName] = String(resources.gpus);
  return { requests: amounts, limits: { ...amounts } };
}

/**
 * Where a payload writes outside its run folder, which a read-only root file system
 * must still let it write: /tmp (tempfile, torch.compile, DeepSpeed's op builds) and HOME
 * (~/.cache for Hugging Face, torch hub and pip, ~/.triton, ~/.nv), each an emptyDir of
 * the pod. emptyDirs take the node's ephemeral storage; a model cache worth keeping
 * belongs on a PVC (HF_HOME pointing at it).
 */
export function writablePaths(settings: KubernetesSettings): { name: string; path: string }[] {
  return [
    { name: 'tmp', path: '/tmp' },
    { name: 'home', path: settings.workerHome },
  ];
}

function buildVolumes(
  settings: KubernetesSettings,
  k: NormalizedKubernetes,
  readOnlyRoot: boolean,
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
  if (readOnlyRoot) {
    const served = new Set([...taken.keys()].map(mountPathKey));
    for (const { name, path } of writablePaths(settings))
      if (!served.has(mountPathKey(path))) add({ name, emptyDir: {} }, { name, mountPath: path });
  }
  return { volumes, mounts };
}
