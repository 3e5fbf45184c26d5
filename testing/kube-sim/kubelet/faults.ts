/**
 * The node's faults, as tests inject them (FakeKubelet.evict, oomKill, kill), and how a
 * test finds a pod's run:
 *
 * - evict: the Eviction API, preemption and the taint manager go through the API server
 *   (a DisruptionTarget condition, then a graceful delete: store/events.ts);
 *   TerminationByKubelet is node-pressure eviction, done here: DisruptionTarget, an
 *   Evicted event, the processes killed (SIGTERM then SIGKILL after gracePeriodSeconds;
 *   at once by default), then phase Failed with reason Evicted (pod-status.ts).
 * - oomKill: SIGKILL to the container's process group, terminated reason OOMKilled.
 * - kill: any signal to the container's process group (a crash: SIGKILL).
 */
import type { IPod } from 'kubernetes-models/v1/Pod';
import { type KubeObject, kubeTime } from '../objects/meta.js';
import { killGroup } from './containers.js';
import { setCondition } from './pod-status.js';
import type { ContainerRun, EvictOptions, KubeletContext, PodRun, PodSelector } from './types.js';

/** The pod named podName (in namespace, or the only one of that name). */
export function findPod(ctx: KubeletContext, podName: string, namespace: string | undefined): IPod {
  if (namespace) return ctx.store.getOrThrow<IPod>('pods', namespace, podName);
  const found = ctx.store.list<IPod>('pods', { fieldSelector: `metadata.name=${podName}` });
  if (found.length === 0) throw new Error(`fake kubelet: no pod named ${podName}`);
  if (found.length > 1)
    throw new Error(`fake kubelet: pod ${podName} exists in several namespaces; pass namespace`);
  return found[0]!;
}

/** The run of a pod on this node and one of its containers (the running one by default). */
export function runningContainer(
  ctx: KubeletContext,
  podName: string,
  opts: PodSelector,
): { run: PodRun; cr: ContainerRun } {
  const pod = findPod(ctx, podName, opts.namespace);
  const run = ctx.runs.get(pod.metadata!.uid!);
  if (!run) throw new Error(`fake kubelet: pod ${podName} is not running on ${ctx.nodeName}`);
  const cr = opts.container
    ? run.containers.find((c) => c.name === opts.container)
    : (run.containers.find((c) => c.proc && !c.terminated) ?? run.containers[0]);
  if (!cr) throw new Error(`fake kubelet: pod ${podName} has no container ${opts.container ?? ''}`);
  return { run, cr };
}

export function evict(ctx: KubeletContext, podName: string, opts: EvictOptions): void {
  const pod = findPod(ctx, podName, opts.namespace);
  const ns = pod.metadata!.namespace!;
  const reason = opts.reason ?? 'EvictionByEvictionAPI';
  if (reason !== 'TerminationByKubelet') {
    const o: { reason: string; message?: string; gracePeriodSeconds?: number } = { reason };
    if (opts.message !== undefined) o.message = opts.message;
    if (opts.gracePeriodSeconds !== undefined) o.gracePeriodSeconds = opts.gracePeriodSeconds;
    ctx.store.evictPod(ns, podName, o);
    return;
  }
  const run = ctx.runs.get(pod.metadata!.uid!);
  const message =
    opts.message ??
    'The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ';
  const now = kubeTime(ctx.clock.now());
  ctx.store.mutate<IPod>('pods', ns, podName, (p) => {
    const status = (p.status ??= {});
    setCondition(status, 'DisruptionTarget', 'True', now, 'TerminationByKubelet', message);
  });
  ctx.store.recordEvent(pod as unknown as KubeObject, 'Warning', 'Evicted', message, 'kubelet');
  if (!run) return;
  run.nodePressure = message;
  const grace = opts.gracePeriodSeconds ?? 0;
  for (const c of run.containers)
    if (c.proc && !c.terminated) killGroup(c.pid, grace === 0 ? 'SIGKILL' : 'SIGTERM');
  if (grace > 0) {
    run.killTimer?.cancel();
    run.killTimer = ctx.clock.setTimeout(() => {
      for (const c of run.containers) if (c.proc && !c.terminated) killGroup(c.pid, 'SIGKILL');
    }, grace * 1000);
  }
}

export function oomKill(ctx: KubeletContext, podName: string, opts: PodSelector): void {
  const { cr } = runningContainer(ctx, podName, opts);
  if (!cr.proc || cr.terminated)
    throw new Error(`fake kubelet: container ${cr.name} of ${podName} is not running`);
  cr.oom = true;
  killGroup(cr.pid, 'SIGKILL');
}

export function kill(
  ctx: KubeletContext,
  podName: string,
  opts: PodSelector & { signal?: NodeJS.Signals },
): void {
  const { cr } = runningContainer(ctx, podName, opts);
  if (!cr.proc || cr.terminated)
    throw new Error(`fake kubelet: container ${cr.name} of ${podName} is not running`);
  killGroup(cr.pid, opts.signal ?? 'SIGKILL');
}
