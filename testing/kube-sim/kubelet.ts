/**
 * The fake cluster's node: a scheduler, a kubelet and a volume provisioner for one
 * simulated node, in-process on the fake API server's store and driven by its events.
 * Each pod bound to the node runs its containers as local child processes (own process
 * group each), so a Job's command really runs on this machine. The Job controller is in
 * job-controller.ts; startFakeCluster() starts server, Job controller and kubelet together.
 *
 * Scheduling: a pod needs its PersistentVolumeClaims to exist, its nodeSelector /
 * required node affinity to match the node's labels, and `nvidia.com/gpu` within what
 * the node has left; otherwise it stays Pending with PodScheduled=False, reason
 * Unschedulable and the real scheduler's message (`0/1 nodes are available: 1
 * Insufficient nvidia.com/gpu.`, `... persistentvolumeclaim "x" not found.`), retried when
 * resources free up or the claim appears.
 *
 * Containers: the image is ignored (processes run here), except that images matching
 * `imagePullFailure` never start (waiting ErrImagePull, then ImagePullBackOff). The
 * command is `command + args` (`imageEntrypoints` supplies a command for an image when
 * the container has none), with `$(VAR)` expansion. The environment is the container's
 * (value, valueFrom secretKeyRef / configMapKeyRef / fieldRef, envFrom), on top of a few
 * host variables (PATH, HOME, ...; see inheritEnv). A missing Secret/ConfigMap or key
 * leaves the pod Pending with waiting reason CreateContainerConfigError and the real
 * message (`secret "x" not found`, `couldn't find key K in Secret ns/x`), retried when
 * the Secret appears.
 *
 * Names and paths (the one deliberate difference from a node; a pod with a subdomain
 * waits in ContainerCreating until that headless Service exists, since its names are
 * resolved once, as it starts):
 * - DNS: names of a pod behind a Service (`HOST.SUBDOMAIN`, `HOST.SUBDOMAIN.NS.svc...`,
 *   e.g. `job-0.job-headless` for an Indexed Job's pod 0) and Service FQDNs
 *   (`SVC.NS.svc.cluster.local`) resolve to 127.0.0.1: where they appear in env values,
 *   command or args they are rewritten to `127.0.0.1`, when that Service exists (as DNS
 *   needs it to). So MASTER_ADDR=job-0.job-headless reaches rank 0 on this machine.
 * - Volumes: a volumeMount's mountPath is remapped to a host directory under mountRoot
 *   (PVCs: mountRoot/pvc/NS/CLAIM, shared by pods; emptyDir: per pod; secret/configMap:
 *   files written per pod; hostPath: the path itself) wherever it prefixes a path in env
 *   values, command, args or workingDir.
 * - Env FAKE_KUBELET=1, POD_IP/HOST_IP-style fieldRefs give 127.0.0.1.
 *
 * Lifecycle: Pending (ContainerCreating) -> Running -> Succeeded / Failed with
 * containerStatuses (running, terminated with exitCode and reason Completed / Error /
 * OOMKilled / StartError) and conditions. restartPolicy OnFailure/Always restarts the
 * container (restartCount, lastState). Deletion: SIGTERM to the process group, SIGKILL
 * after the grace period (the delete's gracePeriodSeconds, else the pod's
 * terminationGracePeriodSeconds), terminal phase, then the pod is removed.
 *
 * Faults: evict() (DisruptionTarget then graceful deletion, or node-pressure eviction),
 * oomKill(), kill(), image pull failures, unschedulable GPU requests, missing secrets,
 * PVCs and PriorityClasses (the last is refused at pod creation by the API server).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IContainerStatus } from 'kubernetes-models/v1/ContainerStatus';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { IPodCondition } from 'kubernetes-models/v1/PodCondition';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import type { Clock, ClockTimer } from './clock.js';
import {
  startFakeApiServer,
  type FakeApiServer,
  type FakeApiServerOptions,
  type PodLogSource,
} from './kube-apiserver.js';
import {
  type KubeObject,
  KubeApiError,
  apiError,
  isPlainObject,
  kubeTime,
} from './kube-objects.js';
import { GPU_RESOURCE, type StoreEvent } from './kube-store.js';
import {
  startJobController,
  type FakeJobController,
  type FakeJobControllerOptions,
} from './job-controller.js';

export { startJobController, COMPLETION_INDEX } from './job-controller.js';
export type { FakeJobController, FakeJobControllerOptions } from './job-controller.js';

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

export interface FakeKubelet {
  readonly nodeName: string;
  /**
   * Evict a pod: reason EvictionByEvictionAPI (default) or PreemptionByScheduler /
   * DeletionByTaintManager put a DisruptionTarget condition on it and delete it
   * gracefully; TerminationByKubelet is node-pressure eviction (DisruptionTarget, the
   * processes killed after gracePeriodSeconds (default 0), phase Failed, reason Evicted).
   */
  evict(
    podName: string,
    opts?: {
      namespace?: string;
      reason?:
        | 'EvictionByEvictionAPI'
        | 'PreemptionByScheduler'
        | 'DeletionByTaintManager'
        | 'TerminationByKubelet';
      gracePeriodSeconds?: number;
      message?: string;
    },
  ): void;
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

interface LogBuffer {
  chunks: string[];
  size: number;
  ended: boolean;
  followers: Set<{ onData: (s: string) => void; onEnd: () => void }>;
}

interface ContainerRun {
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

type Stage =
  | 'preparing'
  | 'pull-failed'
  | 'config-error'
  | 'awaiting-service'
  | 'starting'
  | 'running'
  | 'finished';

interface PodRun {
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

const DEFAULT_INHERIT = [
  'PATH',
  'HOME',
  'USER',
  'SHELL',
  'TMPDIR',
  'TEMP',
  'TMP',
  'LANG',
  'LC_ALL',
  'TZ',
  'NODE_PATH',
  'PYTHONPATH',
  'PYTHONHOME',
  'VIRTUAL_ENV',
  'CONDA_PREFIX',
  'LD_LIBRARY_PATH',
];

const isTerminal = (p: IPod): boolean =>
  p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

function quantity(v: unknown): number {
  if (v === undefined || v === null) return 0;
  const n = Number(String(v));
  return Number.isFinite(n) ? n : 0;
}

export function podGpus(pod: IPod): number {
  let n = 0;
  for (const c of pod.spec?.containers ?? []) {
    const r = c.resources;
    n += quantity(r?.limits?.[GPU_RESOURCE] ?? r?.requests?.[GPU_RESOURCE]);
  }
  return n;
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Kubernetes `$(VAR)` expansion (`$$` escapes, unknown references stay as written). */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && Object.prototype.hasOwnProperty.call(env, name) ? env[name]! : m;
  });
}

class KubeletImpl implements FakeKubelet, PodLogSource {
  readonly nodeName: string;
  private readonly server: FakeApiServer;
  private readonly clock: Clock;
  private readonly opts: FakeKubeletOptions;
  private readonly capacityGpus: number;
  private readonly labels: Record<string, string>;
  private readonly mountRoot: string;
  private readonly ownsMountRoot: boolean;
  private readonly runs = new Map<string, PodRun>();
  /** Latest run per `ns/name`, kept after the pod is gone (for logs()). */
  private readonly byName = new Map<string, PodRun>();
  private readonly unschedulable = new Set<string>();
  private readonly queue = new Set<string>();
  private scheduled = false;
  private stopped = false;
  private readonly unsubscribe: () => void;

