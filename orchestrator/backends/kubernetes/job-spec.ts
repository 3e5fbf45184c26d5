/**
 * What every Job of a worker has in common, train attempts and pool workers alike.
 *
 * Failure policy: backoffLimit 0 (retries are the dispatcher's, with their backoff and
 * resume pointer); podFailurePolicy ignores DisruptionTarget (preemption, eviction,
 * node drain: the pod is replaced and resumes from its checkpoint, no attempt spent)
 * and fails the Job at once on the exit codes common/exit-codes.json calls
 * non-retryable (so every other pod of a gang stops too, with reason PodFailurePolicy).
 * podReplacementPolicy Failed (the only one a failure policy allows) also keeps a
 * replaced pod (same index, same hostname) from overlapping the one still terminating.
 *
 * Labels: app.kubernetes.io/managed-by=stoker (what the backend watches), name, component
 * (train-worker, pool-worker), and on pods the Job's name (stoker.dev/job). With a Kueue
 * queue name the Job carries the queue label and is created suspended; Kueue admits it.
 */
import type { V1Job, V1ObjectMeta, V1PodFailurePolicy, V1PodSpec } from '@kubernetes/client-node';
import { classifyExit } from '../../../common/exit-codes.js';
import {
  defaultKubernetes,
  isLabelKey,
  isLabelValue,
  isReservedLabelKey,
} from '../../../common/spec/schema.js';
import type { NormalizedKubernetes, NormalizedStage } from '../../../common/spec/schema.js';
import { LABELS, MANAGED_BY } from './names.js';
import { WORKER_CONTAINER } from './pod-spec.js';

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

/** The parts of a worker Job that differ between train attempts and pool workers. */
export interface WorkerJobInput {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  k: NormalizedKubernetes;
  /** Pods: one per node (an Indexed Job when more than one). */
  pods: number;
  indexed: boolean;
  activeDeadlineSeconds?: number | undefined;
  podSpec: V1PodSpec;
}

export function workerJob(input: WorkerJobInput): V1Job {
  const { name, labels, annotations, k } = input;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: jobMetadata(name, input.namespace, labels, annotations, k),
    spec: {
      completionMode: input.indexed ? 'Indexed' : 'NonIndexed',
      completions: input.pods,
      parallelism: input.pods,
      backoffLimit: 0,
      podFailurePolicy: podFailurePolicy(),
      podReplacementPolicy: 'Failed',
      ...(input.activeDeadlineSeconds === undefined
        ? {}
        : { activeDeadlineSeconds: Math.max(1, Math.ceil(input.activeDeadlineSeconds)) }),
      ttlSecondsAfterFinished: k.ttlSecondsAfterFinished,
      ...(k.queueName === undefined ? {} : { suspend: true }),
      template: {
        metadata: { labels: { ...labels, [LABELS.job]: name }, annotations },
        spec: input.podSpec,
      },
    },
  };
}

/** The stage's kubernetes block; runs stored before it existed get the defaults. */
export function kubernetesOf(stage: NormalizedStage, gpuPods: boolean): NormalizedKubernetes {
  return (stage.kubernetes as NormalizedKubernetes | undefined) ?? defaultKubernetes(gpuPods);
}

export function commonLabels(component: string): Record<string, string> {
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.name]: 'stoker',
    [LABELS.component]: component,
  };
}

/** The run's own labels, minus any a spec check would have refused (keys stoker sets). */
export function userLabels(labels: Record<string, string> | undefined): Record<string, string> {
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
