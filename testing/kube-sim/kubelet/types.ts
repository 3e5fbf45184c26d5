/**
 * The simulated node's shapes: what a test configures (FakeKubeletOptions) and gets
 * (FakeKubelet), and what the kubelet keeps per pod it runs (PodRun) and per container
 * (ContainerRun, with its process and log). KubeletContext is what the kubelet's parts
 * (startup, containers, termination, faults) share of it.
 */
import type { ChildProcess } from 'node:child_process';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import type { Clock, ClockTimer } from '../clock.js';
import type { FakeKubeStore } from '../store/store.js';

export interface FakeKubeletOptions {
  /** Default 'fake-node'. */
  nodeName?: string;
  /** `nvidia.com/gpu` the node has (default 8). */
  gpus?: number;
  /** Node labels matched against nodeSelector / required node affinity (kubernetes.io/hostname etc. are added). */
  nodeLabels?: Record<string, string>;
  /** Images that fail to pull (pod Pending with ErrImagePull / ImagePullBackOff). */
  imagePullFailure?: RegExp | ((image: string) => boolean);
  /** ms from ErrImagePull to ImagePullBackOff (default 100). */
  imagePullBackoffMs?: number;
  /** Commands for images whose containers set none (image -> entrypoint argv). */
  imageEntrypoints?: Record<string, string[]>;
  /** Host variables processes get: 'all', or names (default PATH, HOME, TMPDIR, LANG, PYTHONPATH, VIRTUAL_ENV, ...). */
  inheritEnv?: 'all' | string[];
  /** Extra variables for every process (under the container's own). */
  extraEnv?: Record<string, string>;
  /** Working directory when the container sets none (default process.cwd()). */
  defaultWorkingDir?: string;
  /** Host directory for volumes (default: a temp dir, removed on stop). */
  mountRoot?: string;
  /** Rewrite pod/Service DNS names to 127.0.0.1 (default true). */
  resolveServiceNames?: boolean;
  /** Also set CUDA_VISIBLE_DEVICES from the GPUs allocated to the pod (default false). */
  exposeGpus?: boolean;
  /** Delay before containers start (real ms, default 0). */
  startDelayMs?: number;
  /** First delay before a restartPolicy restart, doubling per restart up to 10 s (real ms, default 100). */
  restartDelayMs?: number;
  /** Bytes of log kept per container (default 4 MiB). */
  logLimitBytes?: number;
  /** Bind new PersistentVolumeClaims at once (default true). */
  bindClaims?: boolean;
  /** Print container output to the test's stderr (default: env FAKE_KUBELET_ECHO). */
  echo?: boolean;
  /** Time for grace periods and timestamps (default: the server's clock). */
  clock?: Clock;
}

export interface PodSelector {
  namespace?: string;
  container?: string;
}

/** How FakeKubelet.evict() evicts a pod. */
export interface EvictOptions {
  namespace?: string;
  reason?:
    | 'EvictionByEvictionAPI'
    | 'PreemptionByScheduler'
    | 'DeletionByTaintManager'
    | 'TerminationByKubelet';
  gracePeriodSeconds?: number;
  message?: string;
}

export interface FakeKubelet {
  readonly nodeName: string;
  /**
   * Evict a pod: reason EvictionByEvictionAPI (default) or PreemptionByScheduler /
   * DeletionByTaintManager put a DisruptionTarget condition on it and delete it
   * gracefully; TerminationByKubelet is node-pressure eviction (DisruptionTarget, the
   * processes killed after gracePeriodSeconds (default 0), phase Failed, reason Evicted).
   */
  evict(podName: string, opts?: EvictOptions): void;
  /** The OOM killer: SIGKILL to the container's process group, terminated reason OOMKilled, exit 137. */
  oomKill(podName: string, opts?: PodSelector): void;
  /** Send a signal to a container's process group (a crash: default SIGKILL). */
  kill(podName: string, opts?: PodSelector & { signal?: NodeJS.Signals }): void;
  /** A container's output so far (stdout and stderr interleaved), also after the pod is gone. */
  logs(podName: string, opts?: PodSelector & { tailLines?: number }): string;
  /** Processes running now. */
  processes(): { namespace: string; pod: string; container: string; pid: number }[];
  /** Host directory a pod's volume mount maps to. */
  hostPathFor(podName: string, mountPath: string, opts?: PodSelector): string | undefined;
  /** Kill every process (SIGKILL), wait for them, stop reacting. */
  stop(): Promise<void>;
}

export interface LogBuffer {
  chunks: string[];
  size: number;
  ended: boolean;
  followers: Set<{ onData: (s: string) => void; onEnd: () => void }>;
}

export interface ContainerRun {
  name: string;
  image: string;
  proc?: ChildProcess;
  pid?: number;
  containerID: string;
  startedAt?: string;
  waiting?: { reason: string; message?: string };
  exitCode?: number;
  exitSignal?: NodeJS.Signals | null;
  terminated?: {
    exitCode: number;
    reason: string;
    message?: string;
    startedAt?: string;
    finishedAt: string;
    containerID: string;
  };
  lastTerminated?: ContainerRun['terminated'];
  restartCount: number;
  log: LogBuffer;
  previousLog?: LogBuffer;
  oom: boolean;
  closed?: Promise<void>;
  restartTimer?: NodeJS.Timeout;
}

export type Stage =
  | 'preparing'
  | 'pull-failed'
  | 'config-error'
  | 'awaiting-service'
  | 'starting'
  | 'running'
  | 'finished';

export interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  stage: Stage;
  containers: ContainerRun[];
  gpuIds: number[];
  mounts: { mountPath: string; hostPath: string }[];
  terminating: boolean;
  killAt?: number;
  killTimer?: ClockTimer;
  nodePressure?: string;
  removed: boolean;
  timers: NodeJS.Timeout[];
}

/** A pod's configuration names something that is not there (a Secret, a ConfigMap, a key). */
export class ConfigError extends Error {}

export const isTerminal = (p: IPod): boolean =>
  p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

/** What the kubelet's parts share: the node's settings, its store and clock, its pods. */
export interface KubeletContext {
  readonly store: FakeKubeStore;
  readonly clock: Clock;
  readonly opts: FakeKubeletOptions;
  readonly nodeName: string;
  /** Host directory the pods' volumes live under. */
  readonly mountRoot: string;
  /** The API server's port, for KUBERNETES_SERVICE_PORT. */
  readonly apiPort: number;
  /** True once stop() began: nothing more is started or written. */
  readonly stopped: boolean;
  /** The pods this node runs, by uid (until they are removed). */
  readonly runs: Map<string, PodRun>;
  /** Write the pod's status (when the pod is still this run's). */
  writeStatus(run: PodRun, fn: (status: IPodStatus, pod: IPod) => void): void;
  /** Recompute the pod's status from its containers; finish the pod when all have ended. */
  afterContainerChange(run: PodRun): void;
}
