/**
 * A pod leaving the simulated node:
 *
 * - terminate: the pod is being deleted: SIGTERM to every live container's process group
 *   (SIGKILL with a zero grace period) with a Killing event, SIGKILL once the grace
 *   period (the delete's, else the pod's terminationGracePeriodSeconds) has passed on the
 *   cluster's clock; a later delete with a shorter grace period moves the SIGKILL
 *   earlier. When the containers have ended, the pod is removed from the store.
 * - failAndRemove: a pod with no process to stop (bound but never started, or already
 *   stopped): phase Failed unless it finished, then removed.
 * - podRemoved: the pod is gone from the store: stop whatever still runs, release its
 *   GPUs, delete its per-pod directories.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { type KubeObject, KubeApiError, kubeTime } from '../objects/meta.js';
import { killGroup } from './containers.js';
import { endLog } from './logs.js';
import { setCondition } from './pod-status.js';
import { type KubeletContext, type PodRun, isTerminal } from './types.js';

export function terminate(ctx: KubeletContext, pod: IPod, run: PodRun | undefined): void {
  if (!run) {
    // Bound but never started here: nothing to stop.
    failAndRemove(ctx, pod);
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
      for (const c of run.containers) if (!c.terminated) endLog(c.log);
      failAndRemove(ctx, pod);
    } else removePod(ctx, run);
    return;
  }
  const grace =
    pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
  if (firstTime) {
    for (const c of live) {
      ctx.store.recordEvent(
        pod as unknown as KubeObject,
        'Normal',
        'Killing',
        `Stopping container ${c.name}`,
        'kubelet',
      );
      killGroup(c.pid, grace === 0 ? 'SIGKILL' : 'SIGTERM');
    }
  }
  const killAt = ctx.clock.now() + grace * 1000;
  if (run.killAt === undefined || killAt < run.killAt) {
    run.killAt = killAt;
    run.killTimer?.cancel();
    run.killTimer = ctx.clock.setTimeout(() => {
      for (const c of run.containers) if (c.proc && !c.terminated) killGroup(c.pid, 'SIGKILL');
    }, grace * 1000);
  }
}

/** A pod going away that has no process: terminal phase, then removal. */
export function failAndRemove(ctx: KubeletContext, pod: IPod): void {
  const ns = pod.metadata!.namespace!;
  const name = pod.metadata!.name!;
  if (!isTerminal(pod)) {
    ctx.store.mutate<IPod>('pods', ns, name, (p) => {
      if (p.metadata?.uid !== pod.metadata?.uid) return false;
      const status = (p.status ??= {});
      status.phase = 'Failed';
      const now = kubeTime(ctx.clock.now());
      setCondition(status, 'Ready', 'False', now, 'PodCompleted');
      setCondition(status, 'ContainersReady', 'False', now, 'PodCompleted');
      return true;
    });
  }
  removeFromStore(ctx, ns, name, pod.metadata!.uid!);
}

/** The pod's containers have ended: remove it from the store. */
export function removePod(ctx: KubeletContext, run: PodRun): void {
  removeFromStore(ctx, run.namespace, run.name, run.uid);
}

function removeFromStore(ctx: KubeletContext, ns: string, name: string, uid: string): void {
  if (ctx.stopped) return;
  try {
    ctx.store.delete('pods', ns, name, { gracePeriodSeconds: 0, preconditions: { uid } });
  } catch (err) {
    if (!(err instanceof KubeApiError && (err.code === 404 || err.code === 409))) throw err;
  }
}

export function podRemoved(ctx: KubeletContext, obj: KubeObject): void {
  const run = ctx.runs.get(obj.metadata.uid ?? '');
  if (!run) return;
  run.removed = true;
  run.killTimer?.cancel();
  for (const t of run.timers) clearTimeout(t);
  for (const c of run.containers) {
    if (c.restartTimer) clearTimeout(c.restartTimer);
    if (c.proc && !c.terminated) killGroup(c.pid, 'SIGKILL');
    else if (!c.log.ended) endLog(c.log);
  }
  ctx.runs.delete(run.uid);
  if (run.gpuIds.length) run.gpuIds = [];
  rmSync(join(ctx.mountRoot, 'pods', run.uid), { recursive: true, force: true });
}
