/**
 * A pod's status as the kubelet writes it from what its containers do:
 *
 * - containerStatuses: per container waiting (ContainerCreating, ErrImagePull,
 *   CreateContainerConfigError, CrashLoopBackOff), running (startedAt) or terminated
 *   (exitCode, reason Completed / Error / OOMKilled / StartError), restartCount,
 *   lastState;
 * - phase: Pending until a container runs, Running, then Succeeded when every container
 *   exited 0 (Failed otherwise, and after node-pressure eviction with reason Evicted);
 * - conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady (and
 *   PodScheduled, DisruptionTarget from the scheduler and evictions), each with the
 *   real kubelet's reasons and messages and a lastTransitionTime kept while the value
 *   holds.
 */
import type { IContainerStatus } from 'kubernetes-models/v1/ContainerStatus';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { IPodCondition } from 'kubernetes-models/v1/PodCondition';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import type { PodRun } from './types.js';

export function setCondition(
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

export function notReadyMessage(run: PodRun): string {
  const names = run.containers.filter((c) => !c.proc || c.terminated).map((c) => c.name);
  return `containers with unready status: [${names.join(' ')}]`;
}

export function containerStatuses(run: PodRun, pod: IPod): IContainerStatus[] {
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

/** The status of a pod the kubelet has just taken on: Pending, its IPs, containers creating. */
export function writeAcceptedStatus(status: IPodStatus, pod: IPod, run: PodRun, now: string): void {
  status.phase = 'Pending';
  status.hostIP = '127.0.0.1';
  status.hostIPs = [{ ip: '127.0.0.1' }];
  status.podIP = '127.0.0.1';
  status.podIPs = [{ ip: '127.0.0.1' }];
  status.startTime ??= now;
  setCondition(status, 'PodReadyToStartContainers', 'True', now);
  setCondition(status, 'Initialized', 'True', now);
  setCondition(status, 'Ready', 'False', now, 'ContainersNotReady', notReadyMessage(run));
  setCondition(status, 'ContainersReady', 'False', now, 'ContainersNotReady', notReadyMessage(run));
  status.containerStatuses = containerStatuses(run, pod);
}

/** The status after a container started, exited or is waiting to restart. */
export function writeContainersStatus(
  status: IPodStatus,
  pod: IPod,
  run: PodRun,
  now: string,
  allDone: boolean,
): void {
  const allRunning = run.containers.every((c) => c.proc && !c.terminated && !c.waiting);
  status.containerStatuses = containerStatuses(run, pod);
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
    setCondition(status, 'Ready', 'False', now, 'ContainersNotReady', notReadyMessage(run));
    setCondition(
      status,
      'ContainersReady',
      'False',
      now,
      'ContainersNotReady',
      notReadyMessage(run),
    );
  }
}
