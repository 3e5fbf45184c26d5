/**
 * The simulated node's scheduler: binds a pod to the node when its
 * PersistentVolumeClaims exist, its nodeSelector and required node affinity match the
 * node's labels, and its `nvidia.com/gpu` fits in what the node's other unfinished pods
 * leave. Otherwise the pod stays Pending with PodScheduled=False, reason Unschedulable
 * and the real scheduler's message (`0/1 nodes are available: 1 Insufficient
 * nvidia.com/gpu.`, `... persistentvolumeclaim "x" not found.`), and a FailedScheduling
 * event when the message changes; the kubelet retries such pods (wakeKeys) when GPUs
 * free up or a claim appears. It also hands out GPU ids to the pods that start.
 */
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { Clock } from '../clock.js';
import { type KubeObject, kubeTime } from '../objects/meta.js';
import { GPU_RESOURCE } from '../objects/resources.js';
import type { FakeKubeStore } from '../store/store.js';
import { setCondition } from './pod-status.js';
import { type PodRun, isTerminal } from './types.js';

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

export interface SchedulerNode {
  store: FakeKubeStore;
  clock: Clock;
  nodeName: string;
  labels: Record<string, string>;
  capacityGpus: number;
}

export class Scheduler {
  /** `ns/name` of the pods waiting for room, retried by wakeKeys(). */
  private readonly unschedulable = new Set<string>();
  private readonly node: SchedulerNode;

  constructor(node: SchedulerNode) {
    this.node = node;
  }

  private get store(): FakeKubeStore {
    return this.node.store;
  }

  /** The pods to look at again now that room may have freed up. */
  wakeKeys(): string[] {
    return [...this.unschedulable];
  }

  /** The pod is bound, or gone: no longer waiting. */
  forget(key: string): void {
    this.unschedulable.delete(key);
  }

  /** Bind the pod to the node, or say why it cannot be (PodScheduled False). */
  schedule(pod: IPod): void {
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
      if (need > this.node.capacityGpus - this.gpusInUse(pod.metadata!.uid!))
        message = `0/1 nodes are available: 1 Insufficient ${GPU_RESOURCE}.`;
    }
    const now = kubeTime(this.node.clock.now());
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
      p.spec!.nodeName = this.node.nodeName;
      const status = (p.status ??= {});
      setCondition(status, 'PodScheduled', 'True', now);
    });
    this.store.recordEvent(
      pod as unknown as KubeObject,
      'Normal',
      'Scheduled',
      `Successfully assigned ${ns}/${name} to ${this.node.nodeName}`,
      'default-scheduler',
    );
  }

  private matchesNode(pod: IPod): boolean {
    for (const [k, v] of Object.entries(pod.spec?.nodeSelector ?? {}))
      if (this.node.labels[k] !== v) return false;
    const terms =
      pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms;
    if (terms && terms.length > 0) {
      const ok = terms.some((t) =>
        (t.matchExpressions ?? []).every((e) => {
          const has = Object.prototype.hasOwnProperty.call(this.node.labels, e.key);
          const v = this.node.labels[e.key];
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
      fieldSelector: `spec.nodeName=${this.node.nodeName}`,
    })) {
      if (p.metadata?.uid === exceptUid || isTerminal(p)) continue;
      n += podGpus(p);
    }
    return n;
  }

  /** GPU ids for a pod that starts, from those no unfinished run holds. */
  allocateGpus(pod: IPod, runs: Iterable<PodRun>): number[] {
    const need = podGpus(pod);
    if (need === 0) return [];
    const used = new Set<number>();
    for (const r of runs) if (r.stage !== 'finished') for (const g of r.gpuIds) used.add(g);
    const ids: number[] = [];
    for (let i = 0; i < this.node.capacityGpus && ids.length < need; i++)
      if (!used.has(i)) ids.push(i);
    return ids;
  }
}