  constructor(server: FakeApiServer, opts: FakeKubeletOptions) {
    this.server = server;
    this.opts = opts;
    this.clock = opts.clock ?? server.clock;
    this.nodeName = opts.nodeName ?? 'fake-node';
    this.capacityGpus = opts.gpus ?? 8;
    this.labels = {
      'kubernetes.io/hostname': this.nodeName,
      'kubernetes.io/os': 'linux',
      'kubernetes.io/arch': process.arch === 'arm64' ? 'arm64' : 'amd64',
      ...(opts.nodeLabels ?? {}),
    };
    this.ownsMountRoot = opts.mountRoot === undefined;
    this.mountRoot = opts.mountRoot ?? mkdtempSync(join(tmpdir(), 'fake-kubelet-'));
    this.registerNode();
    server.setPodLogSource(this);
    this.unsubscribe = server.store.subscribe((ev) => this.onEvent(ev));
    for (const p of server.store.list('pods'))
      this.enqueue(p.metadata.namespace!, p.metadata.name!);
    if (opts.bindClaims ?? true)
      for (const c of server.store.list('persistentvolumeclaims')) this.bindClaim(c);
  }

  private get store() {
    return this.server.store;
  }

  private registerNode(): void {
    const node = {
      metadata: { name: this.nodeName, labels: this.labels },
      spec: {},
      status: {
        capacity: {
          cpu: '16',
          memory: '128Gi',
          pods: '110',
          [GPU_RESOURCE]: String(this.capacityGpus),
        },
        allocatable: {
          cpu: '16',
          memory: '128Gi',
          pods: '110',
          [GPU_RESOURCE]: String(this.capacityGpus),
        },
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'KubeletReady',
            message: 'kubelet is posting ready status',
            lastHeartbeatTime: kubeTime(this.clock.now()),
            lastTransitionTime: kubeTime(this.clock.now()),
          },
        ],
        addresses: [
          { type: 'InternalIP', address: '127.0.0.1' },
          { type: 'Hostname', address: this.nodeName },
        ],
        nodeInfo: {
          machineID: 'fake',
          systemUUID: 'fake',
          bootID: 'fake',
          kernelVersion: 'fake',
          osImage: 'fake',
          containerRuntimeVersion: 'fake://1.0',
          kubeletVersion: 'v1.31.0-fake',
          kubeProxyVersion: 'v1.31.0-fake',
          operatingSystem: 'linux',
          architecture: 'amd64',
        },
      },
    };
    try {
      this.store.create('nodes', node);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.code === 409)) throw err;
    }
  }

  // -------------------------------------------------------------------------------------
  // Events and the work queue

  private onEvent(ev: StoreEvent): void {
    if (this.stopped) return;
    const ns = ev.object.metadata.namespace ?? '';
    switch (ev.resource) {
      case 'pods': {
        if (ev.type === 'DELETED') {
          this.onPodRemoved(ev.object);
          this.wakeUnschedulable();
          return;
        }
        this.enqueue(ns, ev.object.metadata.name!);
        const pod = ev.object as unknown as IPod;
        const prev = ev.previous as unknown as IPod | undefined;
        if (isTerminal(pod) && prev && !isTerminal(prev)) this.wakeUnschedulable();
        return;
      }
      case 'secrets':
      case 'configmaps':
        if (ev.type === 'DELETED') return;
        for (const r of this.runs.values())
          if (r.namespace === ns && r.stage === 'config-error') this.enqueue(r.namespace, r.name);
        return;
      case 'persistentvolumeclaims':
        if (ev.type === 'ADDED' && (this.opts.bindClaims ?? true)) this.bindClaim(ev.object);
        if (ev.type !== 'DELETED') this.wakeUnschedulable();
        return;
      case 'services':
        if (ev.type !== 'ADDED') return;
        for (const r of this.runs.values())
          if (r.namespace === ns && r.stage === 'awaiting-service')
            this.enqueue(r.namespace, r.name);
        return;
      default:
        return;
    }
  }

  private wakeUnschedulable(): void {
    for (const k of this.unschedulable) {
      const [ns, name] = k.split('/') as [string, string];
      this.enqueue(ns, name);
    }
  }

  private enqueue(ns: string, name: string): void {
    if (this.stopped) return;
    this.queue.add(`${ns}/${name}`);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const keys = [...this.queue];
      this.queue.clear();
      for (const k of keys) {
        if (this.stopped) return;
        const [ns2, name2] = k.split('/') as [string, string];
        try {
          this.syncPod(ns2, name2);
        } catch (err) {
          if (!(err instanceof KubeApiError && err.code === 404))
            process.emitWarning(`fake kubelet: ${(err as Error).stack ?? String(err)}`);
        }
      }
    });
  }

  private bindClaim(claim: KubeObject): void {
    const status = isPlainObject(claim['status']) ? claim['status'] : {};
    if (status['phase'] === 'Bound') return;
    this.store.mutate(
      'persistentvolumeclaims',
      claim.metadata.namespace,
      claim.metadata.name!,
      (c: KubeObject) => {
        const spec = isPlainObject(c['spec']) ? c['spec'] : {};
        const req =
          isPlainObject(spec['resources']) && isPlainObject(spec['resources']['requests'])
            ? spec['resources']['requests']
            : {};
        if (!spec['volumeName']) spec['volumeName'] = `pvc-${c.metadata.uid ?? ''}`;
        c['spec'] = spec;
        c['status'] = {
          phase: 'Bound',
          accessModes: Array.isArray(spec['accessModes']) ? spec['accessModes'] : ['ReadWriteOnce'],
          capacity: { storage: typeof req['storage'] === 'string' ? req['storage'] : '1Gi' },
        };
      },
    );
  }

  // -------------------------------------------------------------------------------------
  // Scheduling

  private schedule(pod: IPod): void {
    const ns = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const key = `${ns}/${name}`;
    let message: string | undefined;
    for (const v of pod.spec?.volumes ?? []) {
      const claim = v.persistentVolumeClaim?.claimName;
      if (claim && !this.store.get('persistentvolumeclaims', ns, claim)) {
        message = `0/1 nodes are available: persistentvolumeclaim "${claim}" not found.`;
        break;
      }
    }
    if (!message && !this.matchesNode(pod))
      message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";
    if (!message) {
      const need = podGpus(pod);
      if (need > this.capacityGpus - this.gpusInUse(pod.metadata!.uid!))
        message = `0/1 nodes are available: 1 Insufficient ${GPU_RESOURCE}.`;
    }
    const now = kubeTime(this.clock.now());
    if (message) {
      this.unschedulable.add(key);
      let changed = false;
      this.store.mutate<IPod>('pods', ns, name, (p) => {
        const status = (p.status ??= {});
        status.phase = 'Pending';
        const prev = (status.conditions ?? []).find((c) => c.type === 'PodScheduled');
        if (prev?.status === 'False' && prev.message === message) return false;
        changed = true;
        setCondition(status, 'PodScheduled', 'False', now, 'Unschedulable', message);
        return true;
      });
      if (changed)
        this.store.recordEvent(
          pod as unknown as KubeObject,
          'Warning',
          'FailedScheduling',
          message,
          'default-scheduler',
        );
      return;
    }
    this.unschedulable.delete(key);
    this.store.mutate<IPod>('pods', ns, name, (p) => {
      p.spec!.nodeName = this.nodeName;
      const status = (p.status ??= {});
      setCondition(status, 'PodScheduled', 'True', now);
    });
    this.store.recordEvent(
      pod as unknown as KubeObject,
      'Normal',
      'Scheduled',
      `Successfully assigned ${ns}/${name} to ${this.nodeName}`,
      'default-scheduler',
    );
  }

  private matchesNode(pod: IPod): boolean {
    for (const [k, v] of Object.entries(pod.spec?.nodeSelector ?? {}))
      if (this.labels[k] !== v) return false;
    const terms =
      pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms;
    if (terms && terms.length > 0) {
      const ok = terms.some((t) =>
        (t.matchExpressions ?? []).every((e) => {
          const has = Object.prototype.hasOwnProperty.call(this.labels, e.key);
          const v = this.labels[e.key];
          switch (e.operator) {
            case 'In':
              return has && (e.values ?? []).includes(v!);
            case 'NotIn':
              return !has || !(e.values ?? []).includes(v!);
            case 'Exists':
              return has;
            case 'DoesNotExist':
              return !has;
            case 'Gt':
              return has && Number(v) > Number(e.values?.[0]);
            case 'Lt':
              return has && Number(v) < Number(e.values?.[0]);
            default:
              return false;
          }
        }),
      );
      if (!ok) return false;
    }
    return true;
  }

  private gpusInUse(exceptUid: string): number {
    let n = 0;
    for (const p of this.store.list<IPod>('pods', {
      fieldSelector: `spec.nodeName=${this.nodeName}`,
    })) {
      if (p.metadata?.uid === exceptUid || isTerminal(p)) continue;
      n += podGpus(p);
    }
    return n;
  }

  private allocateGpus(pod: IPod): number[] {
    const need = podGpus(pod);
    if (need === 0) return [];
    const used = new Set<number>();
    for (const r of this.runs.values())
      if (r.stage !== 'finished') for (const g of r.gpuIds) used.add(g);
    const ids: number[] = [];
    for (let i = 0; i < this.capacityGpus && ids.length < need; i++) if (!used.has(i)) ids.push(i);
    return ids;
  }

  // -------------------------------------------------------------------------------------
  // The pod lifecycle

  private syncPod(ns: string, name: string): void {
    const pod = this.store.get<IPod>('pods', ns, name);
    if (!pod) return;
    const uid = pod.metadata!.uid!;
    if (!pod.spec?.nodeName) {
      if (!pod.metadata?.deletionTimestamp) this.schedule(pod);
      return;
    }
    if (pod.spec.nodeName !== this.nodeName) return;
    this.unschedulable.delete(`${ns}/${name}`);
    let run = this.runs.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      this.terminate(pod, run);
      return;
    }
    if (isTerminal(pod)) return;
    if (!run) {
      run = this.newRun(pod);
      this.writeStatus(run, (status) => {
        const now = kubeTime(this.clock.now());
        status.phase = 'Pending';
        status.hostIP = '127.0.0.1';
        status.hostIPs = [{ ip: '127.0.0.1' }];
        status.podIP = '127.0.0.1';
        status.podIPs = [{ ip: '127.0.0.1' }];
        status.startTime ??= now;
        setCondition(status, 'PodReadyToStartContainers', 'True', now);
        setCondition(status, 'Initialized', 'True', now);
        setCondition(
          status,
          'Ready',
          'False',
          now,
          'ContainersNotReady',
          this.notReadyMessage(run!),
        );
        setCondition(
          status,
          'ContainersReady',
          'False',
          now,
          'ContainersNotReady',
          this.notReadyMessage(run!),
        );
        status.containerStatuses = this.containerStatuses(run!, pod);
      });
    }
    if (
      run.stage === 'preparing' ||
      run.stage === 'config-error' ||
      run.stage === 'awaiting-service'
    )
      this.prepare(pod, run);
  }

  private newRun(pod: IPod): PodRun {
    const ns = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const run: PodRun = {
      uid: pod.metadata!.uid!,
      namespace: ns,
      name,
      stage: 'preparing',
      containers: (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        image: c.image ?? '',
        containerID: `containerd://${Math.random().toString(16).slice(2)}${Math.random().toString(16).slice(2)}`,
        waiting: { reason: 'ContainerCreating' },
        restartCount: 0,
        log: { chunks: [], size: 0, ended: false, followers: new Set() },
        oom: false,
      })),
      gpuIds: this.allocateGpus(pod),
      mounts: [],
      terminating: false,
      removed: false,
      timers: [],
    };
    this.runs.set(run.uid, run);
    this.byName.set(`${ns}/${name}`, run);
    return run;
  }

  private notReadyMessage(run: PodRun): string {
    const names = run.containers.filter((c) => !c.proc || c.terminated).map((c) => c.name);
    return `containers with unready status: [${names.join(' ')}]`;
  }

  private containerStatuses(run: PodRun, pod: IPod): IContainerStatus[] {
    return run.containers.map((c) => {
      const spec = (pod.spec?.containers ?? []).find((x) => x.name === c.name);
      const cs: IContainerStatus = {
        name: c.name,
        image: spec?.image ?? c.image,
        imageID: c.startedAt ? `fake://${c.image}` : '',
        ready: !!c.proc && !c.terminated && !c.waiting,
        restartCount: c.restartCount,
        started: !!c.proc && !c.terminated && !c.waiting,
      };
      if (c.startedAt) cs.containerID = c.containerID;
      if (c.terminated) cs.state = { terminated: { ...c.terminated } };
      else if (c.waiting) cs.state = { waiting: { ...c.waiting } };
      else if (c.startedAt) cs.state = { running: { startedAt: c.startedAt } };
      else cs.state = { waiting: { reason: 'ContainerCreating' } };
      cs.lastState = c.lastTerminated ? { terminated: { ...c.lastTerminated } } : {};
      return cs;
    });
  }

  /** Write the pod's status (when the pod is still this run's). */
  private writeStatus(run: PodRun, fn: (status: IPodStatus, pod: IPod) => void): void {
    if (run.removed || this.stopped) return;
    this.store.mutate<IPod>('pods', run.namespace, run.name, (p) => {
      if (p.metadata?.uid !== run.uid) return false;
      const status = (p.status ??= {});
      fn(status, p);
      return true;
    });
  }

  private prepare(pod: IPod, run: PodRun): void {
    const ns = run.namespace;
    // Images.
    const fail = this.opts.imagePullFailure;
    const pullFails = (image: string): boolean =>
      !!fail && (typeof fail === 'function' ? fail(image) : fail.test(image));
    const bad = (pod.spec?.containers ?? []).filter((c) => pullFails(c.image ?? ''));
    if (bad.length > 0) {
      run.stage = 'pull-failed';
      for (const c of bad) {
        const image = c.image ?? '';
        const cr = run.containers.find((x) => x.name === c.name)!;
        const msg = `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": failed to resolve reference "${image}": ${image}: not found`;
        cr.waiting = { reason: 'ErrImagePull', message: msg };
        this.store.recordEvent(
          pod as unknown as KubeObject,
          'Normal',
          'Pulling',
          `Pulling image "${image}"`,
          'kubelet',
        );
        this.store.recordEvent(
          pod as unknown as KubeObject,
          'Warning',
          'Failed',
          `Failed to pull image "${image}": ${msg}`,
          'kubelet',
        );
        this.store.recordEvent(
          pod as unknown as KubeObject,
          'Warning',
          'Failed',
          'Error: ErrImagePull',
          'kubelet',
        );
      }
      this.writeStatus(run, (status, p) => {
        status.containerStatuses = this.containerStatuses(run, p);
      });
      const t = setTimeout(() => {
        if (run.removed || run.stage !== 'pull-failed') return;
        for (const c of bad) {
          const image = c.image ?? '';
          const cr = run.containers.find((x) => x.name === c.name)!;
          cr.waiting = { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` };
          this.store.recordEvent(
            pod as unknown as KubeObject,
            'Normal',
            'BackOff',
            `Back-off pulling image "${image}"`,
            'kubelet',
          );
          this.store.recordEvent(
            pod as unknown as KubeObject,
            'Warning',
            'Failed',
            'Error: ImagePullBackOff',
            'kubelet',
          );
        }
        this.writeStatus(run, (status, p) => {
          status.containerStatuses = this.containerStatuses(run, p);
        });
      }, this.opts.imagePullBackoffMs ?? 100);
      t.unref();
      run.timers.push(t);
      return;
    }
    // DNS: a pod of a headless Service (spec.subdomain) reaches its peers by name only
    // once that Service exists. Names are rewritten to 127.0.0.1 as the container starts
    // (rewriteNames), so the pod waits in ContainerCreating until its Service is there: a
    // real pod would start and retry the name until it resolves, as torch's rendezvous
    // does. (The backend creates a gang's Service just after its Job, owned by it.)
    const subdomain = pod.spec?.subdomain;
    if (
      subdomain &&
      this.opts.resolveServiceNames !== false &&
      !this.store.get('services', ns, subdomain)
    ) {
      run.stage = 'awaiting-service';
      return;
    }
    // Volumes and environment.
    let problem: { reason: string; message: string; event: string } | undefined;
    try {
      run.mounts = this.setUpVolumes(pod, run);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problem = { reason: 'ContainerCreating', message: err.message, event: 'FailedMount' };
    }
    const envs = new Map<string, Record<string, string>>();
    if (!problem) {
      for (const c of pod.spec?.containers ?? []) {
        try {
          envs.set(c.name, this.environment(pod, c, run));
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          problem = { reason: 'CreateContainerConfigError', message: err.message, event: 'Failed' };
          break;
        }
      }
    }
    if (problem) {
      const first = run.stage !== 'config-error';
      run.stage = 'config-error';
      for (const cr of run.containers)
        cr.waiting =
          problem.reason === 'ContainerCreating'
            ? { reason: 'ContainerCreating' }
            : { reason: problem.reason, message: problem.message };
      this.writeStatus(run, (status, p) => {
        status.containerStatuses = this.containerStatuses(run, p);
      });
      if (first)
        this.store.recordEvent(
          pod as unknown as KubeObject,
          'Warning',
          problem.event,
          problem.event === 'Failed' ? `Error: ${problem.message}` : problem.message,
          'kubelet',
        );
      return;
    }
    run.stage = 'starting';
    for (const cr of run.containers) cr.waiting = { reason: 'ContainerCreating' };
    const start = (): void => {
      if (run.removed || this.stopped || run.terminating || run.stage !== 'starting') return;
      const current = this.store.get<IPod>('pods', ns, run.name);
      if (!current || current.metadata?.uid !== run.uid) return;
      run.stage = 'running';
      for (const c of current.spec?.containers ?? [])
        this.startContainer(current, run, c, envs.get(c.name) ?? {});
      this.afterContainerChange(run);
    };
    const t = setTimeout(start, this.opts.startDelayMs ?? 0);
    t.unref();
    run.timers.push(t);
  }

  private setUpVolumes(pod: IPod, run: PodRun): { mountPath: string; hostPath: string }[] {
    const ns = run.namespace;
    const volumes = new Map<string, string>();
    for (const v of pod.spec?.volumes ?? []) {
      let host: string;
      if (v.persistentVolumeClaim) {
        host = join(this.mountRoot, 'pvc', ns, v.persistentVolumeClaim.claimName);
      } else if (v.hostPath) {
        host = v.hostPath.path;
        if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(host, { recursive: true });
      } else if (v.secret) {
        host = join(this.mountRoot, 'pods', run.uid, 'volumes', v.name);
        const s = this.store.get('secrets', ns, v.secret.secretName ?? '');
        if (!s && !v.secret.optional)
          throw new ConfigError(
            `MountVolume.SetUp failed for volume "${v.name}" : secret "${v.secret.secretName ?? ''}" not found`,
          );
        mkdirSync(host, { recursive: true });
        const data = s && isPlainObject(s['data']) ? s['data'] : {};
        for (const [k, val] of Object.entries(data))
          writeFileSync(join(host, k), Buffer.from(String(val), 'base64'));
      } else if (v.configMap) {
        host = join(this.mountRoot, 'pods', run.uid, 'volumes', v.name);
        const cm = this.store.get('configmaps', ns, v.configMap.name ?? '');
        if (!cm && !v.configMap.optional)
          throw new ConfigError(
            `MountVolume.SetUp failed for volume "${v.name}" : configmap "${v.configMap.name ?? ''}" not found`,
          );
        mkdirSync(host, { recursive: true });
        const data = cm && isPlainObject(cm['data']) ? cm['data'] : {};
        for (const [k, val] of Object.entries(data)) writeFileSync(join(host, k), String(val));
      } else {
        host = join(this.mountRoot, 'pods', run.uid, 'volumes', v.name);
      }
      mkdirSync(host, { recursive: true });
      volumes.set(v.name, host);
    }
    const mounts: { mountPath: string; hostPath: string }[] = [];
    for (const c of pod.spec?.containers ?? []) {
      for (const m of c.volumeMounts ?? []) {
        const base = volumes.get(m.name);
        if (!base) continue;
        const hostPath = m.subPath ? join(base, m.subPath) : base;
        if (m.subPath) mkdirSync(hostPath, { recursive: true });
        if (!mounts.some((x) => x.mountPath === m.mountPath))
          mounts.push({ mountPath: m.mountPath, hostPath });
      }
    }
    mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);
    return mounts;
  }

  private remapPaths(s: string, run: PodRun): string {
    let out = s;
    for (const m of run.mounts) {
      if (m.mountPath === m.hostPath) continue;
      const re = new RegExp(
        `(^|[=:\\s,"'(])${escapeRe(m.mountPath.replace(/\/+$/, ''))}(?=/|$|[\\s:,"')])`,
        'g',
      );
      out = out.replace(re, (_all, pre: string) => `${pre}${m.hostPath}`);
    }
    return out;
  }

  private rewriteNames(s: string, ns: string): string {
    if (this.opts.resolveServiceNames === false) return s;
    let out = s;
    for (const svc of this.store.list('services', { namespace: ns })) {
      const n = escapeRe(svc.metadata.name!);
      const nsRe = escapeRe(ns);
      // HOST.SVC[.NS[.svc[.cluster.local]]] or SVC.NS[.svc[.cluster.local]]
      const re = new RegExp(
        `(?<![\\w.-])(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\\.${n}(?:\\.${nsRe}(?:\\.svc(?:\\.cluster\\.local)?)?)?|${n}\\.${nsRe}(?:\\.svc(?:\\.cluster\\.local)?)?)(?![\\w-]|\\.[\\w])`,
        'g',
      );
      out = out.replace(re, '127.0.0.1');
    }
    return out;
  }

  private environment(pod: IPod, c: IContainer, run: PodRun): Record<string, string> {
    const ns = run.namespace;
    const env: Record<string, string> = {};
    const inherit = this.opts.inheritEnv ?? DEFAULT_INHERIT;
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && (inherit === 'all' || inherit.includes(k))) env[k] = v;
    }
    Object.assign(env, this.opts.extraEnv ?? {});
    env['HOSTNAME'] = pod.spec?.hostname ?? pod.metadata!.name!;
    env['FAKE_KUBELET'] = '1';
    env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
    env['KUBERNETES_SERVICE_PORT'] = String(this.server.port);
    env['NVIDIA_VISIBLE_DEVICES'] = run.gpuIds.length ? run.gpuIds.join(',') : 'void';
    if (this.opts.exposeGpus) env['CUDA_VISIBLE_DEVICES'] = run.gpuIds.join(',');
    const own: Record<string, string> = {};
    for (const from of c.envFrom ?? []) {
      const prefix = from.prefix ?? '';
      if (from.secretRef) {
        const s = this.store.get('secrets', ns, from.secretRef.name ?? '');
        if (!s) {
          if (from.secretRef.optional) continue;
          throw new ConfigError(`secret "${from.secretRef.name ?? ''}" not found`);
        }
        for (const [k, v] of Object.entries(isPlainObject(s['data']) ? s['data'] : {}))
          own[prefix + k] = Buffer.from(String(v), 'base64').toString('utf8');
      }
      if (from.configMapRef) {
        const cm = this.store.get('configmaps', ns, from.configMapRef.name ?? '');
        if (!cm) {
          if (from.configMapRef.optional) continue;
          throw new ConfigError(`configmap "${from.configMapRef.name ?? ''}" not found`);
        }
        for (const [k, v] of Object.entries(isPlainObject(cm['data']) ? cm['data'] : {}))
          own[prefix + k] = String(v);
      }
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom === undefined) {
        own[e.name] = expandVars(e.value ?? '', { ...env, ...own });
        continue;
      }
      const vf = e.valueFrom;
      if (vf.secretKeyRef) {
        const ref = vf.secretKeyRef;
        const s = this.store.get('secrets', ns, ref.name ?? '');
        if (!s) {
          if (ref.optional) continue;
          throw new ConfigError(`secret "${ref.name ?? ''}" not found`);
        }
        const data = isPlainObject(s['data']) ? s['data'] : {};
        if (data[ref.key] === undefined) {
          if (ref.optional) continue;
          throw new ConfigError(`couldn't find key ${ref.key} in Secret ${ns}/${ref.name ?? ''}`);
        }
        own[e.name] = Buffer.from(String(data[ref.key]), 'base64').toString('utf8');
      } else if (vf.configMapKeyRef) {
        const ref = vf.configMapKeyRef;
        const cm = this.store.get('configmaps', ns, ref.name ?? '');
        if (!cm) {
          if (ref.optional) continue;
          throw new ConfigError(`configmap "${ref.name ?? ''}" not found`);
        }
        const data = isPlainObject(cm['data']) ? cm['data'] : {};
        if (data[ref.key] === undefined) {
          if (ref.optional) continue;
          throw new ConfigError(
            `couldn't find key ${ref.key} in ConfigMap ${ns}/${ref.name ?? ''}`,
          );
        }
        own[e.name] = String(data[ref.key]);
      } else if (vf.fieldRef) {
        own[e.name] = this.fieldRef(pod, vf.fieldRef.fieldPath);
      } else if (vf.resourceFieldRef) {
        const r = c.resources;
        const res = vf.resourceFieldRef.resource;
        const [kind, what] = res.split('.') as [string, string];
        const src = kind === 'limits' ? r?.limits : r?.requests;
        own[e.name] = String(src?.[what] ?? '0');
      }
    }
    const out = { ...env, ...own };
    for (const k of Object.keys(own)) out[k] = this.remapPaths(this.rewriteNames(own[k]!, ns), run);
    return out;
  }

  private fieldRef(pod: IPod, path: string): string {
    const m = path.match(/^metadata\.(labels|annotations)\['(.*)'\]$/);
    if (m) {
      const map = m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
      return map?.[m[2]!] ?? '';
    }
    switch (path) {
      case 'metadata.name':
        return pod.metadata?.name ?? '';
      case 'metadata.namespace':
        return pod.metadata?.namespace ?? '';
      case 'metadata.uid':
        return pod.metadata?.uid ?? '';
      case 'spec.nodeName':
        return pod.spec?.nodeName ?? '';
      case 'spec.serviceAccountName':
        return pod.spec?.serviceAccountName ?? 'default';
      case 'status.hostIP':
      case 'status.hostIPs':
      case 'status.podIP':
      case 'status.podIPs':
        return '127.0.0.1';
      default:
        throw apiError(400, `unsupported fieldRef ${path}`);
    }
  }

  private startContainer(pod: IPod, run: PodRun, c: IContainer, env: Record<string, string>): void {
    const cr = run.containers.find((x) => x.name === c.name)!;
    const ns = run.namespace;
    const entry =
      c.command ??
      this.opts.imageEntrypoints?.[c.image ?? ''] ??
      this.opts.imageEntrypoints?.[(c.image ?? '').replace(/:[^/]*$/, '')];
    const argv = [...(entry ?? []), ...(c.args ?? [])].map((a) =>
      this.remapPaths(this.rewriteNames(expandVars(a, env), ns), run),
    );
    const now = kubeTime(this.clock.now());
    delete cr.waiting;
    delete cr.terminated;
    delete cr.exitCode;
    cr.oom = false;
    cr.startedAt = now;
    const fail = (message: string): void => {
      cr.terminated = {
        exitCode: 128,
        reason: 'StartError',
        message,
        startedAt: now,
        finishedAt: kubeTime(this.clock.now()),
        containerID: cr.containerID,
      };
      this.store.recordEvent(
        pod as unknown as KubeObject,
        'Warning',
        'Failed',
        `Error: ${message}`,
        'kubelet',
      );
    };
    if (argv.length === 0) {
      fail(
        `fake kubelet: container "${c.name}" has no command and image "${c.image ?? ''}" has no entrypoint (set imageEntrypoints)`,
      );
      return;
    }
    let cwd = c.workingDir
      ? this.remapPaths(c.workingDir, run)
      : (this.opts.defaultWorkingDir ?? process.cwd());
    if (!existsSync(cwd)) {
      // The runtime creates a missing working directory inside the container's filesystem.
      cwd = join(this.mountRoot, 'pods', run.uid, 'rootfs', cwd);
      mkdirSync(cwd, { recursive: true });
    }
    let proc: ChildProcess;
    try {
      proc = spawn(argv[0]!, argv.slice(1), {
        cwd,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      fail(`failed to create containerd task: ${(err as Error).message}`);
      return;
    }
    cr.proc = proc;
    if (proc.pid !== undefined) cr.pid = proc.pid;
    const echo = this.opts.echo ?? !!process.env['FAKE_KUBELET_ECHO'];
    const onData = (chunk: Buffer): void => {
      const s = chunk.toString('utf8');
      this.appendLog(cr.log, s);
      if (echo) process.stderr.write(`[${ns}/${run.name}/${c.name}] ${s}`);
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    this.store.recordEvent(
      pod as unknown as KubeObject,
      'Normal',
      'Pulled',
      `Container image "${c.image ?? ''}" already present on machine`,
      'kubelet',
    );
    this.store.recordEvent(
      pod as unknown as KubeObject,
      'Normal',
      'Created',
      `Created container: ${c.name}`,
      'kubelet',
    );
    this.store.recordEvent(
      pod as unknown as KubeObject,
      'Normal',
      'Started',
      `Started container ${c.name}`,
      'kubelet',
    );
    let exited = false;
    let spawnError: Error | undefined;
    cr.closed = new Promise<void>((resolve) => {
      let finalized = false;
      const finalize = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (finalized) return;
        finalized = true;
        resolve();
        this.onContainerExit(run, cr, code, signal, spawnError);
      };
      proc.on('error', (err) => {
        spawnError = err;
        if (proc.pid === undefined) finalize(null, null);
      });
      proc.on('exit', (code, signal) => {
        exited = true;
        cr.exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
        cr.exitSignal = signal;
        // The container is gone: so is everything else in its process group.
        killGroup(proc.pid, 'SIGKILL');
        const t = setTimeout(() => {
          proc.stdout?.destroy();
          proc.stderr?.destroy();
          finalize(code, signal);
        }, 2000);
        t.unref();
      });
      proc.on('close', (code, signal) => {
        if (exited || spawnError) finalize(code, signal);
      });
    });
  }

  private appendLog(log: LogBuffer, s: string): void {
    log.chunks.push(s);
    log.size += s.length;
    const limit = this.opts.logLimitBytes ?? 4 * 1024 * 1024;
    while (log.size > limit && log.chunks.length > 1) log.size -= log.chunks.shift()!.length;
    for (const f of log.followers) f.onData(s);
  }

  private endLog(log: LogBuffer): void {
    log.ended = true;
    for (const f of log.followers) f.onEnd();
    log.followers.clear();
  }

  private onContainerExit(
    run: PodRun,
    cr: ContainerRun,
    code: number | null,
    signal: NodeJS.Signals | null,
    spawnError: Error | undefined,
  ): void {
    const finishedAt = kubeTime(this.clock.now());
    delete cr.proc;
    if (spawnError && code === null && signal === null) {
      const msg =
        (spawnError as NodeJS.ErrnoException).code === 'ENOENT'
          ? `failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "${(spawnError as NodeJS.ErrnoException).path ?? ''}": executable file not found in $PATH: unknown`
          : `failed to create containerd task: ${spawnError.message}`;
      cr.terminated = {
        exitCode: 128,
        reason: 'StartError',
        message: msg,
        startedAt: cr.startedAt ?? finishedAt,
        finishedAt,
        containerID: cr.containerID,
      };
    } else {
      const exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
      const reason = cr.oom ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
      cr.terminated = {
        exitCode,
        reason,
        startedAt: cr.startedAt ?? finishedAt,
        finishedAt,
        containerID: cr.containerID,
      };
    }
    if (this.stopped || run.removed) {
      this.endLog(cr.log);
      return;
    }
    const pod = this.store.get<IPod>('pods', run.namespace, run.name);
    const policy = pod?.spec?.restartPolicy ?? 'Always';
    const failed = cr.terminated.exitCode !== 0;
    if (
      !run.terminating &&
      !run.nodePressure &&
      pod &&
      (policy === 'Always' || (policy === 'OnFailure' && failed))
    ) {
      // Restart in place: CrashLoopBackOff until it runs again.
      cr.lastTerminated = cr.terminated;
      delete cr.terminated;
      cr.restartCount += 1;
      cr.waiting = {
        reason: 'CrashLoopBackOff',
        message: `back-off restarting failed container ${cr.name} in pod ${run.name}_${run.namespace}(${run.uid})`,
      };
      cr.previousLog = cr.log;
      this.endLog(cr.log);
      cr.log = { chunks: [], size: 0, ended: false, followers: new Set() };
      this.afterContainerChange(run);
      cr.restartTimer = setTimeout(
        () => {
          delete cr.restartTimer;
          if (run.removed || run.terminating || this.stopped) return;
          const p = this.store.get<IPod>('pods', run.namespace, run.name);
          const c = p?.spec?.containers.find((x) => x.name === cr.name);
          if (!p || !c) return;
          let env: Record<string, string>;
          try {
            env = this.environment(p, c, run);
          } catch {
            return;
          }
          this.startContainer(p, run, c, env);
          this.afterContainerChange(run);
        },
        Math.min((this.opts.restartDelayMs ?? 100) * 2 ** (cr.restartCount - 1), 10_000),
      );
      cr.restartTimer.unref();
      return;
    }
    this.endLog(cr.log);
    this.afterContainerChange(run);
  }

  /** Recompute the pod's status from its containers; finish the pod when all have ended. */
  private afterContainerChange(run: PodRun): void {
    const now = kubeTime(this.clock.now());
    const allDone = run.containers.every((c) => c.terminated && !c.restartTimer);
    const allRunning = run.containers.every((c) => c.proc && !c.terminated && !c.waiting);
    if (allDone) {
      run.stage = 'finished';
      run.killTimer?.cancel();
    }
    this.writeStatus(run, (status, pod) => {
      status.containerStatuses = this.containerStatuses(run, pod);
      if (allDone) {
        const ok = run.containers.every((c) => c.terminated?.exitCode === 0);
        status.phase = ok && !run.nodePressure ? 'Succeeded' : 'Failed';
        if (run.nodePressure) {
          status.reason = 'Evicted';
          status.message = run.nodePressure;
        }
        setCondition(status, 'PodReadyToStartContainers', 'False', now);
        setCondition(status, 'Ready', 'False', now, 'PodCompleted');
        setCondition(status, 'ContainersReady', 'False', now, 'PodCompleted');
      } else if (allRunning) {
        status.phase = 'Running';
        setCondition(status, 'Ready', 'True', now);
        setCondition(status, 'ContainersReady', 'True', now);
      } else {
        if (run.containers.some((c) => c.proc && !c.terminated)) status.phase = 'Running';
        setCondition(
          status,
          'Ready',
          'False',
          now,
          'ContainersNotReady',
          this.notReadyMessage(run),
        );
        setCondition(
          status,
          'ContainersReady',
          'False',
          now,
          'ContainersNotReady',
          this.notReadyMessage(run),
        );
      }
    });
    if (allDone) {
      this.wakeUnschedulable();
      if (run.terminating) this.finishDeletion(run);
    }
  }

  private terminate(pod: IPod, run: PodRun | undefined): void {
    if (!run) {
      // Bound but never started here: nothing to stop.
      this.failAndRemove(pod);
      return;
    }
    const live = run.containers.filter((c) => c.proc && !c.terminated);
    const firstTime = !run.terminating;
    run.terminating = true;
    for (const t of run.timers) clearTimeout(t);
    for (const c of run.containers) if (c.restartTimer) clearTimeout(c.restartTimer);
    if (live.length === 0) {
      if (run.stage !== 'finished') {
        run.stage = 'finished';
        for (const c of run.containers) if (!c.terminated) this.endLog(c.log);
        this.failAndRemove(pod);
      } else this.finishDeletion(run);
      return;
    }
    const grace =
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    if (firstTime) {
      for (const c of live) {
        this.store.recordEvent(
          pod as unknown as KubeObject,
          'Normal',
          'Killing',
          `Stopping container ${c.name}`,
          'kubelet',
        );
        killGroup(c.pid, grace === 0 ? 'SIGKILL' : 'SIGTERM');
      }
    }
    const killAt = this.clock.now() + grace * 1000;
    if (run.killAt === undefined || killAt < run.killAt) {
      run.killAt = killAt;
      run.killTimer?.cancel();
      run.killTimer = this.clock.setTimeout(() => {
        for (const c of run.containers) if (c.proc && !c.terminated) killGroup(c.pid, 'SIGKILL');
      }, grace * 1000);
    }
  }

  /** A pod going away that has no process: terminal phase, then removal. */
  private failAndRemove(pod: IPod): void {
    const ns = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    if (!isTerminal(pod)) {
      this.store.mutate<IPod>('pods', ns, name, (p) => {
        if (p.metadata?.uid !== pod.metadata?.uid) return false;
        const status = (p.status ??= {});
        status.phase = 'Failed';
        const now = kubeTime(this.clock.now());
        setCondition(status, 'Ready', 'False', now, 'PodCompleted');
        setCondition(status, 'ContainersReady', 'False', now, 'PodCompleted');
        return true;
      });
    }
    this.removeFromStore(ns, name, pod.metadata!.uid!);
  }

  private finishDeletion(run: PodRun): void {
    this.removeFromStore(run.namespace, run.name, run.uid);
  }

  private removeFromStore(ns: string, name: string, uid: string): void {
    if (this.stopped) return;
    try {
      this.store.delete('pods', ns, name, { gracePeriodSeconds: 0, preconditions: { uid } });
    } catch (err) {
      if (!(err instanceof KubeApiError && (err.code === 404 || err.code === 409))) throw err;
    }
  }

  private onPodRemoved(obj: KubeObject): void {
    const run = this.runs.get(obj.metadata.uid ?? '');
    this.unschedulable.delete(`${obj.metadata.namespace ?? ''}/${obj.metadata.name ?? ''}`);
    if (!run) return;
    run.removed = true;
    run.killTimer?.cancel();
    for (const t of run.timers) clearTimeout(t);
    for (const c of run.containers) {
      if (c.restartTimer) clearTimeout(c.restartTimer);
      if (c.proc && !c.terminated) killGroup(c.pid, 'SIGKILL');
      else if (!c.log.ended) this.endLog(c.log);
    }
    this.runs.delete(run.uid);
    if (run.gpuIds.length) run.gpuIds = [];
    rmSync(join(this.mountRoot, 'pods', run.uid), { recursive: true, force: true });
  }

  // -------------------------------------------------------------------------------------
  // Faults and inspection

  private findPod(podName: string, namespace: string | undefined): IPod {
    if (namespace) return this.store.getOrThrow<IPod>('pods', namespace, podName);
    const found = this.store.list<IPod>('pods', { fieldSelector: `metadata.name=${podName}` });
    if (found.length === 0) throw new Error(`fake kubelet: no pod named ${podName}`);
    if (found.length > 1)
      throw new Error(`fake kubelet: pod ${podName} exists in several namespaces; pass namespace`);
    return found[0]!;
  }

  private container(podName: string, opts: PodSelector = {}): { run: PodRun; cr: ContainerRun } {
    const pod = this.findPod(podName, opts.namespace);
    const run = this.runs.get(pod.metadata!.uid!);
    if (!run) throw new Error(`fake kubelet: pod ${podName} is not running on ${this.nodeName}`);
    const cr = opts.container
      ? run.containers.find((c) => c.name === opts.container)
      : (run.containers.find((c) => c.proc && !c.terminated) ?? run.containers[0]);
    if (!cr)
      throw new Error(`fake kubelet: pod ${podName} has no container ${opts.container ?? ''}`);
    return { run, cr };
  }

  evict(
    podName: string,
    opts: {
      namespace?: string;
      reason?:
        | 'EvictionByEvictionAPI'
        | 'PreemptionByScheduler'
        | 'DeletionByTaintManager'
        | 'TerminationByKubelet';
      gracePeriodSeconds?: number;
      message?: string;
    } = {},
  ): void {
    const pod = this.findPod(podName, opts.namespace);
    const ns = pod.metadata!.namespace!;
    const reason = opts.reason ?? 'EvictionByEvictionAPI';
    if (reason !== 'TerminationByKubelet') {
      const o: { reason: string; message?: string; gracePeriodSeconds?: number } = { reason };
      if (opts.message !== undefined) o.message = opts.message;
      if (opts.gracePeriodSeconds !== undefined) o.gracePeriodSeconds = opts.gracePeriodSeconds;
      this.store.evictPod(ns, podName, o);
      return;
    }
    const run = this.runs.get(pod.metadata!.uid!);
    const message =
      opts.message ??
      'The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ';
    const now = kubeTime(this.clock.now());
    this.store.mutate<IPod>('pods', ns, podName, (p) => {
      const status = (p.status ??= {});
      setCondition(status, 'DisruptionTarget', 'True', now, 'TerminationByKubelet', message);
    });
    this.store.recordEvent(pod as unknown as KubeObject, 'Warning', 'Evicted', message, 'kubelet');
    if (!run) return;
    run.nodePressure = message;
    const grace = opts.gracePeriodSeconds ?? 0;
    for (const c of run.containers)
      if (c.proc && !c.terminated) killGroup(c.pid, grace === 0 ? 'SIGKILL' : 'SIGTERM');
    if (grace > 0) {
      run.killTimer?.cancel();
      run.killTimer = this.clock.setTimeout(() => {
        for (const c of run.containers) if (c.proc && !c.terminated) killGroup(c.pid, 'SIGKILL');
      }, grace * 1000);
    }
  }

  oomKill(podName: string, opts: PodSelector = {}): void {
    const { cr } = this.container(podName, opts);
    if (!cr.proc || cr.terminated)
      throw new Error(`fake kubelet: container ${cr.name} of ${podName} is not running`);
    cr.oom = true;
    killGroup(cr.pid, 'SIGKILL');
  }

  kill(podName: string, opts: PodSelector & { signal?: NodeJS.Signals } = {}): void {
    const { cr } = this.container(podName, opts);
    if (!cr.proc || cr.terminated)
      throw new Error(`fake kubelet: container ${cr.name} of ${podName} is not running`);
    killGroup(cr.pid, opts.signal ?? 'SIGKILL');
  }

  logs(podName: string, opts: PodSelector & { tailLines?: number } = {}): string {
    const key = opts.namespace
      ? `${opts.namespace}/${podName}`
      : [...this.byName.keys()].find((k) => k.endsWith(`/${podName}`));
    const run = key ? this.byName.get(key) : undefined;
    if (!run) throw new Error(`fake kubelet: no pod ${podName} ran on ${this.nodeName}`);
    const cr = opts.container
      ? run.containers.find((c) => c.name === opts.container)
      : run.containers[0];
    if (!cr)
      throw new Error(`fake kubelet: pod ${podName} has no container ${opts.container ?? ''}`);
    return tail(cr.log.chunks.join(''), opts.tailLines);
  }

  processes(): { namespace: string; pod: string; container: string; pid: number }[] {
    const out: { namespace: string; pod: string; container: string; pid: number }[] = [];
    for (const r of this.runs.values())
      for (const c of r.containers)
        if (c.proc && !c.terminated && c.pid)
          out.push({ namespace: r.namespace, pod: r.name, container: c.name, pid: c.pid });
    return out;
  }

  hostPathFor(podName: string, mountPath: string, opts: PodSelector = {}): string | undefined {
    const pod = this.findPod(podName, opts.namespace);
    const run =
      this.runs.get(pod.metadata!.uid!) ??
      this.byName.get(`${pod.metadata!.namespace!}/${podName}`);
    return run?.mounts.find((m) => m.mountPath === mountPath)?.hostPath;
  }

  // PodLogSource (pods/log on the API server).
  read(
    namespace: string,
    pod: string,
    container: string | undefined,
    opts: { tailLines?: number; limitBytes?: number; previous?: boolean },
  ): string {
    const run = this.byName.get(`${namespace}/${pod}`);
    const cr =
      run && (container ? run.containers.find((c) => c.name === container) : run.containers[0]);
    if (!run || !cr || (!cr.startedAt && !opts.previous)) {
      const reason =
        cr?.waiting?.reason === 'ImagePullBackOff' || cr?.waiting?.reason === 'ErrImagePull'
          ? 'trying and failing to pull image'
          : (cr?.waiting?.reason ?? 'ContainerCreating');
      throw apiError(
        400,
        `container "${container ?? cr?.name ?? ''}" in pod "${pod}" is waiting to start: ${reason}`,
      );
    }
    const log = opts.previous ? cr.previousLog : cr.log;
    if (!log)
      throw apiError(400, `previous terminated container "${cr.name}" in pod "${pod}" not found`);
    let text = tail(log.chunks.join(''), opts.tailLines);
    if (opts.limitBytes !== undefined)
      text = Buffer.from(text).subarray(0, opts.limitBytes).toString('utf8');
    return text;
  }

  follow(
    namespace: string,
    pod: string,
    container: string | undefined,
    onData: (s: string) => void,
    onEnd: () => void,
  ): () => void {
    const run = this.byName.get(`${namespace}/${pod}`);
    const cr =
      run && (container ? run.containers.find((c) => c.name === container) : run.containers[0]);
    if (!cr || cr.log.ended) {
      setImmediate(onEnd);
      return () => undefined;
    }
    const f = { onData, onEnd };
    cr.log.followers.add(f);
    const log = cr.log;
    return () => log.followers.delete(f);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe();
    this.server.setPodLogSource(undefined);
    const waits: Promise<void>[] = [];
    for (const r of this.runs.values()) {
      r.killTimer?.cancel();
      for (const t of r.timers) clearTimeout(t);
      for (const c of r.containers) {
        if (c.restartTimer) clearTimeout(c.restartTimer);
        if (c.proc && !c.terminated) {
          killGroup(c.pid, 'SIGKILL');
          if (c.closed) waits.push(c.closed);
        }
      }
    }
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 5000).unref())]);
    for (const r of this.runs.values())
      for (const c of r.containers) if (!c.log.ended) this.endLog(c.log);
    if (this.ownsMountRoot) rmSync(this.mountRoot, { recursive: true, force: true });
  }
}

