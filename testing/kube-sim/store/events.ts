/**
 * Two writes the cluster's components make through the store, as the real ones do:
 *
 * - recordEvent: a core/v1 Event about an object (`involvedObject`, type, reason,
 *   message, source component); a repeat of the same reason and message for the same
 *   object raises the existing Event's count and lastTimestamp instead.
 * - evictPod: the Eviction API and the scheduler's preemption: a DisruptionTarget
 *   condition on the pod's status (reason EvictionByEvictionAPI, PreemptionByScheduler or
 *   DeletionByTaintManager, with the real message), then a graceful delete.
 */
import { type KubeObject, asDict, asList, kubeTime } from '../objects/meta.js';
import type { DeleteOptions, FakeKubeStore } from './store.js';

export interface EvictOptions {
  reason?: string;
  message?: string;
  gracePeriodSeconds?: number;
}

export function evictPod(
  store: FakeKubeStore,
  namespace: string,
  name: string,
  opts: EvictOptions,
): { object: KubeObject; removed: boolean } {
  store.getOrThrow('pods', namespace, name);
  const reason = opts.reason ?? 'EvictionByEvictionAPI';
  const message =
    opts.message ??
    (reason === 'PreemptionByScheduler'
      ? 'default-scheduler: preempting to accommodate a higher priority pod'
      : reason === 'DeletionByTaintManager'
        ? 'Taint manager: deleting due to NoExecute taint'
        : 'Eviction API: evicting');
  const now = kubeTime(store.clock.now());
  store.mutate('pods', namespace, name, (pod: KubeObject) => {
    const status = asDict(pod['status']);
    pod['status'] = status;
    const conds = asList(status['conditions']).filter((c) => c['type'] !== 'DisruptionTarget');
    conds.push({
      type: 'DisruptionTarget',
      status: 'True',
      reason,
      message,
      lastTransitionTime: now,
    });
    status['conditions'] = conds;
  });
  const del: DeleteOptions = {};
  if (opts.gracePeriodSeconds !== undefined) del.gracePeriodSeconds = opts.gracePeriodSeconds;
  return store.delete('pods', namespace, name, del);
}

export function recordEvent(
  store: FakeKubeStore,
  involved: KubeObject,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  component: string,
): void {
  const ns = involved.metadata.namespace ?? 'default';
  const now = kubeTime(store.clock.now());
  const existing = store.list('events', { namespace: ns }).find((e) => {
    const io = asDict(e['involvedObject']);
    return (
      io['uid'] === involved.metadata.uid && e['reason'] === reason && e['message'] === message
    );
  });
  if (existing) {
    store.mutate('events', ns, existing.metadata.name!, (e: KubeObject) => {
      e['count'] = (typeof e['count'] === 'number' ? e['count'] : 1) + 1;
      e['lastTimestamp'] = now;
    });
    return;
  }
  const hex = Math.floor(Math.random() * 0xffffffff)
    .toString(16)
    .padStart(8, '0');
  store.create('events', {
    metadata: {
      name: `${involved.metadata.name ?? 'unknown'}.${store.clock.now().toString(16)}${hex}`,
      namespace: ns,
    },
    involvedObject: {
      apiVersion: involved.apiVersion,
      kind: involved.kind,
      name: involved.metadata.name,
      namespace: ns,
      uid: involved.metadata.uid,
      resourceVersion: involved.metadata.resourceVersion,
    },
    type,
    reason,
    message,
    source: { component },
    reportingComponent: component,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  });
}
