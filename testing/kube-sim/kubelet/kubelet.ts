/**
 * The fake cluster's node: a scheduler, a kubelet and a volume provisioner for one
 * simulated node, in-process on the fake API server's store and driven by its events.
 * Each pod bound to the node runs its containers as local child processes (own process
 * group each), so a Job's command really runs on this machine. The Job controller is in
 * jobs/; startFakeCluster() (cluster.ts) starts server, Job controller and kubelet together.
 *
 * This file is the kubelet's loop: store events -> a work queue of pods -> syncPod
 * (schedule, take the pod on, prepare and start it, or terminate it). The parts:
 * scheduler.ts, startup.ts (images, DNS, volumes and env, start), volumes.ts,
 * environment.ts, containers.ts (processes, exits, restarts), pod-status.ts, logs.ts,
 * termination.ts, faults.ts, node.ts.
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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import type { FakeApiServer, PodLogSource } from '../apiserver/types.js';
import type { Clock } from '../clock.js';
import { kubeTime } from '../objects/meta.js';
import { WorkQueue } from '../work-queue.js';
import type { StoreEvent } from '../store/object-table.js';
import type { FakeKubeStore } from '../store/store.js';
import { killGroup } from './containers.js';
import { evict, findPod, kill, oomKill } from './faults.js';
import { endLog, followLog, newLogBuffer, readLog, tail } from './logs.js';
import { nodeLabels, registerNode } from './node.js';
import { writeAcceptedStatus, writeContainersStatus } from './pod-status.js';
import { Scheduler } from './scheduler.js';
import { preparePod } from './startup.js';
import { podRemoved, removePod, terminate } from './termination.js';
import {
  type EvictOptions,
  type FakeKubelet,
  type FakeKubeletOptions,
  type KubeletContext,
  type PodRun,
  type PodSelector,
  isTerminal,
} from './types.js';
import { bindClaim } from './volumes.js';

class KubeletImpl implements FakeKubelet, PodLogSource, KubeletContext {
  readonly nodeName: string;
  readonly store: FakeKubeStore;
  readonly clock: Clock;
  readonly opts: FakeKubeletOptions;
  readonly mountRoot: string;
  readonly runs = new Map<string, PodRun>();
  private readonly server: FakeApiServer;
  private readonly scheduler: Scheduler;
  private readonly ownsMountRoot: boolean;
  /** Latest run per `ns/name`, kept after the pod is gone (for logs()). */
  private readonly byName = new Map<string, PodRun>();
  private readonly queue = new WorkQueue(
    'fake kubelet',
    () => this.isStopped,
    (ns, name) => this.syncPod(ns, name),
  );
  private isStopped = false;
  private readonly unsubscribe: () => void;

  constructor(server: FakeApiServer, opts: FakeKubeletOptions) {
    this.server = server;
    this.store = server.store;
    this.opts = opts;
    this.clock = opts.clock ?? server.clock;
    this.nodeName = opts.nodeName ?? 'fake-node';
    const gpus = opts.gpus ?? 8;
    const labels = nodeLabels(this.nodeName, opts.nodeLabels);
    this.scheduler = new Scheduler({
      store: this.store,
      clock: this.clock,
      nodeName: this.nodeName,
      labels,
      capacityGpus: gpus,
    });
    this.ownsMountRoot = opts.mountRoot === undefined;
    this.mountRoot = opts.mountRoot ?? mkdtempSync(join(tmpdir(), 'fake-kubelet-'));
    registerNode(this.store, this.clock, { name: this.nodeName, labels, gpus });
    server.setPodLogSource(this);
    this.unsubscribe = this.store.subscribe((ev) => this.onEvent(ev));
    for (const p of this.store.list('pods')) this.enqueue(p.metadata.namespace!, p.metadata.name!);
    if (opts.bindClaims ?? true)
      for (const c of this.store.list('persistentvolumeclaims')) bindClaim(this.store, c);
  }

  get apiPort(): number {
    return this.server.port;
  }

  get stopped(): boolean {
    return this.isStopped;
  }

  // -------------------------------------------------------------------------------------
  // Events and the work queue

  private onEvent(ev: StoreEvent): void {
    if (this.stopped) return;
    const ns = ev.object.metadata.namespace ?? '';
    switch (ev.resource) {
      case 'pods': {
        if (ev.type === 'DELETED') {
          this.scheduler.forget(`${ns}/${ev.object.metadata.name ?? ''}`);
          podRemoved(this, ev.object);
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
        return this.retryStage(ns, 'config-error');
      case 'persistentvolumeclaims':
        if (ev.type === 'ADDED' && (this.opts.bindClaims ?? true)) bindClaim(this.store, ev.object);
        if (ev.type !== 'DELETED') this.wakeUnschedulable();
        return;
      case 'services':
        if (ev.type !== 'ADDED') return;
        return this.retryStage(ns, 'awaiting-service');
      default:
        return;
    }
  }

  /** Look again at the pods of namespace ns waiting in `stage`. */
  private retryStage(ns: string, stage: PodRun['stage']): void {
    for (const r of this.runs.values())
      if (r.namespace === ns && r.stage === stage) this.enqueue(r.namespace, r.name);
  }

  private wakeUnschedulable(): void {
    for (const k of this.scheduler.wakeKeys()) {
      const [ns, name] = k.split('/') as [string, string];
      this.enqueue(ns, name);
    }
  }

  private enqueue(ns: string, name: string): void {
    this.queue.add(ns, name);
  }

  // -------------------------------------------------------------------------------------
  // The pod lifecycle

  private syncPod(ns: string, name: string): void {
    const pod = this.store.get<IPod>('pods', ns, name);
    if (!pod) return;
    const uid = pod.metadata!.uid!;
    if (!pod.spec?.nodeName) {
      if (!pod.metadata?.deletionTimestamp) this.scheduler.schedule(pod);
      return;
    }
    if (pod.spec.nodeName !== this.nodeName) return;
    this.scheduler.forget(`${ns}/${name}`);
    let run = this.runs.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      terminate(this, pod, run);
      return;
    }
    if (isTerminal(pod)) return;
    if (!run) {
      run = this.newRun(pod);
      const accepted = run;
      this.writeStatus(accepted, (status) =>
        writeAcceptedStatus(status, pod, accepted, kubeTime(this.clock.now())),
      );
    }
    if (
      run.stage === 'preparing' ||
      run.stage === 'config-error' ||
      run.stage === 'awaiting-service'
    )
      preparePod(this, pod, run);
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
        log: newLogBuffer(),
        oom: false,
      })),
      gpuIds: this.scheduler.allocateGpus(pod, this.runs.values()),
      mounts: [],
      terminating: false,
      removed: false,
      timers: [],
    };
    this.runs.set(run.uid, run);
    this.byName.set(`${ns}/${name}`, run);
    return run;
  }

  writeStatus(run: PodRun, fn: (status: IPodStatus, pod: IPod) => void): void {
    if (run.removed || this.stopped) return;
    this.store.mutate<IPod>('pods', run.namespace, run.name, (p) => {
      if (p.metadata?.uid !== run.uid) return false;
      const status = (p.status ??= {});
      fn(status, p);
      return true;
    });
  }

  afterContainerChange(run: PodRun): void {
    const now = kubeTime(this.clock.now());
    const allDone = run.containers.every((c) => c.terminated && !c.restartTimer);
    if (allDone) {
      run.stage = 'finished';
      run.killTimer?.cancel();
    }
    this.writeStatus(run, (status, pod) => writeContainersStatus(status, pod, run, now, allDone));
    if (allDone) {
      this.wakeUnschedulable();
      if (run.terminating) removePod(this, run);
    }
  }

  // -------------------------------------------------------------------------------------
  // Faults and inspection (FakeKubelet)

  evict(podName: string, opts: EvictOptions = {}): void {
    evict(this, podName, opts);
  }

  oomKill(podName: string, opts: PodSelector = {}): void {
    oomKill(this, podName, opts);
  }

  kill(podName: string, opts: PodSelector & { signal?: NodeJS.Signals } = {}): void {
    kill(this, podName, opts);
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
    const pod = findPod(this, podName, opts.namespace);
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
    return readLog(this.byName.get(`${namespace}/${pod}`), pod, container, opts);
  }

  follow(
    namespace: string,
    pod: string,
    container: string | undefined,
    onData: (s: string) => void,
    onEnd: () => void,
  ): () => void {
    return followLog(this.byName.get(`${namespace}/${pod}`), container, onData, onEnd);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.isStopped = true;
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
      for (const c of r.containers) if (!c.log.ended) endLog(c.log);
    if (this.ownsMountRoot) rmSync(this.mountRoot, { recursive: true, force: true });
  }
}

/** Start the simulated node on the server's store (register it before creating pods, or after: it catches up). */
export function startKubelet(server: FakeApiServer, opts: FakeKubeletOptions = {}): FakeKubelet {
  return new KubeletImpl(server, opts);
}