class ConfigError extends Error {}

function tail(text: string, lines: number | undefined): string {
  if (lines === undefined) return text;
  const parts = text.split('\n');
  const trailing = parts[parts.length - 1] === '' ? parts.pop() : undefined;
  const kept = parts.slice(Math.max(0, parts.length - lines));
  return kept.join('\n') + (trailing !== undefined && kept.length > 0 ? '\n' : '');
}

function setCondition(
  status: IPodStatus,
  type: string,
  value: 'True' | 'False',
  now: string,
  reason?: string,
  message?: string,
): void {
  const conds: IPodCondition[] = [...(status.conditions ?? [])];
  const i = conds.findIndex((c) => c.type === type);
  const prev = i >= 0 ? conds[i] : undefined;
  if (prev && prev.status === value && prev.reason === reason && prev.message === message) return;
  const c: IPodCondition = {
    type,
    status: value,
    lastTransitionTime: prev && prev.status === value ? (prev.lastTransitionTime ?? now) : now,
  };
  if (reason !== undefined) c.reason = reason;
  if (message !== undefined) c.message = message;
  if (i >= 0) conds[i] = c;
  else conds.push(c);
  status.conditions = conds;
}

/** Start the simulated node on the server's store (register it before creating pods, or after: it catches up). */
export function startKubelet(server: FakeApiServer, opts: FakeKubeletOptions = {}): FakeKubelet {
  return new KubeletImpl(server, opts);
}

export interface FakeClusterOptions {
  server?: FakeApiServerOptions;
  kubelet?: FakeKubeletOptions;
  jobs?: FakeJobControllerOptions;
}

/** Server + Job controller + one node. */
export interface FakeCluster {
  readonly server: FakeApiServer;
  readonly kubelet: FakeKubelet;
  readonly jobs: FakeJobController;
  readonly store: FakeApiServer['store'];
  readonly url: string;
  kubeConfig: FakeApiServer['kubeConfig'];
  /** Kill every process, stop the controllers and the server. */
  stop(): Promise<void>;
}

export async function startFakeCluster(opts: FakeClusterOptions = {}): Promise<FakeCluster> {
  const server = await startFakeApiServer(opts.server ?? {});
  const jobs = startJobController(server, opts.jobs ?? {});
  const kubelet = startKubelet(server, opts.kubelet ?? {});
  return {
    server,
    kubelet,
    jobs,
    store: server.store,
    url: server.url,
    kubeConfig: (o) => server.kubeConfig(o),
    async stop() {
      jobs.stop();
      await kubelet.stop();
      await server.stop();
    },
  };
}
